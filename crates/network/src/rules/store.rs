//! [`NetRuleStore`]: `<state>/net-rules.json`, written atomically (temp file, fsync, rename,
//! mode 0600) under an exclusive lock on `net-rules.lock`, so the agent and an offline
//! `custos net rule` never interleave.
//!
//! The file is `{"next_id": N, "rules": [NetRule, ...]}`; `next_id` keeps ids from being
//! reused after the highest rule is removed. A bare array of rules is read too (next id: the
//! highest + 1).

use super::{NetError, NetRule, NetRuleStore, NewNetRule};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    next_id: u64,
    rules: Vec<NetRule>,
}

fn store_err(path: &Path) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |source| NetError::Store {
        path: path.to_owned(),
        source,
    }
}

impl NetRuleStore {
    /// The rules file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Takes the store's lock (released when the file is dropped).
    fn lock(&self) -> Result<File, NetError> {
        let dir = self.dir();
        fs::create_dir_all(dir).map_err(store_err(dir))?;
        let p = self.path.with_extension("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(store_err(&p))?;
        f.lock().map_err(store_err(&p))?;
        Ok(f)
    }

    fn read(&self) -> Result<RulesFile, NetError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RulesFile {
                    next_id: 1,
                    rules: Vec::new(),
                })
            }
            Err(e) => return Err(store_err(&self.path)(e)),
        };
        let corrupt = |source| NetError::Corrupt {
            path: self.path.clone(),
            source,
        };
        let bare = text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let mut file = if bare {
            RulesFile {
                next_id: 0,
                rules: serde_json::from_slice(&text).map_err(corrupt)?,
            }
        } else {
            serde_json::from_slice(&text).map_err(corrupt)?
        };
        let above = file
            .rules
            .iter()
            .map(|r| r.id.saturating_add(1))
            .max()
            .unwrap_or(1);
        file.next_id = file.next_id.max(above).max(1);
        Ok(file)
    }

    fn write(&self, file: &RulesFile) -> Result<(), NetError> {
        let dir = self.dir();
        let tmp = dir.join(".net-rules.json.tmp");
        let text = serde_json::to_vec_pretty(file).map_err(|e| store_err(&tmp)(e.into()))?;
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(store_err(&tmp))?;
        f.write_all(&text)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(store_err(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(store_err(&self.path))?;
        // The rename is durable once the directory is synced; failing that is not an error
        // the caller can act on.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The stored rules in order (a missing file is none).
    pub fn load(&self) -> Result<Vec<NetRule>, NetError> {
        Ok(self.read()?.rules)
    }

    /// Validates and appends a rule with a new id; returns it.
    pub fn add(&self, rule: NewNetRule) -> Result<NetRule, NetError> {
        self.add_with(rule, |_| Ok(()))
    }

    /// Like [`add`](Self::add), but `check` first sees the whole list the change would leave
    /// (under the lock) and may refuse it: then its error is returned and nothing is written.
    pub fn add_with(
        &self,
        rule: NewNetRule,
        check: impl FnOnce(&[NetRule]) -> Result<(), NetError>,
    ) -> Result<NetRule, NetError> {
        rule.validate()?;
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let new = NetRule {
            id: file.next_id,
            rule,
        };
        file.next_id = file.next_id.saturating_add(1);
        file.rules.push(new.clone());
        check(&file.rules)?;
        self.write(&file)?;
        Ok(new)
    }

    /// Removes the rule with this id; returns it.
    pub fn remove(&self, id: u64) -> Result<NetRule, NetError> {
        self.remove_with(id, |_| Ok(()))
    }

    /// Like [`remove`](Self::remove), with `check` as in [`add_with`](Self::add_with).
    pub fn remove_with(
        &self,
        id: u64,
        check: impl FnOnce(&[NetRule]) -> Result<(), NetError>,
    ) -> Result<NetRule, NetError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let pos = file
            .rules
            .iter()
            .position(|r| r.id == id)
            .ok_or(NetError::NotFound(id))?;
        let removed = file.rules.remove(pos);
        check(&file.rules)?;
        self.write(&file)?;
        Ok(removed)
    }
}
