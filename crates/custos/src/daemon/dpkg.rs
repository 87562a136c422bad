//! Debian package trust in the verdict engine: the dpkg index, loaded at start and reloaded
//! (on its own thread) whenever dpkg's database changes, so installs and upgrades need no
//! restart. A failed reload keeps the previous index.

use custos_reputation::{dpkg::stamp, DpkgIndex};
use custos_verdict::{Arbiter, Held, KnownGood};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// [`DpkgIndex`] as the verdict engine's [`KnownGood`].
pub struct PackageTrust(DpkgIndex);

impl KnownGood for PackageTrust {
    fn listed(&self, path: &str) -> bool {
        self.0.md5_for(path).is_some()
    }

    fn trusted(&self, path: &str, md5: &[u8; 16]) -> bool {
        self.0.md5_for(path) == Some(md5)
    }
}

/// What `status` shows about a reputation source.
pub type StatusSlot = Arc<std::sync::Mutex<String>>;

/// Loads the index into `arbiter` now, then follows dpkg's changes until `stop`.
pub fn start<H: Held>(
    arbiter: Arc<Arbiter<H>>,
    info: PathBuf,
    stop: Arc<AtomicBool>,
    status: StatusSlot,
) -> std::io::Result<()> {
    let mut seen = stamp(&info);
    load(&arbiter, &info, &status);
    std::thread::Builder::new()
        .name("custos-dpkg".into())
        .spawn(move || {
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                let now = stamp(&info);
                if now != seen {
                    // Let dpkg finish writing before reading its lists.
                    std::thread::sleep(Duration::from_secs(1));
                    seen = stamp(&info);
                    load(&arbiter, &info, &status);
                }
            }
        })?;
    Ok(())
}

fn load<H: Held>(arbiter: &Arbiter<H>, info: &std::path::Path, status: &StatusSlot) {
    let set = |s: String| *status.lock().unwrap_or_else(|p| p.into_inner()) = s;
    match DpkgIndex::load(info) {
        Ok(idx) => {
            tracing::info!(
                files = idx.len(),
                "package trust loaded from {}",
                info.display()
            );
            set(format!("{} files from {}", idx.len(), info.display()));
            arbiter.set_known_good(Some(Arc::new(PackageTrust(idx))));
        }
        Err(e) => {
            let why = format!("{:#}", anyhow::Error::new(e));
            tracing::error!("package trust not (re)loaded, keeping what was: {why}");
            set(format!("last load failed (previous index kept): {why}"));
        }
    }
}
