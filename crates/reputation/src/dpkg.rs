//! Debian package trust: every file dpkg installed, with the MD5 its package shipped
//! (`/var/lib/dpkg/info/*.md5sums`). A file is trusted when it is at a listed path and its
//! current MD5 matches, so an edited or replaced package file is not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where dpkg keeps its per-package lists.
pub const DPKG_INFO: &str = "/var/lib/dpkg/info";

/// Errors reading the dpkg database.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    /// The info directory cannot be read.
    #[error("cannot read {path}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Path → MD5 of every package-managed file, by resolved path.
#[derive(Debug, Default, Clone)]
pub struct DpkgIndex {
    files: HashMap<String, [u8; 16]>,
    /// Lines that were not `md5  path` (counted, not fatal: dpkg's own files are trusted input).
    pub skipped: u64,
}

impl DpkgIndex {
    /// Reads every `*.md5sums` in `info_dir`. Paths are stored as the kernel resolves them:
    /// `bin/true` from a package becomes `/usr/bin/true` where `/bin` links to `usr/bin`.
    pub fn load(info_dir: &Path) -> Result<DpkgIndex, DpkgError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DpkgError::Io { path, source }
        };
        let mut idx = DpkgIndex::default();
        let mut dirs: HashMap<String, Option<String>> = HashMap::new();
        for entry in std::fs::read_dir(info_dir).map_err(io(info_dir))? {
            let p = entry.map_err(io(info_dir))?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("md5sums") {
                continue;
            }
            let text = std::fs::read(&p).map_err(io(&p))?;
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match parse_line(line) {
                    Some((md5, rel)) => {
                        let path = resolve(&rel, &mut dirs);
                        idx.files.insert(path, md5);
                    }
                    None => idx.skipped += 1,
                }
            }
        }
        Ok(idx)
    }

    /// The MD5 dpkg recorded for the file at this resolved path.
    pub fn md5_for(&self, path: &str) -> Option<&[u8; 16]> {
        self.files.get(path)
    }

    /// Files listed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// When dpkg last changed its database (the info dir and the status file): reload when it
/// moves.
pub fn stamp(info_dir: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let status = info_dir.parent().map(|d| d.join("status"))?;
    Some((m(info_dir)?, m(&status).unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// `d41d8cd98f00b204e9800998ecf8427e  usr/bin/x` → (digest, `usr/bin/x`).
fn parse_line(line: &[u8]) -> Option<([u8; 16], String)> {
    let line = std::str::from_utf8(line).ok()?;
    let (hex_md5, rest) = line.split_once(' ')?;
    let rel = rest.trim_start_matches(' ').trim_end_matches('\r');
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(hex_md5, &mut md5).ok()?;
    (!rel.is_empty()).then(|| (md5, rel.trim_start_matches('/').to_owned()))
}

/// `/` + `rel`, with its directory resolved through symlinks (cached per directory).
fn resolve(rel: &str, dirs: &mut HashMap<String, Option<String>>) -> String {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let real = dirs
        .entry(dir.to_owned())
        .or_insert_with(|| {
            std::fs::canonicalize(format!("/{dir}"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .clone();
    match real {
        Some(d) if d == "/" => format!("/{name}"),
        Some(d) => format!("{d}/{name}"),
        None => format!("/{rel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let (md5, p) = parse_line(b"7a52c94ace40d9c052cf40f3541637c3  bin/true").unwrap();
        assert_eq!(hex::encode(md5), "7a52c94ace40d9c052cf40f3541637c3");
        assert_eq!(p, "bin/true");
        assert!(parse_line(b"nothex  x").is_none());
        assert!(parse_line(b"7a52c94ace40d9c052cf40f3541637c3").is_none());
        let (_, spaced) = parse_line(b"7a52c94ace40d9c052cf40f3541637c3  usr/share/a b").unwrap();
        assert_eq!(spaced, "usr/share/a b");
    }

    #[test]
    fn index_from_a_fake_info_dir_resolves_through_symlinked_dirs() {
        let root = tempfile::tempdir().unwrap();
        let info = root.path().join("info");
        std::fs::create_dir(&info).unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("link")).unwrap();
        let rel_link = root
            .path()
            .join("link")
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        std::fs::write(
            info.join("pkg.md5sums"),
            format!("{}  {rel_link}/tool\ngarbage\n", "00".repeat(16)),
        )
        .unwrap();
        std::fs::write(info.join("pkg.list"), "ignored").unwrap();
        let idx = DpkgIndex::load(&info).unwrap();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.skipped, 1);
        let want = format!("{}/tool", std::fs::canonicalize(&real).unwrap().display());
        assert_eq!(idx.md5_for(&want), Some(&[0u8; 16]));
        assert!(DpkgIndex::load(&root.path().join("missing")).is_err());
    }

    #[test]
    fn this_hosts_dpkg_lists_true() {
        let Ok(idx) = DpkgIndex::load(Path::new(DPKG_INFO)) else {
            return; // not a dpkg system
        };
        let real = std::fs::canonicalize("/bin/true").unwrap();
        assert!(
            idx.md5_for(&real.to_string_lossy()).is_some(),
            "{}",
            real.display()
        );
    }
}
