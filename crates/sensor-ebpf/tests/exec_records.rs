//! Root-only: the process sensor loads on this kernel and reports real execs.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use custos_sensor_ebpf::{ExitStatus, ProcessSensor, Record};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_short_lived_process_is_reported_with_full_path_and_argv() {
    if !root_or_skip() {
        return;
    }
    let sensor = ProcessSensor::load().expect("load the process sensor");
    // A private tmpfs, a nested directory and a symlink: the record must show the real path.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let deep = mnt.join("a b/c");
    std::fs::create_dir_all(&deep).unwrap();
    let prog = deep.join("quick");
    std::fs::copy("/bin/true", &prog).unwrap();
    let link = dir.path().join("link-to-quick");
    std::os::unix::fs::symlink(&prog, &link).unwrap();

    let child = Command::new(&link)
        .args(["-x", "two words", ""])
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());

    let mut found = None;
    sensor
        .poll(Duration::from_secs(5), |r| {
            if let Record::Exec(r) = r.expect("decodes") {
                if r.pid == pid {
                    found = Some(r);
                    return false;
                }
            }
            true
        })
        .unwrap();
    let r = found.expect("exec record for the child");
    assert_eq!(
        r.path,
        prog.to_str().unwrap(),
        "resolved through the symlink and the mount"
    );
    assert!(!r.path_truncated);
    assert_eq!(r.argv, vec![link.to_str().unwrap(), "-x", "two words", ""]);
    assert!(!r.argv_truncated);
    assert_eq!(r.ppid, std::process::id());
    assert_eq!(r.uid, 0);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(r.ino, std::fs::metadata(&prog).unwrap().ino());
    assert!(r.start_boottime_ns > 0);
    assert_eq!(sensor.lost(), 0);
    let _ = Command::new("umount").arg("-l").arg(&mnt).status();
}

#[test]
fn a_burst_of_execs_is_counted_exactly() {
    if !root_or_skip() {
        return;
    }
    const N: usize = 10_000;
    let sensor = ProcessSensor::load().expect("load the process sensor");
    // One shell execs /bin/true N times; every record whose parent is that shell counts.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done"
        ))
        .spawn()
        .unwrap();
    let shell = child.id();
    let mut seen = 0;
    let t0 = std::time::Instant::now();
    while seen < N && t0.elapsed() < Duration::from_secs(60) {
        sensor
            .poll(Duration::from_millis(200), |r| {
                if let Record::Exec(r) = r.expect("decodes") {
                    if r.ppid == shell && r.path.ends_with("/true") {
                        seen += 1;
                    }
                }
                true
            })
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(sensor.lost(), 0, "ring buffer reservations failed");
    assert_eq!(seen, N);
}

#[test]
fn threads_are_reported_as_threads_and_processes_as_processes() {
    if !root_or_skip() {
        return;
    }
    let sensor = ProcessSensor::load().expect("load the process sensor");
    let me = std::process::id();
    let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32)
        .join()
        .unwrap();
    let r = wait_for(
        &sensor,
        |r| matches!(r, Record::Fork(f) if f.child_tid == tid),
    );
    let Some(Record::Fork(f)) = r else {
        panic!("no fork record for thread {tid}")
    };
    assert!(f.is_thread);
    assert_eq!(
        (f.parent_pid, f.child_pid),
        (me, me),
        "a thread of this process"
    );

    let child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    let r = wait_for(
        &sensor,
        |r| matches!(r, Record::Fork(f) if f.child_pid == pid),
    );
    let Some(Record::Fork(f)) = r else {
        panic!("no fork record for child {pid}")
    };
    assert!(!f.is_thread);
    assert_eq!(f.parent_pid, me);
    assert_eq!(f.child_tid, pid);
    assert!(f.child_start_boottime_ns > 0);
    child.wait_with_output().unwrap();
}

#[test]
fn exits_carry_the_code_or_the_signal() {
    if !root_or_skip() {
        return;
    }
    let sensor = ProcessSensor::load().expect("load the process sensor");
    for (script, want) in [
        ("exit 7", ExitStatus::Code(7)),
        ("kill -9 $$", ExitStatus::Signal(9)),
    ] {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        let r = wait_for(
            &sensor,
            |r| matches!(r, Record::Exit(e) if e.pid == pid && !e.is_thread),
        );
        let Some(Record::Exit(e)) = r else {
            panic!("no exit record for {pid}")
        };
        assert_eq!(e.status, want, "{script}");
        assert_eq!(e.tid, pid);
    }
}

#[test]
fn the_process_ends_with_its_last_thread_not_its_leader() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let prog = cc(dir.path(), "leader_exit", &["-pthread"]);
    let sensor = ProcessSensor::load().expect("load the process sensor");
    let child = Command::new(&prog).spawn().unwrap();
    let pid = child.id();
    let st = child.wait_with_output().unwrap().status;
    assert_eq!(st.code(), Some(3));
    let mut exits = Vec::new();
    let mut start = None;
    sensor
        .poll(Duration::from_secs(5), |r| {
            match r.expect("decodes") {
                Record::Fork(f) if f.child_pid == pid && !f.is_thread => {
                    start = Some(f.child_start_boottime_ns)
                }
                Record::Exit(e) if e.pid == pid => exits.push(e),
                _ => {}
            }
            !exits.iter().any(|e| !e.is_thread)
        })
        .unwrap();
    let leader = exits.iter().find(|e| e.tid == pid).expect("leader's exit");
    assert!(leader.is_thread, "the leader leaving is one thread ending");
    let last = exits.iter().find(|e| !e.is_thread).expect("process exit");
    assert_ne!(last.tid, pid, "ended by the other thread");
    assert_eq!(last.status, ExitStatus::Code(3));
    assert_eq!(
        Some(last.start_boottime_ns),
        start,
        "names the process by its start"
    );
}
