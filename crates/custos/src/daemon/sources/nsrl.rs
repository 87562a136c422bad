//! The NIST NSRL set as a reputation source: the imported set under `STATE/nsrl`, memory-mapped,
//! loaded at start and on `custos db import-nsrl`. A file in it is "known" — or trusted
//! (allowed in lockdown) with `reputation.nsrl_trust`. A set that cannot be loaded is refused
//! and the previous one stays.

use super::{chain, Registry};
use custos_config::SourceName;
use custos_reputation::nsrl::{DigestKind, Nsrl};
use custos_verdict::{Finding, Need, Source, Subject};
use std::path::Path;
use std::sync::Arc;

/// [`Nsrl`] as a [`Source`].
pub struct NsrlSource {
    set: Nsrl,
    trust: bool,
}

impl Source for NsrlSource {
    fn name(&self) -> &str {
        "nsrl"
    }

    fn need(&self, _path: Option<&str>) -> Need {
        Need {
            md5: self.set.kind() == DigestKind::Md5,
            sha1: self.set.kind() == DigestKind::Sha1,
            content_up_to: 0,
        }
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        let sha256 = s.sha256_bytes();
        let listed = match self.set.kind() {
            DigestKind::Sha256 => sha256.is_some_and(|d| self.set.contains(&d)),
            DigestKind::Sha1 => s.sha1.is_some_and(|d| self.set.contains(d)),
            DigestKind::Md5 => s.md5.is_some_and(|d| self.set.contains(d)),
        };
        let kind = self.set.kind();
        match (listed, self.trust) {
            (false, _) => Finding::unknown(format!("not in the NSRL set ({kind:?})")),
            (true, true) => Finding::good(format!("in the NSRL set ({kind:?}), trusted")),
            (true, false) => Finding::known(format!(
                "in the NSRL set ({kind:?}); not trusted (reputation.nsrl_trust)"
            )),
        }
    }
}

/// Loads the set of `state_dir` into the registry; on failure the previous one stays.
pub fn load(reg: &Registry, state_dir: &Path, trust: bool) -> Result<(), String> {
    match Nsrl::load(state_dir) {
        Ok(None) => {
            reg.install(SourceName::Nsrl, None, "none imported".into());
            Ok(())
        }
        Ok(Some(set)) => {
            let i = set.info();
            let state = format!(
                "{} {:?} digests from {} (imported {}){}",
                set.len(),
                set.kind(),
                i.source,
                i.imported_at,
                if trust { ", trusted" } else { ", known only" }
            );
            tracing::info!("NSRL set loaded: {state}");
            reg.install(
                SourceName::Nsrl,
                Some(Arc::new(NsrlSource { set, trust })),
                state,
            );
            Ok(())
        }
        Err(e) => {
            let e = chain(e);
            reg.keep(SourceName::Nsrl, &e);
            Err(e)
        }
    }
}
