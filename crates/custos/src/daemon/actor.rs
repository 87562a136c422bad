//! Who did something to a file, read from `/proc` while the process may still be there.

use custos_event::{Actor, ProcessRef};
use std::os::unix::fs::MetadataExt;

/// Pid, entity id (from the process's start time, the same id the process events carry),
/// executable and effective uid of `pid`. Fields the process no longer has are `None`.
pub fn of(boot_id: &str, pid: i32) -> Actor {
    let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| custos_process::parse_stat(&s))
        .map(|(_, _, start)| start);
    let pid_u = u32::try_from(pid).unwrap_or(0);
    Actor {
        process: ProcessRef {
            pid: pid_u,
            entity_id: start.map(|t| custos_process::entity_id(boot_id, t, pid_u)),
            executable: custos_sensor_fanotify::procfs::exe(pid),
        },
        uid: std::fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|m| m.uid()),
    }
}
