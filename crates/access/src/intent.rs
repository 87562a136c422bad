//! Whether a held open is for writing.
//!
//! A fanotify permission event does not say how the file is being opened. The opener is
//! blocked inside its `open` system call until the agent answers, so its arguments are in
//! `/proc/TID/syscall` of the opening thread (needs ptrace access to it: root). Opens whose
//! mode cannot be read that way (io_uring, kernel-internal opens, a thread that exited) count
//! as writes: a write-only rule then errs on the side of denying.

use std::path::Path;

/// How a process is opening a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Read-only, or an exec.
    Read,
    /// For writing, or with `O_TRUNC`.
    Write,
    /// The mode could not be read; judged as a write.
    Unknown,
}

impl Intent {
    /// Whether write-only rules apply.
    pub fn writes(self) -> bool {
        self != Intent::Read
    }
}

/// One line of `/proc/PID/task/TID/syscall`: the number and six arguments of the system call
/// the thread is blocked in. `None` for a thread that is running or not in a system call.
pub fn parse_syscall(line: &str) -> Option<(i64, [u64; 6])> {
    let mut it = line.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let t = it.next()?;
        *a = u64::from_str_radix(t.strip_prefix("0x")?, 16).ok()?;
    }
    Some((nr, args))
}

/// The intent of a thread blocked in system call `nr` with `args`; `None` if it is not an
/// open. `how_flags` reads the `flags` of an `openat2` `struct open_how` at an address.
pub fn classify(
    nr: i64,
    args: &[u64; 6],
    how_flags: impl Fn(u64) -> Option<u64>,
) -> Option<Intent> {
    let by_flags = |flags: u64| {
        let flags = flags as libc::c_int;
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            Intent::Write
        } else {
            Intent::Read
        }
    };
    #[cfg(target_arch = "x86_64")]
    match nr {
        libc::SYS_open => return Some(by_flags(args[1])),
        libc::SYS_creat => return Some(Intent::Write),
        _ => {}
    }
    match nr {
        libc::SYS_openat | libc::SYS_open_by_handle_at => Some(by_flags(args[2])),
        libc::SYS_openat2 => Some(how_flags(args[2]).map_or(Intent::Unknown, by_flags)),
        libc::SYS_execve | libc::SYS_execveat => Some(Intent::Read),
        _ => None,
    }
}

/// The intent of thread `tid`'s pending open (the fanotify group reports thread ids).
pub fn of_thread(tid: i32) -> Intent {
    of_thread_in(Path::new("/proc"), tid, read_u64)
}

/// How often a thread seen running is looked at again: the kernel queues the event before the
/// opener goes to sleep, so the reader can be a moment early.
const RETRIES: u32 = 200;

/// [`of_thread`] over another `/proc` (tests) with its own memory reader. Bounded: a thread
/// still running after [`RETRIES`] short waits (about 10 ms) is [`Intent::Unknown`].
pub fn of_thread_in(proc_root: &Path, tid: i32, read: impl Fn(i32, u64) -> Option<u64>) -> Intent {
    let file = proc_root.join(tid.to_string()).join("syscall");
    for attempt in 0..RETRIES {
        let Ok(line) = std::fs::read_to_string(&file) else {
            return Intent::Unknown;
        };
        if let Some((nr, args)) = parse_syscall(&line) {
            return classify(nr, &args, |addr| read(tid, addr)).unwrap_or(Intent::Unknown);
        }
        if !line.starts_with("running") {
            return Intent::Unknown;
        }
        if attempt < 20 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
    Intent::Unknown
}

/// Reads a `u64` from another process's memory (`struct open_how`'s first field).
fn read_u64(tid: i32, addr: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: both iovecs describe 8 bytes; the local one is our own buffer, the remote one is
    // only read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    (n == 8).then(|| u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(nr: i64, args: [u64; 6]) -> String {
        let mut s = nr.to_string();
        for a in args {
            s.push_str(&format!(" {a:#x}"));
        }
        s + " 0x7ffc 0x7f00\n"
    }

    #[test]
    fn parses_the_proc_format() {
        assert_eq!(
            parse_syscall("257 0xffffffffffffff9c 0x55d0 0x241 0x1b6 0x0 0x0 0x7ffe 0x7f12\n"),
            Some((257, [0xffff_ffff_ffff_ff9c, 0x55d0, 0x241, 0x1b6, 0, 0]))
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffe 0x7f12\n"), None);
        assert_eq!(parse_syscall("257 0x1 0x2\n"), None);
    }

    #[test]
    fn open_flags_decide() {
        let at = |flags: i32| {
            let (nr, a) = parse_syscall(&line(libc::SYS_openat, [0, 0, flags as u64, 0, 0, 0]))
                .unwrap_or_default();
            classify(nr, &a, |_| None)
        };
        assert_eq!(at(libc::O_RDONLY), Some(Intent::Read));
        assert_eq!(at(libc::O_RDONLY | libc::O_CLOEXEC), Some(Intent::Read));
        assert_eq!(at(libc::O_WRONLY | libc::O_APPEND), Some(Intent::Write));
        assert_eq!(at(libc::O_RDWR), Some(Intent::Write));
        assert_eq!(at(libc::O_RDONLY | libc::O_TRUNC), Some(Intent::Write));
        let how = |v: Option<u64>| {
            classify(libc::SYS_openat2, &[0, 0, 0x1000, 24, 0, 0], |a| {
                assert_eq!(a, 0x1000);
                v
            })
        };
        assert_eq!(how(Some(libc::O_RDWR as u64)), Some(Intent::Write));
        assert_eq!(how(Some(0)), Some(Intent::Read));
        assert_eq!(how(None), Some(Intent::Unknown));
        assert_eq!(
            classify(libc::SYS_execve, &[0; 6], |_| None),
            Some(Intent::Read)
        );
        assert_eq!(classify(libc::SYS_read, &[0; 6], |_| None), None);
    }

    #[test]
    fn a_fake_proc_thread() {
        let root = tempfile::tempdir().expect("tempdir");
        let task = |text: &str| {
            let d = root.path().join("9");
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("syscall"), text).expect("write");
        };
        let of = || of_thread_in(root.path(), 9, |_, _| None);
        assert_eq!(of(), Intent::Unknown, "gone");
        task("running\n");
        assert_eq!(of(), Intent::Unknown, "never stopped running");
        task(&line(libc::SYS_read, [0; 6]));
        assert_eq!(of(), Intent::Unknown, "not in an open");
        task(&line(libc::SYS_openat, [0, 0, 0, 0, 0, 0]));
        assert_eq!(of(), Intent::Read);
        task(&line(
            libc::SYS_openat,
            [0, 0, libc::O_WRONLY as u64, 0, 0, 0],
        ));
        assert_eq!(of(), Intent::Write);
    }
}
