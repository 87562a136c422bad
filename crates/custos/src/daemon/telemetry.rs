//! Process telemetry: records from the eBPF sensor become ECS process events on the event
//! output. Opt-in with `[telemetry] process = true` until the sensor is complete. If the sensor
//! cannot load (no BTF, no BPF rights), the agent keeps running and `status` says why.

use super::output::Output;
use custos_control::TelemetryStatus;
use custos_event::{ProcessAction, ProcessEvent};
use custos_sensor_ebpf::{ExitStatus, ProcessSensor, Record};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The running telemetry thread's state.
#[derive(Debug, Default)]
pub struct Telemetry {
    state: Mutex<String>,
    records: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Telemetry {
    /// Telemetry that is switched off.
    pub fn off() -> Arc<Telemetry> {
        Arc::new(Telemetry {
            state: Mutex::new("off".into()),
            ..Telemetry::default()
        })
    }

    /// Starts the sensor on its own thread (libbpf objects stay on the thread that made them).
    pub fn start(output: Arc<Output>) -> std::io::Result<Arc<Telemetry>> {
        let t = Arc::new(Telemetry {
            state: Mutex::new("starting".into()),
            ..Telemetry::default()
        });
        let me = t.clone();
        std::thread::Builder::new()
            .name("custos-process".into())
            .spawn(move || me.run(&output))?;
        Ok(t)
    }

    fn set_state(&self, s: String) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn run(&self, output: &Output) {
        let sensor = match ProcessSensor::load() {
            Ok(s) => s,
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why.push_str(&format!(": {s}"));
                    src = s.source();
                }
                tracing::warn!("process telemetry unavailable: {why}");
                self.set_state(format!("unavailable: {why}"));
                return;
            }
        };
        self.set_state("running".into());
        tracing::info!("process telemetry running (eBPF)");
        let boot = boot_id();
        while !self.stop.load(Relaxed) {
            let polled = sensor.poll(Duration::from_millis(200), |r| {
                match r {
                    Ok(rec) => {
                        self.records.fetch_add(1, Relaxed);
                        output.emit_line(to_event(&rec, &boot).to_ecs().to_string());
                    }
                    Err(e) => {
                        self.errors.fetch_add(1, Relaxed);
                        tracing::debug!("bad process record: {e}");
                    }
                }
                !self.stop.load(Relaxed)
            });
            self.lost.store(sensor.lost(), Relaxed);
            if let Err(e) = polled {
                tracing::error!("process telemetry stopped: {e}");
                self.set_state(format!("failed: {e}"));
                return;
            }
        }
    }

    /// Stops the thread (it notices within one poll interval).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// For `custos status`.
    pub fn status(&self) -> TelemetryStatus {
        TelemetryStatus {
            process: self.state.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            records: self.records.load(Relaxed),
            lost: self.lost.load(Relaxed),
            decode_errors: self.errors.load(Relaxed),
        }
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Unique across pid reuse and reboots: boot id, start time since boot, pid.
pub fn entity_id(boot: &str, start_ns: u64, pid: u32) -> String {
    format!("{boot}:{start_ns}:{pid}")
}

/// Converts a sensor record into an event.
pub fn to_event(rec: &Record, boot: &str) -> ProcessEvent {
    let timestamp = custos_event::timestamp(SystemTime::now());
    match rec {
        Record::Exec(r) => ProcessEvent {
            timestamp,
            action: Some(ProcessAction::Exec),
            pid: r.pid,
            tid: Some(r.tid),
            entity_id: entity_id(boot, r.start_boottime_ns, r.pid),
            parent_pid: Some(r.ppid),
            parent_entity_id: Some(entity_id(boot, r.parent_start_boottime_ns, r.ppid)),
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
            ..ProcessEvent::default()
        },
        Record::Fork(f) if f.is_thread => ProcessEvent {
            timestamp,
            action: Some(ProcessAction::ThreadStart),
            pid: f.child_pid,
            tid: Some(f.child_tid),
            // A thread belongs to the parent's process.
            entity_id: entity_id(boot, f.parent_start_boottime_ns, f.parent_pid),
            ..ProcessEvent::default()
        },
        Record::Fork(f) => ProcessEvent {
            timestamp,
            action: Some(ProcessAction::Fork),
            pid: f.child_pid,
            entity_id: entity_id(boot, f.child_start_boottime_ns, f.child_pid),
            parent_pid: Some(f.parent_pid),
            parent_entity_id: Some(entity_id(boot, f.parent_start_boottime_ns, f.parent_pid)),
            ..ProcessEvent::default()
        },
        Record::Exit(e) => {
            let (exit_code, signal) = match e.status {
                ExitStatus::Code(c) => (Some(c), None),
                ExitStatus::Signal(s) => (None, Some(s)),
            };
            ProcessEvent {
                timestamp,
                action: Some(if e.is_thread {
                    ProcessAction::ThreadEnd
                } else {
                    ProcessAction::Exit
                }),
                pid: e.pid,
                tid: e.is_thread.then_some(e.tid),
                // A non-leader thread's own start time does not name the process.
                entity_id: if e.is_thread {
                    String::new()
                } else {
                    entity_id(boot, e.start_boottime_ns, e.pid)
                },
                exit_code,
                signal,
                ..ProcessEvent::default()
            }
        }
    }
}
