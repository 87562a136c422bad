//! Root-only: the event store behind a real agent. Events of every kind are stored and found
//! by every filter of `custos events`; `--follow` and `events tree` work on live events; the
//! store survives `kill -9` under load; a corrupt or locked store costs no decision and no
//! streamed event.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use custos_store::{integrity_check, Reader};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TELEMETRY: &str = "[telemetry]\nprocess = true\n";

fn db(sb: &Sandbox) -> PathBuf {
    sb.dir.path().join("state/events.db")
}

/// `custos events ARGS --format json --limit 0`, parsed.
fn query(sb: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events", "--limit", "0", "--format", "json"];
    all.extend_from_slice(args);
    sb.ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Waits until `query(args)` returns at least `n` events (the store may not exist yet).
fn stored(sb: &Sandbox, args: &[&str], n: usize) -> Vec<Value> {
    let mut all = vec!["events", "--limit", "0", "--format", "json"];
    all.extend_from_slice(args);
    let mut found = Vec::new();
    let mut last = String::new();
    wait_until(
        Duration::from_secs(10),
        format!("fewer than {n} stored events for {args:?}"),
        || {
            let o = sb.cli(&all);
            last = String::from_utf8_lossy(&o.stderr).into_owned();
            found = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect();
            o.status.success() && found.len() >= n
        },
    );
    found
}

/// `bad`, a copy of /bin/false under a block rule, tried once (and denied).
fn blocked(sb: &Sandbox) -> PathBuf {
    let bad = sb.install("/bin/false", "bad");
    sb.ok(&["rule", "add", "--file", bad.to_str().unwrap(), "--block"]);
    assert_denied(&bad);
    bad
}

/// An agent in monitor mode with the eBPF process sensor running.
fn with_telemetry() -> Sandbox {
    let sb = Sandbox::started("monitor", TELEMETRY);
    sb.wait_telemetry();
    sb
}

/// An agent (monitor, no eBPF) whose store holds the decision for one run of `first`.
fn one_exec_stored() -> (Sandbox, PathBuf) {
    one_exec_stored_with("")
}

/// [`one_exec_stored`] with extra config.
fn one_exec_stored_with(extra: &str) -> (Sandbox, PathBuf) {
    let sb = Sandbox::started("monitor", extra);
    let first = sb.install("/bin/true", "first");
    assert_runs(&first);
    stored(&sb, &["--kind", "exec"], 1);
    (sb, first)
}

fn sha256_hex(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn every_kind_is_stored_and_found_by_every_filter() {
    if !root_or_skip() {
        return;
    }
    let sb = with_telemetry();
    let good = sb.install("/bin/true", "good");
    let child = Command::new(&good).arg("--flag").spawn().unwrap();
    let gpid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let bad = blocked(&sb);
    // Injection: a ptrace attach to a sleeping process.
    let tracer = cc(sb.dir.path(), "ptrace_attach");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    assert!(Command::new(&tracer)
        .arg(sleeper.id().to_string())
        .status()
        .unwrap()
        .success());
    let mnt = format!("{}/*", sb.mnt.display());

    // exec decisions, by outcome and path.
    let deny = stored(&sb, &["--kind", "exec", "--outcome", "deny"], 1);
    assert_eq!(deny.len(), 1, "{deny:?}");
    assert_eq!(deny[0]["path"], bad.to_str().unwrap());
    let allow = stored(
        &sb,
        &["--kind", "exec", "--outcome", "allow", "--path", &mnt],
        1,
    );
    assert!(
        allow.iter().all(|e| e["path"] == good.to_str().unwrap()),
        "{allow:?}"
    );
    // by hash: the deny and the eBPF exec attempt of the same file share it.
    let by_hash = stored(&sb, &["--sha256", &sha256_hex(&bad).to_uppercase()], 1);
    assert!(by_hash.iter().all(|e| e["path"] == bad.to_str().unwrap()));
    // by pid: the process's exec (with args), its libraries and its exit.
    let pid = gpid.to_string();
    let mine = stored(&sb, &["--pid", &pid, "--kind", "process"], 2);
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"exec") && actions.contains(&"exit"),
        "{actions:?}"
    );
    assert!(mine.iter().all(|e| e["pid"] == gpid));
    let ecs = sb.ok(&[
        "events", "--pid", &pid, "--kind", "process", "--format", "ecs",
    ]);
    let exec: Value = ecs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"]["action"] == "exec")
        .expect("exec document");
    assert_eq!(
        exec["process"]["args"],
        serde_json::json!([good.to_str().unwrap(), "--flag"])
    );
    let libs = stored(
        &sb,
        &["--pid", &pid, "--kind", "image", "--path", "*/libc.so*"],
        1,
    );
    assert!(libs[0]["path"].as_str().unwrap().contains("libc.so"));
    // injection, by kind and target.
    let inj = stored(&sb, &["--kind", "injection"], 1);
    assert!(
        inj.iter().any(|e| e["action"] == "ptrace_attach"),
        "{inj:?}"
    );
    // snapshot events of processes older than the agent (this test, for one).
    let me = stored(
        &sb,
        &[
            "--kind",
            "process",
            "--pid",
            &std::process::id().to_string(),
        ],
        1,
    );
    assert!(me.iter().any(|e| e["action"] == "snapshot"), "{me:?}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // time bounds, limit.
    assert!(!query(&sb, &["--kind", "exec", "--since", "10m"]).is_empty());
    assert!(query(&sb, &["--kind", "exec", "--until", "1h"]).is_empty());
    assert!(query(&sb, &["--kind", "exec", "--since", "2000-01-01T00:00:00Z"]).len() >= 2);
    let one = sb.ok(&["events", "--limit", "1", "--format", "json"]);
    assert_eq!(one.lines().count(), 1);

    // the other formats.
    let ocsf = sb.ok(&[
        "events",
        "--kind",
        "exec",
        "--outcome",
        "deny",
        "--format",
        "ocsf",
    ]);
    let o: Value = serde_json::from_str(ocsf.trim()).unwrap();
    assert_eq!(
        (o["class_uid"].as_u64(), o["disposition_id"].as_u64()),
        (Some(1007), Some(2))
    );
    let santa = sb.ok(&[
        "events",
        "--kind",
        "exec",
        "--outcome",
        "deny",
        "--format",
        "santa",
    ]);
    assert!(
        santa.starts_with("action=EXEC|decision=DENY|reason=BINARY|"),
        "{santa}"
    );
    let text = sb.ok(&["events", "--kind", "exec", "--outcome", "deny"]);
    assert!(text.starts_with("TIME (UTC)"), "{text}");
    assert!(
        text.contains(bad.to_str().unwrap()) && text.contains("deny"),
        "{text}"
    );

    // bad filters are named.
    let e = sb.cli(&["events", "--kind", "exe"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--kind \"exe\": unknown kind"));
    let e = sb.cli(&["events", "--since", "yesterday"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("--since \"yesterday\""));

    // status counts per kind and the store's state.
    let st = sb.status();
    assert_eq!(st["store"]["state"], "ok", "{st}");
    assert!(st["store"]["written"].as_u64().unwrap() > 0);
    assert!(st["events_by_kind"]["exec"].as_u64().unwrap() >= 2, "{st}");
    assert!(st["events_by_kind"]["image"].as_u64().unwrap() >= 1, "{st}");
}

#[test]
fn follow_prints_new_events_as_they_happen() {
    if !root_or_skip() {
        return;
    }
    let (sb, prog) = one_exec_stored();
    let mut f = Command::new(BIN)
        .args([
            "events", "--follow", "--kind", "exec", "--format", "json", "--limit", "0",
        ])
        .arg("--config")
        .arg(&sb.config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = f.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The existing event first, then nothing until a new exec.
    let first: Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(first["path"], prog.to_str().unwrap());
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    let second = sb.install("/bin/true", "second");
    assert_runs(&second);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("followed event");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], second.to_str().unwrap());
    assert!(v["id"].as_i64() > first["id"].as_i64());
    let _ = f.kill();
    let _ = f.wait();
}

#[test]
fn tree_shows_lineage_across_fork_and_exec() {
    if !root_or_skip() {
        return;
    }
    let sb = with_telemetry();
    let outer = sb.install("/bin/sh", "outer");
    let mid = sb.install("/bin/sh", "mid");
    let leaf = sb.install("/bin/sleep", "leaf");
    // outer forks mid (`; :` keeps the shell from exec'ing it in place), which forks leaf
    // twice and then execs (replaces itself with) leaf too.
    let script = format!(
        "{} -c '{} 0.1 & {} 0.2; exec {} 0.1'; :",
        mid.display(),
        leaf.display(),
        leaf.display(),
        leaf.display()
    );
    let st = Command::new(&outer).args(["-c", &script]).status().unwrap();
    assert!(st.success());
    let leaf_glob = leaf.to_str().unwrap();
    stored(&sb, &["--kind", "process", "--path", leaf_glob], 3);
    let outer_ev = stored(
        &sb,
        &["--kind", "process", "--path", outer.to_str().unwrap()],
        1,
    );
    let outer_pid = outer_ev[0]["pid"].as_i64().unwrap();
    wait_until(Duration::from_secs(10), "tree incomplete", || {
        let t: Value =
            serde_json::from_str(&sb.ok(&["events", "tree", &outer_pid.to_string(), "--json"]))
                .unwrap();
        t["process"]["children"]
            .as_array()
            .and_then(|c| c.first())
            .and_then(|m| m["children"].as_array())
            .is_some_and(|c| !c.is_empty())
    });
    let t: Value =
        serde_json::from_str(&sb.ok(&["events", "tree", &outer_pid.to_string(), "--json"]))
            .unwrap();
    let p = &t["process"];
    assert_eq!(p["pid"], outer_pid);
    // Lineage up: this test process (a snapshot: it started before the agent) is an ancestor.
    let me = std::process::id();
    assert!(
        t["ancestors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["pid"] == me),
        "{t}"
    );
    // Down: outer -> mid (which exec'ed leaf) -> leaf.
    let kids = p["children"].as_array().unwrap();
    assert_eq!(kids.len(), 1, "{t}");
    let m = &kids[0];
    let progs: Vec<&str> = m["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        progs,
        [
            outer.to_str().unwrap(),
            mid.to_str().unwrap(),
            leaf.to_str().unwrap()
        ]
    );
    let grand = m["children"].as_array().unwrap();
    assert!(
        grand.iter().any(|g| g["programs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == leaf.to_str().unwrap())),
        "{t}"
    );
    // The same from the child by entity id; the text view draws the chain.
    let mid_entity = m["entity_id"].as_str().unwrap();
    let text = sb.ok(&["events", "tree", mid_entity]);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(
        at(&format!("outer[{outer_pid}]")) < at(&format!("<- {mid_entity}")),
        "{text}"
    );
    assert!(text.contains("leaf["), "{text}");
    let e = sb.cli(&["events", "tree", "999999999"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("no process 999999999"));
}

#[test]
fn kill_9_under_load_leaves_every_committed_event() {
    if !root_or_skip() {
        return;
    }
    let mut sb = with_telemetry();
    let prog = sb.install("/bin/true", "load");
    // Execs in a loop from a shell: process, image and exec events, fast.
    let mut load = Command::new("/bin/sh")
        .args(["-c", &format!("while :; do {}; done", prog.display())])
        .spawn()
        .unwrap();
    let path = db(&sb);
    let mut seen = 0;
    wait_until(Duration::from_secs(30), "store not filling", || {
        seen = Reader::open(&path).and_then(|r| r.count()).unwrap_or(0);
        seen >= 5000
    });
    let pid = nix::unistd::Pid::from_raw(sb.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut agent = sb.agent.take().unwrap();
    agent.wait().unwrap();
    let _ = load.kill();
    let _ = load.wait();
    // The host stays usable, the store opens clean with at least what was seen committed.
    assert_runs(&prog);
    assert_eq!(integrity_check(&path).unwrap(), Ok(()));
    let after = Reader::open(&path).unwrap().count().unwrap();
    assert!(
        after >= seen,
        "seen {seen} committed, {after} after the kill"
    );
    // A new agent appends to it.
    sb.start();
    sb.wait_telemetry();
    assert_runs(&sb.install("/bin/true", "after"));
    stored(
        &sb,
        &[
            "--kind",
            "exec",
            "--path",
            &format!("{}/after", sb.mnt.display()),
        ],
        1,
    );
    assert!(Reader::open(&path).unwrap().count().unwrap() > after);
}

#[test]
fn corrupt_store_is_named_and_decisions_and_stream_go_on() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("monitor", "");
    std::fs::create_dir_all(sb.dir.path().join("state")).unwrap();
    std::fs::write(db(&sb), vec![0x42; 16384]).unwrap();
    sb.start();
    let bad = blocked(&sb);
    // The decision is streamed.
    let ev = sb.events_of(&bad, 1);
    assert_eq!(ev[0]["custos"]["decision"], "deny");
    let st = sb.status();
    let state = st["store"]["state"].as_str().unwrap().to_owned();
    assert!(
        state.starts_with("failed") && state.contains("is not an SQLite database"),
        "{st}"
    );
    // The CLI says the same, and the file is left for the operator.
    let e = sb.cli(&["events"]);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("events.db is not an SQLite database"), "{msg}");
    assert_eq!(std::fs::read(db(&sb)).unwrap(), vec![0x42; 16384]);
    assert!(
        sb.log().contains("is not an SQLite database"),
        "{}",
        sb.log()
    );
}

#[test]
fn locked_store_keeps_deciding_and_catches_up() {
    if !root_or_skip() {
        return;
    }
    // Another program holds the write lock: self-protection, which would refuse it the
    // database, is off here.
    let (sb, _) = one_exec_stored_with("[files]\nprotect_self = false\n");
    let lock = rusqlite::Connection::open(db(&sb)).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let bad = blocked(&sb);
    assert_eq!(sb.events_of(&bad, 1)[0]["custos"]["decision"], "deny");
    wait_until(Duration::from_secs(10), "store not reported locked", || {
        sb.status()["store"]["state"]
            .as_str()
            .is_some_and(|s| s.contains("locked by another process"))
    });
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    // Nothing was lost: the queued deny is stored once the lock is gone.
    let deny = stored(&sb, &["--kind", "exec", "--outcome", "deny"], 1);
    assert_eq!(deny[0]["path"], bad.to_str().unwrap());
    wait_until(Duration::from_secs(10), "store not ok again", || {
        sb.status()["store"]["state"] == "ok"
    });
    assert_eq!(sb.status()["store"]["dropped"], 0);
}

#[test]
fn ocsf_and_santa_outputs() {
    if !root_or_skip() {
        return;
    }
    for (format, check) in [
        ("ocsf", "\"class_uid\":1007"),
        ("santa", "action=EXEC|decision=DENY|reason=BINARY"),
    ] {
        let sb = Sandbox::started("monitor", &format!("[output]\nformat = \"{format}\"\n"));
        let bad = blocked(&sb);
        let out = sb.dir.path().join("events.json");
        wait_until(Duration::from_secs(10), format!("{format} line"), || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(check) && l.contains(bad.to_str().unwrap()))
        });
        // The store keeps ECS whatever the stream's format.
        let e = stored(&sb, &["--kind", "exec", "--outcome", "deny"], 1);
        assert_eq!(e[0]["path"], bad.to_str().unwrap());
    }
}
