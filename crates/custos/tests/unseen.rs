//! Root-only: execs fanotify cannot see (memfd, unwatched filesystems) are stopped by the eBPF
//! sensor and judged by the same verdict engine; what tampers with a held exec is stopped; a
//! held exec survives the agent being killed.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The program as the kernel's exec record names it, and as the verdict engine does
/// (`/proc/PID/exe`).
const MEMFD_PATH: &str = "/memfd:custos-test";
const MEMFD_EXE: &str = "/memfd:custos-test (deleted)";

/// One agent holding execs at a time: a second agent's holds would see the first one's
/// SIGCONT as tampering (one agent per host is the design).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_sensor(extra_exec: &str) -> String {
    format!("[telemetry]\nprocess = true\n[exec]\n{extra_exec}")
}

/// A copy of /bin/true with bytes appended: runs the same, hashes differently.
fn unique_true(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let mut b = std::fs::read("/bin/true").unwrap();
    b.extend_from_slice(name.as_bytes());
    std::fs::write(&p, b).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Decision events (from the verdict engine) for `executable`.
fn decisions(sb: &Sandbox, executable: &str) -> Vec<Value> {
    sb.events_at_least(0)
        .into_iter()
        .filter(|e| {
            e["event"]["module"] == "custos.exec" && e["process"]["executable"] == executable
        })
        .collect()
}

fn wait_decision(sb: &Sandbox, executable: &str, reason: &str) -> Value {
    let mut found = None;
    wait_until(
        Duration::from_secs(10),
        format!("no {reason} decision for {executable}"),
        || {
            found = decisions(sb, executable)
                .into_iter()
                .find(|e| e["custos"]["reason"] == reason);
            found.is_some()
        },
    );
    found.unwrap()
}

#[test]
fn memfd_program_with_a_block_rule_is_killed_before_it_runs() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let sb = Sandbox::started("monitor", &with_sensor(""));
    sb.wait_telemetry();
    let runner = cc(sb.dir.path(), "memfd_exec");
    let evil = unique_true(sb.dir.path(), "evil");
    sb.ok(&["rule", "add", "--file", evil.to_str().unwrap(), "--block"]);

    let st = Command::new(&runner).arg(&evil).status().unwrap();
    assert_eq!(st.signal(), Some(9), "killed, not run: {st:?}");
    let d = wait_decision(&sb, MEMFD_EXE, "binary_rule");
    assert_eq!(d["custos"]["decision"], "deny");
    assert!(d["process"]["hash"]["sha256"].is_string());
    // The process event says the kernel held it.
    let held = sb.events_at_least(0).into_iter().any(|e| {
        e["event"]["module"] == "custos.process"
            && e["process"]["executable"] == MEMFD_PATH
            && e["custos"]["hold"] == "held"
    });
    assert!(held, "exec event with custos.hold = held");

    // Without a rule, a memfd program runs in monitor mode.
    let ok = unique_true(sb.dir.path(), "fine");
    assert!(Command::new(&runner).arg(&ok).status().unwrap().success());
    assert!(sb.status()["telemetry"]["holds"].as_u64().unwrap() >= 2);
}

#[test]
fn lockdown_kills_an_unknown_memfd_program_and_runs_an_allowed_one() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let sb = Sandbox::started("lockdown", &with_sensor(""));
    sb.wait_telemetry();
    // The runner is outside the watched tmpfs and not a memfd: neither sensor holds it.
    let runner = cc(sb.dir.path(), "memfd_exec");
    let unknown = unique_true(sb.dir.path(), "unknown");
    let st = Command::new(&runner).arg(&unknown).status().unwrap();
    assert_eq!(st.signal(), Some(9), "{st:?}");
    let d = wait_decision(&sb, MEMFD_EXE, "mode_default");
    assert_eq!(d["custos"]["decision"], "deny");

    // An allowed hash runs from a memfd sealed against writes; unsealed, its content could
    // change after the verdict, so lockdown does not trust the allow.
    let trusted = unique_true(sb.dir.path(), "trusted");
    sb.ok(&[
        "rule",
        "add",
        "--file",
        trusted.to_str().unwrap(),
        "--allow",
    ]);
    let st = Command::new(&runner).arg(&trusted).status().unwrap();
    assert_eq!(st.signal(), Some(9), "{st:?}");
    wait_decision(&sb, MEMFD_EXE, "mutable");
    let st = Command::new(&runner)
        .arg(&trusted)
        .env("CUSTOS_SEAL", "1")
        .status()
        .unwrap();
    assert!(st.success(), "{st:?}");
}

#[test]
fn unwatched_filesystem_programs_are_judged_and_blocked_ones_die_in_the_kernel() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let sb = Sandbox::started("monitor", &with_sensor("unseen = \"unwatched\"\n"));
    sb.wait_telemetry();
    let other = sb.mount_extra("other", "tmpfs");
    let evil = unique_true(&other, "evil");
    let good = unique_true(&other, "good");
    sb.ok(&["rule", "add", "--file", evil.to_str().unwrap(), "--block"]);
    settle();

    let st = run(&evil).unwrap();
    assert_eq!(st.signal(), Some(9), "held, judged, killed: {st:?}");
    wait_decision(&sb, evil.to_str().unwrap(), "binary_rule");
    // The deny is remembered in the kernel: the next exec dies without a round trip.
    let st = run(&evil).unwrap();
    assert_eq!(st.signal(), Some(9), "{st:?}");
    wait_decision(&sb, evil.to_str().unwrap(), "kernel_blocked");
    assert!(sb.status()["telemetry"]["kernel_kills"].as_u64().unwrap() >= 1);
    assert!(run(&good).unwrap().success());

    // A rule change forgets what the kernel remembered.
    let id = decisions(&sb, evil.to_str().unwrap())[0]["rule"]["id"].clone();
    sb.ok(&["rule", "remove", id.as_str().unwrap()]);
    assert!(run(&evil).unwrap().success(), "no rule, monitor: runs");
}

/// Starts `runner` on a copy of /bin/true padded to `mb` MiB in a memfd: hashing it keeps the
/// exec held for a while.
fn spawn_slow_memfd(runner: &Path, mb: u32) -> std::process::Child {
    Command::new(runner)
        .arg("/bin/true")
        .env("CUSTOS_PAD_MB", mb.to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_held(sb: &Sandbox, pid: u32) {
    wait_until(Duration::from_secs(10), format!("{pid} not held"), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
            .unwrap_or(false)
            && sb.status()["telemetry"]["holds"].as_u64().unwrap_or(0) > 0
    });
}

#[test]
fn resuming_or_tracing_a_held_exec_is_tampering() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let sb = Sandbox::started(
        "monitor",
        &format!(
            "deadline_ms = 60000\n{}",
            with_sensor("max_hash_mb = 65536\n")
        ),
    );
    sb.wait_telemetry();
    let runner = cc(sb.dir.path(), "memfd_exec");
    let tracer = cc(sb.dir.path(), "ptrace_attach");

    // ptrace attach to a held exec: the unjudged program is killed before the attach goes
    // ahead, so no tracer can resume it; the attempt is reported.
    let mut held = spawn_slow_memfd(&runner, 6000);
    let pid = held.id();
    wait_held(&sb, pid);
    Command::new(&tracer).arg(pid.to_string()).status().unwrap();
    let st = wait_timeout(&mut held, Duration::from_secs(10)).expect("ended");
    assert_eq!(st.signal(), Some(9), "{st:?}");
    wait_until(
        Duration::from_secs(5),
        "no tampering ptrace_attach event",
        || {
            sb.events_at_least(0).iter().any(|e| {
                e["event"]["action"] == "ptrace_attach"
                    && e["target"]["process"]["pid"] == pid
                    && e["custos"]["tamper"] == true
            })
        },
    );

    // A program that is already traced when it execs cannot be held (its tracer would see
    // the SIGSTOP and could pass over it): killed in monitor mode.
    let traced = cc(sb.dir.path(), "traced_exec");
    let st = Command::new(&traced)
        .args([runner.to_str().unwrap(), "/bin/true"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(128 + 9), "{st:?}");
    // Decided in the kernel: named by the exec record's path.
    wait_decision(&sb, MEMFD_PATH, "traced");

    // SIGCONT from anyone but the agent: the held program is killed, and it is reported.
    let mut held = spawn_slow_memfd(&runner, 6000);
    let pid = held.id();
    wait_held(&sb, pid);
    assert!(Command::new("/bin/kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let st = wait_timeout(&mut held, Duration::from_secs(10)).expect("ended");
    assert_eq!(st.signal(), Some(9), "{st:?}");
    wait_until(Duration::from_secs(5), "no sigcont_held event", || {
        sb.events_at_least(0).iter().any(|e| {
            e["event"]["action"] == "sigcont_held"
                && e["target"]["process"]["pid"] == pid
                && e["custos"]["tamper"] == true
        })
    });
}

#[test]
fn a_held_exec_is_resumed_when_the_agent_is_killed() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let mut sb = Sandbox::started(
        "monitor",
        &format!(
            "deadline_ms = 60000\n{}",
            with_sensor("max_hash_mb = 65536\n")
        ),
    );
    sb.wait_telemetry();
    let runner = cc(sb.dir.path(), "memfd_exec");
    let mut held = spawn_slow_memfd(&runner, 6000);
    wait_held(&sb, held.id());
    let mut agent = sb.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let st = wait_timeout(&mut held, Duration::from_secs(10)).expect("the guardian resumed it");
    assert!(st.success(), "{st:?}");
}
