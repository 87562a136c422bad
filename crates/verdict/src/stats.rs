//! Counters shown by `custos status`.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters (relaxed atomics: they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) allowed: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) would_deny: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) hashed: AtomicU64,
    pub(crate) ignore_marks: AtomicU64,
    pub(crate) deadline_fallbacks: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) self_allowed: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) loads_allowed: AtomicU64,
    pub(crate) loads_denied: AtomicU64,
    pub(crate) other_opens: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Execs allowed (including audit-mode would-denies).
    pub allowed: u64,
    /// Execs denied.
    pub denied: u64,
    /// Image loads (plain opens of ELF images, lockdown with `[exec] images`) allowed.
    #[serde(default)]
    pub loads_allowed: u64,
    /// Image loads denied.
    #[serde(default)]
    pub loads_denied: u64,
    /// Plain opens of files that are not ELF images: passed without a decision.
    #[serde(default)]
    pub other_opens: u64,
    /// Audit mode: execs that enforcing would have denied.
    pub would_deny: u64,
    /// Decisions answered from the user-space cache.
    pub cache_hits: u64,
    /// Decisions that needed a hash.
    pub cache_misses: u64,
    /// Files hashed.
    pub hashed: u64,
    /// Kernel ignore marks placed since the last flush.
    pub ignore_marks: u64,
    /// Holds answered by the deadline fallback.
    pub deadline_fallbacks: u64,
    /// Failures (stat, read, answer, mark); each was still answered.
    pub errors: u64,
    /// The agent's own accesses, allowed without evaluation.
    pub self_allowed: u64,
    /// Holds answered at once with the fallback because too many were pending.
    pub overloaded: u64,
    /// Hashes given up because every exec waiting for them had already been answered.
    pub abandoned: u64,
    /// Execs and loads held right now.
    pub pending: u64,
}

impl Stats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self, pending: u64) -> StatsSnapshot {
        StatsSnapshot {
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.load(Relaxed),
            would_deny: self.would_deny.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            hashed: self.hashed.load(Relaxed),
            ignore_marks: self.ignore_marks.load(Relaxed),
            deadline_fallbacks: self.deadline_fallbacks.load(Relaxed),
            errors: self.errors.load(Relaxed),
            self_allowed: self.self_allowed.load(Relaxed),
            overloaded: self.overloaded.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
            loads_allowed: self.loads_allowed.load(Relaxed),
            loads_denied: self.loads_denied.load(Relaxed),
            other_opens: self.other_opens.load(Relaxed),
            pending,
        }
    }
}
