//! The eBPF process sensor's thread: records become ECS events through the process table;
//! execs fanotify cannot see that the kernel stopped go to the verdict engine; losses become
//! events. If the sensor cannot load (no BTF, no BPF rights), the agent keeps running and
//! `status` says why; parts that cannot load are listed the same way.

use super::guardian::Guardian;
use super::output::Output;
use super::records::Converter;
use super::unseen::{kill_on_overload, AnyHeld, Intake, SharedControls};
use custos_config::Unseen;
use custos_control::TelemetryStatus;
use custos_event::{Access, Decision, ExecEvent, LossEvent, Mode, Reason};
use custos_sensor_ebpf::{ExecRecord, HoldScope, HoldState, ProcessSensor, Record};
use custos_sensor_fanotify::follow;
use custos_verdict::Arbiter;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What the telemetry thread works with.
pub struct Wiring {
    /// Event output.
    pub output: Arc<Output>,
    /// The verdict engine.
    pub arbiter: Arc<Arbiter<AnyHeld>>,
    /// Filled in once the sensor loads.
    pub controls: SharedControls,
    /// Resumes held execs if the agent dies (the daemon keeps its own reference until every
    /// hold is answered).
    pub guardian: Option<Arc<Guardian>>,
    /// The filesystems fanotify watches (they need no hold).
    pub watched: follow::Watched,
    /// Hold scope.
    pub unseen: Unseen,
    /// Emit image-load events.
    pub images: bool,
    /// Where exec, fork and snapshot events are noted for naming processes after they exit
    /// (when file events need it).
    pub recent: Option<Arc<super::recent::Recent>>,
}

/// The running telemetry thread's state.
#[derive(Debug, Default)]
pub struct Telemetry {
    state: Mutex<String>,
    missing: Mutex<Vec<String>>,
    records: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
    processes: AtomicU64,
    holds: AtomicU64,
    kernel_kills: AtomicU64,
    unheld: AtomicU64,
    unseen: Mutex<String>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    controls: SharedControls,
    scope: Mutex<Option<HoldScope>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn scope_of(u: Unseen) -> HoldScope {
    match u {
        Unseen::Off => HoldScope::Off,
        Unseen::Memfd => HoldScope::Memfd,
        Unseen::Unwatched => HoldScope::Unwatched,
    }
}

/// Kernel `st_dev`s of the watched filesystems ("major:minor" in `WatchedFs`).
fn watched_devs(w: &follow::Watched) -> Vec<u64> {
    lock(w)
        .iter()
        .filter_map(|fs| {
            let (ma, mi) = fs.dev.split_once(':')?;
            Some(libc::makedev(ma.parse().ok()?, mi.parse().ok()?))
        })
        .collect()
}

impl Telemetry {
    /// Telemetry that is switched off.
    pub fn off() -> Arc<Telemetry> {
        Arc::new(Telemetry {
            state: Mutex::new("off".into()),
            unseen: Mutex::new("off (process telemetry is off)".into()),
            ..Telemetry::default()
        })
    }

    /// Starts the sensor on its own thread (libbpf objects stay on the thread that made them).
    pub fn start(w: Wiring) -> std::io::Result<Arc<Telemetry>> {
        let t = Arc::new(Telemetry {
            state: Mutex::new("starting".into()),
            controls: w.controls.clone(),
            ..Telemetry::default()
        });
        let me = t.clone();
        let h = std::thread::Builder::new()
            .name("custos-process".into())
            .spawn(move || me.run(w))?;
        *lock(&t.thread) = Some(h);
        Ok(t)
    }

    fn set_state(&self, s: String) {
        *lock(&self.state) = s;
    }

    /// Applies a mode: whether an exec that cannot be held is killed.
    pub fn set_mode(&self, mode: Mode) {
        // The scope lock is held until the kernel has the settings, so shutdown's switch to
        // "off" cannot be overtaken.
        let scope = lock(&self.scope);
        let (Some(c), Some(scope)) = (self.controls.get(), *scope) else {
            return;
        };
        let kill_traced = mode != Mode::Audit;
        if let Err(e) = c.configure(
            scope,
            kill_on_overload(mode),
            kill_traced,
            std::process::id(),
        ) {
            tracing::error!("cannot configure the exec hold: {e}");
        }
    }

    fn run(&self, w: Wiring) {
        let sensor = match ProcessSensor::load() {
            Ok(s) => s,
            Err(e) => {
                let why = format!("{:#}", anyhow::Error::new(e));
                tracing::warn!("process telemetry unavailable: {why}");
                self.set_state(format!("unavailable: {why}"));
                *lock(&self.unseen) = "off (process sensor unavailable)".into();
                return;
            }
        };
        let missing: Vec<String> = sensor
            .missing()
            .iter()
            .map(|m| format!("{}: {}", m.part.name(), m.why))
            .collect();
        for m in &missing {
            tracing::warn!("process sensor part missing: {m}");
        }
        *lock(&self.missing) = missing;
        let controls = match sensor.controls() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.set_state(format!("failed: {:#}", anyhow::Error::new(e)));
                return;
            }
        };
        let _ = w.controls.set(controls.clone());
        let mut devs = watched_devs(&w.watched);
        if let Err(e) = controls.set_watched(&devs) {
            tracing::error!("cannot tell the exec program what fanotify watches: {e}");
        }
        // The guardian first: no hold may exist that it could not resume.
        if let Some(g) = &w.guardian {
            if let Err(e) = g.watch(controls.held_fd()) {
                tracing::warn!("the guardian cannot watch holds: {e}");
            }
        }
        let intake = match Intake::start(w.arbiter.clone(), controls.clone()) {
            Ok(i) => RefCell::new(i),
            Err(e) => {
                self.set_state(format!("failed: cannot start the hold intake: {e}"));
                return;
            }
        };
        *lock(&self.scope) = Some(scope_of(w.unseen));
        *lock(&self.unseen) = format!("{:?}", w.unseen).to_lowercase();
        self.set_mode(w.arbiter.mode());

        let mut conv = Converter::new(
            custos_process::boot_id(),
            custos_process::clk_tck(),
            w.images,
        );
        let seeded = conv.seed();
        let note = |v: &serde_json::Value| {
            if let Some(r) = &w.recent {
                r.note(v);
            }
        };
        for ev in conv.snapshot() {
            note(&ev);
            w.output.emit(ev);
        }
        tracing::info!(seeded, "process table seeded from /proc");
        let conv = RefCell::new(conv);
        let reader = sensor.reader(|r| match r {
            Ok(rec) => {
                self.records.fetch_add(1, Relaxed);
                match &rec {
                    Record::Exec(e) => self.judge(e, &w, &intake.borrow()),
                    // Tampered with, and the kernel could not kill it from there: do it now.
                    Record::Inject(j) if j.kill_failed => {
                        controls.kill_tampered(j.target_pid, j.target_start_boottime_ns)
                    }
                    _ => {}
                }
                if let Some(v) = conv.borrow_mut().event(&rec) {
                    note(&v);
                    w.output.emit(v);
                }
            }
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                tracing::debug!("bad process record: {e}");
            }
        });
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                self.set_state(format!("failed: {:#}", anyhow::Error::new(e)));
                return;
            }
        };
        self.set_state("running".into());
        tracing::info!("process telemetry running (eBPF)");
        let mut reported_lost = 0;
        let mut last_sweep = Instant::now();
        let mut last_devs = Instant::now();
        while !self.stop.load(Relaxed) {
            if let Err(e) = reader.poll(Duration::from_millis(20)) {
                tracing::error!("process telemetry stopped: {e}");
                self.set_state(format!("failed: {e}"));
                break;
            }
            let lost = sensor.lost();
            self.lost.store(lost, Relaxed);
            if let Some(ev) = loss_event(&mut reported_lost, lost) {
                tracing::warn!(lost = ev.lost, total = lost, "process records lost");
                w.output.emit(ev.to_ecs());
            }
            // Mounts change rarely: look twice a second, not on every 20 ms read.
            if last_devs.elapsed() > Duration::from_millis(500) {
                last_devs = Instant::now();
                let now = watched_devs(&w.watched);
                if now != devs {
                    devs = now;
                    if let Err(e) = controls.set_watched(&devs) {
                        tracing::error!("cannot update the watched filesystems: {e}");
                    }
                }
            }
            if last_sweep.elapsed() > Duration::from_secs(5) {
                conv.borrow_mut().sweep();
                last_sweep = Instant::now();
            }
            self.processes
                .store(conv.borrow().table_len() as u64, Relaxed);
        }
        // No new holds; hand every hold already reported to the verdict engine, which
        // answers it (by the mode's shutdown fallback if need be).
        // Scope first, and under its lock, so a concurrent mode change cannot switch holds
        // back on.
        {
            let mut scope = lock(&self.scope);
            scope.take();
            let _ = controls.configure(HoldScope::Off, false, false, std::process::id());
        }
        let _ = reader.poll(Duration::ZERO);
        drop(reader);
        intake.borrow_mut().finish();
    }

    /// Sends a held exec to the verdict engine; reports kernel kills as decisions.
    fn judge(&self, e: &ExecRecord, w: &Wiring, intake: &Intake) {
        let reason = match e.hold {
            HoldState::None => return,
            HoldState::Held => {
                self.holds.fetch_add(1, Relaxed);
                intake.hold(e.clone());
                return;
            }
            HoldState::Killed => {
                self.kernel_kills.fetch_add(1, Relaxed);
                (Decision::Deny, Reason::KernelBlocked)
            }
            HoldState::OverloadKilled => {
                self.unheld.fetch_add(1, Relaxed);
                (Decision::Deny, Reason::Overload)
            }
            HoldState::Unheld => {
                self.unheld.fetch_add(1, Relaxed);
                (Decision::Allow, Reason::Overload)
            }
            HoldState::TracedKilled => {
                self.unheld.fetch_add(1, Relaxed);
                (Decision::Deny, Reason::Traced)
            }
            HoldState::Traced => {
                self.unheld.fetch_add(1, Relaxed);
                (Decision::Allow, Reason::Traced)
            }
        };
        let ev = ExecEvent {
            access: Access::Exec,
            opener: None,
            timestamp: custos_event::timestamp(SystemTime::now()),
            decision: reason.0,
            would_deny: false,
            reason: reason.1,
            rule_id: None,
            mode: w.arbiter.mode(),
            cached: reason.1 == Reason::KernelBlocked,
            pid: e.pid as i32,
            ppid: Some(e.ppid as i32),
            uid: Some(e.uid),
            executable: Some(e.path.clone()),
            sha256: None,
            error: None,
            source: None,
        };
        w.output.emit(ev.to_ecs());
    }

    /// After the verdict engine has shut down: answers holds that never reached it (made
    /// between the last read and the sensor's detach) with the mode's shutdown fallback.
    pub fn answer_leftovers(&self, mode: Mode) {
        if let Some(c) = self.controls.get() {
            let allow =
                custos_verdict::fallback(mode, Reason::Shutdown).decision == Decision::Allow;
            let n = c.answer_leftovers(allow);
            if n > 0 {
                tracing::warn!(n, allow, "answered holds the verdict engine never saw");
            }
        }
    }

    /// Stops the thread and waits for it: holds it had seen are with the verdict engine after.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }

    /// For `custos status`.
    pub fn status(&self) -> TelemetryStatus {
        TelemetryStatus {
            process: lock(&self.state).clone(),
            records: self.records.load(Relaxed),
            lost: self.lost.load(Relaxed),
            decode_errors: self.errors.load(Relaxed),
            missing: lock(&self.missing).clone(),
            processes: self.processes.load(Relaxed),
            unseen: lock(&self.unseen).clone(),
            holds: self.holds.load(Relaxed),
            kernel_kills: self.kernel_kills.load(Relaxed),
            unheld: self.unheld.load(Relaxed),
        }
    }
}

/// A loss event when the kernel's counter grew since the last one reported.
fn loss_event(reported: &mut u64, total: u64) -> Option<LossEvent> {
    if total <= *reported {
        return None;
    }
    let ev = LossEvent {
        timestamp: custos_event::timestamp(SystemTime::now()),
        what: custos_event::Loss::Records,
        lost: total - *reported,
        total,
    };
    *reported = total;
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_reported_once_per_growth() {
        let mut seen = 0;
        assert!(loss_event(&mut seen, 0).is_none());
        let e = loss_event(&mut seen, 5).expect("grew");
        assert_eq!((e.lost, e.total), (5, 5));
        assert!(loss_event(&mut seen, 5).is_none());
        let e = loss_event(&mut seen, 7).expect("grew again");
        assert_eq!((e.lost, e.total), (2, 7));
    }
}
