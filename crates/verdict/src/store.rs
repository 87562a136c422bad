//! Persistent rule storage: `rules.json` in the state dir, written atomically
//! (temp file, fsync, rename) under an exclusive `flock` on `rules.lock`, so the agent and an
//! offline `custos rule` never interleave. A bad file is an error naming it; nothing is
//! overwritten until a change validates.

use crate::rules::{NewRule, Rule, RuleError, RuleSet};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors reading or changing the rules file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on the state dir or rules file.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The rules file is not valid JSON of the expected shape.
    #[error("rules file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// serde's message (line and column).
        message: String,
    },
    /// The rules file parses but holds an invalid rule.
    #[error("rules file {path}: {source}")]
    BadRule {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: RuleError,
    },
    /// A requested change is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// `remove` of an id that does not exist.
    #[error("no rule with id {id}")]
    NotFound {
        /// The id asked for.
        id: u64,
    },
    /// The caller's check refused the rule set the change would produce; nothing was written.
    #[error("{reason}")]
    Refused {
        /// Why, as the check said.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    version: u32,
    next_id: u64,
    rules: Vec<Rule>,
}

/// The rules file of one state dir.
#[derive(Debug, Clone)]
pub struct RuleStore {
    dir: PathBuf,
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: flock on an fd we own; closing the file would release it anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl RuleStore {
    /// A store in `state_dir` (created, 0700, on first write).
    pub fn new(state_dir: &Path) -> RuleStore {
        RuleStore {
            dir: state_dir.to_owned(),
        }
    }

    /// Path of the rules file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("rules.json")
    }

    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io { op, path, source }
    }

    fn lock(&self) -> Result<Lock, StoreError> {
        fs::create_dir_all(&self.dir).map_err(Self::io("cannot create state dir", &self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(Self::io("cannot set permissions on", &self.dir))?;
        let p = self.dir.join("rules.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(Self::io("cannot open", &p))?;
        // SAFETY: flock on a valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Self::io("cannot lock", &p)(std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }

    fn read_file(&self) -> Result<RulesFile, StoreError> {
        let p = self.path();
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RulesFile {
                    version: 1,
                    next_id: 1,
                    rules: vec![],
                })
            }
            Err(e) => return Err(Self::io("cannot read", &p)(e)),
        };
        let file: RulesFile = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if file.version != 1 {
            return Err(StoreError::Corrupt {
                path: p,
                message: format!("unsupported version {}", file.version),
            });
        }
        if let Some(r) = file.rules.iter().find(|r| r.id >= file.next_id) {
            return Err(StoreError::Corrupt {
                path: p,
                message: format!("rule id {} is not below next_id {}", r.id, file.next_id),
            });
        }
        Ok(file)
    }

    fn write_file(&self, file: &RulesFile) -> Result<(), StoreError> {
        let p = self.path();
        let tmp = self.dir.join(".rules.json.tmp");
        let text = serde_json::to_string_pretty(file).expect("rules serialise");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Self::io("cannot create", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(Self::io("cannot write", &tmp))?;
        fs::rename(&tmp, &p).map_err(Self::io("cannot replace", &p))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Loads and compiles the rules (an absent file is an empty set).
    pub fn load(&self) -> Result<RuleSet, StoreError> {
        let file = self.read_file()?;
        RuleSet::new(file.rules).map_err(|source| StoreError::BadRule {
            path: self.path(),
            source,
        })
    }

    /// Validates and adds a rule; returns it and the new set. On error nothing changes.
    pub fn add(&self, rule: NewRule) -> Result<(Rule, RuleSet), StoreError> {
        self.add_checked(rule, |_| Ok(()))
    }

    /// Like [`add`](Self::add), but first runs `check` on the rule set the change would
    /// produce, under the file lock. If it returns `Err(reason)`, nothing is written and the
    /// result is [`StoreError::Refused`].
    pub fn add_checked(
        &self,
        rule: NewRule,
        check: impl FnOnce(&RuleSet) -> Result<(), String>,
    ) -> Result<(Rule, RuleSet), StoreError> {
        let rule = rule.validated()?;
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let current = RuleSet::new(file.rules.clone()).map_err(|source| StoreError::BadRule {
            path: self.path(),
            source,
        })?;
        if let Some(existing) = current.find_target(&rule.target) {
            return Err(RuleError::Duplicate {
                id: existing.id,
                target: rule.target.to_string(),
            }
            .into());
        }
        let new = Rule {
            id: file.next_id,
            target: rule.target,
            policy: rule.policy,
            comment: rule.comment,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        file.next_id += 1;
        file.rules.push(new.clone());
        let set = RuleSet::new(file.rules.clone())?;
        check(&set).map_err(|reason| StoreError::Refused { reason })?;
        self.write_file(&file)?;
        Ok((new, set))
    }

    /// Removes a rule by id; returns it and the new set.
    pub fn remove(&self, id: u64) -> Result<(Rule, RuleSet), StoreError> {
        self.remove_checked(id, |_| Ok(()))
    }

    /// Like [`remove`](Self::remove), but first runs `check` on the rule set the change would
    /// produce, under the file lock. If it returns `Err(reason)`, nothing is written and the
    /// result is [`StoreError::Refused`].
    pub fn remove_checked(
        &self,
        id: u64,
        check: impl FnOnce(&RuleSet) -> Result<(), String>,
    ) -> Result<(Rule, RuleSet), StoreError> {
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let pos = file
            .rules
            .iter()
            .position(|r| r.id == id)
            .ok_or(StoreError::NotFound { id })?;
        let removed = file.rules.remove(pos);
        let set = RuleSet::new(file.rules.clone()).map_err(|source| StoreError::BadRule {
            path: self.path(),
            source,
        })?;
        check(&set).map_err(|reason| StoreError::Refused { reason })?;
        self.write_file(&file)?;
        Ok((removed, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Policy, Target};

    fn new_rule(t: Target, p: Policy) -> NewRule {
        NewRule {
            target: t,
            policy: p,
            comment: Some("test".into()),
        }
    }

    #[test]
    fn add_list_remove_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RuleStore::new(&dir.path().join("state"));
        assert!(store.load().expect("empty").rules().is_empty());
        let (r1, _) = store
            .add(new_rule(Target::Path("/opt/*".into()), Policy::Block))
            .expect("add");
        let (r2, set) = store
            .add(new_rule(Target::Sha256("A".repeat(64)), Policy::Allow))
            .expect("add");
        assert_eq!((r1.id, r2.id), (1, 2));
        assert_eq!(set.rules().len(), 2);
        // Reopened from disk.
        let set = RuleStore::new(&dir.path().join("state"))
            .load()
            .expect("load");
        assert_eq!(set.rules()[1].target, Target::Sha256("a".repeat(64)));
        let (removed, set) = store.remove(1).expect("remove");
        assert_eq!(removed.id, 1);
        assert_eq!(set.rules().len(), 1);
        // Ids are never reused.
        let (r3, _) = store
            .add(new_rule(Target::Path("/opt/*".into()), Policy::Block))
            .expect("add");
        assert_eq!(r3.id, 3);
        let mode = fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_changes_leave_file_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RuleStore::new(dir.path());
        store
            .add(new_rule(Target::Sha256("b".repeat(64)), Policy::Block))
            .expect("add");
        let before = fs::read(store.path()).expect("read");
        assert!(matches!(
            store.add(new_rule(Target::Sha256("zz".into()), Policy::Block)),
            Err(StoreError::Rule(RuleError::BadSha256 { .. }))
        ));
        assert!(matches!(
            store.add(new_rule(Target::Sha256("B".repeat(64)), Policy::Allow)),
            Err(StoreError::Rule(RuleError::Duplicate { id: 1, .. }))
        ));
        assert!(matches!(
            store.remove(9),
            Err(StoreError::NotFound { id: 9 })
        ));
        assert_eq!(fs::read(store.path()).expect("read"), before);
    }

    #[test]
    fn refused_checks_leave_file_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RuleStore::new(dir.path());
        let (kept, _) = store
            .add(new_rule(Target::Sha256("c".repeat(64)), Policy::Allow))
            .expect("add");
        let before = fs::read(store.path()).expect("read");

        // The check sees the set as it would be after the change.
        let mut seen = 0;
        let e = store
            .add_checked(
                new_rule(Target::Path("/usr/bin/*".into()), Policy::Block),
                |set| {
                    seen = set.rules().len();
                    Err("refusing: no".into())
                },
            )
            .unwrap_err();
        assert_eq!(seen, 2);
        assert!(matches!(&e, StoreError::Refused { reason } if reason == "refusing: no"));
        assert_eq!(e.to_string(), "refusing: no");
        let e = store
            .remove_checked(kept.id, |set| {
                seen = set.rules().len();
                Err("refusing: keep it".into())
            })
            .unwrap_err();
        assert_eq!(seen, 0);
        assert_eq!(e.to_string(), "refusing: keep it");
        assert_eq!(fs::read(store.path()).expect("read"), before);
        // A refused add does not use up an id.
        let (r, _) = store
            .add_checked(new_rule(Target::Path("/x".into()), Policy::Allow), |_| {
                Ok(())
            })
            .expect("add");
        assert_eq!(r.id, 2);
        let (removed, set) = store.remove_checked(kept.id, |_| Ok(())).expect("remove");
        assert_eq!(removed.id, kept.id);
        assert_eq!(set.rules().len(), 1);
        assert_eq!(store.load().expect("load").rules().len(), 1);
    }

    #[test]
    fn corrupt_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RuleStore::new(dir.path());
        fs::write(store.path(), "{\"version\":1,\"next_id\":1,\"rules\":[").expect("write");
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("rules.json") && e.contains("corrupt"), "{e}");
        // A change is refused too; the file is kept for the admin to inspect.
        assert!(store
            .add(new_rule(Target::Path("/x".into()), Policy::Allow))
            .is_err());
        fs::write(
            store.path(),
            r#"{"version":1,"next_id":5,"rules":[{"id":1,"target":{"sha256":"nothex"},"policy":"block","created":""}]}"#,
        )
        .expect("write");
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("nothex"), "{e}");
    }
}
