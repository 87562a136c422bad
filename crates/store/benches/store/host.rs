//! A simulated host: the stream of ECS events the agent would emit over a day, built with the
//! custos-event structs, one at a time (memory stays small whatever N is).
//!
//! The mix: ~62 % image loads, ~25 % process events (fork, exec with args, exit; entity ids
//! and parents, so trees work), ~10 % exec decisions with SHA-256 (~3 % of them denies),
//! ~3 % injection. About 2,500 distinct paths; pids cycle through 300..32768 as on a host
//! with the classic `pid_max`. Timestamps are spread evenly over the 24 h before the start.
//! The same seed gives the same stream, so every phase of the benchmark writes the same events.

use crate::pools::{Pools, Rng, CORE, SPAWNERS};
use custos_event::{
    Decision, ExecEvent, ImageEvent, InjectEvent, Mode, ProcessAction, ProcessEvent, ProcessRef,
    Reason, SourceRef,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, UNIX_EPOCH};

const BOOT: &str = "6a1c3f0e-8b52-4d7a-9e61-2f4b8c0d9a17";
/// Pids are allocated from here (lower ones belong to the long-lived processes) …
pub const FIRST_PID: u32 = 300;
/// … up to the classic `pid_max`.
const PID_MAX: u32 = 32_768;
const NONE: u32 = u32::MAX;

/// What the stream contained, to pick query arguments and to check the answers.
pub struct Stats {
    /// image, process, exec, injection.
    pub kinds: [u64; 4],
    /// Deny decisions.
    pub denies: u64,
    /// Events per pid.
    pub per_pid: Vec<u32>,
    /// Children forked by the latest process with each pid.
    pub children: Vec<u32>,
    /// Events per library path.
    pub per_lib: Vec<u32>,
    /// Decisions per program (so: events with its SHA-256).
    pub per_sha: Vec<u32>,
}

impl Stats {
    /// The pid whose latest process forked most, among those not in `CORE`, and the pid of
    /// the busiest interactive shell (a tree of thousands).
    pub fn tree_pids(&self) -> (u32, u32) {
        let pid = (FIRST_PID..PID_MAX)
            .max_by_key(|p| self.children[*p as usize])
            .unwrap_or(FIRST_PID);
        (pid, CORE[10].0)
    }
}

struct Proc {
    pid: u32,
    entity: String,
    exe: usize,
    ppid: u32,
    parent: Option<String>,
    core: bool,
}

/// The simulation.
pub struct Host<'a> {
    pools: &'a Pools,
    rng: Rng,
    n: u64,
    i: u64,
    t0_us: u64,
    procs: Vec<Proc>,
    /// pid → index in `procs`.
    slot: Vec<u32>,
    /// Recently exec'd: where image loads and decisions mostly come from.
    recent: VecDeque<u32>,
    /// Forked, not exec'd yet.
    pending: Vec<u32>,
    next_pid: u32,
    pub stats: Stats,
}

impl<'a> Host<'a> {
    /// `n` events, the last one at `end_us` (µs since the epoch), the first 24 h before.
    pub fn new(pools: &'a Pools, n: u64, end_us: u64) -> Host<'a> {
        Host {
            pools,
            rng: Rng::new(0x00c0_ffee),
            n: n.max(1),
            i: 0,
            t0_us: end_us - 86_400_000_000,
            procs: Vec::new(),
            slot: vec![NONE; PID_MAX as usize],
            recent: VecDeque::new(),
            pending: Vec::new(),
            next_pid: FIRST_PID,
            stats: Stats {
                kinds: [0; 4],
                denies: 0,
                per_pid: vec![0; PID_MAX as usize],
                children: vec![0; PID_MAX as usize],
                per_lib: vec![0; pools.libs.len()],
                per_sha: vec![0; pools.exes.len()],
            },
        }
    }

    fn now_us(&self) -> u64 {
        self.t0_us + self.i * 86_400_000_000 / self.n
    }

    fn ts(&self) -> String {
        custos_event::timestamp(UNIX_EPOCH + Duration::from_micros(self.now_us()))
    }

    /// Entity id as custos-process makes it: boot id, start in clock ticks since boot, pid.
    fn entity(&self, pid: u32) -> String {
        // Booted three days before the first event; 100 ticks a second.
        let ticks = (self.now_us() - self.t0_us) / 10_000 + 3 * 86_400 * 100;
        format!("{BOOT}:{ticks}:{pid}")
    }

    /// The next event.
    pub fn next_event(&mut self) -> Value {
        let v = if (self.procs.len()) < CORE.len() {
            self.snapshot()
        } else {
            match self.rng.next() % 1000 {
                0..620 => self.image(),
                620..870 => self.process(),
                870..970 => self.decision(),
                _ => self.injection(),
            }
        };
        self.i += 1;
        v
    }

    fn count(&mut self, kind: usize, pid: u32) {
        self.stats.kinds[kind] += 1;
        self.stats.per_pid[pid as usize % PID_MAX as usize] += 1;
    }

    fn add(&mut self, p: Proc) {
        self.slot[p.pid as usize] = self.procs.len() as u32;
        self.procs.push(p);
    }

    fn remove(&mut self, pid: u32) -> Proc {
        let at = self.slot[pid as usize] as usize;
        let p = self.procs.swap_remove(at);
        if let Some(moved) = self.procs.get(at) {
            self.slot[moved.pid as usize] = at as u32;
        }
        self.slot[pid as usize] = NONE;
        p
    }

    fn proc_of(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(*self.slot.get(pid as usize)? as usize)
    }

    /// A live process: mostly a recently exec'd one.
    fn someone(&mut self) -> u32 {
        if !self.recent.is_empty() && self.rng.chance(750) {
            let pid = self.recent[self.rng.below(self.recent.len())];
            if self.slot[pid as usize] != NONE {
                return pid;
            }
        }
        self.procs[self.rng.below(self.procs.len())].pid
    }

    fn snapshot(&mut self) -> Value {
        let k = self.procs.len();
        let (pid, ppid, _) = CORE[k];
        let parent = self.proc_of(ppid).map(|p| p.entity.clone());
        let entity = format!("{BOOT}:{}:{pid}", 100 + k);
        let exe = &self.pools.exes[k].path;
        let v = ProcessEvent {
            timestamp: self.ts(),
            action: Some(ProcessAction::Snapshot),
            pid,
            entity_id: entity.clone(),
            parent_pid: Some(ppid),
            parent_entity_id: parent.clone(),
            executable: Some(exe.clone()),
            args: Some(vec![exe.clone()]),
            start: Some(custos_event::timestamp(
                UNIX_EPOCH + Duration::from_micros(self.t0_us - 3 * 86_400_000_000 + k as u64),
            )),
            ..ProcessEvent::default()
        }
        .to_ecs();
        self.add(Proc {
            pid,
            entity,
            exe: k,
            ppid,
            parent,
            core: true,
        });
        self.count(1, pid);
        v
    }

    fn process(&mut self) -> Value {
        let live = self.procs.len() - CORE.len();
        if !self.pending.is_empty() && self.rng.chance(500) {
            let pid = self.pending.swap_remove(self.rng.below(self.pending.len()));
            return self.exec(pid);
        }
        let fork = if live < 150 {
            true
        } else if live > 450 {
            false
        } else {
            self.rng.chance(500)
        };
        if fork {
            self.fork()
        } else {
            let mut at = self.rng.below(self.procs.len());
            while self.procs[at].core {
                at = self.rng.below(self.procs.len());
            }
            let pid = self.procs[at].pid;
            self.exit(pid)
        }
    }

    fn fork(&mut self) -> Value {
        let parent_pid = match self.rng.below(10) {
            0..4 => CORE[SPAWNERS[self.rng.below(SPAWNERS.len())]].0,
            4..8 => self.someone(),
            _ => self.procs[self.rng.below(self.procs.len())].pid,
        };
        let mut pid = self.next_pid;
        while self.slot[pid as usize] != NONE {
            pid = if pid + 1 >= PID_MAX {
                FIRST_PID
            } else {
                pid + 1
            };
        }
        self.next_pid = if pid + 1 >= PID_MAX {
            FIRST_PID
        } else {
            pid + 1
        };
        let entity = self.entity(pid);
        let (parent, exe) = match self.proc_of(parent_pid) {
            Some(p) => (p.entity.clone(), p.exe),
            None => (String::new(), 0),
        };
        self.stats.children[parent_pid as usize] += 1;
        self.stats.children[pid as usize] = 0;
        let ts = self.ts();
        let v = ProcessEvent {
            timestamp: ts.clone(),
            action: Some(ProcessAction::Fork),
            pid,
            entity_id: entity.clone(),
            parent_pid: Some(parent_pid),
            parent_entity_id: Some(parent.clone()),
            executable: Some(self.pools.exes[exe].path.clone()),
            start: Some(ts),
            ..ProcessEvent::default()
        }
        .to_ecs();
        self.add(Proc {
            pid,
            entity,
            exe,
            ppid: parent_pid,
            parent: Some(parent),
            core: false,
        });
        self.pending.push(pid);
        self.count(1, pid);
        v
    }

    fn exec(&mut self, pid: u32) -> Value {
        let exe = CORE.len() + self.rng.skewed(self.pools.exes.len() - CORE.len());
        let file = self.rng.below(5000);
        let at = self.slot[pid as usize] as usize;
        self.procs[at].exe = exe;
        let p = &self.procs[at];
        let path = &self.pools.exes[exe].path;
        let name = path.rsplit('/').next().unwrap_or(path);
        let v = ProcessEvent {
            timestamp: self.ts(),
            action: Some(ProcessAction::Exec),
            pid,
            tid: Some(pid),
            entity_id: p.entity.clone(),
            parent_pid: Some(p.ppid),
            parent_entity_id: p.parent.clone(),
            executable: Some(path.clone()),
            args: Some(vec![
                name.to_owned(),
                "-v".into(),
                format!("/home/dev/src/f{file}.c"),
            ]),
            uid: Some(1000),
            euid: Some(1000),
            gid: Some(1000),
            egid: Some(1000),
            dev_ino: Some((2049, 1_000_000 + exe as u64)),
            cgroup_id: Some(4242),
            working_directory: Some("/home/dev/src".into()),
            start: Some(self.ts()),
            ..ProcessEvent::default()
        }
        .to_ecs();
        if self.recent.len() >= 32 {
            self.recent.pop_front();
        }
        self.recent.push_back(pid);
        self.count(1, pid);
        v
    }

    fn exit(&mut self, pid: u32) -> Value {
        self.pending.retain(|p| *p != pid);
        let p = self.remove(pid);
        let (exit_code, signal) = match self.rng.below(20) {
            0..17 => (Some(0), None),
            17 | 18 => (Some(1), None),
            _ => (None, Some(9)),
        };
        let v = ProcessEvent {
            timestamp: self.ts(),
            action: Some(ProcessAction::Exit),
            pid,
            entity_id: p.entity,
            executable: Some(self.pools.exes[p.exe].path.clone()),
            exit_code,
            signal,
            ..ProcessEvent::default()
        }
        .to_ecs();
        self.count(1, pid);
        v
    }

    fn pref(&self, pid: u32) -> ProcessRef {
        let p = self.proc_of(pid);
        ProcessRef {
            pid,
            entity_id: p.map(|p| p.entity.clone()),
            executable: p.map(|p| self.pools.exes[p.exe].path.clone()),
        }
    }

    fn image(&mut self) -> Value {
        let pid = self.someone();
        let exe = self.proc_of(pid).map_or(0, |p| p.exe);
        let lib = if self.rng.chance(150) {
            0
        } else {
            // Each program has its own few libraries; popular ones are shared.
            let j = self.rng.below(4 + exe % 28) as u64;
            let mut h = Rng::new((exe as u64 + 1) * 0x9e37_79b9 + j);
            1 + h.skewed(self.pools.libs.len() - 1)
        };
        let v = ImageEvent {
            timestamp: self.ts(),
            process: self.pref(pid),
            path: self.pools.libs[lib].clone(),
            dev_ino: (2049, 2_000_000 + lib as u64),
            addr: 0x7f00_0000_0000 + (self.rng.next() & 0xff_ffff_f000),
            len: 0x1000 * (1 + self.rng.below(400) as u64),
            offset: 0x1000 * self.rng.below(4) as u64,
            ..ImageEvent::default()
        }
        .to_ecs();
        self.stats.per_lib[lib] += 1;
        self.count(0, pid);
        v
    }

    fn decision(&mut self) -> Value {
        let pid = self.someone();
        let (ppid, exe) = self.proc_of(pid).map_or((1, 0), |p| (p.ppid, p.exe));
        let deny = self.rng.chance(30);
        let cached = self.rng.chance(850);
        let (file, reason, source) = if deny {
            let b = &self.pools.bad[self.rng.skewed(self.pools.bad.len())];
            let feed = Some(SourceRef {
                name: "feeds".into(),
                detail: Some("abuse.ch".into()),
            });
            (b, Reason::KnownBad, feed)
        } else if self.rng.chance(200) {
            let dpkg = Some(SourceRef {
                name: "dpkg".into(),
                detail: None,
            });
            (&self.pools.exes[exe], Reason::KnownGood, dpkg)
        } else {
            (&self.pools.exes[exe], Reason::ModeDefault, None)
        };
        let v = ExecEvent {
            access: custos_event::Access::Exec,
            opener: None,
            timestamp: self.ts(),
            decision: if deny {
                Decision::Deny
            } else {
                Decision::Allow
            },
            would_deny: false,
            reason,
            rule_id: None,
            mode: Mode::Monitor,
            cached: cached && !deny,
            pid: pid as i32,
            ppid: Some(ppid as i32),
            uid: Some(1000),
            executable: Some(file.path.clone()),
            sha256: Some(file.sha.clone()),
            error: None,
            source,
        }
        .to_ecs();
        if deny {
            self.stats.denies += 1;
        } else {
            self.stats.per_sha[exe] += 1;
        }
        self.count(2, pid);
        v
    }

    fn injection(&mut self) -> Value {
        let pid = self.someone();
        let target = self.procs[self.rng.below(self.procs.len())].pid;
        let (action, request) = match self.rng.below(10) {
            0..5 => ("ptrace_attach", Some(16)),
            5..8 => ("ptrace_seize", Some(0x4206)),
            8 => ("ptrace_poke", Some(5)),
            _ => ("process_vm_writev", None),
        };
        let v = InjectEvent {
            timestamp: self.ts(),
            action,
            process: self.pref(pid),
            target: self.pref(target),
            request,
            result: if self.rng.chance(100) { -1 } else { 0 },
            tamper: false,
        }
        .to_ecs();
        self.count(3, pid);
        v
    }
}
