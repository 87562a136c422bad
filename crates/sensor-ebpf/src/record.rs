//! Decoding the kernel's exec records.

use crate::RawExecEvent;

const PATH_TRUNCATED: u32 = 1;
const ARGS_TRUNCATED: u32 = 2;

/// An exec as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// Thread-group id (the process).
    pub pid: u32,
    /// The thread that exec'd.
    pub tid: u32,
    /// Parent's thread-group id.
    pub ppid: u32,
    /// Real uid / gid, effective uid / gid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Cgroup v2 id.
    pub cgroup_id: u64,
    /// Kernel `dev_t` of the executable's filesystem.
    pub dev: u64,
    /// Inode of the executable.
    pub ino: u64,
    /// Process start, ns since boot.
    pub start_boottime_ns: u64,
    /// Resolved absolute path of the executable (within the exec'ing process's mount namespace).
    pub path: String,
    /// The path hit the buffer or depth limit; `path` holds its last components.
    pub path_truncated: bool,
    /// argv.
    pub argv: Vec<String>,
    /// argv was longer than the buffer and was cut.
    pub argv_truncated: bool,
}

/// A record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Shorter than the record type.
    #[error("exec record of {len} bytes, expected {expected}")]
    Short {
        /// Bytes received.
        len: usize,
        /// Size of the record type.
        expected: usize,
    },
}

impl ExecRecord {
    /// Decodes one ring-buffer record.
    pub fn decode(data: &[u8]) -> Result<ExecRecord, RecordError> {
        let expected = std::mem::size_of::<RawExecEvent>();
        let mut raw = RawExecEvent::default();
        plain::copy_from_bytes(&mut raw, data).map_err(|_| RecordError::Short {
            len: data.len(),
            expected,
        })?;
        let path_len = (raw.path_len as usize).min(raw.path.len());
        let args_len = (raw.args_len as usize).min(raw.args.len());
        Ok(ExecRecord {
            pid: raw.pid,
            tid: raw.tid,
            ppid: raw.ppid,
            uid: raw.uid,
            gid: raw.gid,
            euid: raw.euid,
            egid: raw.egid,
            cgroup_id: raw.cgroup_id,
            dev: raw.dev,
            ino: raw.ino,
            start_boottime_ns: raw.start_boottime_ns,
            path: path_from_components(as_bytes(&raw.path[..path_len])),
            path_truncated: raw.flags & PATH_TRUNCATED != 0,
            argv: split_nul(as_bytes(&raw.args[..args_len])),
            argv_truncated: raw.flags & ARGS_TRUNCATED != 0,
        })
    }
}

fn as_bytes(s: &[std::ffi::c_char]) -> &[u8] {
    // SAFETY: c_char and u8 have the same size and alignment.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
}

/// The kernel writes path components leaf first, each NUL-terminated.
pub fn path_from_components(buf: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = buf.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(p));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// argv as laid out in memory: NUL-terminated strings.
pub fn split_nul(buf: &[u8]) -> Vec<String> {
    let trimmed = buf.strip_suffix(&[0]).unwrap_or(buf);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_reversed_into_a_path() {
        assert_eq!(path_from_components(b"true\0bin\0usr\0"), "/usr/bin/true");
        assert_eq!(path_from_components(b""), "/");
        assert_eq!(
            path_from_components(b"x y\0dir with space\0"),
            "/dir with space/x y"
        );
    }

    #[test]
    fn argv_splits_on_nul() {
        assert_eq!(split_nul(b"ls\0-l\0/tmp\0"), vec!["ls", "-l", "/tmp"]);
        assert_eq!(split_nul(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(split_nul(b"").is_empty());
        // Cut mid-argument: the tail is kept as is.
        assert_eq!(split_nul(b"ls\0-lon"), vec!["ls", "-lon"]);
    }

    #[test]
    fn short_records_are_rejected() {
        assert!(matches!(
            ExecRecord::decode(&[0u8; 8]),
            Err(RecordError::Short { len: 8, .. })
        ));
    }

    #[test]
    fn layout_matches_the_c_record() {
        // 10 u32 + 4 u64 + two 1024-byte buffers, as in bpf/process.h.
        assert_eq!(
            std::mem::size_of::<RawExecEvent>(),
            10 * 4 + 4 * 8 + 2 * 1024
        );
    }
}
