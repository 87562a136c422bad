//! File access rules in force: the protected inodes marked in the kernel, and the thread that
//! answers their opens (`FAN_OPEN_PERM`).
//!
//! Decisions are made on the reader thread from `/proc` and a stat: no file content is read, so
//! an answer never waits on a slow filesystem. The agent's own opens are allowed first thing, so
//! the agent never waits on itself.

use super::actor;
use super::output::Output;
use anyhow::Context;
use custos_access::{intent, DecisionCache, Intent, Policy, Protected, SelfFiles};
use custos_config::{Access, Config};
use custos_control::AccessStatus;
use custos_event::{AccessEvent, Decision, Mode};
use custos_sensor_fanotify::access::is_own_thread;
use custos_sensor_fanotify::procfs;
use custos_sensor_fanotify::{AccessGroup, HeldOpen};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Directory entries the start-up scan of the rules' globs may visit.
const SCAN_LIMIT: usize = 200_000;

/// The mode now (audit never denies).
pub type ModeNow = Arc<dyn Fn() -> Mode + Send + Sync>;

/// File access rules in force.
pub struct FileAccess {
    group: Arc<AccessGroup>,
    policy: Arc<Policy>,
    protected: Mutex<Protected>,
    /// Directories where new protected files can appear.
    dirs: Vec<PathBuf>,
    mode: ModeNow,
    output: Arc<Output>,
    boot_id: String,
    allowed: AtomicU64,
    denied: AtomicU64,
    audited: AtomicU64,
    cache_hits: AtomicU64,
    thread: Mutex<Option<(OwnedFd, JoinHandle<()>)>>,
}

impl FileAccess {
    /// Compiles the rules (and self-protection), marks the files they cover and starts the
    /// thread that answers. `None` when there is nothing to protect.
    pub fn start(
        cfg: &Config,
        config_path: Option<&Path>,
        output: Arc<Output>,
        mode: ModeNow,
    ) -> anyhow::Result<Option<Arc<FileAccess>>> {
        let own = cfg.files.protect_self.then(|| SelfFiles {
            exe: std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| "/proc/self/exe".into()),
            config: config_path.and_then(|p| std::fs::canonicalize(p).ok()),
            state_dir: std::fs::canonicalize(&cfg.state_dir).unwrap_or(cfg.state_dir.clone()),
            writers: cfg.files.writers.clone(),
        });
        if own.is_none() && cfg.files.rule.is_empty() {
            return Ok(None);
        }
        let policy = Arc::new(Policy::compile(&cfg.files.rule, own.as_ref())?);
        let group = AccessGroup::new()?;
        let scan = custos_access::scan(&policy, SCAN_LIMIT);
        if scan.truncated {
            tracing::warn!(
                limit = SCAN_LIMIT,
                "file access rules: the paths' globs name too much; only part is protected"
            );
        }
        let mut protected = Protected::default();
        for f in &scan.files {
            if protected.add(&policy, f).is_some() {
                if let Err(e) = group.protect(f) {
                    tracing::warn!(path = %f.display(), "cannot protect: {e}");
                }
            }
        }
        let access = Arc::new(FileAccess {
            group,
            policy,
            protected: Mutex::new(protected),
            dirs: scan.dirs,
            mode,
            output,
            boot_id: custos_process::boot_id(),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            audited: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            thread: Mutex::new(None),
        });
        let (stop_rx, stop_tx) = std::os::unix::net::UnixStream::pair()?;
        let me = access.clone();
        let h = std::thread::Builder::new()
            .name("file-access".into())
            .spawn(move || {
                let mut cache = DecisionCache::default();
                let r = me.group.run(&OwnedFd::from(stop_rx), |held| {
                    me.judge(held, &mut cache);
                });
                if let Err(e) = r {
                    tracing::error!("file access sensor stopped: {e:#}");
                }
            })
            .context("cannot start the file access thread")?;
        *access.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx.into(), h));
        let n = access.protected().len();
        tracing::info!(
            rules = access.policy.rules().len(),
            protected = n,
            "file access rules in force"
        );
        Ok(Some(access))
    }

    fn protected(&self) -> std::sync::MutexGuard<'_, Protected> {
        self.protected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Directories to watch for new files the rules cover.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// A file appeared at `path` (created, renamed or linked there): protect it if a rule
    /// covers it.
    pub fn appeared(&self, path: &Path) {
        let covered = self.protected().add(&self.policy, path).is_some();
        if covered {
            match self.group.protect(path) {
                Ok(()) => tracing::debug!(path = %path.display(), "now protected"),
                Err(e) => tracing::warn!(path = %path.display(), "cannot protect: {e}"),
            }
        }
    }

    fn judge(&self, held: HeldOpen, cache: &mut DecisionCache) {
        let tid = held.tid();
        let entry = held
            .file_id()
            .filter(|_| !is_own_thread(tid))
            .and_then(|id| Some((id, self.protected().get(id.0, id.1)?.clone())));
        let Some((id, entry)) = entry else {
            // Ours, or no longer protected.
            let _ = held.answer(true);
            return;
        };
        let exe = procfs::exe(tid).map(PathBuf::from);
        let writes_only = |&i: &usize| self.policy.rules()[i].access == Access::Write;
        let intent = if entry.rules.iter().any(writes_only) {
            intent::of_thread(tid)
        } else {
            Intent::Read
        };
        let hits = cache.hits;
        let verdict = cache.get_or(exe.as_deref(), id, intent.writes(), || {
            self.policy.judge(&entry.rules, exe.as_deref(), intent)
        });
        self.cache_hits.fetch_add(cache.hits - hits, Relaxed);
        let Some(v) = verdict else {
            self.allowed.fetch_add(1, Relaxed);
            let _ = held.answer(true);
            return;
        };
        let enforce = v.deny && (self.mode)() != Mode::Audit;
        let path = held.path();
        // Read while the opener is still held: a refused process may exit at once.
        let mut actor = actor::of(&self.boot_id, procfs::tgid(tid).unwrap_or(tid));
        if actor.process.executable.is_none() {
            actor.process.executable = exe.as_ref().map(|e| e.to_string_lossy().into_owned());
        }
        if let Err(e) = held.answer(!enforce) {
            tracing::error!(tid, "cannot answer a file access: {e}");
        }
        if enforce {
            self.denied.fetch_add(1, Relaxed);
            tracing::warn!(tid, exe = ?exe, path = ?path, ?intent, rule = %self.policy.rules()[v.rule].name, "file access denied");
        } else {
            self.audited.fetch_add(1, Relaxed);
        }
        let event = AccessEvent {
            timestamp: custos_event::timestamp(std::time::SystemTime::now()),
            decision: if enforce {
                Decision::Deny
            } else {
                Decision::Allow
            },
            would_deny: !enforce,
            rule: self.policy.rules()[v.rule].name.clone(),
            write: intent.writes(),
            path,
            protected_path: entry.path.to_string_lossy().into_owned(),
            dev_ino: (id.0, id.1),
            actor,
        };
        self.output.emit(event.to_ecs());
    }

    /// Counters for `custos status`.
    pub fn status(&self) -> AccessStatus {
        AccessStatus {
            rules: self.policy.rules().iter().map(|r| r.name.clone()).collect(),
            protected_files: self.protected().len() as u64,
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.load(Relaxed),
            audited: self.audited.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
        }
    }

    /// Stops the thread and lets the kernel allow whatever is still pending.
    pub fn stop(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, h)) = t {
            drop(stop);
            let _ = h.join();
        }
        self.group.release_kernel();
    }
}
