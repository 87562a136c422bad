//! Small /proc readers: who is exec'ing and what a file descriptor names.

use custos_verdict::ProcessInfo;

/// The path an open fd refers to (`/proc/self/fd/N`), without the ` (deleted)` suffix handling:
/// a deleted file keeps the suffix so the event shows it.
pub fn fd_path(fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Parent pid and real uid of `pid`, read from `/proc`; missing values are `None` (the process
/// may already be gone).
pub fn process_info(pid: i32) -> ProcessInfo {
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_ppid(&s));
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_uid(&s));
    ProcessInfo { ppid, uid }
}

/// Field 4 of `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// parsing starts after the last `)`.
pub fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The real uid from the `Uid:` line of `/proc/PID/status`.
pub fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_survives_hostile_comm() {
        assert_eq!(parse_ppid("123 (a) b) c) S 77 123 123 0"), Some(77));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn uid_is_the_real_one() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_uid(s), Some(1000));
        assert_eq!(parse_uid("Name:\tx\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = process_info(std::process::id() as i32);
        assert_eq!(me.ppid, Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(me.uid, Some(nix::unistd::getuid().as_raw()));
    }
}
