//! The fanotify group: init, filesystem marks, reading, ignore marks.

use crate::held::HeldExec;
use crate::mounts::WatchedFs;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Errors setting up or running the sensor.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// `fanotify_init` failed (needs root and `CONFIG_FANOTIFY_ACCESS_PERMISSIONS`).
    #[error(
        "fanotify_init failed (custos run needs root and a kernel with fanotify permission events)"
    )]
    Init(#[source] Errno),
    /// `fanotify_mark` on a watched filesystem failed.
    #[error("cannot watch execs on the filesystem of {path}")]
    Mark {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: Errno,
    },
    /// Reading events failed.
    #[error("reading fanotify events failed")]
    Read(#[source] Errno),
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo")]
    Mountinfo(#[source] std::io::Error),
}

/// A fanotify group in `FAN_CLASS_CONTENT` holding execs on the watched filesystems.
#[derive(Debug)]
pub struct Group {
    fan: Fanotify,
    evictable: AtomicBool,
    stats: SensorStats,
}

/// Sensor-level counters.
#[derive(Debug, Default)]
pub struct SensorStats {
    /// Ignore marks dropped because a writer closed the file (covers writes through `mmap`,
    /// which do not clear ignore marks in the kernel).
    pub unmarked_on_write: AtomicU64,
    /// Events that could not be handled (version mismatch, queue overflow).
    pub bad_events: AtomicU64,
    /// Reads that failed because the kernel could not open an event fd; the kernel denied
    /// those execs itself.
    pub read_errors: AtomicU64,
}

impl Group {
    /// Creates the group: `FAN_CLASS_CONTENT | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS`, event
    /// fds opened read-only and close-on-exec.
    pub fn new() -> Result<Arc<Group>, SensorError> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_UNLIMITED_QUEUE
                | InitFlags::FAN_UNLIMITED_MARKS,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(SensorError::Init)?;
        Ok(Arc::new(Group {
            fan,
            evictable: AtomicBool::new(true),
            stats: SensorStats::default(),
        }))
    }

    /// Holds every exec on the filesystem that `mount` is on (`FAN_MARK_FILESYSTEM`).
    pub fn watch(&self, mount: &Path) -> Result<(), SensorError> {
        self.fan
            .mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
                MaskFlags::FAN_OPEN_EXEC_PERM,
                self.fan.as_fd(),
                Some(mount),
            )
            .map_err(|source| SensorError::Mark {
                path: mount.to_owned(),
                source,
            })
    }

    /// Marks every filesystem in `list`. Errors on an explicitly configured mount are returned;
    /// discovered ones that fail are skipped with a warning (e.g. a filesystem that refuses marks).
    pub fn watch_all(
        &self,
        list: &[WatchedFs],
        explicit: bool,
    ) -> Result<Vec<WatchedFs>, SensorError> {
        let mut done = Vec::new();
        for fs in list {
            match self.watch(&fs.mount) {
                Ok(()) => done.push(fs.clone()),
                Err(e) if !explicit => {
                    tracing::warn!(mount = %fs.mount.display(), "not watched: {e}: {}", e.source_errno());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Counters.
    pub fn stats(&self) -> &SensorStats {
        &self.stats
    }

    /// Places an ignore mark for exec permission events on the inode behind `fd`.
    ///
    /// The kernel clears it on `write()`/`truncate` (FS_MODIFY) but not on stores through a
    /// shared writable `mmap`. So the same inode mark also asks for `FAN_CLOSE_WRITE`: a writable
    /// mapping keeps the file open for writing (exec fails with ETXTBSY meanwhile), and when the
    /// last writer goes away [`Group::run`] removes the mark. Evictable where the kernel supports
    /// it (≥ 5.19), so the mark does not pin the inode in memory.
    pub(crate) fn ignore(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        self.mark_inode(fd, MarkFlags::empty(), MaskFlags::FAN_CLOSE_WRITE)?;
        self.mark_inode(
            fd,
            MarkFlags::FAN_MARK_IGNORED_MASK,
            MaskFlags::FAN_OPEN_EXEC_PERM,
        )
    }

    fn mark_inode(
        &self,
        fd: BorrowedFd<'_>,
        extra: MarkFlags,
        mask: MaskFlags,
    ) -> Result<(), Errno> {
        let base = MarkFlags::FAN_MARK_ADD | extra;
        if self.evictable.load(Ordering::Relaxed) {
            match self.fan.mark(
                base | MarkFlags::FAN_MARK_EVICTABLE,
                mask,
                fd,
                None::<&Path>,
            ) {
                Err(Errno::EINVAL) => {
                    tracing::info!("kernel has no evictable marks; using plain inode marks");
                    self.evictable.store(false, Ordering::Relaxed);
                }
                r => return r,
            }
        }
        self.fan.mark(base, mask, fd, None::<&Path>)
    }

    /// Removes the inode mark (ignore mask and close-write interest) of the file behind `fd`.
    pub(crate) fn unignore(&self, fd: BorrowedFd<'_>) {
        let remove = |flags, mask| {
            self.fan
                .mark(MarkFlags::FAN_MARK_REMOVE | flags, mask, fd, None::<&Path>)
        };
        // ENOENT: already gone (flushed or evicted).
        let _ = remove(
            MarkFlags::FAN_MARK_IGNORED_MASK,
            MaskFlags::FAN_OPEN_EXEC_PERM,
        );
        let _ = remove(MarkFlags::empty(), MaskFlags::FAN_CLOSE_WRITE);
    }

    /// Removes all inode marks (the ignore marks); filesystem marks stay.
    pub fn flush_ignores(&self) -> Result<(), Errno> {
        self.fan.mark(
            MarkFlags::FAN_MARK_FLUSH,
            MaskFlags::empty(),
            self.fan.as_fd(),
            None::<&Path>,
        )
    }

    pub(crate) fn respond(&self, fd: BorrowedFd<'_>, allow: bool) -> Result<(), Errno> {
        use nix::sys::fanotify::{FanotifyResponse, Response};
        let r = if allow {
            Response::FAN_ALLOW
        } else {
            Response::FAN_DENY
        };
        self.fan.write_response(FanotifyResponse::new(fd, r))
    }

    /// Detaches from the kernel now, whatever still holds this struct (a thread stuck in a
    /// stalled file system keeps the process's fd table alive past exit): the fanotify fd is
    /// replaced by `/dev/null`, so the kernel drops the group and lets every pending exec go.
    /// For the agent's very last step; the group is useless after it.
    pub fn release_kernel(&self) {
        use std::os::fd::{AsFd, AsRawFd};
        if let Ok(null) = std::fs::File::open("/dev/null") {
            // SAFETY: dup2 onto an fd this struct owns; the number stays valid (now /dev/null),
            // so nothing that still uses it can touch an unrelated file.
            unsafe { libc::dup2(null.as_raw_fd(), self.fan.as_fd().as_raw_fd()) };
        }
    }

    /// Reads events until `stop` becomes readable, handing each held exec to `on_exec`.
    /// Events that are not holdable (queue overflow, wrong version) are logged and skipped;
    /// a held exec that `on_exec` drops unanswered is allowed by [`HeldExec`]'s `Drop`.
    pub fn run(
        self: &Arc<Self>,
        stop: &OwnedFd,
        mut on_exec: impl FnMut(HeldExec),
    ) -> Result<(), SensorError> {
        loop {
            let mut fds = [
                PollFd::new(self.fan.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SensorError::Read(e)),
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(());
            }
            if !fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                continue;
            }
            let events = match self.fan.read_events() {
                Ok(ev) => ev,
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                // EBADF/EINVAL/EFAULT would be our bug. Anything else means the kernel could not
                // open one event's fd (fd or memory exhaustion, a vanishing file): it has denied
                // that one exec itself, and the agent must keep reading, not die.
                Err(e) if !matches!(e, Errno::EBADF | Errno::EINVAL | Errno::EFAULT) => {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    // The lost event may have been a FAN_CLOSE_WRITE (dropped, not denied) that
                    // should have removed an ignore mark: drop them all, to be safe.
                    let _ = self.flush_ignores();
                    tracing::error!("reading a fanotify event failed ({e}): a held exec was denied by the kernel or a write notice lost; ignore marks flushed");
                    if matches!(e, Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM) {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    continue;
                }
                Err(e) => return Err(SensorError::Read(e)),
            };
            for ev in events {
                if !ev.check_version() {
                    self.stats.bad_events.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(version = ev.version(), "fanotify event version mismatch");
                    // Dropping a HeldExec answers "allow", so a permission event cannot hang.
                    drop(HeldExec::new(self.clone(), ev));
                    continue;
                }
                let Some(fd) = ev.fd() else {
                    self.stats.bad_events.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("fanotify queue overflow");
                    continue;
                };
                if ev.mask().contains(MaskFlags::FAN_OPEN_EXEC_PERM) {
                    on_exec(HeldExec::new(self.clone(), ev));
                } else if ev.mask().contains(MaskFlags::FAN_CLOSE_WRITE) {
                    // A file whose execs we stopped seeing was written: see them again.
                    self.unignore(fd);
                    self.stats.unmarked_on_write.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl SensorError {
    fn source_errno(&self) -> String {
        match self {
            SensorError::Mark { source, .. }
            | SensorError::Init(source)
            | SensorError::Read(source) => source.desc().to_owned(),
            SensorError::Mountinfo(e) => e.to_string(),
        }
    }
}

impl custos_verdict::Marks for Group {
    fn flush_ignores(&self) -> std::io::Result<()> {
        Group::flush_ignores(self).map_err(std::io::Error::from)
    }
}
