//! Retention, a writer that falls behind, bad databases, and a writer killed with SIGKILL.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use custos_event::Decision;
use custos_store::{integrity_check, Filter, Reader, Retention, StoreError};
use std::sync::Arc;
use std::time::Duration;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn size_bound_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let max = 2 << 20;
    let w = writer(
        &db,
        Retention {
            max_age: None,
            max_bytes: Some(max),
        },
    );
    let t0 = now_s();
    let n = 40_000u32;
    for i in 0..n {
        let path = format!("/opt/app/bin/tool-{i}");
        while !w.send(Arc::new(exec(t0, i as i32, &path, A, Decision::Allow))) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(w.close(Duration::from_secs(60)));
    let st = w.status();
    assert!(st.pruned_size > 0, "{st:?}");
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size <= max, "database is {size} bytes, bound {max}");
    let r = Reader::open(&db).unwrap();
    let kept = r.count().unwrap();
    assert!(kept > 1000 && kept < u64::from(n), "kept {kept}");
    // The newest are kept, the oldest gone.
    let (rows, _) = r.latest(&Filter::default(), Some(1)).unwrap();
    assert_eq!(rows[0].row.pid, Some(i64::from(n - 1)));
    let first = Filter {
        pid: Some(0),
        ..Filter::default()
    };
    assert!(r.latest(&first, None).unwrap().0.is_empty());
    assert_eq!(integrity_check(&db).unwrap(), Ok(()));
}

#[test]
fn age_bound_removes_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let now = now_s();
    write_all(
        &db,
        vec![
            exec(now - 3 * 86_400, 1, "/old", A, Decision::Allow),
            exec(now - 2 * 86_400, 2, "/old", A, Decision::Allow),
            exec(now - 60, 3, "/new", A, Decision::Allow),
        ],
    );
    // A writer with a one-day bound prunes at start.
    let w = writer(
        &db,
        Retention {
            max_age: Some(Duration::from_secs(86_400)),
            max_bytes: None,
        },
    );
    w.send(Arc::new(exec(now, 4, "/new", A, Decision::Allow)));
    assert!(w.close(Duration::from_secs(10)));
    assert_eq!(w.status().pruned_age, 2);
    let r = Reader::open(&db).unwrap();
    let pids: Vec<_> = r.latest(&Filter::default(), None).unwrap().0;
    let pids: Vec<_> = pids.iter().map(|s| s.row.pid.unwrap()).collect();
    assert_eq!(pids, [3, 4]);
}

/// Holds an exclusive lock on the database, as another program might.
fn lock(db: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c
}

#[test]
fn locked_database_queues_then_counts_drops_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    write_all(&db, vec![]);
    let blocker = lock(&db);
    let mut opts = custos_store::WriterOptions::new(db.clone(), Retention::default());
    opts.queue = 50;
    opts.batch = 10;
    let w = custos_store::Writer::start(opts).unwrap();
    let t = now_s();
    let sent = (0..200)
        .filter(|i| w.send(Arc::new(exec(t, *i, "/x", A, Decision::Allow))))
        .count() as u64;
    assert!(
        wait_for(Duration::from_secs(10), || w
            .status()
            .state
            .contains("locked by another process")),
        "{:?}",
        w.status()
    );
    let st = w.status();
    assert_eq!(st.dropped, 200 - sent);
    assert!(st.dropped >= 140, "{st:?}");
    assert_eq!(st.written, 0);
    // Released: everything that was queued is committed, and the gap is recorded.
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert!(w.close(Duration::from_secs(20)));
    let st = w.status();
    assert_eq!(st.written, sent, "{st:?}");
    let r = Reader::open(&db).unwrap();
    let agent = Filter {
        kinds: vec!["agent".into()],
        ..Filter::default()
    };
    let (marks, _) = r.latest(&agent, None).unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].row.action, "events_dropped");
    let doc: serde_json::Value = serde_json::from_str(&marks[0].row.doc).unwrap();
    assert_eq!(doc["custos"]["dropped_total"], st.dropped);
    assert_eq!(r.count().unwrap(), sent + 1);
}

#[test]
fn not_a_database_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    match Reader::open(&db) {
        Err(e @ StoreError::NotADatabase { .. }) => {
            assert!(
                e.to_string()
                    .contains("events.db is not an SQLite database"),
                "{e}"
            )
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened garbage"),
    }
    let w = writer(&db, Retention::default());
    assert!(w.send(Arc::new(exec(now_s(), 1, "/x", A, Decision::Allow))));
    assert!(wait_for(Duration::from_secs(10), || w
        .status()
        .state
        .starts_with("failed")));
    let st = w.status();
    assert!(st.state.contains("is not an SQLite database"), "{st:?}");
    assert!(!w.close(Duration::from_millis(300)), "cannot finish");
    assert_eq!(std::fs::read(&db).unwrap(), vec![b'x'; 8192], "untouched");
    assert!(matches!(
        Reader::open(&dir.path().join("none.db")),
        Err(StoreError::Missing { .. })
    ));
}

#[test]
fn corrupt_database_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    write_all(&db, vec![exec(now_s(), 1, "/x", A, Decision::Allow)]);
    // Damage the schema page after the 100-byte header: SQLite reports it malformed.
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let e = Reader::open(&db)
        .and_then(|r| r.count())
        .expect_err("corrupt");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    let w = writer(&db, Retention::default());
    assert!(w.send(Arc::new(exec(now_s(), 2, "/y", A, Decision::Allow))));
    assert!(w.close(Duration::from_secs(10)));
    let st = w.status();
    let aside = st.moved_aside.clone().expect("moved aside");
    assert!(aside.contains("events.db.corrupt-"), "{st:?}");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "kept for inspection");
    let r = Reader::open(&db).unwrap();
    assert_eq!(r.count().unwrap(), 1);
    assert_eq!(integrity_check(&db).unwrap(), Ok(()));
}

/// Run by `kill_9_during_heavy_writes` in a child process: writes until killed.
#[test]
#[ignore = "child process of kill_9_during_heavy_writes"]
fn child_writer() {
    let Some(db) = std::env::var_os("CUSTOS_STORE_CHILD_DB") else {
        return;
    };
    let w = writer(std::path::Path::new(&db), Retention::default());
    let t = now_s();
    for i in 0.. {
        w.send(Arc::new(exec(t, i, "/usr/bin/load", A, Decision::Allow)));
        if i % 1000 == 0 {
            std::thread::yield_now();
        }
    }
}

#[test]
fn kill_9_during_heavy_writes_keeps_every_committed_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--nocapture"])
        .env("CUSTOS_STORE_CHILD_DB", &db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Watch commits from outside, as a reader would; kill once well under way.
    let mut seen = 0;
    let ok = wait_for(Duration::from_secs(30), || {
        seen = Reader::open(&db).and_then(|r| r.count()).unwrap_or(0);
        seen >= 50_000
    });
    assert!(ok, "child wrote only {seen}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(integrity_check(&db).unwrap(), Ok(()));
    let r = Reader::open(&db).unwrap();
    let after = r.count().unwrap();
    assert!(after >= seen, "committed {seen}, after the kill {after}");
    // Still writable: a new writer appends.
    write_all(&db, vec![exec(now_s(), -1, "/after", A, Decision::Allow)]);
    assert_eq!(Reader::open(&db).unwrap().count().unwrap(), after + 1);
}
