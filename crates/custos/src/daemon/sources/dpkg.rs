//! Debian package trust as a reputation source: the dpkg index, loaded at start and reloaded
//! whenever dpkg's database changes, so installs and upgrades need no restart. A failed reload
//! keeps the previous index.

use super::{chain, watch, Registry};
use custos_config::SourceName;
use custos_reputation::{dpkg::stamp, DpkgIndex};
use custos_verdict::{Finding, Need, Source, Subject};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// [`DpkgIndex`] as a [`Source`]: trusted when dpkg lists this path with this MD5.
pub struct PackageTrust(DpkgIndex);

impl Source for PackageTrust {
    fn name(&self) -> &str {
        "dpkg"
    }

    fn by_path(&self) -> bool {
        true
    }

    fn need(&self, path: Option<&str>) -> Need {
        Need {
            md5: path.is_some_and(|p| self.0.md5_for(p).is_some()),
            ..Need::default()
        }
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        let listed = s.path.and_then(|p| self.0.md5_for(p));
        match (listed, s.md5) {
            (None, _) => Finding::unknown("no package installed a file at this path".to_owned()),
            (Some(want), Some(got)) if want == got => {
                Finding::good("a package installed this path with this MD5".to_owned())
            }
            (Some(_), Some(_)) => Finding::unknown(
                "ALTERED: a package installed this path with another MD5".to_owned(),
            ),
            (Some(_), None) => Finding::unknown("listed, MD5 not computed".to_owned()),
        }
    }
}

/// Reloads the index whenever dpkg's database changes, until `stop`.
pub fn follow(reg: Arc<Registry>, info: PathBuf, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let at = info.clone();
    watch::spawn(
        "custos-dpkg",
        stop,
        move || stamp(&at),
        move || load(&reg, &info),
    )
}

/// Loads (or reloads) the index; on failure the previous one stays.
pub fn load(reg: &Registry, info: &Path) {
    match DpkgIndex::load(info) {
        Ok(idx) => {
            let state = format!("{} files from {}", idx.len(), info.display());
            tracing::info!("package trust loaded: {state}");
            reg.install(SourceName::Dpkg, Some(Arc::new(PackageTrust(idx))), state);
        }
        Err(e) => reg.keep(SourceName::Dpkg, &chain(e)),
    }
}
