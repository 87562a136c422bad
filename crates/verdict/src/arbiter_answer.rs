//! Answering holds: with a computed verdict (kernel marks, counters, the decision event) or
//! with the mode's fallback; each file is logged once per process.

use super::{lock, Held, Inner};
use crate::engine::{fallback, Verdict};
use crate::file::FileKey;
use crate::source::{Findings, Sources};
use crate::stats::Stats;
use custos_event::{Access, Decision, ExecEvent, Mode, Reason, SourceRef};
use std::io;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// A computed verdict on its way to one hold.
pub(super) struct Answer<'a> {
    pub(super) key: FileKey,
    pub(super) verdict: Verdict,
    pub(super) sha256: Option<&'a str>,
    /// Answered from the user-space cache.
    pub(super) cached: bool,
    /// A kernel ignore mark may follow an allow: the verdict holds for every path to this
    /// content, and the content was stable and old enough to trust its key (see `RACY_NS`).
    pub(super) markable: bool,
    /// The verdict does not expire on its own (no answer with a time limit went into it): a
    /// deny may be remembered in the kernel.
    pub(super) lasting: bool,
    pub(super) mode: Mode,
    pub(super) generation: u64,
    pub(super) path: Option<String>,
    /// Write a decision event.
    pub(super) log: bool,
    /// The answers of the sources, to name the one that decided.
    pub(super) findings: &'a Findings,
    /// The sources they came from.
    pub(super) sources: &'a Sources,
}

const LOGGED_MAX: usize = 65_536;

impl<H: Held> Inner<H> {
    /// Records (key, pid) as logged; true the first time.
    pub(super) fn first_sight(&self, key: FileKey, pid: i32) -> bool {
        let mut l = lock(&self.logged);
        if l.len() >= LOGGED_MAX {
            l.clear();
        }
        l.insert((key, pid))
    }

    pub(super) fn answer_raw(&self, held: H, decision: Decision) {
        if let Err(e) = held.answer(decision) {
            Stats::inc(&self.stats.errors);
            tracing::error!("cannot answer the kernel: {e}");
        }
    }

    /// Answers a hold with the mode's fallback, counted by reason, with an event.
    pub(super) fn fallback_answer(&self, held: H, reason: Reason, error: Option<String>) {
        match reason {
            Reason::Error => Stats::inc(&self.stats.errors),
            Reason::Deadline => Stats::inc(&self.stats.deadline_fallbacks),
            Reason::Overload => Stats::inc(&self.stats.overloaded),
            _ => {}
        }
        let mode = lock(&self.policy).mode;
        let verdict = fallback(mode, reason);
        let path = held.path();
        tracing::warn!(
            pid = held.pid(),
            ?path,
            ?reason,
            ?error,
            "fallback: {:?}",
            verdict.decision
        );
        let mut ev = self.event(&held, verdict, None, false, mode, path);
        ev.error = error;
        self.count(&verdict, held.access());
        self.answer_raw(held, verdict.decision);
        self.sink.emit(ev);
    }

    /// Answers a hold that could not be examined.
    pub(super) fn fail(&self, held: H, err: &io::Error) {
        self.fallback_answer(held, Reason::Error, Some(err.to_string()));
    }

    fn count(&self, v: &Verdict, access: Access) {
        let s = &self.stats;
        Stats::inc(match (access, v.decision) {
            (Access::Exec, Decision::Allow) => &s.allowed,
            (Access::Exec, Decision::Deny) => &s.denied,
            (Access::Load, Decision::Allow) => &s.loads_allowed,
            (Access::Load, Decision::Deny) => &s.loads_denied,
        });
        if v.would_deny {
            Stats::inc(&self.stats.would_deny);
        }
    }

    fn event(
        &self,
        held: &H,
        v: Verdict,
        sha256: Option<&str>,
        cached: bool,
        mode: Mode,
        path: Option<String>,
    ) -> ExecEvent {
        let info = held.process();
        let access = held.access();
        ExecEvent {
            access,
            opener: (access == Access::Load).then(|| held.opener()).flatten(),
            timestamp: custos_event::timestamp(SystemTime::now()),
            decision: v.decision,
            would_deny: v.would_deny,
            reason: v.reason,
            rule_id: v.rule_id,
            mode,
            cached,
            pid: held.pid(),
            ppid: info.ppid,
            uid: info.uid,
            executable: path,
            sha256: sha256.map(str::to_owned),
            error: None,
            source: None,
        }
    }

    /// Answers one hold with a computed verdict: ignore mark for a clean allow, counters, event.
    pub(super) fn conclude(&self, held: H, a: Answer<'_>) {
        let Answer {
            key,
            verdict: mut v,
            sha256,
            cached,
            markable,
            mode,
            generation,
            path,
            log,
            findings,
            sources,
            lasting,
        } = a;
        if v.decision == Decision::Allow && held.mutable() {
            let f = fallback(mode, Reason::Mutable);
            if f.decision == Decision::Deny {
                v = f;
            }
        }
        if v.decision == Decision::Deny && !v.path_dependent && lasting {
            let p = lock(&self.policy);
            if p.generation == generation {
                held.remember_deny(&key);
            }
        }
        let mut marked = false;
        if self.opts.kernel_cache
            && markable
            && held.markable()
            && v.decision == Decision::Allow
            && !v.would_deny
        {
            // Under the policy lock so a concurrent rule change cannot flush before we mark.
            let p = lock(&self.policy);
            if p.generation == generation {
                match held.ignore() {
                    // A write between our key check and the mark would not clear the mark (it
                    // did not exist yet): check the key again now that it does.
                    Ok(()) if held.key().ok() != Some(key) => held.unignore(),
                    Ok(()) => {
                        marked = true;
                        self.stats.ignore_marks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        Stats::inc(&self.stats.errors);
                        tracing::warn!(?key, "cannot place ignore mark: {e}");
                    }
                }
            }
        }
        let ev = log.then(|| {
            let source = v.source.and_then(|i| {
                Some(SourceRef {
                    name: sources.name(i)?.to_owned(),
                    detail: findings.get(i)?.detail.clone(),
                })
            });
            let mut ev = self.event(&held, v, sha256, cached, mode, path);
            ev.source = source;
            ev
        });
        if v.decision == Decision::Allow && !marked && held.access() == Access::Exec {
            self.note_exec_allowed(key, held.pid());
        }
        if held.access() == Access::Exec {
            let trusted = v.decision == Decision::Allow
                && !v.would_deny
                && matches!(
                    v.reason,
                    Reason::BinaryRule | Reason::PathRule | Reason::KnownGood
                );
            self.sink.judged(&key, trusted);
        }
        self.count(&v, held.access());
        self.answer_raw(held, v.decision);
        if let Some(ev) = ev {
            self.sink.emit(ev);
        }
    }
}
