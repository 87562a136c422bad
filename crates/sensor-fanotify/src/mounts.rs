//! Which filesystems to watch: the configured mount points, or every local filesystem type that
//! can hold executables, one per superblock.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One watched filesystem, as reported by `custos status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFs {
    /// A mount point of it.
    pub mount: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// `major:minor` of the superblock.
    pub dev: String,
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount id (first field). Unique among the mounts present at one time, but the kernel
    /// reuses freed ids (lowest free first), just as it reuses anonymous device numbers.
    pub mount_id: u64,
    /// `major:minor`.
    pub dev: String,
    /// Mount point, unescaped.
    pub mount: PathBuf,
    /// Filesystem type.
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo` text; malformed lines (including a mount id that is not a
/// number) are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some(MountEntry {
                mount_id: f.first()?.parse().ok()?,
                dev: (*f.get(2)?).to_owned(),
                mount: PathBuf::from(unescape(f.get(4)?)),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mounted filesystem of one of `types`, one entry per superblock (first mount point wins).
pub fn discover(entries: &[MountEntry], types: &[String]) -> Vec<WatchedFs> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|e| types.contains(&e.fstype))
        .filter(|e| seen.insert(e.dev.clone()))
        .map(|e| WatchedFs {
            mount: e.mount.clone(),
            fstype: e.fstype.clone(),
            dev: e.dev.clone(),
        })
        .collect()
}

/// Describes configured mount points, naming the filesystem each is on (longest matching mount).
pub fn describe(paths: &[PathBuf], entries: &[MountEntry]) -> Vec<WatchedFs> {
    paths
        .iter()
        .map(|p| {
            let best = entries
                .iter()
                .filter(|e| Path::new(p).starts_with(&e.mount))
                .max_by_key(|e| e.mount.as_os_str().len());
            WatchedFs {
                mount: p.clone(),
                fstype: best.map(|e| e.fstype.clone()).unwrap_or_default(),
                dev: best.map(|e| e.dev.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// Reads this process's mount table.
pub fn read_mountinfo() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw - proc proc rw
30 22 0:25 / /dev/shm rw shared:5 - tmpfs tmpfs rw
31 22 0:25 / /mnt/again rw - tmpfs tmpfs rw
40 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
41 22 0:41 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
bogus line
x 22 0:42 / /mnt/badid rw - tmpfs tmpfs rw
";

    #[test]
    fn discovers_one_per_superblock_and_only_exec_types() {
        let e = parse_mountinfo(SAMPLE);
        assert_eq!(e.len(), 6);
        let ids: Vec<u64> = e.iter().map(|m| m.mount_id).collect();
        assert_eq!(ids, [22, 23, 30, 31, 40, 41]);
        let types: Vec<String> = ["ext4", "tmpfs", "xfs"].map(String::from).to_vec();
        let d = discover(&e, &types);
        let mounts: Vec<_> = d.iter().map(|w| w.mount.to_str().expect("utf8")).collect();
        assert_eq!(mounts, ["/", "/dev/shm", "/mnt/with space"]);
        assert_eq!(d[0].fstype, "ext4");
        assert_eq!(d[0].dev, "254:0");
    }

    #[test]
    fn describe_finds_longest_mount() {
        let e = parse_mountinfo(SAMPLE);
        let w = describe(&[PathBuf::from("/dev/shm/x"), PathBuf::from("/home")], &e);
        assert_eq!(w[0].fstype, "tmpfs");
        assert_eq!(w[1].fstype, "ext4");
    }
}
