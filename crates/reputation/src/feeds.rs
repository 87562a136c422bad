//! The feed store: `STATE/feeds/NAME.set` (a [`DigestSet`] file) plus `NAME.json`
//! ([`FeedInfo`]), each replaced atomically. Importing validates the whole file before anything
//! is written, so a bad import leaves the previous feed of that name in place.

use crate::atomic;
use crate::feed::{io_err, parse_feed, FeedError};
use crate::hashset::{write_atomic, DigestSet};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Longest feed name.
pub const MAX_NAME_LEN: usize = 64;

/// Metadata of an imported feed, stored beside its set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedInfo {
    /// The feed's name.
    pub name: String,
    /// When it was imported (RFC 3339, UTC).
    pub imported_at: String,
    /// The file it was imported from.
    pub source: String,
    /// Data rows in that file.
    pub rows: u64,
    /// Rows rejected as malformed.
    pub rejected: u64,
    /// Distinct digests: MD5, SHA-1, SHA-256.
    pub unique: [u64; 3],
    /// Repeated digests dropped.
    pub duplicates: u64,
}

/// `STATE/feeds`.
pub fn feeds_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feeds")
}

/// Checks a feed name: `[A-Za-z0-9_.-]{1,64}`, not starting with `.` (hidden names are kept
/// for temp files, and `.`/`..` must never be names).
pub fn validate_name(name: &str) -> Result<(), FeedError> {
    let bad = |reason| {
        Err(FeedError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 64 characters");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only A-Z, a-z, 0-9, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// Parses `file` and stores it as feed `name`, replacing any previous one. On any error the
/// previous feed of that name is untouched (except if only the final metadata write fails:
/// then the new set is in place beside the old metadata).
pub fn import_feed(state_dir: &Path, name: &str, file: &Path) -> Result<FeedInfo, FeedError> {
    validate_name(name)?;
    let (digests, summary) = parse_feed(file)?;
    let dir = feeds_dir(state_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("cannot create", &dir))?;
    let stats = write_atomic(&dir.join(format!("{name}.set")), digests)?;
    let source = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let info = FeedInfo {
        name: name.to_owned(),
        imported_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        source: source.to_string_lossy().into_owned(),
        rows: summary.rows,
        rejected: summary.rejected,
        unique: stats.unique,
        duplicates: stats.duplicates,
    };
    let meta = dir.join(format!("{name}.json"));
    atomic::write_file(&meta, |w| {
        serde_json::to_writer_pretty(&mut *w, &info)?;
        w.write_all(b"\n")
    })?;
    Ok(info)
}

/// Names of the feeds in `dir` having a file with `ext`, sorted; a missing dir has none.
fn names_with(dir: &Path, ext: &str) -> Result<Vec<String>, FeedError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot read", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("cannot read", dir))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(ext)) else {
            continue;
        };
        // Temp files and strays are not feeds.
        if validate_name(name).is_ok() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Metadata of every imported feed, sorted by name (no feeds dir: empty).
pub fn list(state_dir: &Path) -> Result<Vec<FeedInfo>, FeedError> {
    let dir = feeds_dir(state_dir);
    names_with(&dir, ".json")?
        .into_iter()
        .map(|name| {
            let p = dir.join(format!("{name}.json"));
            let text = fs::read_to_string(&p).map_err(io_err("cannot read", &p))?;
            serde_json::from_str(&text).map_err(|e| FeedError::Metadata {
                path: p,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// All imported feeds' sets, opened, in name order.
#[derive(Debug, Default)]
pub struct Feeds {
    sets: Vec<(String, DigestSet)>,
}

impl Feeds {
    /// Opens every `NAME.set` under the state dir. A corrupt set is an error naming it, so the
    /// caller can keep its previous `Feeds`.
    pub fn load(state_dir: &Path) -> Result<Feeds, FeedError> {
        let dir = feeds_dir(state_dir);
        let sets = names_with(&dir, ".set")?
            .into_iter()
            .map(|name| {
                let set = DigestSet::open(&dir.join(format!("{name}.set")))?;
                Ok((name, set))
            })
            .collect::<Result<_, FeedError>>()?;
        Ok(Feeds { sets })
    }

    /// The name of the first feed (by name) holding any of the given digests.
    pub fn lookup(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: &[u8; 32],
    ) -> Option<&str> {
        self.lookup_index(md5, sha1, sha256)
            .and_then(|i| self.name(i))
    }

    /// Like [`Feeds::lookup`], the feed's position in [`Feeds::names`] order (no allocation:
    /// this is on the verdict path).
    pub fn lookup_index(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: &[u8; 32],
    ) -> Option<usize> {
        self.sets.iter().position(|(_, s)| {
            s.contains_sha256(sha256)
                || md5.is_some_and(|d| s.contains_md5(d))
                || sha1.is_some_and(|d| s.contains_sha1(d))
        })
    }

    /// The name of feed `i` (in [`Feeds::names`] order).
    pub fn name(&self, i: usize) -> Option<&str> {
        self.sets.get(i).map(|(n, _)| n.as_str())
    }

    /// Whether any feed holds MD5 digests (else computing MD5 is wasted work).
    pub fn wants_md5(&self) -> bool {
        self.sets.iter().any(|(_, s)| s.has_md5())
    }

    /// Whether any feed holds SHA-1 digests.
    pub fn wants_sha1(&self) -> bool {
        self.sets.iter().any(|(_, s)| s.has_sha1())
    }

    /// Whether no feed is loaded.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Loaded feed names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.sets.iter().map(|(n, _)| n.as_str()).collect()
    }
}

#[cfg(test)]
#[path = "feeds_tests.rs"]
mod tests;
