//! Following the mount table: when the watch list is discovered rather than configured,
//! filesystems mounted after start are watched too, and unmounted ones leave the list.

use crate::group::Group;
use crate::mounts::{self, WatchedFs};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

/// The live list of watched filesystems, shared with `custos status`.
pub type Watched = Arc<Mutex<Vec<WatchedFs>>>;

/// Brings `watched` in line with the mount table: marks new filesystems of `types`, drops
/// filesystems that are no longer mounted (the kernel removes their marks with the superblock).
/// Returns the mount points newly watched.
pub fn sync(
    group: &Group,
    types: &[String],
    watched: &Watched,
    entries: &[mounts::MountEntry],
) -> Vec<WatchedFs> {
    let present: HashSet<&str> = entries.iter().map(|e| e.dev.as_str()).collect();
    let mut list = watched.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|w| present.contains(w.dev.as_str()));
    let known: HashSet<String> = list.iter().map(|w| w.dev.clone()).collect();
    let mut added = Vec::new();
    for fs in mounts::discover(entries, types) {
        if known.contains(&fs.dev) {
            continue;
        }
        match group.watch(&fs.mount) {
            Ok(()) => {
                tracing::info!(mount = %fs.mount.display(), fstype = %fs.fstype, "now watching new filesystem");
                list.push(fs.clone());
                added.push(fs);
            }
            Err(e) => {
                tracing::warn!(mount = %fs.mount.display(), "cannot watch new filesystem: {e}")
            }
        }
    }
    added
}

/// Starts a thread that waits for mount table changes (`POLLPRI` on `/proc/self/mountinfo`)
/// and calls [`sync`]. A program exec'd on a new filesystem in the instant between its mount
/// and this thread marking it is not held.
pub fn follow_mounts(
    group: Arc<Group>,
    types: Vec<String>,
    watched: Watched,
) -> std::io::Result<()> {
    let table = std::fs::File::open("/proc/self/mountinfo")?;
    std::thread::Builder::new()
        .name("custos-mounts".into())
        .spawn(move || loop {
            let mut fds = [PollFd::new(table.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("stopped following mounts: {e}");
                    return;
                }
            }
            match mounts::read_mountinfo() {
                Ok(entries) => {
                    sync(&group, &types, &watched, &entries);
                }
                Err(e) => tracing::warn!("cannot read /proc/self/mountinfo: {e}"),
            }
        })?;
    Ok(())
}
