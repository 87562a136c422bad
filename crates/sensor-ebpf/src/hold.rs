//! One exec fanotify cannot see, stopped by the exec program until the verdict engine judges
//! it through `/proc/PID/exe`.

use crate::controls::Controls;
use crate::record::ExecRecord;
use custos_event::Decision;
use custos_verdict::{Content, FileKey, Held, PositionedFile, ProcessInfo};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// A process stopped (`SIGSTOP`) right after its exec. Answering "allow" resumes it
/// (`SIGCONT`), "deny" kills it (`SIGKILL`); both through a pidfd, so a reused pid can never
/// be signalled. Dropping it unanswered resumes it, so no path leaves a process stopped.
pub struct HeldProcess {
    pid: u32,
    stamp: u64,
    pidfd: OwnedFd,
    /// `/proc/PID/exe`, or why it could not be opened (the verdict is then the fallback).
    exe: Result<std::fs::File, String>,
    path: Option<String>,
    info: ProcessInfo,
    controls: Arc<Controls>,
    answered: bool,
}

impl std::fmt::Debug for HeldProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldProcess")
            .field("pid", &self.pid)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why a hold could not be taken over.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The process is gone (or its pid names another process now): nothing to judge.
    #[error("the held process is gone")]
    Gone,
    /// It is still there, but no pidfd could be made (fd limit): answer without one.
    #[error("cannot take over the hold")]
    Io(#[source] io::Error),
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd; null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // Already gone: nothing left to resume or kill.
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Whether `pid` is still the process that started at `start_ns` (ns since boot). Reads
/// `/proc/PID/stat` as bytes: a program name need not be UTF-8. `Ok(false)`: gone or reused;
/// `Err`: cannot tell (fd exhaustion, say).
fn same_process(pid: u32, start_ns: u64) -> io::Result<bool> {
    let want = custos_process::ticks_from_ns(start_ns, custos_process::clk_tck());
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(b) => Ok(custos_process::parse_stat(&String::from_utf8_lossy(&b))
            .is_some_and(|(_, _, start)| start == want)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A pidfd for `pid` if it still names the process that started at `start_ns`.
fn pidfd_for(pid: u32, start_ns: u64) -> Result<OwnedFd, HoldError> {
    let fd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => HoldError::Gone,
        _ => HoldError::Io(e),
    })?;
    // The pidfd pins whichever process has the pid now: make sure it is the one that exec'd.
    match same_process(pid, start_ns) {
        Ok(true) => Ok(fd),
        Ok(false) => Err(HoldError::Gone),
        Err(e) => Err(HoldError::Io(e)),
    }
}

/// What became of a signal to a held process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signalled {
    /// Delivered.
    Sent,
    /// The process is gone (or its pid names another one): nothing to do.
    Gone,
    /// Could not be sent, or not safely (fd exhaustion): the hold must stay for a retry.
    Unknown,
}

impl Signalled {
    /// The hold can be forgotten.
    pub(crate) fn settled(self) -> bool {
        self != Signalled::Unknown
    }
}

/// Sends `sig` to `pid` if it is still the process that started at `start_ns`, through a
/// pidfd when one can be had.
pub(crate) fn signal_held(pid: u32, start_ns: u64, sig: i32) -> Signalled {
    match pidfd_for(pid, start_ns) {
        Ok(fd) => match pidfd_signal(std::os::fd::AsFd::as_fd(&fd), sig) {
            Ok(()) => Signalled::Sent,
            Err(_) => Signalled::Unknown,
        },
        Err(HoldError::Gone) => Signalled::Gone,
        // No pidfd (fd limit): check, then signal; a pid reused in between is the residual
        // risk of this last-resort path. Unknowable: a stray SIGCONT is harmless, a stray
        // SIGKILL is not.
        Err(HoldError::Io(_)) => match same_process(pid, start_ns) {
            Ok(false) => Signalled::Gone,
            Ok(true) => {
                let s = nix::sys::signal::Signal::try_from(sig).ok();
                match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s) {
                    Ok(()) => Signalled::Sent,
                    Err(_) => Signalled::Unknown,
                }
            }
            Err(_) if sig == libc::SIGCONT => {
                let s = nix::sys::signal::Signal::SIGCONT;
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s);
                Signalled::Unknown
            }
            Err(_) => Signalled::Unknown,
        },
    }
}

/// A memfd, or another file with no name left on shmem or hugetlbfs (unlinked): content
/// that any holder of a writable fd or mapping can still change.
fn is_anonymous_shmem(f: &std::fs::File) -> bool {
    use nix::sys::statfs::{fstatfs, HUGETLBFS_MAGIC, TMPFS_MAGIC};
    use std::os::unix::fs::MetadataExt;
    let unlinked = f.metadata().is_ok_and(|m| m.nlink() == 0);
    unlinked
        && fstatfs(f).is_ok_and(|s| {
            s.filesystem_type() == TMPFS_MAGIC || s.filesystem_type() == HUGETLBFS_MAGIC
        })
}

/// Content that can still change after its verdict without a new exec: a memfd (or an
/// unlinked shmem file) without `F_SEAL_WRITE`. `F_SEAL_FUTURE_WRITE` does not count:
/// writable mappings made before it still write. Named tmpfs files are not affected.
fn unsealed_memfd(f: &std::fs::File) -> bool {
    if !is_anonymous_shmem(f) {
        return false;
    }
    // SAFETY: fcntl on a valid fd; F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals < 0 || seals & libc::F_SEAL_WRITE == 0
}

impl HeldProcess {
    /// Takes over the hold the kernel reported in `rec`. The program's file is opened through
    /// `/proc/PID/exe` (a plain open: no fanotify permission event); if that fails the hold
    /// still exists and the verdict engine answers it with the mode's fallback.
    pub fn new(rec: &ExecRecord, controls: Arc<Controls>) -> Result<HeldProcess, HoldError> {
        // Still this hold? (It may have been answered meanwhile: tampering, shutdown.)
        if controls
            .held_entry(rec.pid)
            .is_none_or(|h| h.stamp != rec.hold_stamp)
        {
            return Err(HoldError::Gone);
        }
        let pidfd = pidfd_for(rec.pid, rec.start_boottime_ns)?;
        let exe = std::fs::File::open(format!("/proc/{}/exe", rec.pid))
            .map_err(|e| format!("cannot open /proc/{}/exe: {e}", rec.pid));
        // The path as the agent resolves it (like fanotify's): never cut, unlike the record's.
        let path = std::fs::read_link(format!("/proc/{}/exe", rec.pid))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Ok(HeldProcess {
            pid: rec.pid,
            stamp: rec.hold_stamp,
            pidfd,
            exe,
            path,
            info: ProcessInfo {
                ppid: Some(rec.ppid as i32),
                uid: Some(rec.uid),
            },
            controls,
            answered: false,
        })
    }

    fn exe(&self) -> io::Result<&std::fs::File> {
        self.exe.as_ref().map_err(|e| io::Error::other(e.clone()))
    }

    fn finish(&mut self, allow: bool) -> io::Result<()> {
        if std::mem::replace(&mut self.answered, true) {
            return Ok(());
        }
        // Signal, then forget the hold: if the agent dies in between, its guardian resumes a
        // process that already runs (harmless) rather than leaving one stopped. The exec
        // program knows the agent's own SIGCONT is not tampering.
        let sig = if allow { libc::SIGCONT } else { libc::SIGKILL };
        let r = pidfd_signal(std::os::fd::AsFd::as_fd(&self.pidfd), sig);
        self.controls.release(self.pid, self.stamp);
        r
    }
}

impl Held for HeldProcess {
    fn pid(&self) -> i32 {
        self.pid as i32
    }

    fn key(&self) -> io::Result<FileKey> {
        self.exe()?.key()
    }

    fn path(&self) -> Option<String> {
        self.path.clone()
    }

    fn content(&self) -> io::Result<Box<dyn Content>> {
        Ok(Box::new(PositionedFile::new(self.exe()?.try_clone()?)))
    }

    fn process(&self) -> ProcessInfo {
        self.info
    }

    fn ignore(&self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    fn unignore(&self) {}

    fn answer(mut self, decision: Decision) -> io::Result<()> {
        self.finish(decision == Decision::Allow)
    }

    fn markable(&self) -> bool {
        false
    }

    fn mutable(&self) -> bool {
        self.exe.as_ref().is_ok_and(unsealed_memfd)
    }

    fn remember_deny(&self, key: &FileKey) {
        if let Err(e) = self.controls.block(key) {
            tracing::debug!(?key, "cannot remember a blocked file in the kernel: {e}");
        }
    }
}

impl Drop for HeldProcess {
    fn drop(&mut self) {
        if let Err(e) = self.finish(true) {
            tracing::error!(pid = self.pid, "cannot resume a dropped hold: {e}");
        }
    }
}

/// Answers a hold that could not be taken over ([`HoldError::Io`]): resumes or kills the
/// process if it is still the one held, then forgets the hold.
pub fn answer_untaken(rec: &ExecRecord, controls: &Controls, allow: bool) {
    let sig = if allow { libc::SIGCONT } else { libc::SIGKILL };
    // Kept if the signal could not be sent: the guardian or a later sweep can still act.
    if signal_held(rec.pid, rec.start_boottime_ns, sig).settled() {
        controls.release(rec.pid, rec.hold_stamp);
    }
}

/// Resumes every process still in the `held` map behind `map` ([`Controls::held_fd`]),
/// checking each pid still names the process that was held. For the agent's guardian, after
/// the agent died: a held exec is let go (as fanotify lets pending execs go when its group
/// closes) rather than left stopped forever. Returns how many were resumed.
pub fn resume_all_held(map: BorrowedFd<'_>) -> usize {
    use libbpf_rs::{MapCore, MapFlags};
    // The caller's fd keeps the map alive; a handle by id gives the map API.
    let Ok(held) =
        libbpf_rs::MapInfo::new(map).and_then(|i| libbpf_rs::MapHandle::from_map_id(i.info.id))
    else {
        return 0;
    };
    let mut n = 0;
    for key in held.keys() {
        let (Ok(k), Ok(Some(v))) = (
            <[u8; 4]>::try_from(key.as_slice()),
            held.lookup(&key, MapFlags::ANY),
        ) else {
            continue;
        };
        let mut h = crate::RawHeldExec::default();
        if plain::copy_from_bytes(&mut h, &v).is_err() {
            continue;
        }
        if signal_held(u32::from_ne_bytes(k), h.start_boottime_ns, libc::SIGCONT) == Signalled::Sent
        {
            n += 1;
        }
        let _ = held.delete(&key);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::memfd::{memfd_create, MFdFlags};

    fn memfd(seals: i32) -> std::fs::File {
        let fd = memfd_create(c"t", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
        let f = std::fs::File::from(fd);
        if seals != 0 {
            // SAFETY: fcntl on a valid fd with an integer argument.
            assert_eq!(
                unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) },
                0
            );
        }
        f
    }

    #[test]
    fn only_a_write_sealed_memfd_is_immutable() {
        assert!(unsealed_memfd(&memfd(0)));
        // Mappings made before a future-write seal still write: not enough.
        assert!(unsealed_memfd(&memfd(libc::F_SEAL_FUTURE_WRITE)));
        assert!(!unsealed_memfd(&memfd(libc::F_SEAL_WRITE)));
    }

    #[test]
    fn named_tmpfs_files_are_not_memfds() {
        // /dev/shm is tmpfs: its files report seals, but a named one is not a memfd.
        let f = tempfile::NamedTempFile::new_in("/dev/shm").unwrap();
        assert!(!unsealed_memfd(f.as_file()));
        // Unlinked, any holder of a writable fd can still change it unseen.
        let f = tempfile::tempfile_in("/dev/shm").unwrap();
        assert!(unsealed_memfd(&f));
    }
}
