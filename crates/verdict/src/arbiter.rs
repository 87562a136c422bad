//! Holding execs until they are judged, and answering each exactly once by its deadline.
//!
//! Flow for one held exec: the agent's own pid is allowed at once; otherwise the file key is
//! looked up in the cache (a hit is answered on the caller's thread); a miss registers the hold
//! with a deadline and, unless the same key is already being hashed, queues a job for the worker
//! pool. When the hash is done every hold waiting on that key is answered. A deadline thread
//! answers holds that are still waiting with the mode's fallback. A hold is removed from the
//! pending table before it is answered, under one lock, so nothing answers twice and nothing is
//! forgotten; [`Arbiter::shutdown`] answers whatever is left.
//!
//! A load (a plain open, [`custos_event::Access::Load`]) takes the same path, except that it
//! is only judged when the file is an ELF image: the worker reads the header first, and a plain
//! open of anything else passes without a decision. Whether a file is an image is remembered
//! per file key, with its verdict or on its own.

use crate::cache::Cache;
use crate::engine::{evaluate_rep, trust_counts};
use crate::file::FileKey;
pub use crate::held::{Content, Held, Marks, ProcessInfo, Sink};
use crate::rules::RuleSet;
use crate::source::{Sources, Subject};
use crate::stats::{Stats, StatsSnapshot};
use answer::Answer;
use custos_event::{Access, Decision, Mode, Reason};
use holds::Holds;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use work::Job;

/// Tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long an exec may be held.
    pub deadline: Duration,
    /// Hashing threads.
    pub workers: usize,
    /// Lifetime of a cached deny.
    pub deny_ttl: Duration,
    /// Cache bound.
    pub cache_entries: usize,
    /// The agent's own pid: always allowed, never evaluated.
    pub self_pid: i32,
    /// Place kernel ignore marks after clean allows.
    pub kernel_cache: bool,
    /// Holds plus in-flight hashes beyond this many are answered at once with the fallback
    /// (each pins an fd).
    pub max_pending: usize,
    /// Files larger than this are not hashed; the fallback applies.
    pub max_hash_bytes: u64,
}

/// A file whose ctime is this close to "now" may still change within the same timestamp tick
/// without changing its key (coarse clocks, 2 s FAT times), so an allow for it is neither cached
/// nor marked — git's "racy timestamp" rule.
pub const RACY_NS: i128 = 2_000_000_000;

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The file changed too recently to trust its key (see [`RACY_NS`]).
fn racy(key: &FileKey) -> bool {
    key.ctime_ns >= wall_ns() - RACY_NS
}

struct PolicyState {
    mode: Mode,
    rules: Arc<RuleSet>,
    /// Reputation sources, in the order they are asked.
    sources: Arc<Sources>,
    /// Bumped by every mode or rule change; results computed under an older generation are
    /// neither cached nor marked.
    generation: u64,
}

/// The policy in force at one moment (see [`Inner::policy_snapshot`]).
struct Snapshot {
    mode: Mode,
    rules: Arc<RuleSet>,
    generation: u64,
    sources: Arc<Sources>,
}

struct Inner<H> {
    opts: Options,
    policy: Mutex<PolicyState>,
    cache: Mutex<Cache>,
    holds: Mutex<Holds<H>>,
    wake: Condvar,
    logged: Mutex<HashSet<(FileKey, i32)>>,
    /// Files known not to be ELF images (plain opens of them pass), whatever the policy.
    not_images: Mutex<HashSet<FileKey>>,
    /// Execs just allowed without a kernel mark, by (file, pid): the kernel reports the same
    /// open again as a plain open right after, which must not be judged and logged twice.
    exec_allowed: Mutex<HashMap<(FileKey, i32), Instant>>,
    stats: Stats,
    sink: Arc<dyn Sink>,
    marks: Arc<dyn Marks>,
    shutdown: AtomicBool,
}

/// The hold/decide/answer machine. See the module docs.
pub struct Arbiter<H: Held> {
    inner: Arc<Inner<H>>,
    jobs: Mutex<Option<crossbeam_channel::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop answering execs.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<H: Held> Arbiter<H> {
    /// Starts the worker pool and the deadline thread.
    pub fn new(
        opts: Options,
        mode: Mode,
        rules: RuleSet,
        sink: Arc<dyn Sink>,
        marks: Arc<dyn Marks>,
    ) -> io::Result<Arbiter<H>> {
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache::new(opts.deny_ttl, opts.cache_entries)),
            opts,
            policy: Mutex::new(PolicyState {
                mode,
                rules: Arc::new(rules),
                sources: Arc::default(),
                generation: 0,
            }),
            holds: Mutex::new(Holds::new()),
            wake: Condvar::new(),
            logged: Mutex::new(HashSet::new()),
            not_images: Mutex::new(HashSet::new()),
            exec_allowed: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            sink,
            marks,
            shutdown: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut threads = Vec::new();
        for i in 0..inner.opts.workers.max(1) {
            let (inner, rx) = (inner.clone(), rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("custos-hash-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            // A panic (a bug, or a source's parser on a crafted file) must not
                            // take the thread, or the execs waiting on this file, with it.
                            let key = job.key;
                            let run = std::panic::AssertUnwindSafe(|| inner.work(job));
                            if std::panic::catch_unwind(run).is_err() {
                                inner.abandon(key);
                            }
                        }
                    })?,
            );
        }
        let d = inner.clone();
        threads.push(
            std::thread::Builder::new()
                .name("custos-deadline".into())
                .spawn(move || d.deadline_loop())?,
        );
        Ok(Arbiter {
            inner,
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Takes one held exec or load. Returns quickly: reading the file (its header, its hash)
    /// happens on the pool.
    pub fn submit(&self, held: H) {
        let inner = &self.inner;
        if inner.shutdown.load(Ordering::SeqCst) {
            // No workers or deadline thread any more: answer now.
            return inner.fallback_answer(held, Reason::Shutdown, None);
        }
        if held.pid() == inner.opts.self_pid {
            Stats::inc(&inner.stats.self_allowed);
            inner.answer_raw(held, Decision::Allow);
            return;
        }
        let key = match held.key() {
            Ok(k) => k,
            Err(e) => return inner.fail(held, &e),
        };
        let load = held.access() == Access::Load;
        if load && inner.followed_exec(key, held.pid()) {
            // The plain-open report of an exec open just allowed: the same open, once more.
            return inner.answer_raw(held, Decision::Allow);
        }
        if load && lock(&inner.not_images).contains(&key) {
            return inner.pass(held, key, true);
        }
        let Snapshot {
            mode,
            rules,
            generation,
            sources,
        } = inner.policy_snapshot();
        let hit = lock(&inner.cache)
            .get(&key, Instant::now())
            .filter(|c| c.generation == generation);
        if load && hit.as_ref().is_some_and(|c| !c.image) {
            // Judged when it was exec'd (a script, say), but it is no image to load.
            return inner.pass(held, key, !racy(&key));
        }
        let trust = trust_counts(mode);
        // A path-dependent hit is judged again for this path, which is read once: per-path
        // sources (package trust) are asked again, the others' answers are reused. If that
        // needs what was not computed then (an MD5, a source not asked), the file is read again.
        let hit = hit.and_then(|c| {
            if !c.verdict.path_dependent {
                let findings = c.findings.clone();
                return Some((c.verdict, None, findings, c));
            }
            let path = held.path();
            let s = Subject {
                sha256: &c.sha256,
                md5: c.md5.as_ref(),
                sha1: None,
                path: path.as_deref(),
                size: key.size,
                content: None,
            };
            let f = sources.rejudge(&c.findings, &s, trust)?;
            let v = evaluate_rep(
                &rules,
                mode,
                Some(&c.sha256),
                path.as_deref(),
                f.reputation(),
            );
            Some((v, path, Arc::new(f), c))
        });
        if let Some((verdict, path, findings, c)) = hit {
            Stats::inc(&inner.stats.cache_hits);
            let log = inner.first_sight(key, held.pid());
            let path = if log && path.is_none() {
                held.path()
            } else {
                path
            };
            inner.conclude(
                held,
                Answer {
                    key,
                    verdict,
                    sha256: Some(&c.sha256),
                    cached: true,
                    markable: !verdict.path_dependent && c.until.is_none(),
                    lasting: c.until.is_none(),
                    mode,
                    generation,
                    path,
                    log,
                    findings: &findings,
                    sources: &sources,
                },
            );
            return;
        }
        Stats::inc(&inner.stats.cache_misses);
        // For a load the header decides first whether there is anything to hash (the worker
        // checks the size after it).
        if !load && key.size > inner.opts.max_hash_bytes {
            let msg = format!(
                "file of {} bytes is over the hashing limit of {} bytes",
                key.size, inner.opts.max_hash_bytes
            );
            return inner.fallback_answer(held, Reason::Error, Some(msg));
        }
        let (content, path) = match held.content() {
            Ok(c) => (c, held.path()),
            Err(e) => return inner.fail(held, &e),
        };
        let leader = match inner.hold(held, key) {
            Ok(leader) => leader,
            Err(held) => return inner.fallback_answer(held, Reason::Overload, None),
        };
        if let Some(leader) = leader {
            if let Some(tx) = lock(&self.jobs).as_ref() {
                // A send error means shutdown; the hold is answered there.
                let _ = tx.send(Job {
                    key,
                    content,
                    path,
                    leader,
                    access: if load { Access::Load } else { Access::Exec },
                });
            }
        }
    }

    /// Current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.inner.policy).mode
    }

    /// Current rules.
    pub fn rules(&self) -> Arc<RuleSet> {
        lock(&self.inner.policy).rules.clone()
    }

    /// Changes the mode; flushes the cache and the kernel ignore marks. Returns the old mode.
    pub fn set_mode(&self, mode: Mode) -> Mode {
        let mut p = lock(&self.inner.policy);
        let old = std::mem::replace(&mut p.mode, mode);
        self.inner.invalidate(&mut p);
        old
    }

    /// Replaces the reputation sources; flushes the cache and the kernel marks.
    pub fn set_sources(&self, sources: Sources) {
        let mut p = lock(&self.inner.policy);
        p.sources = Arc::new(sources);
        self.inner.invalidate(&mut p);
    }

    /// The reputation sources in force.
    pub fn sources(&self) -> Arc<Sources> {
        lock(&self.inner.policy).sources.clone()
    }

    /// Replaces the rules; flushes the cache and the kernel ignore marks.
    pub fn set_rules(&self, rules: RuleSet) {
        let mut p = lock(&self.inner.policy);
        p.rules = Arc::new(rules);
        self.inner.invalidate(&mut p);
    }

    /// Counters, with the number of holds pending now.
    pub fn stats(&self) -> StatsSnapshot {
        let pending = lock(&self.inner.holds).pending.len() as u64;
        self.inner.stats.snapshot(pending)
    }

    /// Stops the workers and answers every pending hold with the mode's fallback.
    /// Workers busy hashing are not waited for.
    pub fn shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        lock(&self.jobs).take();
        self.inner.wake.notify_all();
        for p in self.inner.take_all() {
            self.inner.fallback_answer(p.held, Reason::Shutdown, None);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl<H: Held> Drop for Arbiter<H> {
    fn drop(&mut self) {
        if !self.inner.shutdown.load(Ordering::SeqCst) {
            self.shutdown();
        }
    }
}

impl<H: Held> Inner<H> {
    /// Everything a verdict depends on, under one lock.
    fn policy_snapshot(&self) -> Snapshot {
        let p = lock(&self.policy);
        Snapshot {
            mode: p.mode,
            rules: p.rules.clone(),
            generation: p.generation,
            sources: p.sources.clone(),
        }
    }

    fn invalidate(&self, p: &mut PolicyState) {
        p.generation += 1;
        lock(&self.cache).clear();
        lock(&self.logged).clear();
        lock(&self.exec_allowed).clear();
        if let Err(e) = self.marks.flush_ignores() {
            Stats::inc(&self.stats.errors);
            tracing::error!("cannot flush kernel ignore marks: {e}");
        }
        self.stats.ignore_marks.store(0, Ordering::Relaxed);
    }
}

#[path = "arbiter_answer.rs"]
mod answer;

#[path = "arbiter_holds.rs"]
mod holds;

#[path = "arbiter_load.rs"]
mod load;

#[path = "arbiter_work.rs"]
mod work;

#[cfg(test)]
#[path = "arbiter_tests.rs"]
mod tests;
