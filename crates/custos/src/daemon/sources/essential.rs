//! The programs every start needs (the shell, the ELF loader, custos itself), vouched for by
//! path. Asked first, and only where trust counts (lockdown): there the mode's default can
//! never deny them, even while a package upgrade has replaced them and dpkg's lists are not
//! updated yet, or after an NSRL re-import that no longer lists them. Rules still apply (the
//! lockout guard refuses rules that would deny them). Only root can replace these files.

use crate::daemon::guard::essential_paths;
use custos_verdict::{Finding, Need, Source, Subject};
use std::collections::HashSet;

/// The essential programs' resolved paths as a [`Source`].
pub struct Essential(HashSet<String>);

impl Essential {
    /// Resolves the essential programs ([`crate::daemon::guard::ESSENTIAL`]) on this host now.
    pub fn here() -> Essential {
        Essential(
            essential_paths()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        )
    }
}

impl Source for Essential {
    fn name(&self) -> &str {
        "essential"
    }

    fn by_path(&self) -> bool {
        true
    }

    fn need(&self, _path: Option<&str>) -> Need {
        Need::default()
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        match s.path {
            Some(p) if self.0.contains(p) => {
                Finding::good("every program start needs it (shell, loader or custos)".to_owned())
            }
            _ => Finding::unknown(None),
        }
    }
}
