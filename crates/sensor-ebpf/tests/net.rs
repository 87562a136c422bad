//! The network sensor as root, on loopback: records for real connections, and a rule in
//! the kernel table refusing a real `connect` (in a child cgroup made here, with only this
//! test's own child process in it).

#![allow(clippy::unwrap_used)]

mod common;

use common::root_or_skip;
use custos_network::KernelRule;
use custos_sensor_ebpf::net::{NetKind, NetRecord, NetRecordKind, NetSensor, NetVerdict};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn records(
    sensor: &NetSensor,
    limit: Duration,
    want: impl Fn(&NetRecord) -> bool,
) -> Option<NetRecord> {
    let found = std::cell::RefCell::new(None);
    let reader = sensor
        .reader(|r| {
            if let Ok(NetRecordKind::Conn(c)) = r {
                let mut f = found.borrow_mut();
                if f.is_none() && want(&c) {
                    *f = Some(c);
                }
            }
        })
        .unwrap();
    let t0 = Instant::now();
    while found.borrow().is_none() && t0.elapsed() < limit {
        reader.poll(Duration::from_millis(20)).unwrap();
    }
    drop(reader);
    found.into_inner()
}

#[test]
fn a_loopback_connection_is_recorded_and_a_port_rule_refuses_it() {
    if !root_or_skip() {
        return;
    }
    let root = custos_sensor_fanotify::mounts::read_mountinfo()
        .unwrap()
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("a cgroup v2 mount")
        .mount;
    let cg = root.join(format!("custos-sensor-test-{}", std::process::id()));
    std::fs::create_dir(&cg).unwrap();
    let sensor = NetSensor::load(&cg, true).unwrap();
    assert!(
        sensor.missing_parts().is_empty(),
        "{:?}",
        sensor.missing_parts()
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let me = std::process::id();
    let local = c.local_addr().unwrap();
    let (_s, _) = l.accept().unwrap();
    let r = records(&sensor, Duration::from_secs(5), |r| {
        r.kind == NetKind::Connect && r.remote.port() == port
    })
    .expect("a connect record");
    assert_eq!(r.pid, me);
    assert_eq!(r.local, local);
    assert!(r.tcp && !r.failed);
    // A deny rule for the port, in force for processes in the child cgroup only.
    let controls = sensor.controls().unwrap();
    controls
        .set_rules(&[KernelRule {
            id: 42,
            port_lo: port,
            port_hi: port,
            hooks: custos_network::rules::HOOK_OUT,
            deny: true,
            ..KernelRule::default()
        }])
        .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec bash -c 'echo > /dev/tcp/127.0.0.1/{port}'",
            cg.display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = records(&sensor, Duration::from_secs(5), |r| {
        r.verdict == NetVerdict::Denied
    })
    .expect("a denied record");
    assert_eq!(d.rule_id, Some(42));
    assert_eq!(d.remote.port(), port);
    // This process is outside the cgroup: not judged.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(sensor);
    let _ = std::fs::remove_dir(&cg);
}
