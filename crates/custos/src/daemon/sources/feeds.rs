//! Known-bad feeds as a reputation source: the imported sets under `STATE/feeds`, loaded at
//! start and on `custos db import-feed`. A feed that cannot be loaded, or that lists a program
//! the host cannot do without, is refused with the reason and the previous feeds stay in force.

use super::{chain, Registry};
use crate::daemon::guard::essential_where;
use custos_config::SourceName;
use custos_reputation::Feeds;
use custos_verdict::{Finding, Need, Source, Subject, Want};
use std::path::Path;
use std::sync::Arc;

/// [`Feeds`] as a [`Source`]: known bad when a feed lists one of the file's digests.
pub struct FeedSource(Feeds);

impl FeedSource {
    fn lookup(&self, s: &Subject<'_>) -> Option<&str> {
        let sha256 = s.sha256_bytes()?;
        self.0.lookup(s.md5, s.sha1, &sha256)
    }
}

impl Source for FeedSource {
    fn name(&self) -> &str {
        "feeds"
    }

    fn need(&self, _path: Option<&str>) -> Need {
        Need {
            md5: self.0.wants_md5(),
            sha1: self.0.wants_sha1(),
            content_up_to: 0,
        }
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        match self.lookup(s) {
            Some(feed) => Finding::bad(feed.to_owned()),
            None => Finding::unknown(None),
        }
    }
}

/// Loads the feeds of `state_dir` into the registry. Refuses a set in which an essential
/// program (the shell, the ELF loader, custos) is listed, because denying it would lock the
/// host out; the previous feeds then stay.
pub fn load(reg: &Registry, state_dir: &Path) -> Result<(), String> {
    let loaded = Feeds::load(state_dir)
        .map_err(chain)
        .and_then(|feeds| checked(FeedSource(feeds)));
    match loaded {
        Ok(src) if src.0.is_empty() => {
            reg.install(SourceName::Feeds, None, "none imported".into());
            Ok(())
        }
        Ok(src) => {
            let state = src.0.names().join(", ");
            tracing::info!("known-bad feeds loaded: {state}");
            reg.install(SourceName::Feeds, Some(Arc::new(src)), state);
            Ok(())
        }
        Err(e) => {
            reg.keep(SourceName::Feeds, &e);
            Err(e)
        }
    }
}

fn checked(src: FeedSource) -> Result<FeedSource, String> {
    let listed = essential_where(src.need(None).want(), |d| {
        Some(src.lookup(&Subject::of(d, None, 0, None))?.to_owned())
    });
    match listed {
        Some((path, feed)) => Err(format!(
            "feed `{feed}` lists {}, which every program start needs; remove it from the feed \
             (refusing the feeds)",
            path.display()
        )),
        None => Ok(src),
    }
}

/// The first essential program whose digest is among `d` (a feed about to be imported).
pub fn essential_in(d: &custos_reputation::Digests) -> Option<String> {
    let want = Want {
        md5: !d.md5.is_empty(),
        sha1: !d.sha1.is_empty(),
    };
    let (path, _) = essential_where(want, |fd| {
        let hit = fd.sha256_bytes().is_some_and(|s| d.sha256.contains(&s))
            || fd.md5.is_some_and(|m| d.md5.contains(&m))
            || fd.sha1.is_some_and(|h| d.sha1.contains(&h));
        hit.then(String::new)
    })?;
    Some(path.display().to_string())
}
