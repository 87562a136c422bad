//! The process table: one entry per live (or recently exited) pid, kept from kernel records.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::{entity_id, procfs, ticks_from_ns, Process};

/// Most processes [`ProcessTable::lineage`] returns, the process itself included.
const MAX_LINEAGE: usize = 64;

/// When full with live processes, evict at least this fraction of the table at once, so a
/// process storm costs one O(n) pass per batch rather than per new process.
const EVICT_DIVISOR: usize = 16;

/// One entry: the process and when it was marked exited.
#[derive(Debug)]
struct Slot {
    process: Process,
    /// The sweep count when `process.exited` was set; meaningless while it is not.
    exited_at: u64,
}

impl Slot {
    fn new(process: Process) -> Slot {
        Slot {
            process,
            exited_at: 0,
        }
    }
}

/// Processes keyed by pid, with their lineage.
///
/// A record whose start time differs from the stored entry's is a new process that reused the
/// pid, and replaces it. Bounded by `max_entries`; see [`ProcessTable::on_exec`] for eviction.
#[derive(Debug)]
pub struct ProcessTable {
    boot_id: String,
    clk_tck: u64,
    max_entries: usize,
    entries: HashMap<u32, Slot>,
    /// How many sweeps have run; exited entries older than the previous sweep go.
    sweeps: u64,
}

impl ProcessTable {
    /// An empty table. `clk_tck` converts kernel ns to ticks (0 means 100); `max_entries` of 0
    /// is treated as 1, since every record must be able to return its entry.
    pub fn new(boot_id: String, clk_tck: u64, max_entries: usize) -> ProcessTable {
        ProcessTable {
            boot_id,
            clk_tck,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            sweeps: 0,
        }
    }

    /// Seeds from a /proc-like directory (numeric dirs with `stat`, `cmdline`, `exe` symlink).
    ///
    /// Unreadable/vanished entries are skipped, not errors; returns how many were added.
    /// Kernel threads (empty cmdline and no exe) are kept with executable `None`. An entry
    /// already known with the same start time is kept as is (kernel records are fresher).
    pub fn seed_from_proc(&mut self, proc_root: &Path) -> usize {
        let mut scanned = procfs::scan(proc_root);
        // Parents before children, so children share their parent's entity id allocation.
        scanned.sort_unstable_by_key(|e| (e.start_ticks, e.pid));
        let starts: HashMap<u32, u64> = scanned.iter().map(|e| (e.pid, e.start_ticks)).collect();
        let mut added = 0;
        for e in scanned {
            if self.is_same(e.pid, e.start_ticks) {
                continue;
            }
            let parent_ticks = starts
                .get(&e.ppid)
                .copied()
                .or_else(|| self.entries.get(&e.ppid).map(|s| s.process.start_ticks));
            let process = Process {
                pid: e.pid,
                start_ticks: e.start_ticks,
                entity_id: entity_id(&self.boot_id, e.start_ticks, e.pid).into(),
                ppid: e.ppid,
                parent_entity_id: parent_ticks.and_then(|t| self.parent_id(e.ppid, t)),
                executable: e.executable.map(Arc::from),
                args: e.args.map(Arc::from),
                exited: false,
            };
            self.put(process, |_, _| {});
            added += 1;
        }
        added
    }

    /// A process replaced its program (exec). Creates the entry if unknown. Start and parent
    /// start are in ns (converted with [`ticks_from_ns`]).
    ///
    /// Exec does not change the process identity: an entry with the same start keeps its
    /// entity id and gets the new executable, args and parent.
    ///
    /// Adding a pid to a full table first drops every exited entry (even ones a sweep would
    /// still keep); if it is still full, the oldest-started entries go, a batch at a time.
    /// Oldest because those are mostly boot-time kernel threads and daemons, whose records
    /// were seen long ago; the cost is that lineages may end early at an evicted ancestor.
    pub fn on_exec(
        &mut self,
        pid: u32,
        start_ns: u64,
        ppid: u32,
        parent_start_ns: u64,
        executable: &str,
        args: &[String],
    ) -> &Process {
        let start_ticks = ticks_from_ns(start_ns, self.clk_tck);
        let parent_ticks = ticks_from_ns(parent_start_ns, self.clk_tck);
        let process = Process {
            pid,
            start_ticks,
            entity_id: entity_id(&self.boot_id, start_ticks, pid).into(),
            ppid,
            parent_entity_id: self.parent_id(ppid, parent_ticks),
            executable: Some(executable.into()),
            args: (!args.is_empty()).then(|| args.into()),
            exited: false,
        };
        self.put(process, |old, new| {
            old.ppid = new.ppid;
            old.parent_entity_id = new.parent_entity_id;
            old.executable = new.executable;
            old.args = new.args;
        })
    }

    /// A new process (not a thread): the child inherits the parent's executable and args (if
    /// the parent is known with that start time).
    pub fn on_fork(
        &mut self,
        parent_pid: u32,
        parent_start_ns: u64,
        child_pid: u32,
        child_start_ns: u64,
    ) -> &Process {
        let start_ticks = ticks_from_ns(child_start_ns, self.clk_tck);
        let parent_ticks = ticks_from_ns(parent_start_ns, self.clk_tck);
        let parent = self
            .entries
            .get(&parent_pid)
            .map(|s| &s.process)
            .filter(|p| p.start_ticks == parent_ticks);
        let process = Process {
            pid: child_pid,
            start_ticks,
            entity_id: entity_id(&self.boot_id, start_ticks, child_pid).into(),
            ppid: parent_pid,
            parent_entity_id: self.parent_id(parent_pid, parent_ticks),
            executable: parent.and_then(|p| p.executable.clone()),
            args: parent.and_then(|p| p.args.clone()),
            exited: false,
        };
        // Already known (the child's exec was seen first): keep its own program, fill gaps.
        self.put(process, |old, new| {
            if old.executable.is_none() {
                old.executable = new.executable;
            }
            if old.args.is_none() {
                old.args = new.args;
            }
        })
    }

    /// The process ended: marked exited (kept so late events about it still resolve), removed
    /// by [`ProcessTable::sweep`] on a later call or when the table is full. Ignored when the
    /// start time does not match the stored entry (stale record about an earlier pid user).
    pub fn on_exit(&mut self, pid: u32, start_ns: u64) {
        let start_ticks = ticks_from_ns(start_ns, self.clk_tck);
        if let Some(slot) = self.entries.get_mut(&pid) {
            if slot.process.start_ticks == start_ticks && !slot.process.exited {
                slot.process.exited = true;
                slot.exited_at = self.sweeps;
            }
        }
    }

    /// Removes entries marked exited before the previous sweep (two-phase: exit -> survives
    /// one sweep -> gone), so late events still resolve. Returns how many were removed.
    pub fn sweep(&mut self) -> usize {
        let before = self.entries.len();
        let current = self.sweeps;
        self.entries
            .retain(|_, s| !(s.process.exited && s.exited_at < current));
        self.sweeps += 1;
        before - self.entries.len()
    }

    /// The entry for `pid`, exited or not.
    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.entries.get(&pid).map(|s| &s.process)
    }

    /// The process and its ancestors, nearest first, stopping at an unknown parent (or a pid
    /// now used by another process), after pid 0 or 1, at a cycle, or after 64 processes.
    pub fn lineage(&self, pid: u32) -> Vec<&Process> {
        let mut chain: Vec<&Process> = Vec::new();
        let mut next = self.get(pid);
        while let Some(process) = next {
            if chain.iter().any(|p| p.pid == process.pid) {
                break;
            }
            chain.push(process);
            if chain.len() >= MAX_LINEAGE || process.pid <= 1 {
                break;
            }
            let Some(parent_id) = &process.parent_entity_id else {
                break;
            };
            next = self
                .get(process.ppid)
                .filter(|parent| parent.entity_id == *parent_id);
        }
        chain
    }

    /// Live (not exited) processes, in no particular order.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.entries
            .values()
            .map(|s| &s.process)
            .filter(|p| !p.exited)
    }

    /// Live (not exited) entries. O(n): meant for metrics, not per event.
    pub fn live(&self) -> usize {
        self.entries.values().filter(|s| !s.process.exited).count()
    }

    /// All entries, exited ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `pid` is stored with this start time, i.e. is the same process.
    fn is_same(&self, pid: u32, start_ticks: u64) -> bool {
        self.entries
            .get(&pid)
            .is_some_and(|s| s.process.start_ticks == start_ticks)
    }

    /// The parent's entity id from its start time, shared with the parent's entry when that
    /// entry is the same process (same value either way, one allocation). `None` for ppid 0.
    fn parent_id(&self, ppid: u32, parent_ticks: u64) -> Option<Arc<str>> {
        if ppid == 0 {
            return None;
        }
        match self.entries.get(&ppid) {
            Some(s) if s.process.start_ticks == parent_ticks => Some(s.process.entity_id.clone()),
            _ => Some(entity_id(&self.boot_id, parent_ticks, ppid).into()),
        }
    }

    /// Stores `new`: merged into the entry when it is the same process, replacing it when the
    /// pid was reused, added (making room first) when the pid is new.
    fn put(&mut self, new: Process, merge: impl FnOnce(&mut Process, Process)) -> &Process {
        if !self.entries.contains_key(&new.pid) {
            self.make_room();
        }
        let slot = match self.entries.entry(new.pid) {
            Entry::Occupied(entry) => {
                let slot = entry.into_mut();
                if slot.process.start_ticks == new.start_ticks {
                    merge(&mut slot.process, new);
                } else {
                    *slot = Slot::new(new);
                }
                slot
            }
            Entry::Vacant(entry) => entry.insert(Slot::new(new)),
        };
        &slot.process
    }

    /// Frees at least one place when the table is full: exited entries first, then the
    /// oldest-started ones (see [`ProcessTable::on_exec`]).
    fn make_room(&mut self) {
        if self.entries.len() < self.max_entries {
            return;
        }
        self.entries.retain(|_, s| !s.process.exited);
        let len = self.entries.len();
        if len < self.max_entries {
            return;
        }
        let count = (len + 1 - self.max_entries)
            .max(self.max_entries / EVICT_DIVISOR)
            .min(len);
        let mut by_age: Vec<(u64, u32)> = self
            .entries
            .values()
            .map(|s| (s.process.start_ticks, s.process.pid))
            .collect();
        by_age.select_nth_unstable(count - 1);
        for (_, pid) in &by_age[..count] {
            self.entries.remove(pid);
        }
        tracing::warn!(
            evicted = count,
            max_entries = self.max_entries,
            "process table full of live processes; evicted the oldest"
        );
    }
}

#[cfg(test)]
mod tests;
