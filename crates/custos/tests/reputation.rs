//! Root-only: reputation sources in a running agent, on real execs in the sandbox's tmpfs.
//! YARA rules deny what they match (and bad rules keep the previous ones); a remote
//! hashlookup service's "known malicious" denies; a dead or silent service falls back within
//! its deadline.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// /bin/true with `tag` appended: runs the same, hashes (and scans) differently.
fn tagged(tag: &str) -> Vec<u8> {
    let mut b = std::fs::read("/bin/true").unwrap();
    b.extend_from_slice(tag.as_bytes());
    b
}

fn unique_true(sb: &Sandbox, tag: &str) -> PathBuf {
    sb.write_exec(tag, &tagged(tag))
}

fn sha256_of(b: &[u8]) -> String {
    custos_verdict::sha256_hex(&mut &b[..]).unwrap()
}

fn source_state(sb: &Sandbox, name: &str) -> String {
    let s = sb.status();
    s["reputation"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_yara_match_blocks_and_bad_rules_keep_the_previous_ones() {
    if !root_or_skip() {
        return;
    }
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("test.yar"),
        "rule custos_marker { strings: $m = \"CUSTOS-YARA-MARKER\" condition: $m }\n",
    )
    .unwrap();
    let extra = format!(
        "[reputation.yara]\nrules_dir = \"{}\"\n",
        rules.path().display()
    );
    let sb = Sandbox::started("monitor", &extra);
    let marked = unique_true(&sb, "CUSTOS-YARA-MARKER");
    let clean = unique_true(&sb, "nothing-to-see");
    settle();
    assert_denied(&marked);
    assert_runs(&clean);
    let ev = sb.events_of(&marked, 1);
    assert_eq!(ev[0]["custos"]["reason"], "known_bad");
    assert_eq!(ev[0]["custos"]["source"]["name"], "yara");
    assert_eq!(ev[0]["custos"]["source"]["detail"], "test:custos_marker");
    assert!(
        source_state(&sb, "yara").starts_with("1 rules"),
        "{}",
        sb.log()
    );
    // fileinfo shows the scan's answer.
    let info = sb.ok(&["fileinfo", marked.to_str().unwrap()]);
    assert!(
        info.contains("BAD      test:custos_marker  <- decides"),
        "{info}"
    );

    // A rule file that does not compile: refused on the next reload, the old rules stay.
    std::fs::write(
        rules.path().join("broken.yar"),
        "rule broken { condition: nope }\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(15), "yara reload refused", || {
        source_state(&sb, "yara").contains("previous kept")
    });
    let state = source_state(&sb, "yara");
    assert!(state.contains("broken.yar"), "{state}");
    let o = sb.cli(&["db", "list"]);
    assert!(o.status.success());
    let again = unique_true(&sb, "CUSTOS-YARA-MARKER-again");
    settle();
    assert_denied(&again);

    // A rule that would match the shell is refused too (it would stop every program).
    std::fs::remove_file(rules.path().join("broken.yar")).unwrap();
    std::fs::write(
        rules.path().join("elf.yar"),
        "rule every_elf { condition: uint32(0) == 0x464c457f }\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(15), "lockout rules refused", || {
        source_state(&sb, "yara").contains("every program start needs")
    });
    assert_runs(&clean);
}

/// A tiny HTTP server: `known_bad` gets a CIRCL-style malicious record, anything else a 404.
/// With `silent`, connections are accepted and never answered.
fn serve(known_bad: String, silent: bool) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        let mut parked: Vec<TcpStream> = Vec::new();
        for s in l.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if silent {
                parked.push(s);
                continue;
            }
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let (status, body) = if line.contains(&format!("/lookup/sha256/{known_bad}")) {
                let b = format!(
                    "{{\"SHA-256\": \"{}\", \"FileName\": \"evil\", \"KnownMalicious\": \"testfeed\", \"hashlookup:trust\": 0}}",
                    known_bad.to_uppercase()
                );
                ("200 OK", b)
            } else {
                (
                    "404 NOT FOUND",
                    "{\"message\": \"Non existing SHA-256\"}".to_owned(),
                )
            };
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

fn hashlookup_config(port: u16, timeout_ms: u64) -> String {
    format!(
        "[reputation.hashlookup]\nurl = \"http://127.0.0.1:{port}\"\ntimeout_ms = {timeout_ms}\n"
    )
}

#[test]
fn a_remote_known_malicious_answer_blocks() {
    if !root_or_skip() {
        return;
    }
    let (port, hits) = serve(sha256_of(&tagged("remote-says-malicious")), false);
    let mut sb = Sandbox::started("monitor", &hashlookup_config(port, 1000));
    let bad = unique_true(&sb, "remote-says-malicious");
    let good = unique_true(&sb, "remote-does-not-know");
    settle();
    assert_denied(&bad);
    assert_runs(&good);
    let ev = sb.events_of(&bad, 1);
    assert_eq!(ev[0]["custos"]["reason"], "known_bad");
    assert_eq!(ev[0]["custos"]["source"]["name"], "hashlookup");
    assert!(
        ev[0]["custos"]["source"]["detail"]
            .as_str()
            .unwrap()
            .contains("testfeed"),
        "{ev:?}"
    );
    // The decision is cached: the next exec asks nobody.
    let asked = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_denied(&bad);
    assert_runs(&good);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), asked);
    // The answers outlive the agent: saved at stop, loaded at start, used without asking.
    assert!(sb.stop().success());
    let saved =
        std::fs::read_to_string(sb.dir.path().join("state/hashlookup-cache.jsonl")).unwrap();
    assert!(
        saved.contains(&sha256_of(&tagged("remote-says-malicious"))),
        "{saved}"
    );
    sb.start();
    assert_denied(&bad);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), asked);
}

#[test]
fn a_dead_or_silent_service_falls_back_within_its_deadline() {
    if !root_or_skip() {
        return;
    }
    // A closed port (bound, then dropped) and a server that never answers.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (silent, _) = serve(String::new(), true);
    for port in [closed, silent] {
        let sb = Sandbox::started("monitor", &hashlookup_config(port, 300));
        let p = unique_true(&sb, "nobody-knows");
        settle();
        let t = Instant::now();
        assert_runs(&p);
        // Bounded only to catch a hang, not to time the lookup: the exec deadline is 2 s.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let ev = sb.events_of(&p, 1);
        assert_eq!(ev[0]["custos"]["reason"], "mode_default", "{ev:?}");
        let info = sb.ok(&["fileinfo", p.to_str().unwrap()]);
        assert!(info.contains("lookup failed"), "{info}");
    }
}
