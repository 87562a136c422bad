//! Plain opens ([`Access::Load`]): a file that is no ELF image passes without a decision and
//! is remembered as such, and the plain open the kernel reports right after an exec allowed
//! without a kernel mark is that exec's open again, not judged twice.

use super::holds::Pending;
use super::{lock, racy, Held, Inner};
use crate::file::FileKey;
use crate::stats::Stats;
use custos_event::{Access, Decision};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bound of [`Inner::exec_allowed`]; entries are consumed at once, or are stale.
const EXEC_ALLOWED_MAX: usize = 4096;

impl<H: Held> Inner<H> {
    /// Whether `pid` was just allowed to exec the file `key` without a kernel mark, so this
    /// plain open is the same exec open reported again (consumes the record).
    pub(super) fn followed_exec(&self, key: FileKey, pid: i32) -> bool {
        let mut m = lock(&self.exec_allowed);
        if m.is_empty() {
            return false;
        }
        m.remove(&(key, pid))
            .is_some_and(|at| at.elapsed() < self.opts.deadline)
    }

    /// Records that `pid` was just allowed to exec the file `key` without a kernel mark (see
    /// [`Inner::followed_exec`]).
    pub(super) fn note_exec_allowed(&self, key: FileKey, pid: i32) {
        let mut m = lock(&self.exec_allowed);
        if m.len() >= EXEC_ALLOWED_MAX {
            m.clear();
        }
        m.insert((key, pid), Instant::now());
    }

    /// Lets a plain open of a file that is not an ELF image go: it loads nothing, so there is
    /// no decision and no event. With `markable` (its key is old enough to trust) the kernel
    /// stops reporting its plain opens until it is modified.
    pub(super) fn pass(&self, held: H, key: FileKey, markable: bool) {
        Stats::inc(&self.stats.other_opens);
        if self.opts.kernel_cache && markable && held.markable() {
            match held.ignore_opens() {
                // Written between our read and the mark: the mark would outlive the content.
                Ok(()) if held.key().ok() != Some(key) => held.unignore(),
                Ok(()) => {
                    self.stats.ignore_marks.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    Stats::inc(&self.stats.errors);
                    tracing::warn!(?key, "cannot place ignore mark: {e}");
                }
            }
        }
        self.answer_raw(held, Decision::Allow);
    }

    /// Remembers that `key` is not an ELF image (unless its key is too fresh to trust).
    pub(super) fn not_an_image(&self, key: FileKey) {
        if racy(&key) {
            return;
        }
        let mut set = lock(&self.not_images);
        if set.len() >= self.opts.cache_entries {
            set.clear();
        }
        set.insert(key);
    }

    /// The file behind `key` is no ELF image: lets every plain open waiting on it go (without a
    /// decision) and takes them off the table. Returns whether the job goes on: an exec waits
    /// for the verdict, or the job was started for one (`for_exec`: its result is cached even
    /// when that exec was answered by its deadline). If not, the in-flight entry is retired.
    pub(super) fn pass_loads(&self, key: &FileKey, racy: bool, for_exec: bool) -> bool {
        let (loads, go_on) = {
            let mut h = lock(&self.holds);
            let ids = h.inflight.remove(key).unwrap_or_default();
            let mut loads: Vec<Pending<H>> = Vec::new();
            let mut rest = Vec::new();
            let mut execs_wait = false;
            for id in ids {
                match h.pending.remove(&id) {
                    Some(p) if p.held.access() == Access::Load => loads.push(p),
                    Some(p) => {
                        h.pending.insert(id, p);
                        execs_wait = true;
                        rest.push(id);
                    }
                    // Answered by its deadline already.
                    None => rest.push(id),
                }
            }
            let go_on = execs_wait || for_exec;
            if go_on {
                h.inflight.insert(*key, rest);
            }
            (loads, go_on)
        };
        for p in loads {
            self.pass(p.held, p.key, !racy);
        }
        go_on
    }
}
