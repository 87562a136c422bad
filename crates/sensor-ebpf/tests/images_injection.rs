//! Root-only: image loads, injection, cwd and the loaded parts, on this kernel, from real
//! programs (tests/programs, compiled here).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use custos_sensor_ebpf::{InjectKind, ProcessSensor, Record};
use std::path::Path;
use std::process::Command;

#[test]
fn every_part_loads_on_this_kernel() {
    if !root_or_skip() {
        return;
    }
    let sensor = ProcessSensor::load().expect("load");
    let missing: Vec<_> = sensor
        .missing()
        .iter()
        .map(|m| format!("{}: {}", m.part.name(), m.why))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn dlopen_reports_the_library_and_ld_so_reports_the_program() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let loader = cc(dir.path(), "dlopen", &["-ldl"]);
    let lib = dir.path().join("libcustos-test.so");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs/lib.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let sensor = ProcessSensor::load().expect("load");

    let child = Command::new(&loader).arg(&lib).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let r = wait_for(&sensor, |r| {
        matches!(r, Record::Image(i) if i.pid == pid && i.path.ends_with(".so")
        && i.path.contains("custos-test"))
    });
    let Some(Record::Image(i)) = r else {
        panic!("no image record for the dlopen'd library")
    };
    assert_eq!(i.path, lib.to_str().unwrap());
    assert_ne!(i.prot & 4, 0, "PROT_EXEC");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(i.ino, std::fs::metadata(&lib).unwrap().ino());
    assert!(i.start_boottime_ns > 0);

    // ld.so run directly: the kernel execs ld.so, and ld.so maps the program itself.
    let prog = dir.path().join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    let ld = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap();
    let child = Command::new(&ld).arg(&prog).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let r = wait_for(
        &sensor,
        |r| matches!(r, Record::Image(i) if i.pid == pid && i.path.ends_with("/prog")),
    );
    let Some(Record::Image(i)) = r else {
        panic!("no image record for the program ld.so mapped")
    };
    assert_eq!(i.path, prog.to_str().unwrap());
}

#[test]
fn ptrace_attach_is_reported_with_both_ends() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let tracer = cc(dir.path(), "ptrace_attach", &[]);
    let sensor = ProcessSensor::load().expect("load");
    let mut target = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let tpid = target.id();
    let child = Command::new(&tracer).arg(tpid.to_string()).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let r = wait_for(&sensor, |r| matches!(r, Record::Inject(j) if j.pid == pid));
    target.kill().unwrap();
    target.wait().unwrap();
    let Some(Record::Inject(j)) = r else {
        panic!("no injection record")
    };
    assert_eq!(j.kind, InjectKind::Ptrace(16), "PTRACE_ATTACH");
    assert_eq!(j.target_pid, tpid);
    assert_eq!(j.result, 0);
    assert!(!j.tamper);
    assert!(j.start_boottime_ns > 0);
}

#[test]
fn process_vm_writev_into_another_process_is_reported() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let writer = cc(dir.path(), "vm_write", &[]);
    let sensor = ProcessSensor::load().expect("load");
    let out = Command::new(&writer).output().unwrap();
    assert!(out.status.success(), "the write reached the child");
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let r = wait_for(
        &sensor,
        |r| matches!(r, Record::Inject(j) if j.target_pid == child),
    );
    let Some(Record::Inject(j)) = r else {
        panic!("no injection record")
    };
    assert_eq!(j.kind, InjectKind::VmWrite);
    assert_eq!(j.result, 8, "bytes written");
}

#[test]
fn exec_reports_the_working_directory() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let cwd = dir.path().join("some where");
    std::fs::create_dir(&cwd).unwrap();
    let sensor = ProcessSensor::load().expect("load");
    let child = Command::new("/bin/true").current_dir(&cwd).spawn().unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    let r = wait_for(&sensor, |r| matches!(r, Record::Exec(e) if e.pid == pid));
    let Some(Record::Exec(e)) = r else {
        panic!("no exec record")
    };
    assert_eq!(
        e.cwd,
        std::fs::canonicalize(&cwd).unwrap().to_str().unwrap()
    );
    assert!(!e.cwd_truncated);
}
