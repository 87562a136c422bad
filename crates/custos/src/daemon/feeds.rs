//! Known-bad feeds in the verdict engine: the imported sets under `STATE/feeds`, loaded at start
//! and on `custos db import-feed`. A feed that cannot be loaded, or that lists a program the
//! host cannot do without, is refused with the reason and the previous feeds stay in force.

use super::guard::ESSENTIAL;
use custos_reputation::Feeds;
use custos_verdict::{digests_while, FileDigests, KnownBad, Want};
use std::path::Path;
use std::sync::Arc;

/// [`Feeds`] as the verdict engine's [`KnownBad`].
pub struct FeedSource(Feeds);

impl KnownBad for FeedSource {
    fn want(&self) -> Want {
        Want {
            md5: self.0.wants_md5(),
            sha1: self.0.wants_sha1(),
        }
    }

    fn lookup(&self, d: &FileDigests) -> Option<u16> {
        let sha256 = d.sha256_bytes()?;
        let idx = self
            .0
            .lookup_index(d.md5.as_ref(), d.sha1.as_ref(), &sha256)?;
        u16::try_from(idx).ok()
    }

    fn name(&self, idx: u16) -> Option<String> {
        self.0.name(usize::from(idx)).map(str::to_owned)
    }
}

/// Loads the feeds of `state_dir`: `None` when there are none. Refuses a set in which an
/// essential program (the shell, the ELF loader, custos) is listed, because denying it would
/// lock the host out.
pub fn load(state_dir: &Path) -> Result<Option<Arc<dyn KnownBad>>, String> {
    let feeds = Feeds::load(state_dir).map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    if feeds.is_empty() {
        return Ok(None);
    }
    let src = FeedSource(feeds);
    if let Some((path, feed)) = essential_listed(&src) {
        return Err(format!(
            "feed `{feed}` lists {path}, which every program start needs; remove it from the feed \
             (refusing the feeds)"
        ));
    }
    Ok(Some(Arc::new(src)))
}

/// The first essential program a feed lists, with the feed's name.
fn essential_listed(src: &FeedSource) -> Option<(String, String)> {
    ESSENTIAL.iter().find_map(|p| {
        let path = std::fs::canonicalize(p).ok()?;
        let mut f = std::fs::File::open(&path).ok()?;
        let d = digests_while(&mut f, src.want(), &mut || true).ok()??;
        let idx = src.lookup(&d)?;
        Some((path.display().to_string(), src.name(idx)?))
    })
}

/// The first essential program whose digest is among `d` (a feed about to be imported).
pub fn essential_in(d: &custos_reputation::Digests) -> Option<String> {
    let want = Want {
        md5: !d.md5.is_empty(),
        sha1: !d.sha1.is_empty(),
    };
    ESSENTIAL.iter().find_map(|p| {
        let path = std::fs::canonicalize(p).ok()?;
        let mut f = std::fs::File::open(&path).ok()?;
        let fd = digests_while(&mut f, want, &mut || true).ok()??;
        let hit = fd.sha256_bytes().is_some_and(|s| d.sha256.contains(&s))
            || fd.md5.is_some_and(|m| d.md5.contains(&m))
            || fd.sha1.is_some_and(|h| d.sha1.contains(&h));
        hit.then(|| path.display().to_string())
    })
}

/// For `status`: the feeds in force.
pub fn describe(k: Option<&dyn KnownBad>) -> String {
    let Some(k) = k else {
        return "none imported".into();
    };
    let names: Vec<String> = (0..).map_while(|i| k.name(i)).collect();
    names.join(", ")
}
