//! One verdict engine for both kinds of hold: execs fanotify holds (`FAN_OPEN_EXEC_PERM`) and
//! execs the eBPF sensor stopped because fanotify cannot see them (memfd, unwatched
//! filesystems). Policy changes invalidate what both sensors cached in the kernel.

use custos_event::{Decision, Mode, Reason};
use custos_sensor_ebpf::{Controls, HeldProcess};
use custos_sensor_fanotify::{Group, HeldExec};
use custos_verdict::{fallback, Content, FileKey, Held, Marks, ProcessInfo};
use std::io;
use std::sync::{Arc, OnceLock};

/// A hold from either sensor.
#[derive(Debug)]
pub enum AnyHeld {
    /// Held by fanotify.
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
    fn unignore(&self) {
        each!(self, h => h.unignore())
    }
    fn answer(self, decision: Decision) -> io::Result<()> {
        each!(self, h => h.answer(decision))
    }
    fn markable(&self) -> bool {
        each!(self, h => h.markable())
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
