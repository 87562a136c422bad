//! Root-only: bad input gets a clear error and leaves the running state unchanged; the CLI works
//! with and without a running agent.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn malformed_config_names_the_key_and_nothing_starts() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::new("monitor", "");
    for (text, needle) in [
        ("mode = \"paranoid\"", "paranoid"),
        ("deadline_ms = 0", "deadline_ms"),
        ("dedline_ms = 5", "dedline_ms"),
        ("[exec]\nwatch = \"/mnt\"", "watch"),
        ("mode = ", "line 1, column 8"),
    ] {
        let bad = sb.dir.path().join("bad.toml");
        fs::write(&bad, text).unwrap();
        let o = std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{text}");
        let e = stderr_of(&o);
        assert!(e.contains(needle) && e.contains("bad.toml"), "{text}: {e}");
    }
    assert!(!sb.dir.path().join("custos.sock").exists());
}

#[test]
fn bad_rules_and_requests_leave_the_agent_unchanged() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    let p = sb.install("/bin/true", "blocked");
    sb.ok(&["rule", "add", "--file", p.to_str().unwrap(), "--block"]);
    let rules_before = sb.ok(&["rule", "list", "--json"]);
    let file_before = fs::read(sb.dir.path().join("state/rules.json")).unwrap();

    for (args, needle) in [
        (
            vec!["rule", "add", "--sha256", "xyz", "--block"],
            "invalid SHA-256",
        ),
        (
            vec!["rule", "add", "--path", "relative/*", "--allow"],
            "absolute",
        ),
        (
            vec!["rule", "add", "--path", "/a/[", "--allow"],
            "invalid path glob",
        ),
        (
            vec!["rule", "add", "--file", p.to_str().unwrap(), "--allow"],
            "already covers",
        ),
        (vec!["rule", "remove", "42"], "no rule with id 42"),
        (vec!["mode", "paranoid"], "paranoid"),
        (vec!["fileinfo", "/nonexistent/x"], "/nonexistent/x"),
    ] {
        let o = sb.cli(&args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            stderr_of(&o).contains(needle),
            "{args:?}: {}",
            stderr_of(&o)
        );
    }

    // Raw malformed requests on the socket.
    let mut s = UnixStream::connect(sb.dir.path().join("custos.sock")).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for line in [
        "not json\n",
        "{\"cmd\":\"reboot\"}\n",
        "{\"cmd\":\"mode\",\"set\":\"off\"}\n",
        "{\"cmd\":\"rule_add\",\"rule\":{\"target\":{\"sha256\":\"00\"},\"policy\":\"block\"}}\n",
        "{\"cmd\":\"evaluate\",\"sha256\":\"zz\",\"path\":null}\n",
    ] {
        s.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["ok"], false, "{line}: {reply}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }

    assert_eq!(sb.ok(&["rule", "list", "--json"]), rules_before);
    assert_eq!(
        fs::read(sb.dir.path().join("state/rules.json")).unwrap(),
        file_before
    );
    assert_eq!(sb.ok(&["mode"]).trim(), "monitor");
    assert_denied(&p);
    assert_runs(&sb.install("/bin/echo", "fine"));
}

#[test]
fn corrupt_rules_file_is_refused_at_start() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::new("monitor", "");
    let state = sb.dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("rules.json"), "{\"version\":1,").unwrap();
    let o = sb.cli(&["run"]);
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(e.contains("rules.json") && e.contains("corrupt"), "{e}");
}

#[test]
fn rules_persist_and_cli_works_without_the_agent() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("monitor", "");
    let p = sb.install("/bin/true", "tool");
    // Offline: stored in the state dir.
    let o = sb.cli(&[
        "rule",
        "add",
        "--file",
        p.to_str().unwrap(),
        "--block",
        "--comment",
        "offline",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("agent not running"));
    let info = sb.ok(&["fileinfo", p.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["agent_running"], false);
    assert_eq!(v["now"]["decision"], "deny");
    assert_eq!(v["type"]["kind"], "elf");
    assert_eq!(v["rule"]["comment"], "offline");
    let e = stderr_of(&sb.cli(&["status"]));
    assert!(e.contains("not running"), "{e}");

    sb.start();
    assert_denied(&p);
    let list = sb.ok(&["rule", "list"]);
    assert!(list.contains("offline") && list.contains("block"), "{list}");
    assert!(sb.stop().success());
    sb.start();
    assert_denied(&p);
    sb.ok(&["rule", "remove", "1"]);
    assert_runs(&p);
}

#[test]
fn control_socket_is_root_only() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    let sock = sb.dir.path().join("custos.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Let an unprivileged user reach the socket's directory, then try as that user.
    fs::set_permissions(sb.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let o = std::process::Command::new(BIN)
        .args(["mode", "audit", "--config"])
        .arg(&sb.config)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(sb.ok(&["mode"]).trim(), "monitor");
}

#[test]
fn custos_vouches_for_itself_so_lockdown_cannot_lock_it_out() {
    if !root_or_skip() {
        return;
    }
    // The agent runs from a copy on the watched tmpfs, so its own binary is at stake. The
    // built-in `essential` source trusts it by path in lockdown: no allow rule is needed.
    let mut sb = Sandbox::new("monitor", "");
    let agent = sb.install(BIN, "custos");
    sb.start_binary(&agent);
    sb.ok(&["mode", "lockdown"]);
    let v = retry_txtbsy(|| std::process::Command::new(&agent).arg("--version").output()).unwrap();
    assert!(v.status.success());
    assert_denied(&sb.install("/bin/true", "unknown"));
    let info = sb.ok(&["fileinfo", agent.to_str().unwrap()]);
    assert!(info.contains("(known_good, by essential)"), "{info}");

    // A copy of it elsewhere is just an unknown program.
    let copy = sb.install(BIN, "custos-copy");
    assert_denied(&copy);

    // Rules still apply, so a block rule on it is refused while it would deny it.
    let agent_s = agent.to_str().unwrap();
    let o = sb.cli(&["rule", "add", "--file", agent_s, "--block"]);
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(
        e.contains("refusing rule change in lockdown") && e.contains(agent_s),
        "{e}"
    );
    let o = sb.cli(&["rule", "add", "--path", agent_s, "--block"]);
    assert!(!o.status.success(), "a path block beats trust too");
    assert_eq!(sb.ok(&["mode"]).trim(), "lockdown");
    assert!(
        retry_txtbsy(|| std::process::Command::new(&agent).arg("--version").status())
            .unwrap()
            .success()
    );
}

#[test]
fn a_block_rule_over_custos_itself_is_refused() {
    if !root_or_skip() {
        return;
    }
    let mut sb = Sandbox::new("monitor", "");
    let agent = sb.install(BIN, "custos");
    let agent_s = agent.to_str().unwrap().to_owned();
    sb.start_binary(&agent);
    for target in ["--file", "--path"] {
        let o = sb.cli(&["rule", "add", target, &agent_s, "--block"]);
        assert!(!o.status.success());
        let e = stderr_of(&o);
        assert!(e.contains("refusing rule change in monitor"), "{e}");
    }
    assert!(
        sb.ok(&["rule", "list"]).trim().is_empty() || !sb.ok(&["rule", "list"]).contains("block")
    );

    // A block rule written while the agent was down stops it from starting.
    assert!(sb.stop().success());
    let o = sb.cli(&["rule", "add", "--file", &agent_s, "--block"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_start_refused(&sb, &agent, &[], "refusing monitor");
}

/// True when every thread of `pid` is stopped (state `T`).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
            .unwrap_or(false)
    })
}

#[test]
fn a_remount_reusing_the_device_number_is_watched() {
    if !root_or_skip() {
        return;
    }
    use nix::sys::signal::{kill, Signal};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    // Discovery limited to ramfs, which nothing else on the host uses, so only our mount counts.
    let sb = Sandbox::started("monitor", "[exec]\nwatch_types = [\"ramfs\"]\n");
    let mnt = sb.mount_extra("again", "ramfs");
    let mnt_s = mnt.to_str().unwrap().to_owned();
    sb.wait_watched(&mnt);
    let dev_before = fs::metadata(&mnt).unwrap().dev();

    // Replace the filesystem while the agent is stopped, so its mount follower only sees the
    // result: the kernel reuses the lowest free device number and mount id, so the new
    // superblock's mountinfo line is typically identical to the old one.
    let agent = nix::unistd::Pid::from_raw(sb.pid());
    kill(agent, Signal::SIGSTOP).unwrap();
    wait_until(Duration::from_secs(5), "agent did not stop", || {
        all_threads_stopped(sb.pid())
    });
    let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
    let ramfs = CString::new("ramfs").unwrap();
    // SAFETY: plain syscalls on valid C strings.
    let replaced = unsafe {
        libc::umount2(target.as_ptr(), 0) == 0
            && libc::mount(
                ramfs.as_ptr(),
                target.as_ptr(),
                ramfs.as_ptr(),
                0,
                std::ptr::null(),
            ) == 0
    };
    let err = std::io::Error::last_os_error();
    kill(agent, Signal::SIGCONT).unwrap();
    assert!(replaced, "remount: {err}");
    if fs::metadata(&mnt).unwrap().dev() != dev_before {
        eprintln!("note: the device number was not reused this time");
    }

    let mut bytes = fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(b"remounted");
    let prog = mnt.join("prog");
    fs::write(&prog, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    sb.ok(&["rule", "add", "--file", prog.to_str().unwrap(), "--block"]);
    // The follower re-marks it shortly after it resumes.
    let t0 = Instant::now();
    loop {
        match run(&prog) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => break,
            r => assert!(
                t0.elapsed() < Duration::from_secs(5),
                "exec on the remounted filesystem not held: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sb.watched_mounts().contains(&mnt_s));
}

#[test]
fn an_offline_block_rule_over_custos_itself_stops_the_agent_from_starting() {
    if !root_or_skip() {
        return;
    }
    // custos runs from the watched tmpfs; a block rule over it is written while it is down.
    let mut sb = Sandbox::new("monitor", "");
    let agent = sb.install(BIN, "custos");
    let glob = format!("{}/*", sb.mnt.display());
    let o = sb.cli(&["rule", "add", "--path", &glob, "--block"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_start_refused(&sb, &agent, &[], "refusing monitor");
    // Audit never denies, so it starts; switching to monitor is refused with the same reason.
    let cfg = fs::read_to_string(&sb.config)
        .unwrap()
        .replace("mode = \"monitor\"", "mode = \"audit\"");
    fs::write(&sb.config, cfg).unwrap();
    sb.start_binary(&agent);
    let o = sb.cli(&["mode", "monitor"]);
    assert!(!o.status.success());
    assert!(
        stderr_of(&o).contains("refusing monitor"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(sb.ok(&["mode"]).trim(), "audit");
}

/// Starts the custos copy `agent` with `run ARGS` and asserts it refuses, naming itself.
fn assert_start_refused(sb: &Sandbox, agent: &std::path::Path, args: &[&str], why: &str) {
    let o = retry_txtbsy(|| {
        std::process::Command::new(agent)
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(&sb.config)
            .output()
    })
    .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(
        e.contains(why) && e.contains(agent.to_str().unwrap()),
        "{e}"
    );
}
