//! The fanotify sensors: the exec permission group ([`Group`]) and file notices ([`Notifier`]).
//!
//! Exec group kernel requirements: Linux ≥ 5.0 for `FAN_OPEN_EXEC_PERM`,
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y`, `CAP_SYS_ADMIN`; evictable ignore marks need ≥ 5.19
//! (older kernels get plain ignore marks). The kernel holds each exec until this group answers;
//! closing the group (including when the agent is killed) makes the kernel allow everything
//! still pending. The notifier's requirements are on [`notify`].

pub mod follow;
mod group;
mod held;
pub mod mounts;
pub mod notify;
mod notify_parse;
pub mod procfs;

pub use group::{Group, SensorError, SensorStats};
pub use held::HeldExec;
pub use mounts::WatchedFs;
pub use notify::{Notice, NoticeKind, Notifier, NotifyError, NotifyStats};
