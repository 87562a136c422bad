//! The custos process table and lineage.
//!
//! Processes are learned from /proc at start ([`ProcessTable::seed_from_proc`]) and then kept
//! current from the eBPF sensor's exec/fork/exit records. Each process has an *entity id* that
//! names it uniquely across pid reuse and reboots, and that is the same whichever way the process
//! was learned: the kernel reports start times in ns, /proc in clock ticks, so ids use ticks.
//!
//! Pure logic plus /proc reading: everything here runs in plain `cargo test`, without root.

mod procfs;
mod table;

pub use procfs::parse_stat;
pub use table::ProcessTable;

use std::sync::Arc;

/// USER_HZ assumed when the real one is unknown (0 given, or `sysconf` failed).
const DEFAULT_CLK_TCK: u64 = 100;

/// Start time in clock ticks since boot, as /proc/PID/stat shows it, from kernel ns.
///
/// Same integer division as the kernel's `nsec_to_clock_t`, so both sources agree exactly.
/// A `clk_tck` of 0 is treated as 100.
pub fn ticks_from_ns(start_ns: u64, clk_tck: u64) -> u64 {
    let clk_tck = if clk_tck == 0 {
        DEFAULT_CLK_TCK
    } else {
        clk_tck
    };
    start_ns / (1_000_000_000 / clk_tck).max(1)
}

/// The system's USER_HZ (`sysconf(_SC_CLK_TCK)`); 100 if it cannot be read.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf takes an integer name, touches no memory of ours and is thread-safe.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .unwrap_or(DEFAULT_CLK_TCK)
}

/// `"{boot_id}:{start_ticks}:{pid}"`: unique across pid reuse (a pid cannot be reused within
/// one tick) and across reboots.
pub fn entity_id(boot_id: &str, start_ticks: u64, pid: u32) -> String {
    format!("{boot_id}:{start_ticks}:{pid}")
}

/// /proc/sys/kernel/random/boot_id trimmed, or `""` if unreadable.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// One process (thread group) as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process (thread-group) id.
    pub pid: u32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22).
    pub start_ticks: u64,
    /// See [`entity_id`].
    pub entity_id: Arc<str>,
    /// Parent pid; 0 for the kernel's own (pid 1, kthreadd).
    pub ppid: u32,
    /// The parent's entity id; `None` when the parent is unknown (pid 0 / kernel).
    pub parent_entity_id: Option<Arc<str>>,
    /// Resolved path of the program; `None` for kernel threads or when unreadable.
    pub executable: Option<Arc<str>>,
    /// argv; `None` when empty or unknown.
    pub args: Option<Arc<[String]>>,
    /// The process ended; kept so late events about it still resolve.
    pub exited: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_truncate_like_the_kernel() {
        assert_eq!(ticks_from_ns(0, 100), 0);
        assert_eq!(ticks_from_ns(9_999_999, 100), 0);
        assert_eq!(ticks_from_ns(10_000_000, 100), 1);
        assert_eq!(ticks_from_ns(123_456_789_012, 100), 12_345);
        assert_eq!(ticks_from_ns(123_456_789_012, 1000), 123_456);
        assert_eq!(ticks_from_ns(123_456_789_012, 250), 30_864);
    }

    #[test]
    fn ticks_with_zero_or_huge_clk_tck() {
        assert_eq!(ticks_from_ns(123_456_789_012, 0), 12_345);
        // Divisor would be 0: clamp rather than panic.
        assert_eq!(ticks_from_ns(5, 2_000_000_000), 5);
    }

    #[test]
    fn entity_id_format() {
        assert_eq!(entity_id("b00t", 12_345, 42), "b00t:12345:42");
        assert_eq!(entity_id("", 0, 1), ":0:1");
    }

    #[test]
    fn clk_tck_is_plausible() {
        let hz = clk_tck();
        assert!((1..=10_000).contains(&hz), "clk_tck {hz}");
    }

    #[test]
    fn boot_id_is_trimmed() {
        let id = boot_id();
        assert_eq!(id, id.trim());
        if std::path::Path::new("/proc/sys/kernel/random/boot_id").exists() {
            assert_eq!(id.len(), 36, "boot id {id:?}");
        }
    }
}
