//! One exec (or plain open) held by the kernel.

use crate::group::Group;
use crate::procfs;
use custos_event::{Access, Decision};
use custos_verdict::{Content, FileKey, Held, PositionedFile, ProcessInfo};
use nix::sys::fanotify::FanotifyEvent;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

/// A `FAN_OPEN_EXEC_PERM` event (an exec) or `FAN_OPEN_PERM` event (a plain open: an image
/// load if the file is an ELF image) not yet answered. Dropping it unanswered answers
/// `FAN_ALLOW`, so no code path (error, panic unwinding, shutdown) can leave the exec hanging.
#[derive(Debug)]
pub struct HeldExec {
    group: Arc<Group>,
    event: Option<FanotifyEvent>,
    pid: i32,
    access: Access,
}

impl HeldExec {
    pub(crate) fn new(group: Arc<Group>, event: FanotifyEvent, access: Access) -> HeldExec {
        let pid = event.pid();
        HeldExec {
            group,
            event: Some(event),
            pid,
            access,
        }
    }

    fn event(&self) -> io::Result<&FanotifyEvent> {
        self.event
            .as_ref()
            .ok_or_else(|| io::Error::other("event already answered"))
    }

    fn file(&self) -> io::Result<std::fs::File> {
        let ev = self.event()?;
        let fd = ev.fd().ok_or_else(|| io::Error::other("event has no fd"))?;
        Ok(std::fs::File::from(fd.try_clone_to_owned()?))
    }

    fn send(&mut self, allow: bool) -> io::Result<()> {
        let Some(ev) = self.event.take() else {
            return Ok(());
        };
        let fd = ev.fd().ok_or_else(|| io::Error::other("event has no fd"))?;
        self.group.respond(fd, allow).map_err(io::Error::from)
        // `ev` drops here and closes the event fd.
    }
}

impl Held for HeldExec {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn key(&self) -> io::Result<FileKey> {
        let ev = self.event()?;
        let fd = ev.fd().ok_or_else(|| io::Error::other("event has no fd"))?;
        Ok(FileKey::from_stat(&nix::sys::stat::fstat(fd)?))
    }

    fn path(&self) -> Option<String> {
        let ev = self.event().ok()?;
        let fd = ev.fd()?;
        procfs::fd_path(fd.as_raw_fd())
    }

    fn content(&self) -> io::Result<Box<dyn Content>> {
        // A dup shares the event's open file, which the kernel opened with FMODE_NONOTIFY:
        // reading it raises no fanotify events, so the agent never waits on itself.
        Ok(Box::new(PositionedFile::new(self.file()?)))
    }

    fn process(&self) -> ProcessInfo {
        procfs::process_info(self.pid)
    }

    fn ignore(&self) -> io::Result<()> {
        let ev = self.event()?;
        let fd = ev.fd().ok_or_else(|| io::Error::other("event has no fd"))?;
        self.group
            .ignore(fd.as_fd(), false)
            .map_err(io::Error::from)
    }

    fn ignore_opens(&self) -> io::Result<()> {
        let ev = self.event()?;
        let fd = ev.fd().ok_or_else(|| io::Error::other("event has no fd"))?;
        self.group.ignore(fd.as_fd(), true).map_err(io::Error::from)
    }

    fn access(&self) -> Access {
        self.access
    }

    fn opener(&self) -> Option<String> {
        procfs::exe(self.pid)
    }

    fn unignore(&self) {
        if let Ok(Some(fd)) = self.event().map(|e| e.fd()) {
            self.group.unignore(fd);
        }
    }

    fn answer(mut self, decision: Decision) -> io::Result<()> {
        self.send(decision == Decision::Allow)
    }
}

impl Drop for HeldExec {
    fn drop(&mut self) {
        if self.event.is_some() {
            if let Err(e) = self.send(true) {
                tracing::error!(pid = self.pid, "cannot answer dropped exec: {e}");
            }
        }
    }
}
