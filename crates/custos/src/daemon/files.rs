//! File events: the fanotify FID-mode sensor's notices, filtered (the agent's own, include and
//! exclude globs, a per-process rate limit), attributed to a process and emitted. Creations and
//! renames also reach the file access rules, which protect new files their globs cover.

use super::access::FileAccess;
use super::actor;
use super::output::Output;
use super::recent::Recent;
use anyhow::Context;
use custos_access::path_globs;
use custos_config::Config;
use custos_control::FilesStatus;
use custos_event::{FileAction, FileEvent, Loss, LossEvent};
use custos_sensor_fanotify::notify::{Notice, NoticeKind, Notifier};
use globset::GlobSet;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The file event sensor and its counters.
pub struct FileEvents {
    notifier: Arc<Notifier>,
    /// Filesystems whose events are reported (empty: events off, only directory watches for
    /// the access rules).
    mounts: RwLock<Vec<PathBuf>>,
    /// New filesystems the exec loop starts watching get file events too (`files.watch` is
    /// empty and events are on).
    follows: bool,
    emitted: AtomicU64,
    excluded: AtomicU64,
    rate_limited: AtomicU64,
    /// Rate-limited drops already told in a loss event.
    reported: AtomicU64,
    output: Arc<Output>,
    stopping: AtomicBool,
    thread: Mutex<Option<(OwnedFd, JoinHandle<()>)>>,
    /// Tells rate-limited drops once a second.
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// What the reader thread filters with.
struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    rate: u32,
    self_pid: i32,
}

impl FileEvents {
    /// Starts the sensor when file events are on (over `cfg.files.watch`, else `exec_mounts`)
    /// or when access rules need to see new files. `None` when neither.
    pub fn start(
        cfg: &Config,
        exec_mounts: &[PathBuf],
        access: Option<Arc<FileAccess>>,
        output: Arc<Output>,
        recent: Option<Arc<Recent>>,
    ) -> anyhow::Result<Option<Arc<FileEvents>>> {
        let dirs = access
            .as_ref()
            .map(|a| a.dirs().to_vec())
            .unwrap_or_default();
        if !cfg.files.events && dirs.is_empty() {
            return Ok(None);
        }
        let notifier = Notifier::new().context("cannot start file events")?;
        let mut mounts = Vec::new();
        if cfg.files.events {
            let want = if cfg.files.watch.is_empty() {
                exec_mounts
            } else {
                &cfg.files.watch
            };
            for m in want {
                match notifier.watch_fs(m) {
                    Ok(()) => mounts.push(m.clone()),
                    Err(e) if cfg.files.watch.is_empty() => {
                        tracing::warn!(mount = %m.display(), "no file events here: {e:#}");
                    }
                    Err(e) => return Err(e).context("cannot watch files.watch"),
                }
            }
        }
        for d in &dirs {
            if let Err(e) = notifier.watch_dir(d) {
                tracing::warn!(dir = %d.display(), "new protected files here are not seen: {e:#}");
            }
        }
        let filter = Filter {
            include: (!cfg.files.include.is_empty())
                .then(|| path_globs("files.include", &cfg.files.include))
                .transpose()?,
            exclude: path_globs("files.exclude", &cfg.files.exclude)?,
            rate: cfg.files.rate,
            self_pid: std::process::id() as i32,
        };
        let events = Arc::new(FileEvents {
            notifier,
            mounts: RwLock::new(mounts),
            follows: cfg.files.events && cfg.files.watch.is_empty(),
            emitted: AtomicU64::new(0),
            excluded: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            output: output.clone(),
            stopping: AtomicBool::new(false),
            thread: Mutex::new(None),
            ticker: Mutex::new(None),
        });
        let (stop_rx, stop_tx) = std::os::unix::net::UnixStream::pair()?;
        let me = events.clone();
        let h = std::thread::Builder::new()
            .name("file-events".into())
            .spawn(move || {
                let mut r = Reader::new(me.clone(), filter, access, output, recent);
                if let Err(e) = me.notifier.run(&OwnedFd::from(stop_rx), |n| r.on(n)) {
                    tracing::error!("file events stopped: {e:#}");
                }
            })
            .context("cannot start the file events thread")?;
        *events.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx.into(), h));
        let me = events.clone();
        let t = std::thread::Builder::new()
            .name("file-drops".into())
            .spawn(move || {
                while !me.stopping.load(Relaxed) {
                    std::thread::park_timeout(Duration::from_secs(1));
                    me.report_drops();
                }
            })
            .context("cannot start the file events thread")?;
        *events.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        let shown = events.watched();
        tracing::info!(watched = ?shown, dirs = dirs.len(), "file events running");
        Ok(Some(events))
    }

    /// Counters for `custos status` (access rules filled in by the caller).
    pub fn status(&self) -> FilesStatus {
        let s = self.notifier.stats();
        FilesStatus {
            watched: self.watched(),
            emitted: self.emitted.load(Relaxed),
            excluded: self.excluded.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            overflows: s.overflows.load(Relaxed),
            unresolved: s.unresolved.load(Relaxed),
            access: None,
        }
    }

    /// Stops the reader, and tells the last drops.
    pub fn stop(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, h)) = t {
            drop(stop);
            let _ = h.join();
        }
        self.stopping.store(true, Relaxed);
        let t = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = t {
            h.thread().unpark();
            let _ = h.join();
        }
    }

    /// One loss event for the rate-limited drops since the last one, if any.
    fn report_drops(&self) {
        let total = self.rate_limited.load(Relaxed);
        let before = self.reported.swap(total, Relaxed);
        if total > before {
            loss(&self.output, Loss::FileRate, total - before, total);
        }
    }

    fn mounts(&self) -> std::sync::RwLockReadGuard<'_, Vec<PathBuf>> {
        self.mounts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn watched(&self) -> Vec<String> {
        self.mounts()
            .iter()
            .map(|m| m.display().to_string())
            .collect()
    }

    /// A filesystem the exec loop newly watches: report its file events too, when following.
    pub fn follow(&self, mount: &Path) {
        if !self.follows || self.mounts().iter().any(|m| m == mount) {
            return;
        }
        match self.notifier.watch_fs(mount) {
            Ok(()) => {
                tracing::info!(mount = %mount.display(), "file events on a new filesystem");
                self.mounts
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(mount.to_owned());
            }
            Err(e) => tracing::warn!(mount = %mount.display(), "no file events here: {e:#}"),
        }
    }

    /// Events on, and `path` on a filesystem they are reported for.
    fn in_scope(&self, path: Option<&Path>) -> bool {
        let m = self.mounts();
        !m.is_empty() && path.is_none_or(|p| m.iter().any(|m| p.starts_with(m)))
    }
}

/// A token bucket per process.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The reader thread's state.
struct Reader {
    events: Arc<FileEvents>,
    filter: Filter,
    access: Option<Arc<FileAccess>>,
    output: Arc<Output>,
    buckets: HashMap<i32, Bucket>,
    actors: HashMap<i32, (Instant, custos_event::Actor)>,
    /// Processes the process sensor reported, for those gone from `/proc` (with file events).
    recent: Option<Arc<Recent>>,
    boot_id: String,
}

/// How long an attribution read from `/proc` is reused for the same pid.
const ACTOR_TTL: Duration = Duration::from_secs(1);
/// Per-pid state kept before idle entries are swept.
const TRACKED: usize = 4096;

impl Reader {
    fn new(
        events: Arc<FileEvents>,
        filter: Filter,
        access: Option<Arc<FileAccess>>,
        output: Arc<Output>,
        recent: Option<Arc<Recent>>,
    ) -> Reader {
        Reader {
            events,
            filter,
            access,
            output,
            buckets: HashMap::new(),
            actors: HashMap::new(),
            recent,
            boot_id: custos_process::boot_id(),
        }
    }

    fn on(&mut self, n: Notice) {
        if n.kind == NoticeKind::Overflow {
            let total = self.events.notifier.stats().overflows.load(Relaxed);
            tracing::warn!(total, "file event queue overflowed: events were lost");
            loss(&self.output, Loss::FileOverflow, 1, total);
            return;
        }
        if let (Some(a), Some(p)) = (&self.access, &n.path) {
            if matches!(n.kind, NoticeKind::Create | NoticeKind::Rename) && !n.dir {
                a.appeared(p);
            }
        }
        let Some(action) = action(n.kind) else { return };
        // Events off (directory watches for the access rules only), or a path outside the
        // configured filesystems: not reported. An unresolved path is reported as such.
        if !self
            .events
            .in_scope(n.path.as_deref().or(n.old_path.as_deref()))
        {
            return;
        }
        if n.pid == self.filter.self_pid || !self.wanted(&n) {
            self.events.excluded.fetch_add(1, Relaxed);
            return;
        }
        if !self.admit(n.pid) {
            self.events.rate_limited.fetch_add(1, Relaxed);
            return;
        }
        let actor = self.actor(n.pid);
        let text = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        let event = FileEvent {
            timestamp: custos_event::timestamp(std::time::SystemTime::now()),
            action,
            path: text(n.path),
            original_path: text(n.old_path),
            dir: n.dir,
            actor,
        };
        self.output.emit(event.to_ecs());
        self.events.emitted.fetch_add(1, Relaxed);
    }

    /// Include and exclude globs, on either path of a rename.
    fn wanted(&self, n: &Notice) -> bool {
        let paths = || n.path.iter().chain(n.old_path.iter());
        let f = &self.filter;
        let included = f
            .include
            .as_ref()
            .is_none_or(|inc| paths().any(|p| inc.is_match(p)));
        included && !paths().any(|p| f.exclude.is_match(p))
    }

    /// Takes a token from `pid`'s bucket (`rate` per second, bursts of `rate`).
    fn admit(&mut self, pid: i32) -> bool {
        let rate = f64::from(self.filter.rate);
        if rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        if self.buckets.len() > TRACKED {
            self.buckets
                .retain(|_, b| now.duration_since(b.last) < Duration::from_secs(10));
        }
        let b = self.buckets.entry(pid).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn actor(&mut self, pid: i32) -> custos_event::Actor {
        let now = Instant::now();
        if let Some((at, a)) = self.actors.get(&pid) {
            if now.duration_since(*at) < ACTOR_TTL {
                return a.clone();
            }
        }
        if self.actors.len() > TRACKED {
            self.actors
                .retain(|_, (at, _)| now.duration_since(*at) < ACTOR_TTL);
        }
        let mut a = actor::of(&self.boot_id, pid);
        if a.process.executable.is_some() {
            self.actors.insert(pid, (now, a.clone()));
        } else if let Some(p) = (self.recent.as_ref())
            .zip(u32::try_from(pid).ok())
            .and_then(|(r, p)| r.get(p))
        {
            // Gone from /proc (not cached: the pid may come back as another), but the process
            // sensor saw it start.
            a.process = p;
        }
        a
    }
}

fn loss(output: &Output, what: Loss, lost: u64, total: u64) {
    let e = LossEvent {
        timestamp: custos_event::timestamp(std::time::SystemTime::now()),
        what,
        lost,
        total,
    };
    output.emit(e.to_ecs());
}

fn action(kind: NoticeKind) -> Option<FileAction> {
    Some(match kind {
        NoticeKind::Create => FileAction::Creation,
        NoticeKind::CloseWrite => FileAction::Modification,
        NoticeKind::Delete => FileAction::Deletion,
        NoticeKind::Rename => FileAction::Rename,
        NoticeKind::Attrib => FileAction::AttributesModified,
        NoticeKind::Overflow => return None,
    })
}
