//! Following the mount table: when the watch list is discovered rather than configured,
//! filesystems mounted after start are watched too, and unmounted ones leave the list.
//!
//! Neither the device number nor the mount id in `/proc/self/mountinfo` identifies a superblock
//! over time: the kernel hands out the lowest free value of both, so `umount /x; mount -t tmpfs
//! none /x` typically yields a line identical to the old one, for a new, unmarked superblock.
//! Each pass therefore re-marks every discovered filesystem (`FAN_MARK_ADD` on a superblock that
//! already carries the mark changes nothing). Mount ids not seen in the previous pass only
//! decide what is reported as newly watched.

use crate::group::Group;
use crate::mounts::{self, MountEntry, WatchedFs};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

/// The live list of watched filesystems, shared with `custos status`.
pub type Watched = Arc<Mutex<Vec<WatchedFs>>>;

/// One filesystem to (re-)mark in a pass over the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The filesystem, named by its first mount point in the current table.
    pub fs: WatchedFs,
    /// One of its mounts has an id not seen in the previous pass (a new mount, possibly of a
    /// new superblock on a reused device number). A failure to mark it is a warning.
    pub new: bool,
    /// The entry listed for the same device before this pass, if any. It is kept when
    /// re-marking fails: the earlier mark is most likely still there, and the lockdown guard
    /// must not forget a watched filesystem.
    pub listed: Option<WatchedFs>,
}

/// The pure half of [`sync`]: every mounted filesystem of `types`, one per superblock, in
/// table order. Devices no longer in `entries` are simply absent (the kernel dropped their marks
/// with the superblock).
pub fn plan(
    entries: &[MountEntry],
    types: &[String],
    seen: &HashSet<u64>,
    current: &[WatchedFs],
) -> Vec<Step> {
    let unseen: HashSet<&str> = entries
        .iter()
        .filter(|e| !seen.contains(&e.mount_id))
        .map(|e| e.dev.as_str())
        .collect();
    mounts::discover(entries, types)
        .into_iter()
        .map(|fs| Step {
            new: unseen.contains(fs.dev.as_str()),
            listed: current.iter().find(|w| w.dev == fs.dev).cloned(),
            fs,
        })
        .collect()
}

/// The mount ids of `entries` whose device is in `list`: the `seen` set for a first pass, so
/// that filesystems already watched at start are not reported as new.
pub fn seen_for(entries: &[MountEntry], list: &[WatchedFs]) -> HashSet<u64> {
    let devs: HashSet<&str> = list.iter().map(|w| w.dev.as_str()).collect();
    entries
        .iter()
        .filter(|e| devs.contains(e.dev.as_str()))
        .map(|e| e.mount_id)
        .collect()
}

/// Brings `watched` in line with the mount table: (re-)marks every filesystem of `types`, drops
/// filesystems that are no longer mounted, and refreshes the mount point and type of each entry.
/// `seen` holds the mount ids of the previous pass and is replaced by those of `entries`.
/// Returns the filesystems newly watched.
pub fn sync(
    group: &Group,
    types: &[String],
    watched: &Watched,
    seen: &mut HashSet<u64>,
    entries: &[MountEntry],
) -> Vec<WatchedFs> {
    sync_with(
        |fs| group.watch(&fs.mount).map_err(|e| e.to_string()),
        types,
        watched,
        seen,
        entries,
    )
}

/// [`sync`] with the marking done by `mark`.
fn sync_with(
    mut mark: impl FnMut(&WatchedFs) -> Result<(), String>,
    types: &[String],
    watched: &Watched,
    seen: &mut HashSet<u64>,
    entries: &[MountEntry],
) -> Vec<WatchedFs> {
    let mut list = watched.lock().unwrap_or_else(|p| p.into_inner());
    let steps = plan(entries, types, seen, &list);
    let mut next = Vec::with_capacity(steps.len());
    let mut added = Vec::new();
    for step in steps {
        let fs = step.fs;
        match mark(&fs) {
            Ok(()) => {
                if step.new || step.listed.is_none() {
                    tracing::info!(mount = %fs.mount.display(), fstype = %fs.fstype, dev = %fs.dev, "now watching new filesystem");
                    added.push(fs.clone());
                }
                next.push(fs);
            }
            Err(e) => {
                if step.new {
                    tracing::warn!(mount = %fs.mount.display(), "cannot watch new filesystem: {e}");
                } else {
                    tracing::debug!(mount = %fs.mount.display(), "cannot re-mark filesystem: {e}");
                }
                next.extend(step.listed);
            }
        }
    }
    *list = next;
    *seen = entries.iter().map(|e| e.mount_id).collect();
    added
}

/// Starts a thread that waits for mount table changes (`POLLPRI` on `/proc/self/mountinfo`)
/// and calls [`sync`], once at start (for mounts made since `watched` was filled) and after
/// each change, then `on_new` for each filesystem newly watched (other sensors follow too). A
/// program exec'd on a new filesystem in the instant between its mount and this thread marking
/// it is not held.
pub fn follow_mounts(
    group: Arc<Group>,
    types: Vec<String>,
    watched: Watched,
    on_new: impl Fn(&WatchedFs) + Send + 'static,
) -> std::io::Result<()> {
    // Opened before the first read: a change after it raises POLLPRI.
    let table = std::fs::File::open("/proc/self/mountinfo")?;
    std::thread::Builder::new()
        .name("custos-mounts".into())
        .spawn(move || {
            let mut seen: Option<HashSet<u64>> = None;
            loop {
                match mounts::read_mountinfo() {
                    Ok(entries) => {
                        let seen = seen.get_or_insert_with(|| {
                            let list = watched.lock().unwrap_or_else(|p| p.into_inner());
                            seen_for(&entries, &list)
                        });
                        for fs in sync(&group, &types, &watched, seen, &entries) {
                            on_new(&fs);
                        }
                    }
                    Err(e) => tracing::warn!("cannot read /proc/self/mountinfo: {e}"),
                }
                loop {
                    let mut fds = [PollFd::new(table.as_fd(), PollFlags::POLLPRI)];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) => break,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => {
                            tracing::error!("stopped following mounts: {e}");
                            return;
                        }
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn types() -> Vec<String> {
        vec!["tmpfs".into(), "ext4".into()]
    }

    fn fs(mount: &str, fstype: &str, dev: &str) -> WatchedFs {
        WatchedFs {
            mount: PathBuf::from(mount),
            fstype: fstype.into(),
            dev: dev.into(),
        }
    }

    const BEFORE: &str = "\
22 1 254:0 / / rw - ext4 /dev/vda rw
23 22 0:21 / /proc rw - proc proc rw
42 22 0:39 / /mnt/a rw - tmpfs none rw
";

    #[test]
    fn same_dev_new_mount_id_is_new_and_refreshed() {
        let before = mounts::parse_mountinfo(BEFORE);
        let seen: HashSet<u64> = before.iter().map(|e| e.mount_id).collect();
        let list = mounts::discover(&before, &types());
        // /mnt/a unmounted; a new tmpfs got the same dev 0:39 but another mount id.
        let after = mounts::parse_mountinfo(
            "22 1 254:0 / / rw - ext4 /dev/vda rw\n43 22 0:39 / /mnt/b rw - tmpfs none rw\n",
        );
        let steps = plan(&after, &types(), &seen, &list);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].fs, fs("/", "ext4", "254:0"));
        assert!(!steps[0].new);
        assert_eq!(steps[1].fs, fs("/mnt/b", "tmpfs", "0:39"));
        assert!(steps[1].new);
        assert_eq!(steps[1].listed, Some(fs("/mnt/a", "tmpfs", "0:39")));
    }

    #[test]
    fn identical_line_for_a_new_superblock_is_still_marked() {
        // `umount /mnt/a; mount -t tmpfs none /mnt/a` between two passes: same id, same dev.
        let before = mounts::parse_mountinfo(BEFORE);
        let watched: Watched = Arc::new(Mutex::new(mounts::discover(&before, &types())));
        let mut seen: HashSet<u64> = before.iter().map(|e| e.mount_id).collect();
        let mut marked = Vec::new();
        let added = sync_with(
            |f| {
                marked.push(f.mount.clone());
                Ok(())
            },
            &types(),
            &watched,
            &mut seen,
            &before,
        );
        assert!(added.is_empty());
        assert_eq!(marked, [PathBuf::from("/"), PathBuf::from("/mnt/a")]);
    }

    #[test]
    fn sync_drops_unmounted_reports_new_and_keeps_listed_on_failure() {
        let before = mounts::parse_mountinfo(BEFORE);
        let watched: Watched = Arc::new(Mutex::new(mounts::discover(&before, &types())));
        let mut seen = seen_for(&before, &watched.lock().unwrap());
        assert_eq!(seen, HashSet::from([22, 42]));
        // /mnt/a gone, a new tmpfs on a reused dev at /mnt/b, and an ext4 that refuses marks.
        let after = mounts::parse_mountinfo(
            "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
             42 22 0:39 / /mnt/b rw - tmpfs none rw\n\
             44 22 8:1 / /data rw - ext4 /dev/sdb1 rw\n",
        );
        // Mount id 42 was seen, but nothing tells the superblocks apart: /mnt/b is marked anyway.
        let added = sync_with(
            |f| match f.mount.to_str() {
                Some("/data") => Err("EXDEV".into()),
                Some("/") => Err("transient".into()),
                _ => Ok(()),
            },
            &types(),
            &watched,
            &mut seen,
            &after,
        );
        assert!(added.is_empty(), "{added:?}");
        assert_eq!(
            *watched.lock().unwrap(),
            [fs("/", "ext4", "254:0"), fs("/mnt/b", "tmpfs", "0:39")]
        );
        assert_eq!(seen, HashSet::from([22, 42, 44]));

        // Another pass: a bind mount (new id) of 0:39 and /data now markable.
        let next = mounts::parse_mountinfo(
            "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
             42 22 0:39 / /mnt/b rw - tmpfs none rw\n\
             44 22 8:1 / /data rw - ext4 /dev/sdb1 rw\n\
             45 22 0:39 / /mnt/c rw - tmpfs none rw\n",
        );
        let steps = plan(&next, &types(), &seen, &watched.lock().unwrap());
        let new: Vec<bool> = steps.iter().map(|s| s.new).collect();
        assert_eq!(new, [false, true, false]);
        let added = sync_with(|_| Ok(()), &types(), &watched, &mut seen, &next);
        assert_eq!(
            added,
            [fs("/mnt/b", "tmpfs", "0:39"), fs("/data", "ext4", "8:1")]
        );
        assert_eq!(watched.lock().unwrap().len(), 3);
    }
}
