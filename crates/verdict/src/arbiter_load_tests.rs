//! Plain opens (`Access::Load`): judged only when the file is an ELF image, once per file, and
//! never twice for one exec.

use super::super::*;
use super::{arbiter, arbiter_with, block, sha_of, Fake, Kernel};
use crate::rules::{Policy, Rule};

/// The start of an ELF shared object (little-endian, `ET_DYN`), then `tail`.
fn elf_so(tail: &[u8]) -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01".to_vec();
    b.resize(16, 0);
    b.extend([3, 0, 0x3e, 0]);
    b.extend_from_slice(tail);
    b
}

fn allow(id: u64, data: &[u8]) -> Rule {
    Rule {
        policy: Policy::Allow,
        ..block(id, data)
    }
}

impl Kernel {
    fn load(self: &Arc<Self>, pid: i32, ino: u64, data: &[u8], delay_ms: u64) -> Fake {
        let mut h = self.held(pid, ino, data, delay_ms);
        h.access = Access::Load;
        h
    }
}

#[test]
fn a_plain_open_of_anything_but_an_image_passes_without_a_decision() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    for (pid, data) in [(1, &b"#!/bin/sh\n"[..]), (2, b"just data"), (3, b"")] {
        a.submit(k.load(pid, pid as u64, data, 0));
    }
    // An ELF object that is not an image (ET_REL: a `.o`, a kernel module).
    let mut rel = elf_so(b"");
    rel[16] = 1;
    a.submit(k.load(4, 4, &rel, 0));
    let got = k.wait_answers(4);
    assert!(got.iter().all(|&(_, d)| d == Decision::Allow), "{got:?}");
    assert!(lock(&k.events).is_empty(), "no decision, no event");
    let s = a.stats();
    assert_eq!(
        (s.other_opens, s.hashed),
        (4, 0),
        "header read, nothing hashed"
    );
    assert_eq!((s.allowed, s.loads_allowed, s.loads_denied), (0, 0, 0));
    assert_eq!(k.open_ignores.load(Ordering::SeqCst), 4, "opens-only marks");
    assert_eq!(k.ignores.load(Ordering::SeqCst), 0, "execs still reported");

    // The next open of the same file is answered from what is known, without reading it.
    let reads = k.reads.load(Ordering::SeqCst);
    a.submit(k.load(9, 2, b"just data", 0));
    assert_eq!(k.wait_answers(5)[4], (9, Decision::Allow));
    assert_eq!(k.reads.load(Ordering::SeqCst), reads);
    // A policy change does not make a data file an image.
    a.set_mode(Mode::Lockdown);
    a.submit(k.load(10, 2, b"just data", 0));
    k.wait_answers(6);
    assert_eq!(k.reads.load(Ordering::SeqCst), reads);
}

#[test]
fn an_untrusted_image_does_not_load_in_lockdown_and_a_trusted_one_does() {
    let k = Arc::new(Kernel::default());
    let (bad, good) = (elf_so(b"untrusted"), elf_so(b"trusted"));
    let a = arbiter(&k, Mode::Lockdown, vec![allow(1, &good)], 2000);
    a.submit(k.load(10, 1, &bad, 0));
    assert_eq!(k.wait_answers(1), vec![(10, Decision::Deny)]);
    a.submit(k.load(11, 2, &good, 0));
    assert_eq!(k.wait_answers(2)[1], (11, Decision::Allow));
    let ev = lock(&k.events).clone();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].access, Access::Load);
    assert_eq!(
        (ev[0].decision, ev[0].reason),
        (Decision::Deny, Reason::ModeDefault)
    );
    assert_eq!(ev[0].executable.as_deref(), Some("/t/1"), "the image");
    assert_eq!(ev[0].opener.as_deref(), Some("/bin/opener-10"));
    assert_eq!(ev[0].sha256, Some(sha_of(&bad)));
    assert_eq!((ev[1].reason, ev[1].rule_id), (Reason::BinaryRule, Some(1)));
    let s = a.stats();
    assert_eq!((s.loads_denied, s.loads_allowed), (1, 1));
    assert_eq!((s.denied, s.allowed, s.other_opens), (0, 0, 0));
    // The allow holds however the file is used: one mark for execs and loads.
    assert_eq!(k.ignores.load(Ordering::SeqCst), 1);

    // Cached per file: a load by another process is answered without reading it again, and an
    // exec of the same file gets the same verdict.
    let reads = k.reads.load(Ordering::SeqCst);
    a.submit(k.load(12, 1, &bad, 0));
    a.submit(k.held(13, 1, &bad, 0));
    let got = k.wait_answers(4);
    assert_eq!(&got[2..], &[(12, Decision::Deny), (13, Decision::Deny)]);
    assert_eq!(k.reads.load(Ordering::SeqCst), reads);
    assert_eq!(a.stats().hashed, 2);
}

#[test]
fn the_plain_open_that_follows_an_allowed_exec_is_not_judged_again() {
    let k = Arc::new(Kernel::default());
    let prog = elf_so(b"prog");
    // Without kernel marks every exec open is also reported as a plain open.
    let a = arbiter_with(&k, Mode::Lockdown, vec![allow(1, &prog)], 2000, |o| {
        o.kernel_cache = false
    });
    a.submit(k.held(5, 1, &prog, 0));
    k.wait_answers(1);
    a.submit(k.load(5, 1, &prog, 0));
    assert_eq!(k.wait_answers(2)[1], (5, Decision::Allow));
    assert_eq!(lock(&k.events).len(), 1, "one decision, one event");
    let s = a.stats();
    assert_eq!((s.allowed, s.loads_allowed, s.cache_hits), (1, 0, 0));
    // Only once: a later plain open by the same process is a load (from the cache).
    a.submit(k.load(5, 1, &prog, 0));
    assert_eq!(k.wait_answers(3)[2], (5, Decision::Allow));
    assert_eq!(a.stats().loads_allowed, 1);
    // Another process's plain open is its own load, logged once for it.
    a.submit(k.load(6, 1, &prog, 0));
    k.wait_answers(4);
    let ev = lock(&k.events).clone();
    assert_eq!(ev.len(), 2);
    assert_eq!((ev[1].pid, ev[1].access), (6, Access::Load));
}

#[test]
fn a_script_judged_for_its_exec_is_no_image_to_load() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    a.submit(k.held(1, 1, b"#!/bin/sh\necho", 0));
    assert_eq!(
        k.wait_answers(1),
        vec![(1, Decision::Deny)],
        "an untrusted exec"
    );
    // Reading it (`sh script`, `cat`) loads nothing.
    a.submit(k.load(2, 1, b"#!/bin/sh\necho", 0));
    assert_eq!(k.wait_answers(2)[1], (2, Decision::Allow));
    assert_eq!(lock(&k.events).len(), 1);
    assert_eq!(a.stats().other_opens, 1);
}

#[test]
fn a_load_waiting_on_an_exec_hash_gets_the_verdict_or_passes() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 5000);
    // An exec and a plain open of the same slow file share one read.
    let so = elf_so(b"slow");
    a.submit(k.held(1, 1, &so, 300));
    a.submit(k.load(2, 1, &so, 300));
    let got = k.wait_answers(2);
    assert!(got.iter().all(|&(_, d)| d == Decision::Deny), "{got:?}");
    assert_eq!(a.stats().hashed, 1);
    // Not an image: the load passes as soon as the header is read, the exec gets its verdict.
    a.submit(k.held(3, 2, b"#!/bin/sh\n", 300));
    a.submit(k.load(4, 2, b"#!/bin/sh\n", 300));
    let got = k.wait_answers(4);
    assert_eq!(got[2], (4, Decision::Allow), "the load first");
    assert_eq!(got[3], (3, Decision::Deny));
    assert_eq!(
        lock(&k.events).len(),
        3,
        "no event for the load that passed"
    );
}

#[test]
fn the_hash_limit_applies_to_images_only_and_the_deadline_to_every_load() {
    let k = Arc::new(Kernel::default());
    let a = arbiter_with(&k, Mode::Lockdown, vec![], 100, |o| o.max_hash_bytes = 8);
    let mut data = k.load(1, 1, b"a big data file", 0);
    data.key_size(1 << 30);
    a.submit(data);
    assert_eq!(k.wait_answers(1), vec![(1, Decision::Allow)]);
    let mut image = k.load(2, 2, &elf_so(b"big"), 0);
    image.key_size(1 << 30);
    a.submit(image);
    assert_eq!(k.wait_answers(2)[1], (2, Decision::Deny));
    let e = lock(&k.events)[0].clone();
    assert_eq!((e.reason, e.access), (Reason::Error, Access::Load));
    // A header that cannot be read in time: lockdown's fallback, as for an exec.
    a.submit(k.load(3, 3, &elf_so(b"slow"), 800));
    assert_eq!(k.wait_answers(3)[2], (3, Decision::Deny));
    let e = lock(&k.events)[1].clone();
    assert_eq!((e.reason, e.access), (Reason::Deadline, Access::Load));
    assert_eq!(a.stats().loads_denied, 2);
}
