//! The fanotify sensors: the exec permission group ([`Group`]), the file access group
//! ([`AccessGroup`]) and file notices ([`Notifier`]).
//!
//! Exec group kernel requirements: Linux ≥ 5.0 for `FAN_OPEN_EXEC_PERM`,
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y`, `CAP_SYS_ADMIN`; evictable ignore marks need ≥ 5.19
//! (older kernels get plain ignore marks). Image loads (plain opens, `FAN_OPEN_PERM`, held only
//! while [`Group::set_images`] says so) need the same. The kernel holds each exec until this
//! group answers; closing the group (including when the agent is killed) makes the kernel allow
//! everything still pending. The file access group's requirements are on [`access`], the
//! notifier's on [`notify`].

pub mod access;
mod fan;
pub mod follow;
mod group;
mod held;
pub mod mounts;
pub mod notify;
mod notify_parse;
pub mod procfs;

pub use access::{AccessGroup, HeldOpen};
pub use group::{Group, SensorError, SensorStats};
pub use held::HeldExec;
pub use mounts::WatchedFs;
pub use notify::{Notice, NoticeKind, Notifier, NotifyError, NotifyStats};
