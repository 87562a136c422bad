//! The control maps of the exec program, shared with user space: hold scope, which
//! filesystems fanotify watches, files known to be blocked, and execs held right now.

use crate::{EbpfError, RawBlockedFile, RawFileId, RawHeldExec, RawSettings};
use custos_verdict::FileKey;
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::collections::HashMap;
use std::sync::Mutex;

// SAFETY: plain C structs of integers; any bit pattern is valid.
unsafe impl plain::Plain for RawSettings {}
// SAFETY: as above.
unsafe impl plain::Plain for RawFileId {}
// SAFETY: as above.
unsafe impl plain::Plain for RawBlockedFile {}
// SAFETY: as above.
unsafe impl plain::Plain for RawHeldExec {}

// bpf/process.h
const DEV_WATCHED: u32 = 1;
const DEV_HOLD: u32 = 2;

/// Which execs the kernel holds for judgement (fanotify judges the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldScope {
    /// None: execs fanotify cannot see run unjudged (still reported).
    Off,
    /// Execs of `memfd_create` files.
    Memfd,
    /// Every exec from a filesystem fanotify does not watch, memfd included.
    Unwatched,
}

/// The kernel's internal `dev_t` (`MKDEV`: 12-bit major, 20-bit minor) for a `st_dev` as
/// `stat(2)` reports it; BPF programs see the former.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xf_ffff)
}

/// The `st_dev` of `memfd_create` files (the kernel's internal shmem mount).
pub fn memfd_dev() -> std::io::Result<u64> {
    let fd =
        nix::sys::memfd::memfd_create(c"custos-probe", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(nix::sys::stat::fstat(&fd)?.st_dev)
}

fn map_err(map: &'static str) -> impl FnOnce(libbpf_rs::Error) -> EbpfError {
    move |source| EbpfError::Map { map, source }
}

/// Handles on the control maps (dups of the map fds), usable from any thread.
pub struct Controls {
    settings: MapHandle,
    devs: MapHandle,
    blocked: MapHandle,
    held: MapHandle,
    /// What `devs` should hold, so updates can replace it.
    dev_bits: Mutex<HashMap<u32, u32>>,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls").finish_non_exhaustive()
    }
}

fn handle(m: &libbpf_rs::Map<'_>, name: &'static str) -> Result<MapHandle, EbpfError> {
    MapHandle::try_from(m).map_err(map_err(name))
}

fn bytes<T: plain::Plain>(t: &T) -> &[u8] {
    // SAFETY: the control structs of bpf/process.h are all integers with explicit padding
    // fields, so every byte is initialised.
    unsafe { plain::as_bytes(t) }
}

impl Controls {
    pub(crate) fn new(
        settings: &libbpf_rs::Map<'_>,
        devs: &libbpf_rs::Map<'_>,
        blocked: &libbpf_rs::Map<'_>,
        held: &libbpf_rs::Map<'_>,
    ) -> Result<Controls, EbpfError> {
        Ok(Controls {
            settings: handle(settings, "settings")?,
            devs: handle(devs, "devs")?,
            blocked: handle(blocked, "blocked")?,
            held: handle(held, "held")?,
            dev_bits: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the hold scope, whether an exec that cannot be held is killed (`kill_on_overload`,
    /// and `kill_traced` for one under ptrace, which SIGSTOP cannot hold), and the agent's pid
    /// (never held).
    pub fn configure(
        &self,
        scope: HoldScope,
        kill_on_overload: bool,
        kill_traced: bool,
        self_pid: u32,
    ) -> Result<(), EbpfError> {
        let s = RawSettings {
            hold_scope: match scope {
                HoldScope::Off => 0,
                HoldScope::Memfd => 1,
                HoldScope::Unwatched => 2,
            },
            kill_on_overload: kill_on_overload.into(),
            kill_traced: kill_traced.into(),
            self_pid,
        };
        if scope == HoldScope::Memfd {
            match memfd_dev() {
                Ok(d) => self.set_bits(|m| {
                    *m.entry(kernel_dev(d)).or_default() |= DEV_HOLD;
                })?,
                Err(e) => tracing::warn!("cannot find memfd's filesystem: {e}"),
            }
        }
        self.settings
            .update(&0u32.to_ne_bytes(), bytes(&s), MapFlags::ANY)
            .map_err(map_err("settings"))
    }

    /// The filesystems (`st_dev`) the fanotify exec loop watches now.
    pub fn set_watched(&self, st_devs: &[u64]) -> Result<(), EbpfError> {
        let want: Vec<u32> = st_devs.iter().map(|&d| kernel_dev(d)).collect();
        self.set_bits(|m| {
            for bits in m.values_mut() {
                *bits &= !DEV_WATCHED;
            }
            for d in &want {
                *m.entry(*d).or_default() |= DEV_WATCHED;
            }
        })
    }

    fn set_bits(&self, f: impl FnOnce(&mut HashMap<u32, u32>)) -> Result<(), EbpfError> {
        let mut m = self.dev_bits.lock().unwrap_or_else(|p| p.into_inner());
        let before = m.clone();
        f(&mut m);
        m.retain(|_, b| *b != 0);
        for k in before.keys().filter(|k| !m.contains_key(k)) {
            let _ = self.devs.delete(&k.to_ne_bytes());
        }
        for (k, v) in m.iter() {
            self.devs
                .update(&k.to_ne_bytes(), &v.to_ne_bytes(), MapFlags::ANY)
                .map_err(map_err("devs"))?;
        }
        Ok(())
    }

    /// Remembers a file judged "deny" so later execs of it die in the kernel at once, for as
    /// long as its ctime is unchanged.
    pub fn block(&self, key: &FileKey) -> Result<(), EbpfError> {
        let id = RawFileId {
            dev: kernel_dev(key.dev).into(),
            ino: key.ino,
        };
        let v = RawBlockedFile {
            ctime_sec: key.ctime_ns.div_euclid(1_000_000_000) as i64,
            ctime_nsec: key.ctime_ns.rem_euclid(1_000_000_000) as u32,
            ..RawBlockedFile::default()
        };
        self.blocked
            .update(bytes(&id), bytes(&v), MapFlags::ANY)
            .map_err(map_err("blocked"))
    }

    /// Forgets every blocked file (rules or mode changed).
    pub fn flush_blocked(&self) -> Result<(), EbpfError> {
        let keys: Vec<Vec<u8>> = self.blocked.keys().collect();
        for k in keys {
            // A key gone meanwhile is fine.
            let _ = self.blocked.delete(&k);
        }
        Ok(())
    }

    /// Forgets the hold `stamp` of `pid`, and only that one: a later hold of the same process
    /// (it exec'd again) has another stamp and stays.
    pub fn release(&self, pid: u32, stamp: u64) {
        if self.held_entry(pid).is_some_and(|h| h.stamp == stamp) {
            let _ = self.held.delete(&pid.to_ne_bytes());
        }
    }

    /// The held map's entry for `pid`.
    pub(crate) fn held_entry(&self, pid: u32) -> Option<RawHeldExec> {
        let v = self.held.lookup(&pid.to_ne_bytes(), MapFlags::ANY).ok()??;
        let mut h = RawHeldExec::default();
        plain::copy_from_bytes(&mut h, &v).ok()?;
        Some(h)
    }

    /// Kills a held process that was tampered with when the kernel could not (`start_ns`
    /// names it), then forgets its hold, whatever became of that meanwhile.
    pub fn kill_tampered(&self, pid: u32, start_ns: u64) {
        let r = crate::hold::signal_held(pid, start_ns, libc::SIGKILL);
        if r.settled() {
            if let Some(h) = self.held_entry(pid) {
                if h.start_boottime_ns == start_ns {
                    let _ = self.held.delete(&pid.to_ne_bytes());
                }
            }
        }
    }

    /// Answers every hold still in the map (`allow`: resume, else kill), for holds nobody
    /// took over: the agent is stopping and the sensor is detached.
    pub fn answer_leftovers(&self, allow: bool) -> usize {
        let sig = if allow { libc::SIGCONT } else { libc::SIGKILL };
        let keys: Vec<Vec<u8>> = self.held.keys().collect();
        let mut n = 0;
        for k in keys {
            let Ok(k) = <[u8; 4]>::try_from(k.as_slice()) else {
                continue;
            };
            let pid = u32::from_ne_bytes(k);
            if let Some(h) = self.held_entry(pid) {
                let r = crate::hold::signal_held(pid, h.start_boottime_ns, sig);
                n += usize::from(r == crate::hold::Signalled::Sent);
                if r.settled() {
                    self.release(pid, h.stamp);
                }
            }
        }
        n
    }

    /// The `held` map, for the guardian process that resumes holds if the agent dies.
    pub fn held_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.held.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // 8:1 (sda1): st_dev 0x801 -> MKDEV 0x800001.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        // Anonymous 0:52 (tmpfs).
        assert_eq!(kernel_dev(libc::makedev(0, 52)), 52);
        // A minor over 255 (split in the user encoding).
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }

    #[test]
    fn memfd_has_a_filesystem() {
        assert!(memfd_dev().is_ok());
    }
}
