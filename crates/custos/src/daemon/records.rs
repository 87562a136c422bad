//! Sensor records to events, through the process table: every event names its process (and
//! parent, or target) by entity id, and events after an exec carry the program's path.

use custos_event::{ImageEvent, InjectEvent, ProcessAction, ProcessEvent, ProcessRef};
use custos_process::{entity_id, ticks_from_ns, Process, ProcessTable};
use custos_sensor_ebpf::{ExitStatus, HoldState, InjectKind, Record};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Bound on the process table; exited entries go first (see `ProcessTable`).
const TABLE_MAX: usize = 1 << 18;

/// Turns records into ECS events and keeps the process table.
pub struct Converter {
    table: ProcessTable,
    boot: String,
    tck: u64,
    images: bool,
    /// Wall-clock time of boot, to turn start times (ns since boot) into dates.
    booted: SystemTime,
}

/// Wall-clock time of boot: now minus `CLOCK_BOOTTIME`.
fn boot_wall_time() -> SystemTime {
    let now = SystemTime::now();
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .and_then(|t| now.checked_sub(Duration::from(t)))
        .unwrap_or(now)
}

fn sref(p: Option<&Process>, pid: u32, fallback_entity: Option<String>) -> ProcessRef {
    ProcessRef {
        pid,
        entity_id: p.map(|p| p.entity_id.to_string()).or(fallback_entity),
        executable: p.and_then(|p| p.executable.as_deref().map(str::to_owned)),
    }
}

fn hold_name(h: HoldState) -> Option<&'static str> {
    match h {
        HoldState::None => None,
        HoldState::Held => Some("held"),
        HoldState::Killed => Some("killed"),
        HoldState::Unheld => Some("unheld"),
        HoldState::OverloadKilled => Some("overload_killed"),
        HoldState::Traced => Some("traced"),
        HoldState::TracedKilled => Some("traced_killed"),
    }
}

fn inject_action(k: InjectKind) -> &'static str {
    match k {
        InjectKind::Ptrace(16) => "ptrace_attach",
        InjectKind::Ptrace(0x4206) => "ptrace_seize",
        InjectKind::Ptrace(4..=6) => "ptrace_poke",
        InjectKind::Ptrace(_) => "ptrace_setregs",
        InjectKind::VmWrite => "process_vm_writev",
        InjectKind::Sigcont => "sigcont_held",
    }
}

impl Converter {
    /// An empty table (see [`Converter::seed`]). `images`: emit image-load events.
    pub fn new(boot: String, tck: u64, images: bool) -> Converter {
        Converter {
            table: ProcessTable::new(boot.clone(), tck, TABLE_MAX),
            boot,
            tck,
            images,
            booted: boot_wall_time(),
        }
    }

    /// Fills the table from `/proc` (processes that started before the agent).
    pub fn seed(&mut self) -> usize {
        self.table.seed_from_proc(std::path::Path::new("/proc"))
    }

    /// One `snapshot` event per user process in the table (after [`Converter::seed`]), oldest
    /// first: the store then knows the lineage of processes that started before the agent.
    /// Kernel threads (no program) are left out.
    pub fn snapshot(&self) -> Vec<Value> {
        let timestamp = custos_event::timestamp(SystemTime::now());
        let mut procs: Vec<&Process> = self
            .table
            .processes()
            .filter(|p| p.executable.is_some())
            .collect();
        procs.sort_unstable_by_key(|p| (p.start_ticks, p.pid));
        let tick_ns = 1_000_000_000 / self.tck.max(1);
        procs
            .into_iter()
            .map(|p| {
                ProcessEvent {
                    timestamp: timestamp.clone(),
                    action: Some(ProcessAction::Snapshot),
                    pid: p.pid,
                    entity_id: p.entity_id.to_string(),
                    parent_pid: Some(p.ppid),
                    parent_entity_id: p.parent_entity_id.as_deref().map(str::to_owned),
                    executable: p.executable.as_deref().map(str::to_owned),
                    args: p.args.as_deref().map(<[String]>::to_vec),
                    start: self.started(p.start_ticks.saturating_mul(tick_ns)),
                    ..ProcessEvent::default()
                }
                .to_ecs()
            })
            .collect()
    }

    /// Entries in the table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Drops exited processes from the table (two-phase, see `ProcessTable::sweep`).
    pub fn sweep(&mut self) {
        self.table.sweep();
    }

    fn id(&self, start_ns: u64, pid: u32) -> String {
        entity_id(&self.boot, ticks_from_ns(start_ns, self.tck), pid)
    }

    fn started(&self, start_ns: u64) -> Option<String> {
        let t = self.booted.checked_add(Duration::from_nanos(start_ns))?;
        Some(custos_event::timestamp(t))
    }

    /// The event for one record, or `None` for records not reported (image loads when off).
    pub fn event(&mut self, rec: &Record) -> Option<Value> {
        let timestamp = custos_event::timestamp(SystemTime::now());
        let ev = match rec {
            Record::Exec(r) => {
                let start = self.started(r.start_boottime_ns);
                let p = self.table.on_exec(
                    r.pid,
                    r.start_boottime_ns,
                    r.ppid,
                    r.parent_start_boottime_ns,
                    &r.path,
                    &r.argv,
                );
                ProcessEvent {
                    timestamp,
                    action: Some(ProcessAction::Exec),
                    pid: r.pid,
                    tid: Some(r.tid),
                    entity_id: p.entity_id.to_string(),
                    parent_pid: Some(r.ppid),
                    parent_entity_id: p.parent_entity_id.as_deref().map(str::to_owned),
                    executable: Some(r.path.clone()),
                    args: Some(r.argv.clone()),
                    args_truncated: r.argv_truncated,
                    path_truncated: r.path_truncated,
                    uid: Some(r.uid),
                    euid: Some(r.euid),
                    gid: Some(r.gid),
                    egid: Some(r.egid),
                    dev_ino: Some((r.dev, r.ino)),
                    cgroup_id: Some(r.cgroup_id),
                    working_directory: Some(r.cwd.clone()),
                    cwd_truncated: r.cwd_truncated,
                    hold: hold_name(r.hold),
                    unseen: r.unseen,
                    start,
                    ..ProcessEvent::default()
                }
                .to_ecs()
            }
            Record::Fork(f) if f.is_thread => ProcessEvent {
                timestamp,
                action: Some(ProcessAction::ThreadStart),
                pid: f.child_pid,
                tid: Some(f.child_tid),
                // A thread belongs to the parent's process.
                entity_id: self.id(f.parent_start_boottime_ns, f.parent_pid),
                ..ProcessEvent::default()
            }
            .to_ecs(),
            Record::Fork(f) => {
                let start = self.started(f.child_start_boottime_ns);
                let c = self.table.on_fork(
                    f.parent_pid,
                    f.parent_start_boottime_ns,
                    f.child_pid,
                    f.child_start_boottime_ns,
                );
                ProcessEvent {
                    timestamp,
                    action: Some(ProcessAction::Fork),
                    pid: f.child_pid,
                    entity_id: c.entity_id.to_string(),
                    parent_pid: Some(f.parent_pid),
                    parent_entity_id: c.parent_entity_id.as_deref().map(str::to_owned),
                    executable: c.executable.as_deref().map(str::to_owned),
                    start,
                    ..ProcessEvent::default()
                }
                .to_ecs()
            }
            Record::Exit(e) => {
                let (exit_code, signal) = match e.status {
                    ExitStatus::Code(c) => (Some(c), None),
                    ExitStatus::Signal(s) => (None, Some(s)),
                };
                let known = self.table.get(e.pid);
                let entity_id = self.id(e.start_boottime_ns, e.pid);
                let executable = known.and_then(|p| p.executable.as_deref().map(str::to_owned));
                if !e.is_thread {
                    self.table.on_exit(e.pid, e.start_boottime_ns);
                }
                ProcessEvent {
                    timestamp,
                    action: Some(if e.is_thread {
                        ProcessAction::ThreadEnd
                    } else {
                        ProcessAction::Exit
                    }),
                    pid: e.pid,
                    tid: e.is_thread.then_some(e.tid),
                    entity_id,
                    executable,
                    exit_code,
                    signal,
                    ..ProcessEvent::default()
                }
                .to_ecs()
            }
            Record::Image(i) => {
                if !self.images {
                    return None;
                }
                let fallback = Some(self.id(i.start_boottime_ns, i.pid));
                ImageEvent {
                    timestamp,
                    process: sref(self.table.get(i.pid), i.pid, fallback),
                    path: i.path.clone(),
                    path_truncated: i.path_truncated,
                    dev_ino: (i.dev, i.ino),
                    addr: i.addr,
                    len: i.len,
                    offset: i.offset,
                }
                .to_ecs()
            }
            Record::Inject(j) => {
                let fallback = Some(self.id(j.start_boottime_ns, j.pid));
                InjectEvent {
                    timestamp,
                    action: inject_action(j.kind),
                    process: sref(self.table.get(j.pid), j.pid, fallback),
                    target: sref(self.table.get(j.target_pid), j.target_pid, None),
                    request: match j.kind {
                        InjectKind::Ptrace(r) => Some(r),
                        _ => None,
                    },
                    result: j.result,
                    tamper: j.tamper,
                }
                .to_ecs()
            }
        };
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_sensor_ebpf::{ExecRecord, ForkRecord, InjectRecord};

    fn exec(pid: u32, ppid: u32, start: u64, path: &str) -> Record {
        Record::Exec(ExecRecord {
            pid,
            tid: pid,
            ppid,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            cgroup_id: 1,
            dev: 1,
            ino: 2,
            start_boottime_ns: start,
            parent_start_boottime_ns: 10_000_000,
            path: path.into(),
            path_truncated: false,
            argv: vec![path.into()],
            argv_truncated: false,
            cwd: "/".into(),
            cwd_truncated: false,
            hold: HoldState::None,
            unseen: false,
            hold_stamp: 0,
        })
    }

    #[test]
    fn lineage_and_target_names_come_from_the_table() {
        let mut c = Converter::new("boot".into(), 100, true);
        let v = c.event(&exec(50, 1, 20_000_000, "/usr/bin/bash")).unwrap();
        assert_eq!(v["process"]["entity_id"], "boot:2:50");
        assert!(v["process"]["start"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["process"]["parent"]["entity_id"], "boot:1:1");
        // A fork inherits the program; its entity id is its own.
        let v = c
            .event(&Record::Fork(ForkRecord {
                parent_pid: 50,
                parent_tid: 50,
                child_pid: 51,
                child_tid: 51,
                is_thread: false,
                child_start_boottime_ns: 30_000_000,
                parent_start_boottime_ns: 20_000_000,
            }))
            .unwrap();
        assert_eq!(v["process"]["entity_id"], "boot:3:51");
        assert_eq!(v["process"]["executable"], "/usr/bin/bash");
        // An injection names both ends from the table.
        let v = c
            .event(&Record::Inject(InjectRecord {
                kind: InjectKind::Ptrace(16),
                pid: 51,
                tid: 51,
                start_boottime_ns: 30_000_000,
                target_pid: 50,
                result: 0,
                addr: 0,
                tamper: false,
                kill_failed: false,
                target_start_boottime_ns: 0,
            }))
            .unwrap();
        assert_eq!(v["event"]["action"], "ptrace_attach");
        assert_eq!(v["target"]["process"]["entity_id"], "boot:2:50");
        assert_eq!(v["target"]["process"]["executable"], "/usr/bin/bash");
        assert_eq!(v["process"]["entity_id"], "boot:3:51");
    }

    #[test]
    fn image_events_can_be_switched_off() {
        let mut c = Converter::new("b".into(), 100, false);
        let img = Record::Image(custos_sensor_ebpf::ImageRecord {
            pid: 1,
            tid: 1,
            start_boottime_ns: 0,
            dev: 0,
            ino: 0,
            path: "/lib/x.so".into(),
            path_truncated: false,
            addr: 0,
            len: 0,
            offset: 0,
            prot: 5,
        });
        assert!(c.event(&img).is_none());
    }
}
