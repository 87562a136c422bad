//! Root-only: the agent cannot hang the host — deadlines, kill -9, concurrency, shutdown.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Big enough that hashing it takes well over the short deadlines used here.
const SLOW: u64 = 3 << 30;

#[test]
fn kill_9_releases_held_execs() {
    if !root_or_skip() {
        return;
    }
    // Lockdown and a long deadline: without the kernel's release, these execs would wait or fail.
    let mut sb = Sandbox::started(
        "lockdown",
        "deadline_ms = 60000\n[exec]\nmax_hash_mb = 8192",
    );
    let slow: Vec<_> = (0..3)
        .map(|i| sb.big_exec(&format!("slow{i}"), SLOW))
        .collect();
    let runners: Vec<_> = slow.iter().map(|p| spawn_via_shell(p)).collect();
    let t0 = Instant::now();
    sb.wait_pending(3);
    let mut agent = sb.agent.take().unwrap();
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();
    for mut r in runners {
        let st = wait_timeout(&mut r, Duration::from_secs(20)).expect("held exec completes");
        assert!(st.success(), "held exec runs after the agent dies: {st}");
    }
    assert!(t0.elapsed() < Duration::from_secs(30));
    // Later execs work with no agent.
    assert_runs(&sb.install("/bin/true", "after"));
}

#[test]
fn deadline_fallback_follows_the_mode_and_is_counted() {
    if !root_or_skip() {
        return;
    }
    for (mode, denied) in [("lockdown", true), ("monitor", false)] {
        let sb = Sandbox::started(mode, "deadline_ms = 100\n[exec]\nmax_hash_mb = 8192");
        let p = sb.big_exec("slow", SLOW);
        let t0 = Instant::now();
        if denied {
            assert_denied(&p);
        } else {
            assert_runs(&p);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{mode}: answered by the deadline"
        );
        assert_eq!(sb.stat("deadline_fallbacks"), 1, "{mode}");
        let e = sb.events_of(&p, 1);
        assert_eq!(e[0]["custos"]["reason"], "deadline", "{mode}");
    }
}

#[test]
fn slow_hash_does_not_stall_other_execs_and_one_inode_is_hashed_once() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "deadline_ms = 30000\n[exec]\nmax_hash_mb = 8192");
    let big = sb.big_exec("big", SLOW);
    let runners: Vec<_> = (0..4).map(|_| spawn_via_shell(&big)).collect();
    sb.wait_pending(4);
    // While the big file is being hashed, a small one is decided.
    let small = sb.install("/bin/true", "small");
    assert_runs(&small);
    assert!(
        sb.stat("pending") >= 1,
        "the big file was still being hashed"
    );
    for mut r in runners {
        let st = wait_timeout(&mut r, Duration::from_secs(20)).expect("exec completes");
        assert!(st.success(), "{st}");
    }
    assert_eq!(
        sb.stat("hashed"),
        2,
        "big hashed once for four execs, plus small"
    );
    assert_eq!(sb.stat("deadline_fallbacks"), 0);
}

#[test]
fn sigterm_stops_cleanly_and_releases_everything() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::started(
        "lockdown",
        "deadline_ms = 60000\n[exec]\nmax_hash_mb = 8192",
    );
    let p = sb.big_exec("slow", SLOW);
    let mut runner = spawn_via_shell(&p);
    sb.wait_pending(1);
    let st = sb.stop();
    assert!(st.success(), "clean exit: {st}\n{}", sb.log());
    // The pending exec got the lockdown fallback (deny) at shutdown.
    let st = wait_timeout(&mut runner, Duration::from_secs(10)).expect("answered");
    assert_eq!(
        st.code(),
        Some(126),
        "lockdown fallback at shutdown denies: {st}"
    );
    assert!(
        !sb.dir.path().join("custos.sock").exists(),
        "socket removed"
    );
    assert!(sb.log().contains("stopping"), "{}", sb.log());
    assert_runs(&sb.install("/bin/true", "after"));
}

#[test]
fn agent_refuses_a_second_instance_on_the_same_socket() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    let o = sb.cli(&["run"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already running"), "{err}");
    // The first one is unaffected.
    assert_eq!(sb.ok(&["mode"]).trim(), "monitor");
}

#[test]
fn filesystems_mounted_after_start_are_watched() {
    if !root_or_skip() {
        return;
    }
    // Discovery limited to ramfs, which nothing else on the host uses, so only our mount counts.
    let sb = Sandbox::started("monitor", "[exec]\nwatch_types = [\"ramfs\"]\n");
    let late = sb.mount_extra("late", "ramfs");
    let late_s = late.to_str().unwrap().to_owned();
    sb.wait_watched(&late);
    // A program unique to this test (true + a tail), blocked by hash.
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(late_s.as_bytes());
    let prog = late.join("prog");
    std::fs::write(&prog, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.ok(&["rule", "add", "--file", prog.to_str().unwrap(), "--block"]);
    assert_denied(&prog);

    // Lazy: the exec'ing child and the kernel's event may hold the mount for a moment longer.
    let st = std::process::Command::new("umount")
        .arg("-l")
        .arg(&late)
        .status()
        .unwrap();
    assert!(st.success());
    sb.wait_listed(&late, false);
}

#[test]
fn exec_storm_with_rule_and_mode_changes_never_hangs() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    // 20 distinct programs (distinct content, so distinct hashes), half of them blocked.
    let progs: Vec<_> = (0..20)
        .map(|i| {
            let mut b = std::fs::read("/bin/true").unwrap();
            b.extend_from_slice(format!("storm-{i}").as_bytes());
            sb.write_exec(&format!("p{i}"), &b)
        })
        .collect();
    for p in progs.iter().step_by(2) {
        sb.ok(&["rule", "add", "--file", p.to_str().unwrap(), "--block"]);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churned = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Churn: flip modes and add/remove a rule while the storm runs.
    let churn = {
        let cfg = sb.config.clone();
        let stop = stop.clone();
        let extra = progs[1].clone();
        let churned = churned.clone();
        std::thread::spawn(move || {
            let cli = |args: &[&str]| {
                std::process::Command::new(BIN)
                    .args(args)
                    .arg("--config")
                    .arg(&cfg)
                    .output()
                    .unwrap()
            };
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                cli(&["mode", if n % 2 == 0 { "audit" } else { "monitor" }]);
                let o = cli(&["rule", "add", "--file", extra.to_str().unwrap(), "--block"]);
                if o.status.success() {
                    let id = String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .nth(2)
                        .unwrap()
                        .trim_end_matches(':')
                        .to_owned();
                    cli(&["rule", "remove", &id]);
                }
                n += 1;
                churned.store(n, std::sync::atomic::Ordering::SeqCst);
            }
            n
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let progs = progs.clone();
            let churned = churned.clone();
            std::thread::spawn(move || {
                let mut ran = 0u64;
                // At least 150 execs each, and on until several changes have happened meanwhile.
                let mut i = 0;
                while (i < 150 || churned.load(std::sync::atomic::Ordering::SeqCst) < 5)
                    && i < 20_000
                {
                    i += 1;
                    let p = &progs[(i * 7 + w) % progs.len()];
                    match run(p) {
                        Ok(st) => assert!(st.success()),
                        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
                    }
                    ran += 1;
                }
                ran
            })
        })
        .collect();
    let t0 = Instant::now();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let churns = churn.join().unwrap();
    assert!(total >= 600);
    assert!(churns >= 5, "changes happened during the storm ({churns})");
    assert!(t0.elapsed() < Duration::from_secs(120));
    let s = sb.status()["exec"].clone();
    assert_eq!(s["pending"], 0, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["deadline_fallbacks"], 0, "{s}");
    let decided = s["allowed"].as_u64().unwrap() + s["denied"].as_u64().unwrap();
    // Every exec that reached the agent was decided exactly once; kernel-cached ones never came.
    assert_eq!(
        decided,
        s["cache_hits"].as_u64().unwrap() + s["cache_misses"].as_u64().unwrap(),
        "{s}"
    );
    assert!(decided > 0 && decided <= total, "{s}");
}

#[test]
fn a_stuck_event_reader_neither_holds_execs_nor_blocks_shutdown() {
    if !root_or_skip() {
        return;
    }
    // Events to stdout, into a pipe nobody reads; every exec logged (no kernel cache).
    let mut sb = Sandbox::new("monitor", "events = \"-\"\n[exec]\nkernel_cache = false\n");
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&sb.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _unread = child.stdout.take().unwrap();
    sb.agent = Some(child);
    sb.wait_ready();
    let p = sb.install("/bin/true", "t");
    let t0 = Instant::now();
    for _ in 0..300 {
        assert_runs(&p); // a new pid each time: one event each, far more than a pipe holds
    }
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(sb.stat("allowed") >= 300);
    let t0 = Instant::now();
    let st = sb.stop();
    assert!(st.success(), "{st}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t0.elapsed()
    );
}
