//! PLACEHOLDER until the notify branch merges (compile check only).
#![allow(missing_docs, clippy::missing_errors_doc)]
use crate::group::SensorError;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Create,
    CloseWrite,
    Delete,
    Rename,
    Attrib,
    Overflow,
}
#[derive(Debug)]
pub struct Notice {
    pub kind: NoticeKind,
    pub pid: i32,
    pub path: Option<PathBuf>,
    pub old_path: Option<PathBuf>,
    pub dir: bool,
}
#[derive(Debug, Default)]
pub struct NotifyStats {
    pub overflows: AtomicU64,
    pub unresolved: AtomicU64,
}
#[derive(Debug)]
pub struct Notifier {
    stats: NotifyStats,
}
impl Notifier {
    pub fn new() -> Result<Arc<Notifier>, SensorError> {
        Ok(Arc::new(Notifier {
            stats: NotifyStats::default(),
        }))
    }
    pub fn watch_fs(&self, _m: &Path) -> Result<(), SensorError> {
        Ok(())
    }
    pub fn watch_dir(&self, _m: &Path) -> Result<(), SensorError> {
        Ok(())
    }
    pub fn run(&self, _stop: &OwnedFd, _on: impl FnMut(Notice)) -> Result<(), SensorError> {
        Ok(())
    }
    pub fn stats(&self) -> &NotifyStats {
        &self.stats
    }
}
