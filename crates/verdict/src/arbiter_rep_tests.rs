//! Arbiter behaviour that reputation and the eBPF holds rely on: known-bad feeds, mutable
//! content, what is remembered in the kernel, holds that arrive after shutdown.

use super::super::*;
use super::{arbiter, block, Kernel};
use crate::rules::{Policy, Rule};

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

/// A feed that lists one MD5.
struct Md5Feed([u8; 16]);
impl KnownBad for Md5Feed {
    fn want(&self) -> crate::file::Want {
        crate::file::Want {
            md5: true,
            sha1: false,
        }
    }
    fn lookup(&self, d: &crate::file::FileDigests) -> Option<u16> {
        (d.md5 == Some(self.0)).then_some(0)
    }
    fn name(&self, idx: u16) -> Option<String> {
        (idx == 0).then(|| "bazaar".into())
    }
}

#[test]
fn a_known_bad_md5_denies_in_monitor_and_names_the_feed() {
    use md5::Digest;
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let md5: [u8; 16] = md5::Md5::digest(b"evil").into();
    a.set_known_bad(Some(Arc::new(Md5Feed(md5))));
    a.submit(k.held(10, 1, b"evil", 0));
    a.submit(k.held(11, 2, b"fine", 0));
    let mut got = k.wait_answers(2);
    got.sort();
    assert_eq!(got, vec![(10, Decision::Deny), (11, Decision::Allow)]);
    let ev = lock(&k.events).clone();
    let deny = ev.iter().find(|e| e.pid == 10).expect("event");
    assert_eq!(deny.reason, Reason::KnownBad);
    assert_eq!(deny.feed.as_deref(), Some("bazaar"));
    // Cached by content: a second exec is denied without hashing again.
    a.submit(k.held(12, 1, b"evil", 0));
    assert_eq!(k.wait_answers(3)[2], (12, Decision::Deny));
    assert_eq!(a.stats().hashed, 2);
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
