//! Reading processes from a /proc-like directory, for seeding the table at start.
//!
//! Everything is best effort: processes come and go while we read, and other users' `exe`
//! links are unreadable without privileges, so failures skip an entry or leave a field `None`.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// One process as read from /proc, before it becomes a [`crate::Process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub start_ticks: u64,
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
}

/// Parses /proc/PID/stat into `(pid, ppid, starttime ticks)`.
///
/// comm (field 2) is in parentheses and may itself contain spaces and ')', so the fields after
/// it are taken from the *last* ')'. `None` if the text is not a stat line.
pub fn parse_stat(text: &str) -> Option<(u32, u32, u64)> {
    let (pid, rest) = text.split_once(' ')?;
    let pid = pid.parse().ok()?;
    if !rest.starts_with('(') {
        return None;
    }
    let close = rest.rfind(')')?;
    // After comm: state(3) ppid(4) ... starttime(22), so ppid is [1] and starttime [19].
    let mut fields = rest[close + 1..].split_ascii_whitespace();
    let ppid = fields.nth(1)?.parse().ok()?;
    let start_ticks = fields.nth(17)?.parse().ok()?;
    Some((pid, ppid, start_ticks))
}

/// Splits /proc/PID/cmdline (NUL-separated, trailing NUL) into argv; `None` if empty.
pub(crate) fn parse_cmdline(bytes: &[u8]) -> Option<Vec<String>> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .split(|&b| b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Reads every numeric directory of `proc_root`, skipping the ones that vanish or do not parse.
pub(crate) fn scan(proc_root: &Path) -> Vec<ProcEntry> {
    let dir = match fs::read_dir(proc_root) {
        Ok(dir) => dir,
        Err(error) => {
            tracing::warn!(root = %proc_root.display(), %error, "cannot list processes");
            return Vec::new();
        }
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            read_entry(&entry.path(), pid)
        })
        .collect()
}

/// Reads one /proc/PID directory. `stat` is required; `cmdline` and `exe` are optional.
fn read_entry(dir: &Path, pid: u32) -> Option<ProcEntry> {
    // Lossy: comm may hold any bytes, and only the numbers after it matter.
    let stat = fs::read(dir.join("stat")).ok()?;
    let Some((stat_pid, ppid, start_ticks)) = parse_stat(&String::from_utf8_lossy(&stat)) else {
        tracing::debug!(dir = %dir.display(), "skipping malformed stat");
        return None;
    };
    if stat_pid != pid {
        tracing::debug!(dir = %dir.display(), stat_pid, "skipping stat of another pid");
        return None;
    }
    let args = match fs::read(dir.join("cmdline")) {
        Ok(bytes) => parse_cmdline(&bytes),
        // Gone between stat and cmdline: do not keep a dead process.
        Err(error) if error.kind() == ErrorKind::NotFound => return None,
        Err(_) => None,
    };
    // Unreadable for other users' processes without privileges, absent for kernel threads.
    let executable = fs::read_link(dir.join("exe"))
        .ok()
        .map(|path| path.to_string_lossy().into_owned());
    Some(ProcEntry {
        pid,
        ppid,
        start_ticks,
        executable,
        args,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stat line with the given comm, ppid and starttime, other fields plausible.
    pub(crate) fn stat_line(pid: u32, comm: &str, ppid: u32, start: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1000 0 0 0 5 3 0 0 20 0 1 0 \
             {start} 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 0 0 0\n"
        )
    }

    #[test]
    fn parses_plain_stat() {
        assert_eq!(
            parse_stat(&stat_line(42, "bash", 1, 4711)),
            Some((42, 1, 4711))
        );
    }

    #[test]
    fn parses_comm_with_parens_and_spaces() {
        assert_eq!(
            parse_stat(&stat_line(7, "a) b (c", 3, 99)),
            Some((7, 3, 99))
        );
        assert_eq!(
            parse_stat(&stat_line(7, ") S 1 2 3 )", 3, 99)),
            Some((7, 3, 99))
        );
        assert_eq!(parse_stat(&stat_line(7, "", 0, 5)), Some((7, 0, 5)));
    }

    #[test]
    fn real_kernel_line() {
        let line = "1 (systemd) S 0 1 1 0 -1 4194560 52000 900000 100 2000 150 90 \
                    3000 1000 20 0 1 0 12 23000000 3000 18446744073709551615 1 1 0 0 0 0 \
                    671173123 4096 1260 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some((1, 0, 12)));
    }

    #[test]
    fn rejects_malformed_stat() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("42 bash S 1 2"), None);
        assert_eq!(parse_stat("x (bash) S 1"), None);
        assert_eq!(parse_stat("42 (bash S 1 2 3"), None);
        assert_eq!(parse_stat("42 (bash) S 1 2 3"), None, "too few fields");
        assert_eq!(
            parse_stat(&stat_line(42, "bash", 1, 0).replace(" 1 42 ", " x 42 ")),
            None
        );
    }

    #[test]
    fn cmdline_splits_on_nul() {
        let args = parse_cmdline(b"/bin/sh\0-c\0echo hi\0");
        assert_eq!(
            args,
            Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        // setproctitle-style rewrites may drop the trailing NUL.
        assert_eq!(
            parse_cmdline(b"nginx: worker"),
            Some(vec!["nginx: worker".into()])
        );
        // An empty argument in the middle is kept.
        assert_eq!(
            parse_cmdline(b"a\0\0b\0"),
            Some(vec!["a".into(), String::new(), "b".into()])
        );
    }

    #[test]
    fn empty_cmdline_is_none() {
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_cmdline(b"\0"), None);
    }

    #[test]
    fn non_utf8_comm_still_parses() {
        let dir = tempfile::tempdir().unwrap();
        let pid_dir = dir.path().join("5");
        fs::create_dir(&pid_dir).unwrap();
        let mut stat = b"5 (\xff\xfe) S 1 ".to_vec();
        stat.extend_from_slice(
            stat_line(5, "x", 1, 77)
                .split_once(") S 1 ")
                .unwrap()
                .1
                .as_bytes(),
        );
        fs::write(pid_dir.join("stat"), stat).unwrap();
        fs::write(pid_dir.join("cmdline"), b"").unwrap();
        let entries = scan(dir.path());
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].pid, entries[0].ppid, entries[0].start_ticks),
            (5, 1, 77)
        );
        assert_eq!(entries[0].args, None, "empty cmdline");
        assert_eq!(entries[0].executable, None, "no exe link");
    }

    #[test]
    fn skips_stat_of_another_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pid_dir = dir.path().join("6");
        fs::create_dir(&pid_dir).unwrap();
        fs::write(pid_dir.join("stat"), stat_line(7, "x", 1, 1)).unwrap();
        assert!(scan(dir.path()).is_empty());
    }

    #[test]
    fn missing_root_scans_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(&dir.path().join("absent")).is_empty());
    }
}
