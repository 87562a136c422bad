//! Decoding the kernel's exec records.

use crate::{RawExecEvent, RawExitEvent, RawForkEvent, RawImageEvent, RawInjectEvent};

// Constants of bpf/process.h (libbpf-cargo generates types, not #defines).
const PATH_TRUNCATED: u32 = 1;
const ARGS_TRUNCATED: u32 = 2;
const CWD_TRUNCATED: u32 = 4;
const EXEC_HELD: u32 = 8;
const EXEC_KILLED: u32 = 16;
const EXEC_UNSEEN: u32 = 32;
const EXEC_OVERLOAD: u32 = 64;
const EXEC_TRACED: u32 = 128;
const INJECT_TAMPER: u32 = 1;
const INJECT_KILL_FAILED: u32 = 2;
const REC_EXEC: u32 = 1;
const REC_FORK: u32 = 2;
const REC_EXIT: u32 = 3;
const REC_IMAGE: u32 = 4;
const REC_INJECT: u32 = 5;

/// One record from the process sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A successful exec.
    Exec(ExecRecord),
    /// A new process or thread.
    Fork(ForkRecord),
    /// A process or thread ended.
    Exit(ExitRecord),
    /// A file mapped executable.
    Image(ImageRecord),
    /// A process acting on another's memory or execution.
    Inject(InjectRecord),
}

/// A file mapped with `PROT_EXEC` by `mmap` (shared libraries; the program itself when `ld.so`
/// runs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Thread-group id of the mapping process.
    pub pid: u32,
    /// The thread that mapped it.
    pub tid: u32,
    /// The process's start, ns since boot.
    pub start_boottime_ns: u64,
    /// Kernel `dev_t` of the file's filesystem.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Resolved path of the file.
    pub path: String,
    /// The path hit the buffer or depth limit.
    pub path_truncated: bool,
    /// Mapped at.
    pub addr: u64,
    /// Length of the mapping.
    pub len: u64,
    /// File offset of the mapping.
    pub offset: u64,
    /// `PROT_*` bits.
    pub prot: u32,
}

/// How one process reached into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectKind {
    /// `ptrace` with this request (attach, seize, poke, set registers).
    Ptrace(u32),
    /// `process_vm_writev`.
    VmWrite,
    /// `SIGCONT` to an exec held for judgement, by someone other than the agent.
    Sigcont,
}

/// One process acting on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectRecord {
    /// What it did.
    pub kind: InjectKind,
    /// Source process (thread-group id).
    pub pid: u32,
    /// Source thread.
    pub tid: u32,
    /// Source process's start, ns since boot.
    pub start_boottime_ns: u64,
    /// Target pid.
    pub target_pid: u32,
    /// The syscall's return value (0 for `Sigcont`).
    pub result: i64,
    /// Address argument (ptrace addr; the remote iovec of `process_vm_writev`).
    pub addr: u64,
    /// The target was an exec held for judgement: it was killed (it must not run unjudged).
    pub tamper: bool,
    /// ... but the kernel could not send that kill; the agent must.
    pub kill_failed: bool,
    /// Start of the held target, ns since boot (tamper), to kill it by.
    pub target_start_boottime_ns: u64,
}

/// A new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkRecord {
    /// Parent's thread-group id.
    pub parent_pid: u32,
    /// The parent thread.
    pub parent_tid: u32,
    /// The new task's thread-group id (equal to `parent_pid` for a thread).
    pub child_pid: u32,
    /// The new task's id.
    pub child_tid: u32,
    /// Created with `CLONE_THREAD`: a thread of the parent's process, not a new process.
    pub is_thread: bool,
    /// Its start, ns since boot.
    pub child_start_boottime_ns: u64,
    /// The parent process's start (its thread-group leader), ns since boot.
    pub parent_start_boottime_ns: u64,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(u8),
    /// Killed by this signal.
    Signal(u8),
}

impl ExitStatus {
    /// Decodes the kernel's `exit_code` (wait(2) layout).
    pub fn from_raw(raw: i32) -> ExitStatus {
        match raw & 0x7f {
            0 => ExitStatus::Code(((raw >> 8) & 0xff) as u8),
            sig => ExitStatus::Signal(sig as u8),
        }
    }
}

/// A task that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// Thread-group id.
    pub pid: u32,
    /// The task that exited.
    pub tid: u32,
    /// Exit code or signal.
    pub status: ExitStatus,
    /// Only one thread ended; the process goes on.
    pub is_thread: bool,
    /// Start of the process (its thread-group leader), ns since boot: with `pid`, it names
    /// the process across pid reuse, whichever thread ended last.
    pub start_boottime_ns: u64,
}

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
    /// The parent's start, ns since boot.
    pub parent_start_boottime_ns: u64,
    /// Resolved absolute path of the executable (within the exec'ing process's mount namespace).
    pub path: String,
    /// The path hit the buffer or depth limit; `path` holds its last components.
    pub path_truncated: bool,
    /// argv.
    pub argv: Vec<String>,
    /// argv was longer than the buffer and was cut.
    pub argv_truncated: bool,
    /// Working directory (resolved).
    pub cwd: String,
    /// The working directory's path was cut.
    pub cwd_truncated: bool,
    /// What the kernel did about the exec.
    pub hold: HoldState,
    /// The fanotify exec loop cannot see this exec (memfd, unwatched filesystem) and the hold
    /// scope covers it.
    pub unseen: bool,
    /// Names this hold in the held map (`HoldState::Held`).
    pub hold_stamp: u64,
}

/// What the exec program did about an exec fanotify cannot see (or a known-blocked file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldState {
    /// Nothing: fanotify judges it, or holding is off.
    #[default]
    None,
    /// Stopped with `SIGSTOP` until user space judges it.
    Held,
    /// Killed at once: its (dev, ino) is in the blocked map.
    Killed,
    /// Not seen by fanotify and could not be held (map or ring buffer full); it ran.
    Unheld,
    /// Not seen by fanotify, could not be held, and was killed (the mode's overload fallback).
    OverloadKilled,
    /// Not seen by fanotify and run under ptrace, which a SIGSTOP cannot hold; it ran (audit).
    Traced,
    /// The same, killed (monitor and lockdown).
    TracedKilled,
}

impl HoldState {
    fn from_flags(flags: u32) -> HoldState {
        if flags & EXEC_TRACED != 0 {
            return if flags & EXEC_KILLED != 0 {
                HoldState::TracedKilled
            } else {
                HoldState::Traced
            };
        }
        match (
            flags & EXEC_HELD != 0,
            flags & EXEC_KILLED != 0,
            flags & EXEC_OVERLOAD != 0,
        ) {
            (true, _, _) => HoldState::Held,
            (_, true, true) => HoldState::OverloadKilled,
            (_, true, false) => HoldState::Killed,
            (_, false, true) => HoldState::Unheld,
            _ => HoldState::None,
        }
    }
}

/// A record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The first field names no known record kind.
    #[error("unknown record kind {kind}")]
    UnknownKind {
        /// What it said.
        kind: u32,
    },
    /// Shorter than the record type.
    #[error("record of {len} bytes, expected {expected}")]
    Short {
        /// Bytes received.
        len: usize,
        /// Size of the record type.
        expected: usize,
    },
}

pub(crate) fn raw<T: plain::Plain + Default>(data: &[u8]) -> Result<T, RecordError> {
    let mut raw = T::default();
    plain::copy_from_bytes(&mut raw, data).map_err(|_| RecordError::Short {
        len: data.len(),
        expected: std::mem::size_of::<T>(),
    })?;
    Ok(raw)
}

impl Record {
    /// Decodes one ring-buffer record by its leading kind.
    pub fn decode(data: &[u8]) -> Result<Record, RecordError> {
        let kind: u32 = raw(data.get(..4).unwrap_or(data))?;
        match kind {
            REC_EXEC => ExecRecord::decode(data).map(Record::Exec),
            REC_FORK => {
                let r: RawForkEvent = raw(data)?;
                Ok(Record::Fork(ForkRecord {
                    parent_pid: r.parent_pid,
                    parent_tid: r.parent_tid,
                    child_pid: r.child_pid,
                    child_tid: r.child_tid,
                    is_thread: r.is_thread != 0,
                    child_start_boottime_ns: r.child_start_boottime_ns,
                    parent_start_boottime_ns: r.parent_start_boottime_ns,
                }))
            }
            REC_EXIT => {
                let r: RawExitEvent = raw(data)?;
                Ok(Record::Exit(ExitRecord {
                    pid: r.pid,
                    tid: r.tid,
                    status: ExitStatus::from_raw(r.exit_code),
                    is_thread: r.is_thread != 0,
                    start_boottime_ns: r.start_boottime_ns,
                }))
            }
            REC_IMAGE => {
                let r: RawImageEvent = raw(data)?;
                Ok(Record::Image(ImageRecord {
                    pid: r.pid,
                    tid: r.tid,
                    start_boottime_ns: r.start_boottime_ns,
                    dev: r.dev,
                    ino: r.ino,
                    path: path_in(&r.path, r.path_len),
                    path_truncated: r.flags & PATH_TRUNCATED != 0,
                    addr: r.addr,
                    len: r.len,
                    offset: r.pgoff,
                    prot: r.prot,
                }))
            }
            REC_INJECT => {
                let r: RawInjectEvent = raw(data)?;
                let kind = match r.syscall {
                    1 => InjectKind::Ptrace(r.request),
                    2 => InjectKind::VmWrite,
                    3 => InjectKind::Sigcont,
                    other => {
                        return Err(RecordError::UnknownKind {
                            kind: other << 8 | kind,
                        })
                    }
                };
                Ok(Record::Inject(InjectRecord {
                    kind,
                    pid: r.pid,
                    tid: r.tid,
                    start_boottime_ns: r.start_boottime_ns,
                    target_pid: r.target_pid,
                    result: r.result,
                    addr: r.addr,
                    tamper: r.flags & INJECT_TAMPER != 0,
                    kill_failed: r.flags & INJECT_KILL_FAILED != 0,
                    target_start_boottime_ns: r.target_start_boottime_ns,
                }))
            }
            kind => Err(RecordError::UnknownKind { kind }),
        }
    }
}

impl ExecRecord {
    /// Decodes an exec record.
    pub fn decode(data: &[u8]) -> Result<ExecRecord, RecordError> {
        let raw: RawExecEvent = raw(data)?;
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
            parent_start_boottime_ns: raw.parent_start_boottime_ns,
            path: path_in(&raw.path, raw.path_len),
            path_truncated: raw.flags & PATH_TRUNCATED != 0,
            argv: split_nul(as_bytes(&raw.args[..args_len])),
            argv_truncated: raw.flags & ARGS_TRUNCATED != 0,
            cwd: path_in(&raw.cwd, raw.cwd_len),
            cwd_truncated: raw.flags & CWD_TRUNCATED != 0,
            hold: HoldState::from_flags(raw.flags),
            unseen: raw.flags & EXEC_UNSEEN != 0,
            hold_stamp: raw.hold_stamp,
        })
    }
}

fn as_bytes(s: &[std::ffi::c_char]) -> &[u8] {
    // SAFETY: c_char and u8 have the same size and alignment.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
}

/// The path in the first `len` bytes of a record's path buffer (bounded by the buffer).
fn path_in(buf: &[std::ffi::c_char], len: u32) -> String {
    let len = (len as usize).min(buf.len());
    path_from_components(as_bytes(&buf[..len]))
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
    fn short_and_unknown_records_are_rejected() {
        assert!(matches!(
            ExecRecord::decode(&[0u8; 8]),
            Err(RecordError::Short { len: 8, .. })
        ));
        assert!(matches!(
            Record::decode(&[1, 0, 0, 0, 9]),
            Err(RecordError::Short { len: 5, .. })
        ));
        assert_eq!(
            Record::decode(&[9, 0, 0, 0]),
            Err(RecordError::UnknownKind { kind: 9 })
        );
        assert!(matches!(
            Record::decode(&[]),
            Err(RecordError::Short { .. })
        ));
    }

    #[test]
    fn layouts_match_the_c_records() {
        // The generated types are the only Rust view; this pins their sizes to bpf/process.h:
        // 12 u32 + 5 u64 + 2 u32 + u64 + three 1024-byte buffers; 6 u32 + 2 u64; 6 u32 + u64;
        // 6 u32 + 6 u64 + 1024; 6 u32 + 3 u64 + 2 u32 + u64.
        assert_eq!(
            std::mem::size_of::<RawExecEvent>(),
            12 * 4 + 5 * 8 + 2 * 4 + 8 + 3 * 1024
        );
        assert_eq!(std::mem::size_of::<RawForkEvent>(), 6 * 4 + 2 * 8);
        assert_eq!(std::mem::size_of::<RawExitEvent>(), 6 * 4 + 8);
        assert_eq!(std::mem::size_of::<RawImageEvent>(), 6 * 4 + 6 * 8 + 1024);
        assert_eq!(
            std::mem::size_of::<RawInjectEvent>(),
            6 * 4 + 3 * 8 + 2 * 4 + 8
        );
    }

    #[test]
    fn exit_status_decoding() {
        assert_eq!(ExitStatus::from_raw(7 << 8), ExitStatus::Code(7));
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Code(0));
        assert_eq!(ExitStatus::from_raw(9), ExitStatus::Signal(9));
        assert_eq!(ExitStatus::from_raw(6 | 0x80), ExitStatus::Signal(6)); // core dumped
    }
}
