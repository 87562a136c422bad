//! Network events and policy, end to end as root on loopback: real connections reported by
//! the eBPF sensor, real `connect` calls refused by the cgroup programs.
//!
//! Rules here always name a program on the sandbox's tmpfs, so attaching at the root cgroup
//! cannot touch anything else on the host; the quarantine (which judges every program) is
//! tried in a child cgroup of the test's own.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// With the process sensor: it names processes that exit before their events are read.
const NET: &str = "[net]\nenabled = true\n[telemetry]\nprocess = true\n";

/// Network events (`custos.network`) that `keep` picks, at least `n` of them.
fn net_events(sb: &Sandbox, n: usize, what: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    wait_until(Duration::from_secs(10), what, || {
        out = sb
            .events_at_least(0)
            .into_iter()
            .filter(|e| e["event"]["module"] == "custos.network")
            .filter(&keep)
            .collect();
        out.len() >= n
    });
    out
}

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

/// Runs netops; returns (pid, success, stdout).
fn netops(prog: &Path, args: &[&str], cgroup: Option<&Path>) -> (u32, bool, String) {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if let Some(cg) = cgroup {
        let procs = std::ffi::CString::new(cg.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
    }
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (pid, out.status.success(), text)
}

/// A TCP server on `addr` answering each connection with 3 bytes, until dropped.
fn server(addr: &str) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        for c in l.incoming().take(1) {
            let mut c = c.unwrap();
            let mut buf = Vec::new();
            let _ = c.read_to_end(&mut buf);
            let _ = c.write_all(b"abc");
        }
    });
    (port, h)
}

/// Lets a `server` thread finish: one connection it accepts and closes.
fn kick(port: u16) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = c.read_to_end(&mut Vec::new());
}

fn prog(sb: &Sandbox, name: &str) -> PathBuf {
    let built = cc(sb.dir.path(), "netops");
    let to = sb.mnt.join(name);
    std::fs::copy(&built, &to).unwrap();
    to
}

#[test]
fn connections_are_reported_with_both_ends_and_the_program() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", NET);
    sb.wait_telemetry();
    let p = prog(&sb, "netops");
    let exe = p.to_str().unwrap();
    for (listen, host) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
        let (port, h) = server(listen);
        let (pid, ok, out) = netops(&p, &["tcp", host, &port.to_string(), "7"], None);
        assert!(ok, "{out}");
        h.join().unwrap();
        let me = std::process::id();
        let ev = net_events(
            &sb,
            3,
            &format!("connect, accept, close over {host}"),
            |e| {
                let ours = e["process"]["pid"] == pid;
                let to = e["destination"]["port"] == port || e["source"]["port"] == port;
                to && (ours || e["process"]["pid"] == me)
            },
        );
        let find = |a: &str| ev.iter().find(|e| action(e) == a).cloned().unwrap();
        let c = find("connect");
        assert_eq!(c["process"]["executable"], exe, "{ev:#?}");
        assert_eq!(c["destination"]["ip"], host);
        assert_eq!(c["source"]["ip"], host);
        assert!(c["source"]["port"].as_u64().unwrap() > 0);
        assert_eq!(c["network"]["transport"], "tcp");
        assert_eq!(c["network"]["direction"], "egress");
        assert_eq!(c["event"]["outcome"], "success");
        let a = find("accept");
        assert_eq!(a["process"]["pid"], me, "the test process accepted");
        assert_eq!(a["destination"]["port"], port);
        assert_eq!(a["source"]["port"], c["source"]["port"]);
        assert_eq!(a["network"]["direction"], "ingress");
        // Close: this side sent 7 bytes and got 3.
        let close = ev
            .iter()
            .find(|e| action(e) == "close" && e["process"]["pid"] == pid)
            .unwrap();
        assert_eq!(close["source"]["bytes"], 7);
        assert_eq!(close["destination"]["bytes"], 3);
    }
    // The test's own listeners: a TCP listen and a UDP bind, each one event.
    let me = std::process::id();
    let (lport, _h) = server("127.0.0.1:0");
    let listen = net_events(&sb, 1, "listen", |e| {
        action(e) == "listen" && e["destination"]["port"] == lport
    });
    assert_eq!(listen[0]["process"]["pid"], me);
    assert_eq!(listen[0]["network"]["transport"], "tcp");
    kick(lport);
    // A UDP datagram, and a connect nobody answers.
    // A fixed port: binding port 0 (an ephemeral one) is not reported.
    let uport = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _u = UdpSocket::bind(("127.0.0.1", uport)).unwrap();
    let (pid, ok, _) = netops(&p, &["udp", "127.0.0.1", &uport.to_string()], None);
    assert!(ok);
    let b = net_events(&sb, 1, "udp bind", |e| {
        action(e) == "bind" && e["destination"]["port"] == uport
    });
    assert_eq!(b[0]["process"]["pid"], me);
    let s = net_events(&sb, 1, "udp send", |e| {
        e["process"]["pid"] == pid && action(e) == "send"
    });
    assert_eq!(s[0]["destination"]["port"], uport);
    assert_eq!(s[0]["network"]["transport"], "udp");
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dport = dead.local_addr().unwrap().port();
    drop(dead);
    let (pid, ok, _) = netops(&p, &["tcp", "127.0.0.1", &dport.to_string()], None);
    assert!(!ok);
    let f = net_events(&sb, 1, "failed connect", |e| {
        e["process"]["pid"] == pid && action(e) == "connect"
    });
    assert_eq!(f[0]["event"]["outcome"], "failure");
    // Counted, and in the store.
    assert!(sb.status()["net"]["events"].as_u64().unwrap() >= 8);
    let stored = sb.ok(&["events", "--kind", "network", "--json"]);
    assert!(stored.contains(&format!("\"pid\":{pid}")), "{stored}");
}

#[test]
fn a_port_rule_denies_one_program_not_another_and_rules_change_live() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", NET);
    sb.wait_telemetry();
    let blocked = prog(&sb, "blocked");
    let other = prog(&sb, "other");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let try_both = || {
        let b = netops(&blocked, &["tcp", "127.0.0.1", &port, "0"], None);
        let o = netops(&other, &["tcp", "127.0.0.1", &port, "0"], None);
        (b, o)
    };
    // The listener never answers reads: netops shuts down its side and waits for EOF, which
    // comes when the accepted stream is dropped.
    let accept = std::thread::spawn(move || {
        for c in l.incoming().take(5) {
            drop(c);
        }
    });
    let ((_, ok_b, _), (_, ok_o, _)) = try_both();
    assert!(ok_b && ok_o, "no rule yet");
    let added = sb.ok(&[
        "net",
        "rule",
        "add",
        "--deny",
        "--transport",
        "tcp",
        "--port",
        &port,
        "--program",
        blocked.to_str().unwrap(),
        "--comment",
        "no test port",
    ]);
    // "added network rule ID: …"
    let id: u64 = added
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(':')
        .parse()
        .unwrap();
    let ((bpid, ok_b, out_b), (_, ok_o, _)) = try_both();
    assert!(!ok_b && out_b.contains("EPERM"), "{out_b}");
    assert!(ok_o, "another program is not affected");
    let d = net_events(&sb, 1, "deny event", |e| e["process"]["pid"] == bpid);
    assert_eq!(d[0]["custos"]["decision"], "deny");
    assert_eq!(d[0]["rule"]["name"], "no test port");
    assert_eq!(d[0]["rule"]["id"], id.to_string());
    assert_eq!(d[0]["event"]["outcome"], "failure");
    assert_eq!(sb.status()["net"]["denied"], 1);
    // A bad rule changes nothing.
    let bad = sb.cli(&["net", "rule", "add", "--deny", "--cidr", "10.1.2.3/8"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("10.1.2.3/8"));
    let list = sb.ok(&["net", "rule", "list", "--json"]);
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1);
    // Removed: allowed again, without a restart.
    sb.ok(&["net", "rule", "remove", &id.to_string()]);
    let ((_, ok_b, _), (_, ok_o, _)) = try_both();
    assert!(ok_b && ok_o);
    accept.join().unwrap();
    // An audit rule lets it through and says it would deny.
    sb.ok(&[
        "net",
        "rule",
        "add",
        "--deny",
        "--audit",
        "--port",
        &port,
        "--program",
        blocked.to_str().unwrap(),
    ]);
    let l = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let accept = std::thread::spawn(move || drop(l.accept()));
    let (apid, ok, out) = netops(&blocked, &["tcp", "127.0.0.1", &port, "0"], None);
    assert!(ok, "{out}");
    accept.join().unwrap();
    let a = net_events(&sb, 1, "audit event", |e| {
        e["process"]["pid"] == apid && action(e) == "connect"
    });
    assert_eq!(a[0]["custos"]["would_deny"], true);
    assert_eq!(a[0]["event"]["outcome"], "success");
}

/// A child cgroup of the test process's own, removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Cgroup {
        let root = cgroup_root();
        let p = root.join(format!("custos-test-{}", std::process::id()));
        std::fs::create_dir(&p).unwrap();
        Cgroup(p)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Its processes have exited; retry while the kernel lets go of them.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn cgroup_root() -> PathBuf {
    custos_sensor_fanotify::mounts::read_mountinfo()
        .unwrap()
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("a cgroup v2 mount")
        .mount
}

#[test]
fn lockdown_quarantine_denies_unknown_programs_and_lets_trusted_ones_connect() {
    if !root_or_skip() {
        return;
    }
    let cg = Cgroup::new();
    let sb = Sandbox::new(
        "monitor",
        &format!(
            "[net]\nenabled = true\nquarantine = true\ncgroup = \"{}\"\n",
            cg.0.display()
        ),
    );
    let mut sb = sb;
    sb.start();
    let trusted = prog(&sb, "trusted");
    sb.ok(&[
        "rule",
        "add",
        "--path",
        trusted.to_str().unwrap(),
        "--allow",
    ]);
    // Not on a watched filesystem: it runs unjudged, so the verdict engine never trusted it.
    let unknown = sb.dir.path().join("unknown");
    std::fs::copy(&trusted, &unknown).unwrap();
    sb.ok(&["mode", "lockdown"]);
    wait_until(Duration::from_secs(5), "quarantine on", || {
        sb.status()["net"]["quarantine"] == true
    });
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let accept = std::thread::spawn(move || drop(l.accept()));
    let (upid, ok, out) = netops(&unknown, &["tcp", "127.0.0.1", &port, "0"], Some(&cg.0));
    assert!(!ok && out.contains("EPERM"), "{out}");
    let (_, ok, out) = netops(&trusted, &["tcp", "127.0.0.1", &port, "0"], Some(&cg.0));
    assert!(ok, "the trusted program connects: {out}");
    accept.join().unwrap();
    let q = net_events(&sb, 1, "quarantine event", |e| e["process"]["pid"] == upid);
    assert_eq!(q[0]["custos"]["quarantine"], true);
    assert_eq!(q[0]["custos"]["decision"], "deny");
    assert!(sb.status()["net"]["quarantined"].as_u64().unwrap() >= 1);
    // Monitor: the quarantine is off.
    sb.ok(&["mode", "monitor"]);
    let l = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let accept = std::thread::spawn(move || drop(l.accept()));
    let (_, ok, out) = netops(&unknown, &["tcp", "127.0.0.1", &port, "0"], Some(&cg.0));
    assert!(ok, "{out}");
    accept.join().unwrap();
    drop(sb);
}

/// Answers one A query on `addr`:53 with `answer`.
fn resolver(addr: &str, answer: [u8; 4]) -> std::thread::JoinHandle<()> {
    let s = UdpSocket::bind((addr, 53)).unwrap();
    std::thread::spawn(move || {
        let mut q = [0u8; 512];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let Ok((n, from)) = s.recv_from(&mut q) else {
            return;
        };
        let mut r = q[..n].to_vec();
        r[2] = 0x81; // response, recursion desired
        r[3] = 0x80; // recursion available, NOERROR
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&answer);
        s.send_to(&r, from).unwrap();
    })
}

#[test]
fn a_dns_answer_names_the_connection_that_follows() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", NET);
    sb.wait_telemetry();
    let p = prog(&sb, "resolving");
    let dns = resolver("127.0.53.1", [127, 0, 0, 1]);
    let (port, h) = server("127.0.0.1:0");
    let (pid, ok, out) = netops(
        &p,
        &["dns", "127.0.53.1", "svc.custos.test", &port.to_string()],
        None,
    );
    assert!(ok, "{out}");
    dns.join().unwrap();
    h.join().unwrap();
    let a = net_events(&sb, 1, "dns answer", |e| {
        action(e) == "dns_answer" && e["dns"]["question"]["name"] == "svc.custos.test"
    });
    assert_eq!(a[0]["process"]["pid"], pid);
    assert_eq!(a[0]["dns"]["resolved_ip"][0], "127.0.0.1");
    let c = net_events(&sb, 1, "named connect", |e| {
        e["process"]["pid"] == pid && action(e) == "connect"
    });
    assert_eq!(c[0]["destination"]["domain"], "svc.custos.test");
    assert!(sb.status()["net"]["dns_answers"].as_u64().unwrap() >= 1);
}

#[test]
fn bind_and_udp_send_rules_refuse_only_their_program() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", NET);
    let blocked = prog(&sb, "blocked");
    let other = prog(&sb, "other");
    let free = |udp: bool| {
        if udp {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        }
    };
    let (bport, sport) = (free(true).to_string(), free(true).to_string());
    let b = blocked.to_str().unwrap();
    sb.ok(&[
        "net",
        "rule",
        "add",
        "--deny",
        "--direction",
        "bind",
        "--port",
        &bport,
        "--program",
        b,
    ]);
    sb.ok(&[
        "net",
        "rule",
        "add",
        "--deny",
        "--transport",
        "udp",
        "--port",
        &sport,
        "--program",
        b,
    ]);
    let (pid, ok, out) = netops(&blocked, &["bind", "127.0.0.1", &bport], None);
    assert!(!ok && out.contains("EPERM"), "{out}");
    let d = net_events(&sb, 1, "refused bind", |e| {
        e["process"]["pid"] == pid && action(e) == "bind"
    });
    assert_eq!(d[0]["custos"]["decision"], "deny");
    assert!(netops(&other, &["bind", "127.0.0.1", &bport], None).1);
    let (pid, ok, out) = netops(&blocked, &["udp", "127.0.0.1", &sport], None);
    assert!(!ok && out.contains("EPERM"), "{out}");
    let d = net_events(&sb, 1, "refused send", |e| {
        e["process"]["pid"] == pid && action(e) == "send"
    });
    assert_eq!(d[0]["event"]["outcome"], "failure");
    assert!(netops(&other, &["udp", "127.0.0.1", &sport], None).1);
    // Over IPv6 as well.
    let (_, ok, out) = netops(&blocked, &["udp", "::1", &sport], None);
    assert!(!ok && out.contains("EPERM"), "{out}");
    wait_until(Duration::from_secs(5), "3 denials counted", || {
        sb.status()["net"]["denied"] == 3
    });
}
