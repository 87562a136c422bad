//! Arbiter logic with a fake kernel: every hold answered once, dedup, deadlines, invalidation.

use super::*;
use crate::file::sha256_hex;
use crate::rules::{Policy, Rule, Target};
use custos_event::ExecEvent;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize};

#[derive(Default)]
pub(super) struct Kernel {
    pub(super) answers: Mutex<Vec<(i32, Decision)>>,
    pub(super) ignores: AtomicUsize,
    pub(super) flushes: AtomicUsize,
    pub(super) events: Mutex<Vec<ExecEvent>>,
    pub(super) reads: AtomicUsize,
    pub(super) remembered: AtomicUsize,
    /// Marks for plain opens only (files that are not images).
    pub(super) open_ignores: AtomicUsize,
}

impl Marks for Kernel {
    fn flush_ignores(&self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
impl Sink for Kernel {
    fn emit(&self, e: ExecEvent) {
        lock(&self.events).push(e);
    }
}

/// Content that sleeps before yielding its bytes, to make hashing slow.
struct Slow {
    data: io::Cursor<Vec<u8>>,
    delay: Duration,
    key: FileKey,
}
impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(std::mem::take(&mut self.delay));
        self.data.read(buf)
    }
}
impl Content for Slow {
    fn key(&self) -> io::Result<FileKey> {
        Ok(self.key)
    }
}

pub(super) struct Fake {
    pid: i32,
    key: FileKey,
    /// After `ignore`, report a changed key (a write raced the mark).
    change_on_ignore: Arc<AtomicBool>,
    data: Vec<u8>,
    delay: Duration,
    pub(super) path: String,
    k: Arc<Kernel>,
    answered: bool,
    /// Content that can change after the verdict (an unsealed memfd).
    pub(super) mutable: bool,
    /// An exec, or a plain open (a load if the file is an image).
    pub(super) access: Access,
}

impl Held for Fake {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn key(&self) -> io::Result<FileKey> {
        if self.key.ino == 0 {
            return Err(io::Error::other("stat failed"));
        }
        if self.change_on_ignore.load(Ordering::SeqCst) && self.k.ignores.load(Ordering::SeqCst) > 0
        {
            return Ok(FileKey {
                size: self.key.size + 1,
                ..self.key
            });
        }
        Ok(self.key)
    }
    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
    fn content(&self) -> io::Result<Box<dyn Content>> {
        self.k.reads.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Slow {
            data: io::Cursor::new(self.data.clone()),
            delay: self.delay,
            key: self.key,
        }))
    }
    fn process(&self) -> ProcessInfo {
        ProcessInfo {
            ppid: Some(1),
            uid: Some(0),
        }
    }
    fn ignore(&self) -> io::Result<()> {
        self.k.ignores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn ignore_opens(&self) -> io::Result<()> {
        self.k.open_ignores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn unignore(&self) {
        self.k.ignores.fetch_sub(1, Ordering::SeqCst);
    }
    fn access(&self) -> Access {
        self.access
    }
    fn opener(&self) -> Option<String> {
        Some(format!("/bin/opener-{}", self.pid))
    }
    fn answer(mut self, d: Decision) -> io::Result<()> {
        self.answered = true;
        lock(&self.k.answers).push((self.pid, d));
        Ok(())
    }
    fn mutable(&self) -> bool {
        self.mutable
    }
    fn remember_deny(&self, _key: &FileKey) {
        self.k.remembered.fetch_add(1, Ordering::SeqCst);
    }
}

impl Fake {
    /// Sets the size in the file key (the content limit for scans is checked against it).
    pub(super) fn key_size(&mut self, size: u64) {
        self.key.size = size;
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        assert!(
            self.answered || std::thread::panicking(),
            "hold dropped unanswered"
        );
    }
}

fn key(ino: u64) -> FileKey {
    FileKey {
        dev: 1,
        ino,
        size: 3,
        mtime_ns: 1,
        ctime_ns: 1,
    }
}

pub(super) fn sha_of(data: &[u8]) -> String {
    sha256_hex(&mut &data[..]).expect("hash")
}

pub(super) fn arbiter(
    k: &Arc<Kernel>,
    mode: Mode,
    rules: Vec<Rule>,
    deadline_ms: u64,
) -> Arbiter<Fake> {
    arbiter_with(k, mode, rules, deadline_ms, |_| {})
}

pub(super) fn arbiter_with(
    k: &Arc<Kernel>,
    mode: Mode,
    rules: Vec<Rule>,
    deadline_ms: u64,
    tune: impl FnOnce(&mut Options),
) -> Arbiter<Fake> {
    let mut opts = Options {
        deadline: Duration::from_millis(deadline_ms),
        workers: 2,
        deny_ttl: Duration::from_millis(1500),
        cache_entries: 100,
        self_pid: 999,
        kernel_cache: true,
        max_pending: 100,
        max_hash_bytes: 1 << 30,
    };
    tune(&mut opts);
    Arbiter::new(
        opts,
        mode,
        RuleSet::new(rules).expect("rules"),
        k.clone(),
        k.clone(),
    )
    .expect("arbiter")
}

pub(super) fn block(id: u64, data: &[u8]) -> Rule {
    Rule {
        id,
        target: Target::Sha256(sha_of(data)),
        policy: Policy::Block,
        comment: None,
        created: String::new(),
    }
}

impl Kernel {
    pub(super) fn held(self: &Arc<Self>, pid: i32, ino: u64, data: &[u8], delay_ms: u64) -> Fake {
        Fake {
            pid,
            key: key(ino),
            data: data.to_vec(),
            delay: Duration::from_millis(delay_ms),
            path: format!("/t/{ino}"),
            k: self.clone(),
            answered: false,
            change_on_ignore: Arc::new(AtomicBool::new(false)),
            mutable: false,
            access: Access::Exec,
        }
    }
    pub(super) fn wait_answers(&self, n: usize) -> Vec<(i32, Decision)> {
        let t0 = Instant::now();
        while lock(&self.answers).len() < n {
            assert!(t0.elapsed() < Duration::from_secs(10), "answers never came");
            std::thread::sleep(Duration::from_millis(2));
        }
        lock(&self.answers).clone()
    }
}

#[test]
fn block_rule_denies_and_unknown_allows_in_monitor() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![block(1, b"bad")], 2000);
    a.submit(k.held(10, 1, b"bad", 0));
    a.submit(k.held(11, 2, b"good", 0));
    let mut got = k.wait_answers(2);
    got.sort();
    assert_eq!(got, vec![(10, Decision::Deny), (11, Decision::Allow)]);
    // Only the clean allow gets a kernel ignore mark.
    assert_eq!(k.ignores.load(Ordering::SeqCst), 1);
    let ev = lock(&k.events).clone();
    let deny = ev.iter().find(|e| e.pid == 10).expect("event");
    assert_eq!(deny.rule_id, Some(1));
    assert_eq!(deny.sha256.as_deref(), Some(sha_of(b"bad").as_str()));
    assert_eq!(deny.ppid, Some(1));
}

#[test]
fn cache_hit_answers_without_hashing_and_logs_once_per_process() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![block(1, b"bad")], 2000);
    a.submit(k.held(10, 1, b"bad", 0));
    k.wait_answers(1);
    a.submit(k.held(10, 1, b"bad", 0));
    a.submit(k.held(10, 1, b"bad", 0));
    a.submit(k.held(12, 1, b"bad", 0));
    let got = k.wait_answers(4);
    assert!(got.iter().all(|&(_, d)| d == Decision::Deny));
    let s = a.stats();
    assert_eq!((s.hashed, s.cache_hits, s.cache_misses), (1, 3, 1));
    // pid 10 logged once (miss), pid 12 once (first hit).
    assert_eq!(lock(&k.events).len(), 2);
}

#[test]
fn concurrent_execs_of_one_file_hash_once() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 5000);
    for pid in 0..8 {
        a.submit(k.held(100 + pid, 7, b"same", 200));
    }
    let got = k.wait_answers(8);
    assert!(got.iter().all(|&(_, d)| d == Decision::Allow));
    assert_eq!(a.stats().hashed, 1);
    assert_eq!(
        k.reads.load(Ordering::SeqCst),
        8,
        "content opened per miss, hashed once"
    );
}

#[test]
fn slow_file_does_not_stall_others() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 5000);
    a.submit(k.held(1, 1, b"big", 1500));
    a.submit(k.held(2, 2, b"small", 0));
    let got = k.wait_answers(1);
    assert_eq!(got[0].0, 2, "the small file is answered first");
    k.wait_answers(2);
}

#[test]
fn deadline_falls_back_per_mode_and_is_counted() {
    for (mode, want) in [
        (Mode::Monitor, Decision::Allow),
        (Mode::Audit, Decision::Allow),
        (Mode::Lockdown, Decision::Deny),
    ] {
        let k = Arc::new(Kernel::default());
        let a = arbiter(&k, mode, vec![], 50);
        let t0 = Instant::now();
        a.submit(k.held(5, 1, b"x", 600));
        let got = k.wait_answers(1);
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "answered at the deadline"
        );
        assert_eq!(got, vec![(5, want)], "{mode}");
        assert_eq!(a.stats().deadline_fallbacks, 1);
        assert_eq!(lock(&k.events)[0].reason, Reason::Deadline);
        // The late hash result is still cached for the next exec.
        std::thread::sleep(Duration::from_millis(700));
        a.submit(k.held(6, 1, b"x", 0));
        k.wait_answers(2);
        assert_eq!(a.stats().cache_hits, 1);
    }
}

#[test]
fn stat_failure_is_answered_with_fallback() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    a.submit(k.held(5, 0, b"x", 0));
    assert_eq!(k.wait_answers(1), vec![(5, Decision::Deny)]);
    assert_eq!(a.stats().errors, 1);
    assert!(lock(&k.events)[0].error.is_some());
}

#[test]
fn own_pid_is_allowed_without_evaluation() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 2000);
    a.submit(k.held(999, 1, b"x", 0));
    assert_eq!(k.wait_answers(1), vec![(999, Decision::Allow)]);
    assert_eq!(a.stats().self_allowed, 1);
    assert!(lock(&k.events).is_empty());
}

#[test]
fn rule_and_mode_changes_flush_cache_and_marks() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    a.submit(k.held(1, 1, b"x", 0));
    k.wait_answers(1);
    assert_eq!(a.stats().ignore_marks, 1);
    a.set_rules(RuleSet::new(vec![block(1, b"x")]).expect("rules"));
    assert_eq!(k.flushes.load(Ordering::SeqCst), 1);
    assert_eq!(a.stats().ignore_marks, 0);
    a.submit(k.held(2, 1, b"x", 0));
    assert_eq!(k.wait_answers(2)[1], (2, Decision::Deny));
    assert_eq!(a.set_mode(Mode::Audit), Mode::Monitor);
    assert_eq!(k.flushes.load(Ordering::SeqCst), 2);
    a.submit(k.held(3, 1, b"x", 0));
    assert_eq!(k.wait_answers(3)[2], (3, Decision::Allow));
    let ev = lock(&k.events).clone();
    assert!(ev[2].would_deny, "audit logs the would-deny");
    assert_eq!(a.stats().hashed, 3, "every change forced a re-evaluation");
}

#[test]
fn shutdown_answers_everything_pending() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Lockdown, vec![], 60_000);
    for pid in 0..4 {
        a.submit(k.held(pid, 10 + pid as u64, b"slow", 2000));
    }
    std::thread::sleep(Duration::from_millis(50));
    a.shutdown();
    let got = k.wait_answers(4);
    assert!(got.iter().all(|&(_, d)| d == Decision::Deny));
    assert_eq!(a.stats().pending, 0);
}

/// Content that yields `chunks` MiB of zeros, one MiB per read, sleeping between reads.
struct Trickle {
    left: usize,
    key: FileKey,
}
impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(4));
        self.left -= 1;
        let n = buf.len().min(1 << 20);
        buf[..n].fill(0);
        Ok(n)
    }
}
impl Content for Trickle {
    fn key(&self) -> io::Result<FileKey> {
        Ok(self.key)
    }
}

/// A hold whose content trickles, for abandonment.
struct TrickleHeld(Fake, usize);
impl Held for TrickleHeld {
    fn pid(&self) -> i32 {
        self.0.pid()
    }
    fn key(&self) -> io::Result<FileKey> {
        self.0.key()
    }
    fn path(&self) -> Option<String> {
        self.0.path()
    }
    fn content(&self) -> io::Result<Box<dyn Content>> {
        Ok(Box::new(Trickle {
            left: self.1,
            key: self.0.key,
        }))
    }
    fn process(&self) -> ProcessInfo {
        self.0.process()
    }
    fn ignore(&self) -> io::Result<()> {
        self.0.ignore()
    }
    fn unignore(&self) {
        self.0.unignore()
    }
    fn answer(self, d: Decision) -> io::Result<()> {
        self.0.answer(d)
    }
}

#[test]
fn racy_allow_is_neither_cached_nor_marked_but_a_racy_deny_is_cached() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![block(1, b"bad")], 2000);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let fresh = |pid, ino, data: &[u8]| {
        let mut h = k.held(pid, ino, data, 0);
        h.key.ctime_ns = now;
        h
    };
    a.submit(fresh(1, 1, b"good"));
    k.wait_answers(1);
    a.submit(fresh(2, 1, b"good"));
    k.wait_answers(2);
    assert_eq!(
        k.ignores.load(Ordering::SeqCst),
        0,
        "no mark for a racy allow"
    );
    assert_eq!(a.stats().hashed, 2, "a racy allow is hashed every time");
    a.submit(fresh(3, 2, b"bad"));
    k.wait_answers(3);
    a.submit(fresh(4, 2, b"bad"));
    assert_eq!(k.wait_answers(4)[3], (4, Decision::Deny));
    assert_eq!(a.stats().cache_hits, 1, "a racy deny is cached");
}

#[test]
fn a_write_racing_the_mark_removes_it() {
    let k = Arc::new(Kernel::default());
    let a = arbiter(&k, Mode::Monitor, vec![], 2000);
    let h = k.held(1, 1, b"x", 0);
    h.change_on_ignore.store(true, Ordering::SeqCst);
    a.submit(h);
    assert_eq!(k.wait_answers(1), vec![(1, Decision::Allow)]);
    assert_eq!(
        k.ignores.load(Ordering::SeqCst),
        0,
        "mark placed and removed"
    );
    assert_eq!(a.stats().ignore_marks, 0);
}

#[test]
fn holds_beyond_the_cap_get_the_fallback_at_once() {
    let k = Arc::new(Kernel::default());
    // Two distinct files held: 2 holds + 2 in-flight hashes reach a cap of 4.
    let a = arbiter_with(&k, Mode::Lockdown, vec![], 5000, |o| o.max_pending = 4);
    a.submit(k.held(1, 1, b"a", 300));
    a.submit(k.held(2, 2, b"b", 300));
    a.submit(k.held(3, 3, b"c", 300));
    assert_eq!(
        k.wait_answers(1),
        vec![(3, Decision::Deny)],
        "third answered first"
    );
    assert_eq!(a.stats().overloaded, 1);
    assert_eq!(lock(&k.events)[0].reason, Reason::Overload);
    k.wait_answers(3);
}

#[test]
fn files_over_the_hash_limit_get_the_fallback_without_hashing() {
    let k = Arc::new(Kernel::default());
    let a = arbiter_with(&k, Mode::Monitor, vec![], 5000, |o| o.max_hash_bytes = 2);
    a.submit(k.held(1, 1, b"abc", 0));
    assert_eq!(k.wait_answers(1), vec![(1, Decision::Allow)]);
    assert_eq!((a.stats().hashed, a.stats().errors), (0, 1));
    let e = lock(&k.events)[0].clone();
    assert_eq!(e.reason, Reason::Error);
    assert!(e.error.unwrap().contains("hashing limit"));
}

#[test]
fn a_hash_nobody_waits_for_is_abandoned() {
    let k = Arc::new(Kernel::default());
    let a: Arbiter<TrickleHeld> = Arbiter::new(
        Options {
            deadline: Duration::from_millis(30),
            workers: 1,
            deny_ttl: Duration::from_millis(1500),
            cache_entries: 100,
            self_pid: 999,
            kernel_cache: true,
            max_pending: 100,
            max_hash_bytes: u64::MAX,
        },
        Mode::Monitor,
        RuleSet::default(),
        k.clone(),
        k.clone(),
    )
    .expect("arbiter");
    // 2 GiB at 1 MiB per 4 ms would take 8 s; the deadline answers after 30 ms.
    a.submit(TrickleHeld(k.held(1, 1, b"", 0), 2048));
    k.wait_answers(1);
    let t0 = Instant::now();
    while a.stats().abandoned == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "hash was not abandoned"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.stats().hashed, 0);
}

#[path = "arbiter_rep_tests.rs"]
mod rep;

#[path = "arbiter_load_tests.rs"]
mod load;
