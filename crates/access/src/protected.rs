//! The protected files: rule globs expanded to the inodes they name now, and the directories
//! where new matches can appear.
//!
//! Rules name paths, but the kernel reports inodes. Deciding by inode is what makes hard links
//! useless for getting around a rule: a new name for a protected file is the same inode.

use crate::policy::Policy;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A protected inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The rules protecting it (indexes into the policy).
    pub rules: Vec<usize>,
    /// The path it was found under.
    pub path: PathBuf,
}

/// Protected inodes by (dev, ino).
#[derive(Debug, Default)]
pub struct Protected {
    map: HashMap<(u64, u64), Entry>,
}

impl Protected {
    /// The entry for an inode.
    pub fn get(&self, dev: u64, ino: u64) -> Option<&Entry> {
        self.map.get(&(dev, ino))
    }

    /// Protects the file at `path` if a rule covers it, and returns its (dev, ino): the caller
    /// marks it in the kernel (again: an inode number can be reused by a new file after the
    /// old one, and its mark, are gone).
    pub fn add(&mut self, policy: &Policy, path: &Path) -> Option<(u64, u64)> {
        let rules = policy.rules_for(path);
        if rules.is_empty() {
            return None;
        }
        let md = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        let key = (md.dev(), md.ino());
        let e = self.map.entry(key).or_insert_with(|| Entry {
            rules: Vec::new(),
            path: path.to_owned(),
        });
        for r in rules {
            if !e.rules.contains(&r) {
                e.rules.push(r);
            }
        }
        Some(key)
    }

    /// How many inodes are protected.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What the rules' globs name on disk now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Files a rule covers.
    pub files: Vec<PathBuf>,
    /// Directories where a new file could match a rule (watched for creations and renames).
    pub dirs: Vec<PathBuf>,
    /// The walk stopped at its entry limit.
    pub truncated: bool,
}

/// Expands every rule's globs, visiting at most `limit` directory entries in all.
/// Symbolic links to directories are not followed.
pub fn scan(policy: &Policy, limit: usize) -> Scan {
    let mut out = Scan::default();
    let mut budget = limit;
    for rule in policy.rules() {
        for pattern in &rule.patterns {
            let (base, depth) = split(pattern);
            walk(policy, &base, depth, &mut budget, &mut out);
        }
    }
    out.files.sort();
    out.files.dedup();
    out.dirs.sort();
    out.dirs.dedup();
    out.truncated = budget == 0;
    out
}

/// The literal directory a glob starts from, and how deep below it matches can be (`None`:
/// any depth, for `**`). A glob without wildcards is its own parent plus one level.
fn split(pattern: &str) -> (PathBuf, Option<usize>) {
    let wild = |s: &str| s.contains(['*', '?', '[', '{']);
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut rest = Vec::new();
    for c in path.components() {
        let s = c.as_os_str().to_string_lossy();
        if rest.is_empty() && !wild(&s) {
            base.push(c);
        } else {
            rest.push(s.into_owned());
        }
    }
    if rest.is_empty() {
        let parent = base
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into());
        return (parent, Some(1));
    }
    let depth = (!rest.iter().any(|s| s.contains("**"))).then_some(rest.len());
    (base, depth)
}

fn walk(policy: &Policy, dir: &Path, depth: Option<usize>, budget: &mut usize, out: &mut Scan) {
    if depth == Some(0) || *budget == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    out.dirs.push(dir.to_owned());
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(policy, &path, depth.map(|d| d - 1), budget, out);
        } else if !policy.rules_for(&path).is_empty() {
            out.files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_config::{Access, AccessRuleConfig};

    fn policy(paths: &[String]) -> Policy {
        Policy::compile(
            &[AccessRuleConfig {
                name: "r".into(),
                paths: paths.to_vec(),
                allow: vec!["/bin/true".into()],
                deny: vec![],
                access: Access::Open,
                audit: false,
            }],
            None,
        )
        .expect("compiles")
    }

    #[test]
    fn split_finds_the_literal_base() {
        assert_eq!(split("/etc/shadow"), ("/etc".into(), Some(1)));
        assert_eq!(split("/etc/ssh/*_key"), ("/etc/ssh".into(), Some(1)));
        assert_eq!(split("/home/*/.ssh/id_*"), ("/home".into(), Some(3)));
        assert_eq!(
            split("/var/lib/custos/**"),
            ("/var/lib/custos".into(), None)
        );
    }

    #[test]
    fn scan_and_protect_by_inode() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path();
        std::fs::create_dir_all(d.join("a/b")).expect("mkdir");
        for f in ["a/key", "a/b/key", "a/other", "top_key"] {
            std::fs::write(d.join(f), "x").expect("write");
        }
        let g = |s: &str| format!("{}/{s}", d.display());
        let p = policy(&[g("a/**/key"), g("*_key")]);
        let s = scan(&p, 1000);
        assert_eq!(
            s.files,
            vec![d.join("a/b/key"), d.join("a/key"), d.join("top_key")]
        );
        assert!(s.dirs.contains(&d.join("a/b")) && s.dirs.contains(&d.to_path_buf()));
        assert!(!s.truncated);
        assert!(scan(&p, 2).truncated);

        let mut prot = Protected::default();
        let k = prot.add(&p, &d.join("a/key")).expect("covered");
        assert_eq!(prot.add(&p, &d.join("a/key")), Some(k), "covered again");
        assert_eq!(prot.add(&p, &d.join("a/other")), None, "no rule covers it");
        // A hard link elsewhere is the same inode: found, under the protected path.
        std::fs::hard_link(d.join("a/key"), d.join("link")).expect("link");
        let md = std::fs::metadata(d.join("link")).expect("stat");
        let e = prot.get(md.dev(), md.ino()).expect("the link is protected");
        assert_eq!((md.dev(), md.ino()), k);
        assert_eq!(e.path, d.join("a/key"));
        assert_eq!(prot.len(), 1);
    }
}
