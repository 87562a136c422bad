//! One verdict engine for both kinds of hold: execs and image loads fanotify holds
//! (`FAN_OPEN_EXEC_PERM`, `FAN_OPEN_PERM`) and execs the eBPF sensor stopped because fanotify cannot see them (memfd, unwatched
//! filesystems). Policy changes invalidate what both sensors cached in the kernel.

use custos_event::{Access, Decision, Mode, Reason};
use custos_sensor_ebpf::{answer_untaken, Controls, ExecRecord, HeldProcess, HoldError};
use custos_sensor_fanotify::{Group, HeldExec};
use custos_verdict::{fallback, Arbiter, Content, FileKey, Held, Marks, ProcessInfo};
use std::io;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// A hold from either sensor.
#[derive(Debug)]
pub enum AnyHeld {
    /// Held by fanotify: an exec or a plain open.
    Exec(HeldExec),
    /// Stopped by the eBPF exec program.
    Process(HeldProcess),
}

macro_rules! each {
    ($self:expr, $h:ident => $e:expr) => {
        match $self {
            AnyHeld::Exec($h) => $e,
            AnyHeld::Process($h) => $e,
        }
    };
}

impl Held for AnyHeld {
    fn pid(&self) -> i32 {
        each!(self, h => h.pid())
    }
    fn key(&self) -> io::Result<FileKey> {
        each!(self, h => h.key())
    }
    fn path(&self) -> Option<String> {
        each!(self, h => h.path())
    }
    fn content(&self) -> io::Result<Box<dyn Content>> {
        each!(self, h => h.content())
    }
    fn process(&self) -> ProcessInfo {
        each!(self, h => h.process())
    }
    fn ignore(&self) -> io::Result<()> {
        each!(self, h => h.ignore())
    }
    fn ignore_opens(&self) -> io::Result<()> {
        each!(self, h => h.ignore_opens())
    }
    fn unignore(&self) {
        each!(self, h => h.unignore())
    }
    fn access(&self) -> Access {
        each!(self, h => h.access())
    }
    fn opener(&self) -> Option<String> {
        each!(self, h => h.opener())
    }
    fn answer(self, decision: Decision) -> io::Result<()> {
        each!(self, h => h.answer(decision))
    }
    fn markable(&self) -> bool {
        each!(self, h => h.markable())
    }
    fn mutable(&self) -> bool {
        each!(self, h => h.mutable())
    }
    fn remember_deny(&self, key: &FileKey) {
        each!(self, h => h.remember_deny(key))
    }
}

/// The eBPF sensor's control maps, once it has loaded.
pub type SharedControls = Arc<OnceLock<Arc<Controls>>>;

/// Cache invalidation in the kernel: fanotify ignore marks and the eBPF blocked-file map.
pub struct Invalidate {
    /// The fanotify group.
    pub group: Arc<Group>,
    /// The eBPF sensor, if loaded.
    pub controls: SharedControls,
}

impl Marks for Invalidate {
    fn flush_ignores(&self) -> io::Result<()> {
        let r = Marks::flush_ignores(&*self.group);
        if let Some(c) = self.controls.get() {
            c.flush_blocked().map_err(io::Error::other)?;
        }
        r
    }
}

/// An exec that cannot be held is killed when the mode's overload fallback denies.
pub fn kill_on_overload(mode: Mode) -> bool {
    fallback(mode, Reason::Overload).decision == Decision::Deny
}

/// Where the sensor's reader hands held execs, so it never waits on a file system itself:
/// taking a hold over opens `/proc/PID/exe`, which a stalled FUSE server can block.
pub struct Intake {
    tx: Option<crossbeam_channel::Sender<ExecRecord>>,
    thread: Option<JoinHandle<()>>,
}

impl Intake {
    /// Starts the intake thread.
    pub fn start(arbiter: Arc<Arbiter<AnyHeld>>, controls: Arc<Controls>) -> io::Result<Intake> {
        let (tx, rx) = crossbeam_channel::unbounded::<ExecRecord>();
        let thread = std::thread::Builder::new()
            .name("custos-hold".into())
            .spawn(move || {
                for rec in rx {
                    match HeldProcess::new(&rec, controls.clone()) {
                        Ok(h) => arbiter.submit(AnyHeld::Process(h)),
                        // Killed meanwhile: nothing left to judge.
                        Err(HoldError::Gone) => controls.release(rec.pid, rec.hold_stamp),
                        Err(e) => {
                            let allow = !kill_on_overload(arbiter.mode());
                            tracing::error!(pid = rec.pid, allow, "{:#}", anyhow::Error::new(e));
                            answer_untaken(&rec, &controls, allow);
                        }
                    }
                }
            })?;
        Ok(Intake {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a held exec.
    pub fn hold(&self, rec: ExecRecord) {
        if let Some(tx) = &self.tx {
            // The receiver lives until `finish`.
            let _ = tx.send(rec);
        }
    }

    /// Submits everything queued, then stops. Waits at most 5 s: the thread can be stuck on a
    /// stalled file system, and shutdown must not be (what it still holds is resumed by the
    /// guardian once the agent is gone).
    pub fn finish(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let t0 = std::time::Instant::now();
            while !t.is_finished() && t0.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("the hold intake is stuck (a stalled file system?); leaving it");
            }
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.finish();
    }
}
