//! Arbiter behaviour that reputation and the eBPF holds rely on: known-bad feeds, mutable
//! content, what is remembered in the kernel, holds that arrive after shutdown.

use super::super::*;
use super::{arbiter, block, Kernel};
use crate::rules::{Policy, Rule};
use crate::source::{Finding, Need, Opinion, Source, Sources, Subject};
use std::sync::atomic::AtomicUsize;

#[test]
fn an_allow_for_mutable_content_falls_back_where_the_mode_denies() {
    let allow = Rule {
        policy: Policy::Allow,
        ..block(1, b"ok")
    };
    for (mode, want) in [
        (Mode::Lockdown, Decision::Deny),
        (Mode::Monitor, Decision::Allow),
    ] {
        let k = Arc::new(Kernel::default());
        let a = arbiter(&k, mode, vec![allow.clone()], 2000);
        let mut h = k.held(10, 1, b"ok", 0);
        h.mutable = true;
        a.submit(h);
        assert_eq!(k.wait_answers(1), vec![(10, want)], "{mode}");
        if mode == Mode::Lockdown {
            assert_eq!(lock(&k.events)[0].reason, Reason::Mutable);
            // A sealed (immutable) copy of the same content is allowed.
            a.submit(k.held(11, 2, b"ok", 0));
            assert_eq!(k.wait_answers(2)[1], (11, Decision::Allow));
        }
    }
}

/// A test source: says `opinion` for content `bad` (by MD5, or by content scan), unknown
/// otherwise, and counts how often it is asked.
struct Src {
    name: &'static str,
    md5: Option<[u8; 16]>,
    scan: Option<&'static [u8]>,
    /// Trusted only at this path (a per-path source, like package trust).
    at: Option<&'static str>,
    opinion: Opinion,
    transient: bool,
    asked: AtomicUsize,
}

impl Src {
    fn new(name: &'static str, opinion: Opinion) -> Src {
        Src {
            name,
            md5: None,
            scan: None,
            at: None,
            opinion,
            transient: false,
            asked: AtomicUsize::new(0),
        }
    }
}

impl Source for Src {
    fn name(&self) -> &str {
        self.name
    }
    fn by_path(&self) -> bool {
        self.at.is_some()
    }
    fn need(&self, _path: Option<&str>) -> Need {
        Need {
            md5: self.md5.is_some(),
            sha1: false,
            content_up_to: if self.scan.is_some() { 100 } else { 0 },
        }
    }
    fn judge(&self, s: &Subject<'_>) -> Finding {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.transient {
            return Finding::failed("service down".into());
        }
        let hit = self.md5.is_some_and(|m| s.md5 == Some(&m))
            && self.at.is_none_or(|p| s.path == Some(p))
            || self.scan.is_some_and(|c| s.content == Some(c));
        if hit {
            Finding {
                opinion: self.opinion,
                detail: Some(format!("{} says so", self.name)),
                valid_for: None,
            }
        } else {
            Finding::unknown(None)
        }
    }
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

fn sources(list: &[&Arc<Src>]) -> Sources {
    Sources::new(
        list.iter()
            .map(|s| (*s).clone() as Arc<dyn Source>)
            .collect(),
    )
}

#[test]
fn a_known_bad_md5_denies_in_monitor_and_names_the_source() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let feed = Arc::new(Src {
        md5: Some(md5_of(b"evil")),
        ..Src::new("feeds", Opinion::Bad)
    });
    a.set_sources(sources(&[&feed]));
    a.submit(k.held(10, 1, b"evil", 0));
    a.submit(k.held(11, 2, b"fine", 0));
    let mut got = k.wait_answers(2);
    got.sort();
    assert_eq!(got, vec![(10, Decision::Deny), (11, Decision::Allow)]);
    let ev = lock(&k.events).clone();
    let deny = ev.iter().find(|e| e.pid == 10).expect("event");
    assert_eq!(deny.reason, Reason::KnownBad);
    let src = deny.source.as_ref().expect("source named");
    assert_eq!(
        (src.name.as_str(), src.detail.as_deref()),
        ("feeds", Some("feeds says so"))
    );
    // Cached by content: a second exec is denied without hashing or asking again.
    a.submit(k.held(12, 1, b"evil", 0));
    assert_eq!(k.wait_answers(3)[2], (12, Decision::Deny));
    assert_eq!(a.stats().hashed, 2);
    assert_eq!(feed.asked.load(Ordering::SeqCst), 2);
}

#[test]
fn sources_are_asked_in_order_until_one_decides() {
    // In lockdown, where a trusted answer counts.
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    let good = Arc::new(Src {
        md5: Some(md5_of(b"pkg")),
        ..Src::new("nsrl", Opinion::Good)
    });
    let scan = Arc::new(Src {
        scan: Some(b"pkg"),
        ..Src::new("yara", Opinion::Bad)
    });
    a.set_sources(sources(&[&good, &scan]));
    a.submit(k.held(10, 1, b"pkg", 0));
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Allow)]);
    assert_eq!(
        scan.asked.load(Ordering::SeqCst),
        0,
        "decided before the scan"
    );
    // The other order: the scan is asked first, gets the content, and denies.
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    a.set_sources(sources(&[&scan, &good]));
    a.submit(k.held(10, 1, b"pkg", 0));
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Deny)]);
    assert_eq!(
        lock(&k.events)[0].source.as_ref().expect("src").name,
        "yara"
    );
    // A hash rule decides without asking anyone.
    let k = Arc::new(Kernel::default());
    let allow = Rule {
        policy: Policy::Allow,
        ..block(1, b"pkg")
    };
    let a = arbiter(&k, Mode::Monitor, vec![allow], 2000);
    a.set_sources(sources(&[&scan]));
    a.submit(k.held(10, 1, b"pkg", 0));
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Allow)]);
    assert_eq!(scan.asked.load(Ordering::SeqCst), 1, "not asked again");
}

#[test]
fn content_over_the_scan_limit_is_not_given_to_the_source() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let big = vec![b'x'; 200];
    let scan = Arc::new(Src {
        scan: Some(b"xxx"),
        ..Src::new("yara", Opinion::Bad)
    });
    a.set_sources(sources(&[&scan]));
    let mut h = k.held(10, 1, &big, 0);
    h.key_size(200);
    a.submit(h);
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Allow)]);
    assert_eq!(
        scan.asked.load(Ordering::SeqCst),
        1,
        "asked, without content"
    );
}

#[test]
fn a_failed_answer_is_retried_after_its_time_and_never_marked() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let remote = Arc::new(Src {
        transient: true,
        ..Src::new("hashlookup", Opinion::Bad)
    });
    a.set_sources(sources(&[&remote]));
    a.submit(k.held(10, 1, b"new", 0));
    k.wait_answers(1);
    a.submit(k.held(11, 1, b"new", 0));
    k.wait_answers(2);
    assert_eq!(a.stats().hashed, 1, "cached for a while");
    assert_eq!(k.ignores.load(Ordering::SeqCst), 0, "but never marked");
    // Once its time is up, the file is read and the service asked again.
    lock(&a.inner.cache).clear_expired_for_test();
    a.submit(k.held(12, 1, b"new", 0));
    k.wait_answers(3);
    assert_eq!(a.stats().hashed, 2);
    assert_eq!(remote.asked.load(Ordering::SeqCst), 2);
}

#[test]
fn per_path_trust_is_judged_again_for_each_path_without_reading_again() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    let dpkg = Arc::new(Src {
        md5: Some(md5_of(b"ls")),
        at: Some("/usr/bin/ls"),
        ..Src::new("dpkg", Opinion::Good)
    });
    a.set_sources(sources(&[&dpkg]));
    let mut h = k.held(10, 1, b"ls", 0);
    h.path = "/usr/bin/ls".into();
    a.submit(h);
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Allow)]);
    assert_eq!(lock(&k.events)[0].reason, Reason::KnownGood);
    // The same file by another name (a hard link) is not what the package shipped there.
    let mut h = k.held(11, 1, b"ls", 0);
    h.path = "/tmp/ls".into();
    a.submit(h);
    assert_eq!(k.wait_answers(2)[1], (11, Decision::Deny));
    let mut h = k.held(12, 1, b"ls", 0);
    h.path = "/usr/bin/ls".into();
    a.submit(h);
    assert_eq!(k.wait_answers(3)[2], (12, Decision::Allow));
    assert_eq!(a.stats().hashed, 1, "one read; the cache kept the MD5");
    assert_eq!(
        k.ignores.load(Ordering::SeqCst),
        0,
        "never marked: per path"
    );
    assert_eq!(
        k.remembered.load(Ordering::SeqCst),
        0,
        "deny not kept for the inode"
    );
}

/// A source whose parser blows up on the file.
struct Panics;
impl Source for Panics {
    fn name(&self) -> &str {
        "yara"
    }
    fn need(&self, _path: Option<&str>) -> Need {
        Need::default()
    }
    fn judge(&self, _s: &Subject<'_>) -> Finding {
        panic!("crafted file");
    }
}

#[test]
fn a_panicking_source_fails_that_answer_only_and_the_workers_survive() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let feed = Arc::new(Src {
        md5: Some(md5_of(b"evil")),
        ..Src::new("feeds", Opinion::Bad)
    });
    a.set_sources(Sources::new(vec![
        Arc::new(Panics),
        feed as Arc<dyn Source>,
    ]));
    // More files than workers: a dead worker would leave the later ones to the deadline.
    for i in 0..6 {
        a.submit(k.held(10 + i, 1 + i as u64, format!("f{i}").as_bytes(), 0));
    }
    a.submit(k.held(20, 50, b"evil", 0));
    let got = k.wait_answers(7);
    assert!(
        got.contains(&(20, Decision::Deny)),
        "later sources still answer: {got:?}"
    );
    let ev = lock(&k.events).clone();
    assert!(ev.iter().all(|e| e.reason != Reason::Deadline), "{ev:?}");
}

#[test]
fn a_second_path_is_not_judged_as_the_first_after_the_first_timed_out() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 100);
    let dpkg = Arc::new(Src {
        md5: Some(md5_of(b"ls")),
        at: Some("/usr/bin/ls"),
        ..Src::new("dpkg", Opinion::Good)
    });
    a.set_sources(sources(&[&dpkg]));
    let mut h = k.held(10, 1, b"ls", 160);
    h.path = "/usr/bin/ls".into();
    a.submit(h);
    // The first exec times out (deny in lockdown) while its file is still being read.
    assert_eq!(k.wait_answers(1)[0], (10, Decision::Deny));
    // A second exec of the same inode by another path joins the same read.
    let mut h = k.held(11, 1, b"ls", 0);
    h.path = "/tmp/ls".into();
    a.submit(h);
    assert_eq!(
        k.wait_answers(2)[1],
        (11, Decision::Deny),
        "not what dpkg shipped there"
    );
    let ev = lock(&k.events).clone();
    let e = ev.iter().find(|e| e.pid == 11).expect("event");
    assert_eq!(e.executable.as_deref(), Some("/tmp/ls"));
}

#[test]
fn in_monitor_trust_does_not_stop_the_search_for_bad() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let dpkg = Arc::new(Src {
        md5: Some(md5_of(b"nc")),
        at: Some("/usr/bin/nc"),
        ..Src::new("dpkg", Opinion::Good)
    });
    let scan = Arc::new(Src {
        scan: Some(b"nc"),
        ..Src::new("yara", Opinion::Bad)
    });
    a.set_sources(sources(&[&dpkg, &scan]));
    let mut h = k.held(10, 1, b"nc", 0);
    h.path = "/usr/bin/nc".into();
    a.submit(h);
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Deny)]);
    assert_eq!(
        dpkg.asked.load(Ordering::SeqCst),
        0,
        "vouching does not count here"
    );
    // In lockdown the package's word counts and decides first.
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    a.set_sources(sources(&[&dpkg, &scan]));
    let mut h = k.held(10, 1, b"nc", 0);
    h.path = "/usr/bin/nc".into();
    a.submit(h);
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Allow)]);
}

#[test]
fn a_hold_submitted_after_shutdown_gets_the_fallback_at_once() {
    for (mode, want) in [
        (Mode::Lockdown, Decision::Deny),
        (Mode::Monitor, Decision::Allow),
    ] {
        let k = Arc::new(Kernel::default());
        let a = arbiter(&k, mode, vec![], 2000);
        a.shutdown();
        a.submit(k.held(10, 1, b"late", 0));
        assert_eq!(*lock(&k.answers), vec![(10, want)], "{mode}");
        assert_eq!(lock(&k.events)[0].reason, Reason::Shutdown);
    }
}

#[test]
fn only_verdicts_on_content_are_remembered_in_the_kernel() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![block(1, b"bad")], 50);
    a.submit(k.held(10, 1, b"bad", 0));
    k.wait_answers(1);
    assert_eq!(k.remembered.load(Ordering::SeqCst), 1, "hash rule deny");
    // A deadline fallback deny says nothing about the file.
    a.submit(k.held(11, 2, b"slow", 500));
    k.wait_answers(2);
    assert_eq!(k.remembered.load(Ordering::SeqCst), 1);
}
