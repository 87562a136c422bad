//! The table of holds: registering one with its deadline, taking holds off it to answer them,
//! and the deadline thread, which answers those still waiting with the mode's fallback.

use super::{lock, Held, Inner};
use crate::file::FileKey;
use custos_event::Reason;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(super) struct Pending<H> {
    pub(super) held: H,
    pub(super) key: FileKey,
}

pub(super) struct Holds<H> {
    pub(super) pending: HashMap<u64, Pending<H>>,
    pub(super) inflight: HashMap<FileKey, Vec<u64>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
}

impl<H> Holds<H> {
    pub(super) fn new() -> Holds<H> {
        Holds {
            pending: HashMap::new(),
            inflight: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_id: 0,
        }
    }
}

impl<H: Held> Inner<H> {
    /// Puts `held` on the table with its deadline. Returns its id when it is the first hold on
    /// `key` (a job is to read the file for it), `None` when a job for `key` is in flight
    /// already, and gives `held` back when the table is full.
    pub(super) fn hold(&self, held: H, key: FileKey) -> Result<Option<u64>, H> {
        let mut h = lock(&self.holds);
        // Each hold pins its event fd and each in-flight job a dup of one: bound both.
        if h.pending.len() + h.inflight.len() >= self.opts.max_pending {
            return Err(held);
        }
        let id = h.next_id;
        h.next_id += 1;
        let deadline = Instant::now() + self.opts.deadline;
        let earliest = h
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _))| deadline < *d);
        h.deadlines.push(Reverse((deadline, id)));
        h.pending.insert(id, Pending { held, key });
        if earliest {
            self.wake.notify_one();
        }
        Ok(match h.inflight.entry(key) {
            Entry::Occupied(mut e) => {
                e.get_mut().push(id);
                None
            }
            Entry::Vacant(e) => {
                e.insert(vec![id]);
                Some(id)
            }
        })
    }

    /// Takes every hold still waiting on `key` off the table (with its id) and retires the
    /// in-flight entry, so a later exec starts a fresh job.
    pub(super) fn take_waiting(&self, key: &FileKey) -> Vec<(u64, Pending<H>)> {
        let mut h = lock(&self.holds);
        let ids = h.inflight.remove(key).unwrap_or_default();
        ids.iter()
            .filter_map(|id| Some((*id, h.pending.remove(id)?)))
            .collect()
    }

    /// Empties the table (at shutdown) and returns the holds that were on it.
    pub(super) fn take_all(&self) -> Vec<Pending<H>> {
        let mut h = lock(&self.holds);
        h.inflight.clear();
        h.deadlines.clear();
        h.pending.drain().map(|(_, p)| p).collect()
    }

    pub(super) fn deadline_loop(&self) {
        let mut h = lock(&self.holds);
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            let mut expired = Vec::new();
            while let Some(Reverse((d, id))) = h.deadlines.peek().copied() {
                if d > now {
                    break;
                }
                h.deadlines.pop();
                if let Some(p) = h.pending.remove(&id) {
                    expired.push(p);
                }
            }
            if !expired.is_empty() {
                drop(h);
                for p in expired {
                    self.fallback_answer(p.held, Reason::Deadline, None);
                }
                h = lock(&self.holds);
                continue;
            }
            let wait = h
                .deadlines
                .peek()
                .map(|Reverse((d, _))| d.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1));
            h = self
                .wake
                .wait_timeout(h, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
