//! Small /proc readers: who is exec'ing and what a file descriptor names.

use custos_verdict::ProcessInfo;

/// The path an open fd refers to (`/proc/self/fd/N`), without the ` (deleted)` suffix handling:
/// a deleted file keeps the suffix so the event shows it.
pub fn fd_path(fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The program `pid` runs (`/proc/PID/exe`, a readlink: nothing is opened).
pub fn exe(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Parent pid and real uid of `pid`, from one read of `/proc/PID/status` (it is called while an
/// exec is held, so it avoids `read_to_string`'s growing reads and a second file). Missing values
/// are `None`: the process may already be gone.
pub fn process_info(pid: i32) -> ProcessInfo {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    if let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/status")) {
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    ProcessInfo {
        ppid: field(&text, "PPid:").and_then(|v| v.parse().ok()),
        uid: parse_uid(&text),
    }
}

/// The process (thread-group id) of thread `tid`, from `/proc/TID/status`.
pub fn tgid(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    field(&s, "Tgid:")?.parse().ok()
}

/// First whitespace-separated value of a `Name:\tvalue` line of `/proc/PID/status`.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()
}

/// The real uid from the `Uid:` line of `/proc/PID/status`.
pub fn parse_uid(status: &str) -> Option<u32> {
    field(status, "Uid:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_process() {
        let me = std::process::id() as i32;
        assert_eq!(tgid(me), Some(me));
        // SAFETY: gettid has no preconditions.
        let tid =
            std::thread::spawn(|| (unsafe { libc::gettid() }, tgid(unsafe { libc::gettid() })))
                .join()
                .expect("thread");
        assert_ne!(tid.0, me);
        assert_eq!(tid.1, Some(me));
        assert_eq!(tgid(-1), None);
    }

    #[test]
    fn uid_is_the_real_one() {
        let s = "Name:\tx\nPPid:\t77\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_uid(s), Some(1000));
        assert_eq!(field(s, "PPid:"), Some("77"));
        assert_eq!(parse_uid("Name:\tx\n"), None);
    }

    #[test]
    fn names_own_program() {
        let me = std::env::current_exe().expect("exe");
        assert_eq!(
            exe(std::process::id() as i32),
            Some(me.display().to_string())
        );
        assert_eq!(exe(-1), None);
    }

    #[test]
    fn reads_own_process() {
        let me = process_info(std::process::id() as i32);
        assert_eq!(me.ppid, Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(me.uid, Some(nix::unistd::getuid().as_raw()));
    }
}
