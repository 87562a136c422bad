//! Events of each kind written through the writer and read back by each filter.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use custos_event::{Decision, ProcessAction};
use custos_store::{Filter, Outcome, Reader, TreeKey};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn sample(dir: &std::path::Path) -> Reader {
    let db = dir.join("events.db");
    write_all(
        &db,
        vec![
            exec(1000, 10, "/usr/bin/ls", A, Decision::Allow),
            exec(1001, 11, "/tmp/x/evil", B, Decision::Deny),
            process(
                1002,
                ProcessAction::Fork,
                12,
                "b:5:12",
                Some((10, "b:1:10")),
                "/usr/bin/bash",
            ),
            process(
                1003,
                ProcessAction::Exec,
                12,
                "b:5:12",
                Some((10, "b:1:10")),
                "/usr/bin/id",
            ),
            image(1004, 12, "/usr/lib/libz.so.1"),
            process(1005, ProcessAction::Exit, 12, "b:5:12", None, "/usr/bin/id"),
        ],
    );
    Reader::open(&db).expect("opens")
}

fn actions(r: &Reader, f: Filter) -> Vec<String> {
    let (rows, _) = r.latest(&f, None).expect("query");
    rows.into_iter()
        .map(|s| format!("{}/{}", s.row.kind, s.row.action))
        .collect()
}

#[test]
fn every_filter() {
    let dir = tempfile::tempdir().unwrap();
    let r = sample(dir.path());
    assert_eq!(r.count().unwrap(), 6);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("events.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "events hold command lines");
    assert_eq!(actions(&r, Filter::default()).len(), 6);
    let kind = |k: &str| Filter {
        kinds: vec![k.into()],
        ..Filter::default()
    };
    assert_eq!(actions(&r, kind("exec")), ["exec/exec", "exec/exec"]);
    assert_eq!(
        actions(&r, kind("process")),
        ["process/fork", "process/exec", "process/exit"]
    );
    assert_eq!(actions(&r, kind("image")), ["image/image_load"]);
    assert!(actions(&r, kind("network")).is_empty());
    let since = Filter {
        since_us: Some(1003 * 1_000_000),
        until_us: Some(1004 * 1_000_000),
        ..Filter::default()
    };
    assert_eq!(actions(&r, since), ["process/exec", "image/image_load"]);
    let pid = Filter {
        pid: Some(11),
        ..Filter::default()
    };
    assert_eq!(actions(&r, pid), ["exec/exec"]);
    let glob = Filter {
        path_glob: Some("/usr/lib/*".into()),
        ..Filter::default()
    };
    assert_eq!(actions(&r, glob), ["image/image_load"]);
    let exact = Filter {
        path_glob: Some("/usr/bin/ls".into()),
        ..Filter::default()
    };
    assert_eq!(actions(&r, exact), ["exec/exec"]);
    let class = Filter {
        path_glob: Some("/usr/bin/[a-i]*".into()),
        ..Filter::default()
    };
    assert_eq!(
        actions(&r, class),
        ["process/fork", "process/exec", "process/exit"]
    );
    let sha = Filter {
        sha256: Some(B.to_ascii_uppercase()),
        ..Filter::default()
    };
    let (rows, _) = r.latest(&sha, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row.path.as_deref(), Some("/tmp/x/evil"));
    let deny = Filter {
        outcome: Some(Outcome::Deny),
        ..Filter::default()
    };
    let (rows, _) = r.latest(&deny, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row.pid, Some(11));
    let allow = Filter {
        outcome: Some(Outcome::Allow),
        ..Filter::default()
    };
    assert_eq!(r.latest(&allow, None).unwrap().0[0].row.pid, Some(10));
    // Filters combine.
    let both = Filter {
        pid: Some(12),
        kinds: vec!["process".into(), "image".into()],
        since_us: Some(1004 * 1_000_000),
        ..Filter::default()
    };
    assert_eq!(actions(&r, both), ["image/image_load", "process/exit"]);
}

#[test]
fn limit_keeps_the_newest_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = sample(dir.path());
    let (rows, more) = r.latest(&Filter::default(), Some(2)).unwrap();
    assert!(more);
    let t: Vec<i64> = rows.iter().map(|s| s.row.ts_us / 1_000_000).collect();
    assert_eq!(t, [1004, 1005]);
    let (rows, more) = r.latest(&Filter::default(), Some(6)).unwrap();
    assert!(!more);
    assert_eq!(rows.len(), 6);
}

#[test]
fn follow_sees_only_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let r = sample(dir.path());
    let last = r.last_id().unwrap();
    assert!(r.after(&Filter::default(), last, 100).unwrap().is_empty());
    // A second writer on the same file appends; the open reader sees it.
    write_all(
        &dir.path().join("events.db"),
        vec![
            exec(2000, 20, "/usr/bin/new", A, Decision::Deny),
            image(2001, 20, "/lib/x.so"),
        ],
    );
    let deny = Filter {
        outcome: Some(Outcome::Deny),
        ..Filter::default()
    };
    let new = r.after(&deny, last, 100).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].row.path.as_deref(), Some("/usr/bin/new"));
    assert!(new[0].id > last);
    assert_eq!(r.after(&Filter::default(), last, 100).unwrap().len(), 2);
}

#[test]
fn tree_follows_fork_and_exec_and_ignores_reparenting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let sh = "b:1:100";
    let child = "b:2:101";
    let grand = "b:3:102";
    write_all(
        &db,
        vec![
            process(
                1,
                ProcessAction::Snapshot,
                100,
                sh,
                Some((1, "b:0:1")),
                "/bin/sh",
            ),
            process(
                2,
                ProcessAction::Fork,
                101,
                child,
                Some((100, sh)),
                "/bin/sh",
            ),
            process(
                3,
                ProcessAction::Exec,
                101,
                child,
                Some((100, sh)),
                "/usr/bin/make",
            ),
            process(
                4,
                ProcessAction::Fork,
                102,
                grand,
                Some((101, child)),
                "/usr/bin/make",
            ),
            process(5, ProcessAction::Exit, 101, child, None, "/usr/bin/make"),
            // Reparented to init after make exited: still make's child in the tree.
            process(
                6,
                ProcessAction::Exec,
                102,
                grand,
                Some((1, "b:0:1")),
                "/usr/bin/cc",
            ),
        ],
    );
    let r = Reader::open(&db).unwrap();
    let t = r.tree(&TreeKey::Pid(101)).unwrap().expect("found");
    assert_eq!(t.node.entity_id, child);
    assert_eq!(t.node.programs, ["/bin/sh", "/usr/bin/make"]);
    assert_eq!(t.node.ended.as_deref(), Some("exit 3"));
    assert_eq!(t.node.command_line.as_deref(), Some("/usr/bin/make -x"));
    let anc: Vec<&str> = t.ancestors.iter().map(|n| n.entity_id.as_str()).collect();
    assert_eq!(anc, ["b:0:1", sh]);
    assert!(!t.ancestors[0].known, "init is only referenced");
    assert_eq!(t.ancestors[0].pid, Some(1));
    assert_eq!(t.node.children.len(), 1);
    assert_eq!(t.node.children[0].entity_id, grand);
    assert_eq!(
        t.node.children[0].programs,
        ["/usr/bin/make", "/usr/bin/cc"]
    );
    // From the top: the whole chain below.
    let top = r.tree(&TreeKey::parse(sh)).unwrap().expect("found");
    assert_eq!(top.node.children[0].children[0].entity_id, grand);
    // init has the grandchild's exec pointing at it, but not as its first event.
    assert!(r.tree(&TreeKey::parse("b:0:1")).unwrap().is_none());
    assert!(r.tree(&TreeKey::Pid(999)).unwrap().is_none());
}
