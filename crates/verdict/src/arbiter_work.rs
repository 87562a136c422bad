//! The hashing worker of the [`Arbiter`](super::Arbiter): read the file's header (a plain open
//! of anything but an ELF image passes there), hash it (or give up when nobody waits any more),
//! decide, cache, and answer every hold waiting on that file.

use super::answer::Answer;
use super::{lock, racy, Held, Inner, Snapshot};
use crate::cache::Cached;
use crate::engine::{evaluate_rep, fallback, trust_counts};
use crate::file::{is_image, read_head, read_while, FileKey, HEAD_LEN};
use crate::held::Content;
use crate::source::{Findings, Subject};
use crate::stats::Stats;
use custos_event::{Access, Decision, Reason};
use std::io::Read;
use std::time::Instant;

pub(super) struct Job {
    pub(super) key: FileKey,
    pub(super) content: Box<dyn Content>,
    pub(super) path: Option<String>,
    /// The hold the file is read for (`path` is its path).
    pub(super) leader: u64,
    /// How the leader uses it: a job for an exec is finished (and cached) even when its exec
    /// was answered by the deadline; one for a load only if the file is an image.
    pub(super) access: Access,
}

/// What is left of a job once its content is hashed and closed.
struct JobResult {
    key: FileKey,
    path: Option<String>,
    leader: u64,
}

impl<H: Held> Inner<H> {
    /// Worker: hash, decide, cache, answer every hold waiting on the key.
    pub(super) fn work(&self, job: Job) {
        let Job {
            key,
            mut content,
            path,
            leader,
            access,
        } = job;
        let racy = racy(&key);
        // What the file is decides whether a plain open of it is a load at all.
        let mut head = [0u8; HEAD_LEN];
        let n = match read_head(&mut content, &mut head) {
            Ok(n) => n,
            Err(e) => {
                for (_, p) in self.take_waiting(&key) {
                    self.fail(p.held, &e);
                }
                return;
            }
        };
        let image = is_image(&head[..n]);
        if !image {
            self.not_an_image(key);
            if !self.pass_loads(&key, racy, access == Access::Exec) {
                return;
            }
        } else if key.size > self.opts.max_hash_bytes {
            // Only loads get here (an exec of a file this large is answered before a job).
            let msg = format!(
                "file of {} bytes is over the hashing limit of {} bytes",
                key.size, self.opts.max_hash_bytes
            );
            for (_, p) in self.take_waiting(&key) {
                self.fallback_answer(p.held, Reason::Error, Some(msg.clone()));
            }
            return;
        }
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
        // The sources the read is for: MD5 and SHA-1 in the same read only when a source
        // needs them (package trust only for a listed path), the bytes only for a file small
        // enough for a content scan.
        let before = self.policy_snapshot();
        let trust = trust_counts(before.mode);
        let need = before.sources.need(path.as_deref(), trust);
        let mut stream = (&head[..n]).chain(&mut content);
        let read = read_while(
            &mut stream,
            need.want(),
            need.keep(key.size),
            &mut keep_going,
        );
        let hashed = match read {
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
        let mut job = JobResult { key, path, leader };
        // The sources are asked before the holds are taken off the table (a remote lookup or a
        // scan can take a while; the deadline thread answers anyone who cannot wait). A hash
        // rule decides without them.
        let findings = match &hashed {
            Ok((d, bytes)) if before.rules.lookup(Some(&d.sha256), None).is_none() => {
                let s = Subject::of(d, job.path.as_deref(), key.size, bytes.as_deref());
                before.sources.consult(&s, trust, false)
            }
            _ => Findings::default(),
        };
        // The freshest rules answer; a verdict is cached only if nothing changed while hashing
        // (the sources asked must be the ones in force).
        let Snapshot {
            mode,
            rules,
            generation,
            sources,
        } = self.policy_snapshot();
        let unchanged = generation == before.generation;
        let waiting = self.take_waiting(&job.key);
        let digests = match hashed {
            Ok((d, _)) => d,
            Err(e) => {
                for (_, p) in waiting {
                    self.fail(p.held, &e);
                }
                return;
            }
        };
        // Findings from sources no longer in force must not be named after the new ones.
        let sources = if unchanged { sources } else { before.sources };
        let md5 = digests.md5;
        let sha = digests.sha256;
        let verdict = evaluate_rep(
            &rules,
            mode,
            Some(&sha),
            job.path.as_deref(),
            findings.reputation(),
        );
        // A deny may be cached for a racy file (the worst case is a stale deny for the deny TTL);
        // an allow may not (see RACY_NS). A verdict that used an answer with a time limit (a
        // remote service's) is cached only that long, and never marked in the kernel.
        let allows = verdict.decision == Decision::Allow && !verdict.would_deny;
        let cacheable = stable && unchanged && !(racy && allows);
        let valid_for = findings.valid_for();
        let lasting = valid_for.is_none();
        let sha: std::sync::Arc<str> = sha.into();
        let findings = std::sync::Arc::new(findings);
        let rep_for = |p: Option<&str>| -> Option<Findings> {
            let s = Subject {
                sha256: &sha,
                md5: md5.as_ref(),
                sha1: None,
                path: p,
                size: key.size,
                content: None,
            };
            sources.rejudge(&findings, &s, trust)
        };
        if cacheable {
            let p = lock(&self.policy);
            if p.generation == generation {
                lock(&self.cache).insert(
                    job.key,
                    Cached {
                        verdict,
                        sha256: sha.clone(),
                        findings: findings.clone(),
                        md5,
                        generation,
                        until: valid_for.map(|d| Instant::now() + d),
                        image,
                    },
                    Instant::now(),
                );
            }
        }
        let mut leader_path = job.path.take();
        for (id, p) in waiting {
            if !image && p.held.access() == Access::Load {
                // Joined after the loads were let go, while an exec kept the hash going.
                self.pass(p.held, p.key, !racy && stable);
                continue;
            }
            // The hold the file was read for (it may have been answered by its deadline).
            let leader = id == job.leader;
            let path = if leader {
                leader_path.take()
            } else {
                p.held.path()
            };
            // Another path to the same file is judged for its own path. If that needs what was
            // not computed (an MD5, a scan), it gets the stricter of this verdict and the
            // mode's fallback; the file is read again next time.
            let again = (verdict.path_dependent && !leader)
                .then(|| rep_for(path.as_deref()))
                .flatten();
            let v = match &again {
                Some(f) => evaluate_rep(&rules, mode, Some(&sha), path.as_deref(), f.reputation()),
                None if verdict.path_dependent && !leader => {
                    let fb = fallback(mode, Reason::Error);
                    if verdict.decision == Decision::Deny || fb.decision == Decision::Allow {
                        verdict
                    } else {
                        fb
                    }
                }
                None => verdict,
            };
            let f = again
                .map(std::sync::Arc::new)
                .unwrap_or_else(|| findings.clone());
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
                    markable: !v.path_dependent && cacheable && lasting,
                    lasting,
                    mode,
                    generation,
                    path,
                    log: true,
                    findings: &f,
                    sources: &sources,
                },
            );
        }
    }

    /// After a worker panicked on `key`: answers whoever waits on it with the fallback, and
    /// retires the in-flight entry so the next exec starts afresh.
    pub(super) fn abandon(&self, key: FileKey) {
        Stats::inc(&self.stats.errors);
        tracing::error!(?key, "verdict worker panicked; answering with the fallback");
        for (_, p) in self.take_waiting(&key) {
            let msg = "internal error while judging this file".to_owned();
            self.fallback_answer(p.held, Reason::Error, Some(msg));
        }
    }
}
