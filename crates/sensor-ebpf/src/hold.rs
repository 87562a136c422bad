//! One exec fanotify cannot see, stopped by the exec program until the verdict engine judges
//! it through `/proc/PID/exe`.

use crate::controls::Controls;
use crate::record::ExecRecord;
use custos_event::Decision;
use custos_verdict::{Content, FileKey, Held, PositionedFile, ProcessInfo};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// A process stopped (`SIGSTOP`) right after its exec. Answering "allow" resumes it
/// (`SIGCONT`), "deny" kills it (`SIGKILL`); both through a pidfd, so a reused pid can never
/// be signalled. Dropping it unanswered resumes it, so no path leaves a process stopped.
pub struct HeldProcess {
    pid: u32,
    pidfd: OwnedFd,
    exe: std::fs::File,
    path: String,
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

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own; null siginfo is allowed.
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

impl HeldProcess {
    /// Takes over the hold the kernel reported in `rec`. Fails if the process is gone (or its
    /// pid already names another process), in which case there is nothing to hold.
    pub fn new(rec: &ExecRecord, controls: Arc<Controls>) -> io::Result<HeldProcess> {
        let pidfd = pidfd_open(rec.pid)?;
        // The pidfd pins whichever process has the pid now: make sure it is the one that exec'd.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", rec.pid))?;
        let want = custos_process::ticks_from_ns(rec.start_boottime_ns, custos_process::clk_tck());
        match custos_process::parse_stat(&stat) {
            Some((_, _, start)) if start == want => {}
            _ => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
        }
        // Opening /proc/PID/exe is a plain open, never an exec: no fanotify permission event.
        let exe = std::fs::File::open(format!("/proc/{}/exe", rec.pid))?;
        Ok(HeldProcess {
            pid: rec.pid,
            pidfd,
            exe,
            path: rec.path.clone(),
            info: ProcessInfo {
                ppid: Some(rec.ppid as i32),
                uid: Some(rec.uid),
            },
            controls,
            answered: false,
        })
    }

    fn finish(&mut self, allow: bool) -> io::Result<()> {
        if std::mem::replace(&mut self.answered, true) {
            return Ok(());
        }
        // Signal, then forget the hold: if the agent dies in between, its guardian resumes a
        // process that already runs (harmless) rather than leaving one stopped. The exec
        // program knows the agent's own SIGCONT is not tampering.
        let sig = if allow { libc::SIGCONT } else { libc::SIGKILL };
        let r = pidfd_signal(&self.pidfd, sig);
        self.controls.release(self.pid);
        r
    }
}

impl Held for HeldProcess {
    fn pid(&self) -> i32 {
        self.pid as i32
    }

    fn key(&self) -> io::Result<FileKey> {
        self.exe.key()
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }

    fn content(&self) -> io::Result<Box<dyn Content>> {
        Ok(Box::new(PositionedFile::new(self.exe.try_clone()?)))
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

/// Resumes every process still in the `held` map behind `map` ([`Controls::held_fd`]),
/// checking each pid still names the process that was held. For the agent's guardian, after
/// the agent died: a held exec is let go (as fanotify lets pending execs go when its group
/// closes) rather than left stopped forever. Returns how many were resumed.
pub fn resume_all_held(map: std::os::fd::BorrowedFd<'_>) -> usize {
    use libbpf_rs::{MapCore, MapFlags};
    // The caller's fd keeps the map alive; a handle by id gives the map API.
    let Ok(held) =
        libbpf_rs::MapInfo::new(map).and_then(|i| libbpf_rs::MapHandle::from_map_id(i.info.id))
    else {
        return 0;
    };
    let tck = custos_process::clk_tck();
    let mut n = 0;
    for key in held.keys() {
        let (Ok(k), Ok(Some(v))) = (
            <[u8; 4]>::try_from(key.as_slice()),
            held.lookup(&key, MapFlags::ANY),
        ) else {
            continue;
        };
        let Ok(v) = <[u8; 8]>::try_from(v.as_slice()) else {
            continue;
        };
        let pid = u32::from_ne_bytes(k);
        let want = custos_process::ticks_from_ns(u64::from_ne_bytes(v), tck);
        let same = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| custos_process::parse_stat(&s))
            .is_some_and(|(_, _, start)| start == want);
        if same {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
            n += 1;
        }
        let _ = held.delete(&key);
    }
    n
}
