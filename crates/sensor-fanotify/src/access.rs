//! The file access group: `FAN_OPEN_PERM` on the inodes of protected files only.
//!
//! Inode marks, not filesystem marks: an open of any other file never leaves the kernel, so
//! access rules cost nothing outside the files they protect. A mark is on the inode, so every
//! name of the file (hard links included) is covered.
//!
//! Kernel requirements: `CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y`, `CAP_SYS_ADMIN`. The kernel holds
//! each open until this group answers; closing the group (including when the agent is killed)
//! allows everything pending.

use crate::fan::Wake;
use crate::group::SensorError;
use crate::procfs;
use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyEvent, InitFlags, MarkFlags, MaskFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// A fanotify group in `FAN_CLASS_CONTENT` holding opens of marked inodes.
#[derive(Debug)]
pub struct AccessGroup {
    fan: Fanotify,
}

impl AccessGroup {
    /// Creates the group (unlimited queue and marks; event fds read-only, close-on-exec). Events
    /// name the opening thread (`FAN_REPORT_TID`), whose system call says how it opens.
    pub fn new() -> Result<Arc<AccessGroup>, SensorError> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT
                | InitFlags::FAN_REPORT_TID
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_UNLIMITED_QUEUE
                | InitFlags::FAN_UNLIMITED_MARKS,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(SensorError::Init)?;
        Ok(Arc::new(AccessGroup { fan }))
    }

    /// Holds every open of the inode `path` names (following a final symlink). Not evictable:
    /// the mark must stay while the rule does.
    pub fn protect(&self, path: &Path) -> Result<(), Errno> {
        self.fan.mark(
            MarkFlags::FAN_MARK_ADD,
            MaskFlags::FAN_OPEN_PERM,
            self.fan.as_fd(),
            Some(path),
        )
    }

    /// Removes every inode mark (before the rules are protected anew).
    pub fn clear(&self) -> Result<(), Errno> {
        self.fan.mark(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            self.fan.as_fd(),
            None::<&Path>,
        )
    }

    fn respond(&self, fd: BorrowedFd<'_>, allow: bool) -> Result<(), Errno> {
        crate::fan::respond(&self.fan, fd, allow)
    }

    /// Detaches from the kernel now ([`crate::fan::release`]): everything pending is allowed.
    pub fn release_kernel(&self) {
        crate::fan::release(&self.fan);
    }

    /// Reads events until `stop` is readable, handing each held open to `on_open`. The
    /// callback must not open a protected file itself: its own open would wait for it.
    pub fn run(
        self: &Arc<Self>,
        stop: &OwnedFd,
        mut on_open: impl FnMut(HeldOpen),
    ) -> Result<(), SensorError> {
        loop {
            match crate::fan::wait(self.fan.as_fd(), stop).map_err(SensorError::Read)? {
                Wake::Stop => return Ok(()),
                Wake::Ready => {}
                Wake::Again => continue,
            }
            let events = match self.fan.read_events() {
                Ok(ev) => ev,
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                // The kernel could not open one event's fd: it denied that open itself.
                Err(e) if !matches!(e, Errno::EBADF | Errno::EINVAL | Errno::EFAULT) => {
                    tracing::error!("reading a file access event failed ({e}); that open was denied by the kernel");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                Err(e) => return Err(SensorError::Read(e)),
            };
            for ev in events {
                let held = HeldOpen {
                    group: self.clone(),
                    tid: ev.pid(),
                    event: Some(ev),
                };
                if held
                    .event
                    .as_ref()
                    .is_some_and(|e| e.check_version() && e.fd().is_some())
                {
                    on_open(held);
                }
                // Otherwise the drop answers "allow".
            }
        }
    }
}

/// A `FAN_OPEN_PERM` event not yet answered. Dropping it unanswered allows the open.
#[derive(Debug)]
pub struct HeldOpen {
    group: Arc<AccessGroup>,
    event: Option<FanotifyEvent>,
    tid: i32,
}

impl HeldOpen {
    /// Thread id of the opener (`/proc/TID` names the thread, and its process's files).
    pub fn tid(&self) -> i32 {
        self.tid
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.event.as_ref()?.fd()
    }

    /// (dev, ino, ctime in ns) of the file being opened.
    pub fn file_id(&self) -> Option<(u64, u64, i64)> {
        let st = nix::sys::stat::fstat(self.fd()?).ok()?;
        Some((
            st.st_dev,
            st.st_ino,
            st.st_ctime.saturating_mul(1_000_000_000) + st.st_ctime_nsec,
        ))
    }

    /// The path the process opened (through which name: a hard link shows as itself).
    pub fn path(&self) -> Option<String> {
        procfs::fd_path(self.fd()?.as_raw_fd())
    }

    /// Answers the kernel.
    pub fn answer(mut self, allow: bool) -> std::io::Result<()> {
        let Some(ev) = self.event.take() else {
            return Ok(());
        };
        let fd = ev
            .fd()
            .ok_or_else(|| std::io::Error::other("event has no fd"))?;
        self.group.respond(fd, allow).map_err(std::io::Error::from)
    }
}

impl Drop for HeldOpen {
    fn drop(&mut self) {
        if let Some(ev) = self.event.take() {
            if let Some(fd) = ev.fd() {
                if let Err(e) = self.group.respond(fd, true) {
                    tracing::error!(tid = self.tid, "cannot answer a dropped file access: {e}");
                }
            }
        }
    }
}

/// Whether `tid` is one of this process's threads: `tgkill(own pid, tid, 0)` succeeds only
/// for those (one system call, no `/proc` lookup).
pub fn is_own_thread(tid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only checks that the thread exists in this group.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_and_others() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        assert!(is_own_thread(me));
        let other = std::thread::spawn(|| unsafe { libc::gettid() });
        let t = other.join().expect("thread");
        assert!(!is_own_thread(t), "an exited thread");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        assert!(!is_own_thread(child.id() as i32), "another process");
        let _ = child.kill();
        let _ = child.wait();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let live = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() }).expect("send");
            let _ = done_rx.recv();
        });
        assert!(
            is_own_thread(rx.recv().expect("tid")),
            "a live thread of ours"
        );
        drop(done_tx);
        live.join().expect("join");
    }
}
