//! File events and file access rules, end to end as root on the sandbox's tmpfs: real
//! fanotify FID events, and real opens refused by `FAN_OPEN_PERM`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Waits for at least `n` events that `keep` picks; returns them all.
fn picked(sb: &Sandbox, n: usize, what: String, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    wait_until(Duration::from_secs(10), what, || {
        out = sb.events_at_least(0).into_iter().filter(&keep).collect();
        out.len() >= n
    });
    out
}

/// File events (`custos.file`, not access decisions) of `pid`.
fn file_events(sb: &Sandbox, pid: u32, n: usize) -> Vec<Value> {
    picked(sb, n, format!("{n} file events of {pid}"), |e| {
        e["event"]["module"] == "custos.file"
            && e["process"]["pid"] == pid
            && e["event"]["action"] != "open"
    })
}

/// Access decisions (`event.action == "open"`).
fn access_events(sb: &Sandbox, n: usize) -> Vec<Value> {
    picked(sb, n, format!("{n} access decisions"), |e| {
        e["event"]["module"] == "custos.file" && e["event"]["action"] == "open"
    })
}

fn count<'a>(ev: &'a [Value], action: &str, path: &Path) -> Vec<&'a Value> {
    let p = path.to_str().unwrap();
    ev.iter()
        .filter(|e| e["event"]["action"] == action && e["file"]["path"] == p)
        .collect()
}

#[test]
fn each_file_operation_is_one_event_with_paths_and_pid() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started(
        "monitor",
        "[files]\nevents = true\nrate = 0\nexclude = [\"**/skip/**\"]\n",
    );
    let prog = cc(sb.dir.path(), "fileops");
    let work = sb.mnt.join("work");
    fs::create_dir_all(work.join("skip")).unwrap();
    // It waits for its stdin to close, so it is still there when the agent names it.
    let mut child = Command::new(&prog)
        .arg(&work)
        .env("FILEOPS_WAIT", "1")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Excluded: nothing under skip/ is reported.
    let st = Command::new(&prog).arg(work.join("skip")).status().unwrap();
    assert!(st.success());

    let ev = file_events(&sb, pid, 7);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let (a, b, d) = (work.join("a"), work.join("b"), work.join("d"));
    let one = |action: &str, path: &Path| {
        let hits = count(&ev, action, path);
        assert_eq!(hits.len(), 1, "{action} {}: {ev:#?}", path.display());
        hits[0].clone()
    };
    let created = one("creation", &a);
    assert_eq!(created["file"]["type"], "file");
    assert_eq!(created["process"]["executable"], prog.to_str().unwrap());
    assert!(created["process"]["entity_id"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{pid}")));
    one("modification", &a);
    let renamed = one("rename", &b);
    assert_eq!(renamed["custos"]["original_path"], a.to_str().unwrap());
    assert!(!count(&ev, "attributes_modified", &b).is_empty(), "{ev:#?}");
    one("deletion", &b);
    assert_eq!(one("creation", &d)["file"]["type"], "dir");
    one("deletion", &d);
    let all = sb.events_at_least(0);
    assert!(
        !all.iter().any(|e| e["file"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/skip/"))),
        "an excluded path was reported"
    );

    // The same events are in the store, and status counts them.
    let pid_s = pid.to_string();
    let args = ["events", "--kind", "file", "--pid", &pid_s, "--json"];
    wait_until(Duration::from_secs(10), "the file events stored", || {
        let o = sb.cli(&args);
        o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() >= 7
    });
    let st = sb.status();
    assert!(st["files"]["emitted"].as_u64().unwrap() >= 7, "{st}");
    assert!(st["files"]["excluded"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["events_by_kind"]["file"].as_u64().unwrap() >= 7, "{st}");
}

/// A protected file in the sandbox and two copies of `cat`: one the rule allows, one not.
struct Secret {
    sb: Sandbox,
    secret: PathBuf,
    ok: PathBuf,
    bad: PathBuf,
}

fn secret(rule: &str) -> Secret {
    let mut sb = Sandbox::new("monitor", "");
    let secret = sb.mnt.join("secret");
    fs::write(&secret, "s3cret\n").unwrap();
    let ok = sb.install("/bin/cat", "reader_ok");
    let bad = sb.install("/bin/cat", "reader_bad");
    let mnt = sb.mnt.display().to_string();
    let extra = rule.replace("MNT", &mnt);
    let text = fs::read_to_string(&sb.config).unwrap();
    fs::write(&sb.config, format!("{text}\n{extra}\n")).unwrap();
    sb.start();
    Secret {
        sb,
        secret,
        ok,
        bad,
    }
}

fn read_with(prog: &Path, file: &Path) -> std::process::Output {
    Command::new(prog).arg(file).output().unwrap()
}

fn assert_eperm(o: &std::process::Output) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("Operation not permitted"),
        "{e}"
    );
}

#[test]
fn a_protected_file_opens_for_its_program_only_and_hard_links_do_not_help() {
    if !root_or_skip() {
        return;
    }
    let s = secret(
        "[[files.rule]]\nname = \"secret\"\npaths = [\"MNT/secret\"]\nallow = [\"MNT/reader_ok\"]\n",
    );
    let ok = read_with(&s.ok, &s.secret);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(ok.stdout, b"s3cret\n");
    assert_eperm(&read_with(&s.bad, &s.secret));

    let ev = access_events(&s.sb, 1);
    let d = &ev[0];
    assert_eq!(d["custos"]["decision"], "deny");
    assert_eq!(d["event"]["outcome"], "failure");
    assert_eq!(d["rule"]["name"], "secret");
    assert_eq!(d["process"]["executable"], s.bad.to_str().unwrap());
    assert_eq!(d["file"]["path"], s.secret.to_str().unwrap());

    // A hard link made now is the same inode: the same rule holds.
    let link = s.sb.mnt.join("link");
    fs::hard_link(&s.secret, &link).unwrap();
    assert_eperm(&read_with(&s.bad, &link));
    assert!(read_with(&s.ok, &link).status.success());
    let ev = access_events(&s.sb, 2);
    assert_eq!(ev[1]["file"]["path"], link.to_str().unwrap());
    assert_eq!(
        ev[1]["custos"]["protected_path"],
        s.secret.to_str().unwrap()
    );

    let st = s.sb.status();
    let a = &st["files"]["access"];
    assert_eq!(a["denied"], 2, "{st}");
    assert!(a["allowed"].as_u64().unwrap() >= 2, "{st}");
    assert!(a["protected_files"].as_u64().unwrap() >= 1, "{st}");
}

#[test]
fn deny_lists_write_only_rules_and_audit_rules() {
    if !root_or_skip() {
        return;
    }
    let s = secret(
        "[[files.rule]]\nname = \"no bad reader\"\npaths = [\"MNT/secret\"]\ndeny = [\"MNT/reader_bad\"]\naudit = true\n\
         [[files.rule]]\nname = \"append only by ok\"\npaths = [\"MNT/log*\"]\nallow = [\"MNT/reader_ok\"]\naccess = \"write\"\n",
    );
    // Audit: allowed, logged as would-deny.
    assert!(read_with(&s.bad, &s.secret).status.success());
    let ev = access_events(&s.sb, 1);
    assert_eq!(ev[0]["custos"]["decision"], "allow");
    assert_eq!(ev[0]["custos"]["would_deny"], true);
    assert_eq!(ev[0]["rule"]["name"], "no bad reader");
    // Write-only: anyone reads, only reader_ok's program may write. The file is created after
    // start, so the rule follows new files too.
    let protected = || {
        s.sb.status()["files"]["access"]["protected_files"]
            .as_u64()
            .unwrap()
    };
    let before = protected();
    let log = s.sb.mnt.join("log1");
    fs::write(&log, "line\n").unwrap();
    wait_until(Duration::from_secs(5), "the new file is protected", || {
        protected() > before
    });
    assert!(
        read_with(&s.bad, &log).status.success(),
        "reading is not judged"
    );
    let sh = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo more >> {}", log.display()))
        .output()
        .unwrap();
    assert!(!sh.status.success(), "a write by /bin/sh was allowed");
    assert!(String::from_utf8_lossy(&sh.stderr).contains("Operation not permitted"));
    assert_eq!(fs::read_to_string(&log).unwrap(), "line\n");
    let ev = access_events(&s.sb, 2);
    let w = ev
        .iter()
        .find(|e| e["rule"]["name"] == "append only by ok")
        .unwrap();
    assert_eq!(w["custos"]["access"], "write");
    assert_eq!(w["custos"]["decision"], "deny");
}

#[test]
fn custos_own_config_and_state_are_write_protected() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    let before = fs::read_to_string(&sb.config).unwrap();
    let write = |f: &Path| {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("echo 'mode = \"audit\"' >> {}", f.display()))
            .output()
            .unwrap()
    };
    assert_eperm(&write(&sb.config));
    assert_eq!(fs::read_to_string(&sb.config).unwrap(), before);
    // Reading stays allowed.
    assert!(read_with(Path::new("/bin/cat"), &sb.config)
        .status
        .success());
    let ev = access_events(&sb, 1);
    assert_eq!(ev[0]["rule"]["name"], "custos self-protection");
    let sh = fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(ev[0]["process"]["executable"], sh.to_str().unwrap());
    // A file custos writes later (rules, replaced by rename) is protected as well; custos
    // itself still writes it.
    let tool = sb.install("/bin/true", "tool");
    sb.ok(&["rule", "add", "--path", tool.to_str().unwrap(), "--block"]);
    let rules = sb.dir.path().join("state/rules.json");
    wait_until(Duration::from_secs(5), "rules.json protected", || {
        write(&rules).status.code() != Some(0)
    });
    assert!(fs::read_to_string(&rules).unwrap().contains("tool"));
    assert_eperm(&write(&sb.dir.path().join("state/events.db")));
}

#[test]
fn a_burst_over_the_kernel_queue_is_reported_as_overflow() {
    if !root_or_skip() {
        return;
    }
    // No self-protection: a stopped agent must not hold anyone else's opens.
    let sb = Sandbox::started(
        "monitor",
        "[files]\nevents = true\nrate = 0\nprotect_self = false\n",
    );
    let prog = cc(sb.dir.path(), "fileops");
    let max: u64 = fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let burst = sb.mnt.join("burst");
    fs::create_dir(&burst).unwrap();
    let agent = nix::unistd::Pid::from_raw(sb.pid());
    nix::sys::signal::kill(agent, nix::sys::signal::SIGSTOP).unwrap();
    // Each file is a creation and a close-after-write: twice the queue.
    let st = Command::new(&prog)
        .arg(&burst)
        .arg(max.to_string())
        .status();
    nix::sys::signal::kill(agent, nix::sys::signal::SIGCONT).unwrap();
    assert!(st.unwrap().success());
    wait_until(Duration::from_secs(20), "overflow reported", || {
        sb.status()["files"]["overflows"].as_u64() >= Some(1)
    });
    let loss = picked(&sb, 1, "an overflow event".into(), |e| {
        e["event"]["action"] == "file_queue_overflow"
    });
    assert_eq!(loss[0]["event"]["module"], "custos.agent");
}

#[test]
fn the_rate_limit_drops_and_counts() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "[files]\nevents = true\nrate = 50\n");
    let prog = cc(sb.dir.path(), "fileops");
    let dir = sb.mnt.join("many");
    fs::create_dir(&dir).unwrap();
    let child = Command::new(&prog).arg(&dir).arg("2000").spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    wait_until(Duration::from_secs(10), "drops counted", || {
        sb.status()["files"]["rate_limited"].as_u64() >= Some(1000)
    });
    let mine = file_events(&sb, pid, 1).len();
    assert!(mine < 1000, "{mine} events passed a limit of 50/s");
    let loss = picked(&sb, 1, "a rate-limit loss event".into(), |e| {
        e["event"]["action"] == "file_events_rate_limited"
    });
    assert!(loss[0]["custos"]["dropped"].as_u64() >= Some(1), "{loss:?}");
}

#[test]
fn a_filesystem_mounted_after_start_reports_file_events() {
    if !root_or_skip() {
        return;
    }
    // Discovery by type, of a type nothing else here uses: an ext2 image the test makes.
    let sb = Sandbox::started(
        "monitor",
        "[files]\nevents = true\nrate = 0\n[exec]\nwatch_types = [\"ext2\"]\n",
    );
    let img = sb.dir.path().join("ext2.img");
    fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext2")
        .args(["-q", "-F"])
        .arg(&img)
        .status();
    assert!(mkfs.unwrap().success(), "mkfs.ext2 (e2fsprogs)");
    let mnt = sb.dir.path().join("late");
    fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .status();
    assert!(st.unwrap().success(), "mount ext2 image");
    sb.extra_mounts.lock().unwrap().push(mnt.clone());
    let m = mnt.to_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(10),
        "file events on the new mount",
        || {
            sb.status()["files"]["watched"]
                .as_array()
                .is_some_and(|w| w.iter().any(|x| x == m.as_str()))
        },
    );
    let f = mnt.join("hello");
    fs::write(&f, "x").unwrap();
    let me = std::process::id();
    let ev = picked(&sb, 1, "a creation on the new mount".into(), |e| {
        e["event"]["action"] == "creation" && e["file"]["path"] == f.to_str().unwrap()
    });
    assert_eq!(ev[0]["process"]["pid"], me);
}
