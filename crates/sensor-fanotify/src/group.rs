//! The fanotify group: init, filesystem marks, reading, ignore marks.

use crate::fan::Wake;
use crate::held::HeldExec;
use crate::mounts::WatchedFs;
use custos_event::Access;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A fanotify group in `FAN_CLASS_CONTENT` holding execs on the watched filesystems, and (while
/// images are controlled) plain opens too.
#[derive(Debug)]
pub struct Group {
    fan: Fanotify,
    evictable: AtomicBool,
    stats: SensorStats,
    images: Mutex<Images>,
}

/// Whether the filesystem marks ask for `FAN_OPEN_PERM`, and where it was asked.
#[derive(Debug, Default)]
struct Images {
    on: bool,
    /// (mount point, `major:minor`) of every filesystem marked for plain opens since `on`.
    marked: Vec<(PathBuf, String)>,
}

/// Both permission events: what filesystem marks ask for while images are controlled, and what
/// an ignore mark stops for a file whose verdict allows it (a decision is about the file, not
/// about how it is opened; a file that is no image is ignored for plain opens only).
const EXEC_AND_OPEN: MaskFlags = MaskFlags::FAN_OPEN_EXEC_PERM.union(MaskFlags::FAN_OPEN_PERM);

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
            images: Mutex::default(),
        }))
    }

    fn images(&self) -> MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds every exec on the filesystem that `mount` is on (`FAN_MARK_FILESYSTEM`), and every
    /// plain open too while images are controlled ([`Group::set_images`]).
    pub fn watch(&self, mount: &Path) -> Result<(), SensorError> {
        // Under the lock: a concurrent switch cannot miss a filesystem marked meanwhile.
        let mut images = self.images();
        let mask = if images.on {
            EXEC_AND_OPEN
        } else {
            MaskFlags::FAN_OPEN_EXEC_PERM
        };
        self.mark_fs(MarkFlags::FAN_MARK_ADD, mask, mount)
            .map_err(|source| SensorError::Mark {
                path: mount.to_owned(),
                source,
            })?;
        if images.on {
            if let Some(dev) = dev_of(mount) {
                images.remember(mount, dev);
            }
        }
        Ok(())
    }

    fn mark_fs(&self, op: MarkFlags, mask: MaskFlags, mount: &Path) -> Result<(), Errno> {
        self.fan.mark(
            op | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            self.fan.as_fd(),
            Some(mount),
        )
    }

    /// Starts or stops holding plain opens (`FAN_OPEN_PERM`) on the watched filesystems: what
    /// `ld.so` and `dlopen` do to load an image. `list` is every watched filesystem now; the
    /// caller holds the list's lock, so the mount follower cannot mark one in between with the
    /// old mask. A filesystem whose mount point no longer has its device (unmounted) is skipped
    /// rather than marking whatever is mounted below. Filesystems marked later by
    /// [`Group::watch`] get the current mask.
    ///
    /// Needs `CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y` (as `FAN_OPEN_EXEC_PERM` does).
    pub fn set_images(&self, on: bool, list: &[WatchedFs]) {
        let mut images = self.images();
        if !on {
            for (mount, _) in std::mem::take(&mut images.marked) {
                // ENOENT: unmounted, the mark went with it.
                let _ = self.mark_fs(MarkFlags::FAN_MARK_REMOVE, MaskFlags::FAN_OPEN_PERM, &mount);
            }
            images.on = false;
            return;
        }
        images.on = true;
        for fs in list {
            if dev_of(&fs.mount).as_deref() != Some(fs.dev.as_str()) {
                tracing::warn!(mount = %fs.mount.display(), dev = %fs.dev, "not holding image loads: no longer mounted there");
                continue;
            }
            match self.mark_fs(MarkFlags::FAN_MARK_ADD, EXEC_AND_OPEN, &fs.mount) {
                Ok(()) => images.remember(&fs.mount, fs.dev.clone()),
                Err(e) => {
                    tracing::error!(mount = %fs.mount.display(), "cannot hold image loads: {e}")
                }
            }
        }
    }

    /// Whether plain opens are held now.
    pub fn images_on(&self) -> bool {
        self.images().on
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

    /// Places an ignore mark for exec and plain-open permission events on the inode behind
    /// `fd` (`opens_only`: plain opens only, for a file that is no image).
    ///
    /// The kernel clears it on `write()`/`truncate` (FS_MODIFY) but not on stores through a
    /// shared writable `mmap`. So the same inode mark also asks for `FAN_CLOSE_WRITE`: a writable
    /// mapping keeps the file open for writing (exec fails with ETXTBSY meanwhile), and when the
    /// last writer goes away [`Group::run`] removes the mark. Evictable where the kernel supports
    /// it (≥ 5.19), so the mark does not pin the inode in memory.
    pub(crate) fn ignore(&self, fd: BorrowedFd<'_>, opens_only: bool) -> Result<(), Errno> {
        self.mark_inode(fd, MarkFlags::empty(), MaskFlags::FAN_CLOSE_WRITE)?;
        let mask = if opens_only {
            MaskFlags::FAN_OPEN_PERM
        } else {
            EXEC_AND_OPEN
        };
        self.mark_inode(fd, MarkFlags::FAN_MARK_IGNORED_MASK, mask)
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
        let _ = remove(MarkFlags::FAN_MARK_IGNORED_MASK, EXEC_AND_OPEN);
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
        crate::fan::respond(&self.fan, fd, allow)
    }

    /// Detaches from the kernel now ([`crate::fan::release`]): every pending exec goes.
    pub fn release_kernel(&self) {
        crate::fan::release(&self.fan);
    }

    /// Reads events until `stop` becomes readable, handing each held exec or plain open to
    /// `on_exec`. Events that are not holdable (queue overflow, wrong version) are logged and
    /// skipped; a hold that `on_exec` drops unanswered is allowed by [`HeldExec`]'s `Drop`.
    ///
    /// On stop, plain opens stop being held first and what is already queued is handed over:
    /// the agent's own opens (saving state on the way out) must not wait for a reader that is
    /// gone.
    pub fn run(
        self: &Arc<Self>,
        stop: &OwnedFd,
        mut on_exec: impl FnMut(HeldExec),
    ) -> Result<(), SensorError> {
        loop {
            match crate::fan::wait(self.fan.as_fd(), stop).map_err(SensorError::Read)? {
                Wake::Stop => {
                    self.set_images(false, &[]);
                    return self.drain(&mut on_exec);
                }
                Wake::Ready => self.read_once(&mut on_exec)?,
                Wake::Again => {}
            }
        }
    }

    /// Hands over every event queued now, without waiting for more.
    fn drain(self: &Arc<Self>, on_exec: &mut impl FnMut(HeldExec)) -> Result<(), SensorError> {
        loop {
            let mut fds = [PollFd::new(self.fan.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => return Ok(()),
                Ok(_) => self.read_once(on_exec)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(SensorError::Read(e)),
            }
        }
    }

    /// One read of the queue (blocks if it is empty).
    fn read_once(self: &Arc<Self>, on_exec: &mut impl FnMut(HeldExec)) -> Result<(), SensorError> {
        let events = match self.fan.read_events() {
            Ok(ev) => ev,
            Err(Errno::EINTR | Errno::EAGAIN) => return Ok(()),
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
                return Ok(());
            }
            Err(e) => return Err(SensorError::Read(e)),
        };
        for ev in events {
            if !ev.check_version() {
                self.stats.bad_events.fetch_add(1, Ordering::Relaxed);
                tracing::error!(version = ev.version(), "fanotify event version mismatch");
                // Dropping a HeldExec answers "allow", so a permission event cannot hang.
                drop(HeldExec::new(self.clone(), ev, Access::Exec));
                continue;
            }
            let Some(fd) = ev.fd() else {
                self.stats.bad_events.fetch_add(1, Ordering::Relaxed);
                tracing::error!("fanotify queue overflow");
                continue;
            };
            // One exec open raises both permission events, each on its own: the exec one first.
            let mask = ev.mask();
            if mask.contains(MaskFlags::FAN_OPEN_EXEC_PERM) {
                on_exec(HeldExec::new(self.clone(), ev, Access::Exec));
            } else if mask.contains(MaskFlags::FAN_OPEN_PERM) {
                on_exec(HeldExec::new(self.clone(), ev, Access::Load));
            } else if mask.contains(MaskFlags::FAN_CLOSE_WRITE) {
                // A file whose execs we stopped seeing was written: see them again.
                self.unignore(fd);
                self.stats.unmarked_on_write.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl Images {
    fn remember(&mut self, mount: &Path, dev: String) {
        if !self.marked.iter().any(|(m, d)| m == mount && *d == dev) {
            self.marked.push((mount.to_owned(), dev));
        }
    }
}

/// `major:minor` of the filesystem `path` is on, as `/proc/self/mountinfo` writes it.
fn dev_of(path: &Path) -> Option<String> {
    use nix::sys::stat::{major, minor};
    let st = nix::sys::stat::stat(path).ok()?;
    Some(format!("{}:{}", major(st.st_dev), minor(st.st_dev)))
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
