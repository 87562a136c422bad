//! The hashing worker of the [`Arbiter`](super::Arbiter): hash one file (or give up when nobody
//! waits any more), decide, cache, and answer every hold waiting on that file.

use super::{lock, wall_ns, Answer, Held, Inner, Job, JobResult, Pending, Snapshot, RACY_NS};
use crate::cache::Cached;
use crate::engine::{evaluate_rep, trusted, Reputation};
use crate::file::{digests_while, Want};
use crate::stats::Stats;
use custos_event::Decision;
use std::time::Instant;

impl<H: Held> Inner<H> {
    /// Worker: hash, decide, cache, answer every hold waiting on the key.
    pub(super) fn work(&self, job: Job) {
        let Job {
            key,
            mut content,
            path,
        } = job;
        let racy = key.ctime_ns >= wall_ns() - RACY_NS;
        // Give up as soon as nobody waits for this hash any more (all answered by the deadline),
        // so huge files cannot keep the pool busy for nothing. Checked under the holds lock,
        // which also retires the in-flight entry so a later exec starts a fresh job.
        // A file slower to hash than the deadline still gets a cached result once, if it can be
        // hashed within twice the deadline; past that, a hash nobody waits for is dropped.
        let started = Instant::now();
        let grace = self.opts.deadline * 2;
        let mut keep_going = || {
            if started.elapsed() < grace {
                return true;
            }
            let mut h = lock(&self.holds);
            let waiting = h
                .inflight
                .get(&key)
                .is_some_and(|ids| ids.iter().any(|id| h.pending.contains_key(id)));
            if !waiting {
                h.inflight.remove(&key);
            }
            waiting
        };
        // The sources the digests are computed for. MD5 and SHA-1 only when a feed lists any,
        // in the same read.
        let before = self.policy_snapshot();
        let (known_bad, known_good) = (before.known_bad, before.known_good);
        let mut want = known_bad.as_ref().map_or(Want::default(), |k| k.want());
        // Package trust needs the MD5 only for a listed path.
        want.md5 |= known_good
            .as_ref()
            .zip(path.as_deref())
            .is_some_and(|(g, p)| g.listed(p));
        let hashed = match digests_while(&mut content, want, &mut keep_going) {
            Ok(None) => {
                Stats::inc(&self.stats.abandoned);
                return;
            }
            Ok(Some(d)) => Ok(d),
            Err(e) => Err(e),
        };
        Stats::inc(&self.stats.hashed);
        let stable = content.key().ok() == Some(key);
        // Close our handle before answering: once the exec is answered nothing of ours may keep
        // the file (or its filesystem, for umount) busy.
        drop(content);
        let mut job = JobResult { key, path };
        // The freshest rules answer; a verdict is cached only if nothing changed while hashing
        // (the sources above must be the ones in force).
        let Snapshot {
            mode,
            rules,
            generation,
            ..
        } = self.policy_snapshot();
        let unchanged = generation == before.generation;
        let waiting: Vec<Pending<H>> = {
            let mut h = lock(&self.holds);
            let ids = h.inflight.remove(&job.key).unwrap_or_default();
            ids.iter().filter_map(|id| h.pending.remove(id)).collect()
        };
        let digests = match hashed {
            Ok(d) => d,
            Err(e) => {
                for p in waiting {
                    self.fail(p.held, &e);
                }
                return;
            }
        };
        let bad = known_bad.as_ref().and_then(|k| k.lookup(&digests));
        let md5 = digests.md5;
        let sha = digests.sha256;
        let rep_for = |p: Option<&str>| Reputation {
            known_bad: bad,
            trusted: trusted(known_good.as_deref(), p, md5.as_ref()),
        };
        let verdict = evaluate_rep(
            &rules,
            mode,
            Some(&sha),
            job.path.as_deref(),
            rep_for(job.path.as_deref()),
        );
        // A deny may be cached for a racy file (the worst case is a stale deny for the deny TTL);
        // an allow may not (see RACY_NS).
        let allows = verdict.decision == Decision::Allow && !verdict.would_deny;
        let cacheable = stable && unchanged && !(racy && allows);
        let sha: std::sync::Arc<str> = sha.into();
        if cacheable {
            let p = lock(&self.policy);
            if p.generation == generation {
                lock(&self.cache).insert(
                    job.key,
                    Cached {
                        verdict,
                        sha256: sha.clone(),
                        known_bad: bad,
                        md5,
                    },
                    Instant::now(),
                );
            }
        }
        let mut leader_path = job.path.take();
        for (i, p) in waiting.into_iter().enumerate() {
            let path = if i == 0 {
                leader_path.take()
            } else {
                p.held.path()
            };
            let v = if verdict.path_dependent {
                evaluate_rep(
                    &rules,
                    mode,
                    Some(&sha),
                    path.as_deref(),
                    rep_for(path.as_deref()),
                )
            } else {
                verdict
            };
            self.first_sight(p.key, p.held.pid());
            self.conclude(
                p.held,
                Answer {
                    key: p.key,
                    verdict: v,
                    sha256: Some(&sha),
                    cached: false,
                    // A file changed while being read (or too recently to tell) was judged on
                    // what was read, but gets no mark.
                    markable: !v.path_dependent && cacheable,
                    mode,
                    generation,
                    path,
                    log: true,
                },
            );
        }
    }
}
