//! The writer thread: batches, retention, retries, drop accounting.

use crate::db::open_rw;
use crate::retention::{pages, prune_age, prune_size};
use crate::row::{to_us, Row};
use crate::{Retention, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use custos_event::{Loss, LossEvent};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How often the planner's statistics are refreshed (`PRAGMA optimize`).
const OPTIMIZE_EVERY: Duration = Duration::from_secs(3600);

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The database file (its directory must exist).
    pub path: PathBuf,
    /// What to keep.
    pub retention: Retention,
    /// Events that may wait for the writer; more are counted as dropped.
    pub queue: usize,
    /// Most events per transaction.
    pub batch: usize,
    /// How often the age bound is applied.
    pub age_every: Duration,
}

impl WriterOptions {
    /// Defaults for `path`: 65,536 queued, 4,096 per batch, age checked every minute.
    pub fn new(path: PathBuf, retention: Retention) -> Self {
        WriterOptions {
            path,
            retention,
            queue: 65_536,
            batch: 4096,
            age_every: Duration::from_secs(60),
        }
    }
}

/// The writer's counters and state, for `custos status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The database file.
    pub path: String,
    /// `starting`, `ok`, `retrying: …` (locked, disk full: events wait in the queue),
    /// `failed: …` (not a database, newer schema: retried every 30 s) or `stopped`.
    pub state: String,
    /// Events committed since start.
    pub written: u64,
    /// Events dropped because the queue was full (the writer fell behind or the database was
    /// unavailable). Each drop is also recorded in the store as an `events_dropped` event.
    pub dropped: u64,
    /// Events waiting for the writer now.
    pub queued: u64,
    /// Events deleted for being older than the age bound.
    pub pruned_age: u64,
    /// Events deleted to keep the size bound.
    pub pruned_size: u64,
    /// Size of the database file.
    pub bytes: u64,
    /// Where a corrupt database was moved, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_aside: Option<String>,
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    pruned_age: AtomicU64,
    pruned_size: AtomicU64,
    bytes: AtomicU64,
    state: Mutex<String>,
    moved_aside: Mutex<Option<String>>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the state; logs only changes, so a retry loop does not flood the log.
    fn set_state(&self, new: String) {
        let mut s = self.state();
        if *s != new {
            if new.starts_with("failed") || new.starts_with("retrying") {
                tracing::error!("event store: {new}");
            } else if s.starts_with("failed") || s.starts_with("retrying") {
                tracing::info!("event store: {new}");
            }
            *s = new;
        }
    }
}

/// The store's writer: a bounded queue and one thread that owns the database connection.
pub struct Writer {
    tx: Mutex<Option<Sender<Arc<Value>>>>,
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl Writer {
    /// Starts the writer thread. The database is opened (created) there, and retried while it
    /// cannot be: the agent does not wait on the store to start deciding.
    pub fn start(opts: WriterOptions) -> Result<Writer, StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(opts.queue.max(1));
        let shared = Arc::new(Shared::default());
        *shared.state() = "starting".into();
        let path = opts.path.clone();
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("custos-store".into())
            .spawn(move || Worker::new(opts, rx, sh).run())
            .map_err(|source| StoreError::Io {
                op: "start the writer thread for",
                path: path.clone(),
                source,
            })?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            shared,
            handle: Mutex::new(Some(handle)),
            path,
        })
    }

    /// Queues one ECS event without waiting. `false` (and counted as dropped) when the queue
    /// is full or the writer is closed.
    pub fn send(&self, event: Arc<Value>) -> bool {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = guard.as_ref().is_some_and(|tx| tx.try_send(event).is_ok());
        if !sent {
            self.shared.dropped.fetch_add(1, Relaxed);
        }
        sent
    }

    /// Counters and state.
    pub fn status(&self) -> StoreStatus {
        let queued = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |tx| tx.len() as u64);
        let s = &self.shared;
        StoreStatus {
            path: self.path.display().to_string(),
            state: s.state().clone(),
            written: s.written.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            queued,
            pruned_age: s.pruned_age.load(Relaxed),
            pruned_size: s.pruned_size.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            moved_aside: s
                .moved_aside
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Stops accepting events and waits up to `limit` for the queue to be committed. Returns
    /// whether it was (a locked database may keep it from finishing).
    pub fn close(&self, limit: Duration) -> bool {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(h) = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return true;
        };
        let t0 = Instant::now();
        while !h.is_finished() {
            if t0.elapsed() >= limit {
                tracing::warn!(
                    "event store did not finish writing in {limit:?}; {} events not stored",
                    self.status().queued
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = h.join();
        true
    }
}

struct Worker {
    opts: WriterOptions,
    rx: Receiver<Arc<Value>>,
    shared: Arc<Shared>,
    conn: Option<Connection>,
    pending: Vec<Row>,
    /// Drops already recorded in the store.
    recorded_drops: u64,
    retry_at: Instant,
    last_age: Option<Instant>,
    /// When the query planner's statistics were last refreshed.
    last_optimize: Instant,
    closed: bool,
}

impl Worker {
    fn new(opts: WriterOptions, rx: Receiver<Arc<Value>>, shared: Arc<Shared>) -> Worker {
        Worker {
            pending: Vec::with_capacity(opts.batch),
            opts,
            rx,
            shared,
            conn: None,
            recorded_drops: 0,
            retry_at: Instant::now(),
            last_age: None,
            last_optimize: Instant::now(),
            closed: false,
        }
    }

    fn run(mut self) {
        loop {
            self.fill();
            let drops = self.shared.dropped.load(Relaxed);
            let work = !self.pending.is_empty() || drops > self.recorded_drops;
            if self.closed && !work {
                break;
            }
            if Instant::now() < self.retry_at {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if let Err(e) = self.step(drops, work) {
                self.failed(e);
            }
        }
        if let Some(c) = &self.conn {
            let _ = c.execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE)");
        }
        self.shared.set_state("stopped".into());
    }

    /// Takes events from the queue into the pending batch: waits (up to a second) only when
    /// there is nothing to do.
    fn fill(&mut self) {
        if self.closed || self.pending.len() >= self.opts.batch {
            return;
        }
        if self.pending.is_empty() {
            match self.rx.recv_timeout(Duration::from_secs(1)) {
                Ok(ev) => self.pending.push(Row::from_ecs(&ev)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        while self.pending.len() < self.opts.batch {
            match self.rx.try_recv() {
                Ok(ev) => self.pending.push(Row::from_ecs(&ev)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    /// Opens if needed, commits the pending batch, applies retention.
    fn step(&mut self, drops: u64, work: bool) -> Result<(), StoreError> {
        let path = self.opts.path.clone();
        if self.conn.is_none() {
            let conn = open_rw(&path, Duration::from_secs(1))?;
            // Statistics for the query planner (readers use them too): gathered once, cheaply
            // (0x10000: on tables that have none), then refreshed hourly below.
            let _ = conn.execute_batch("PRAGMA optimize = 0x10002");
            self.last_optimize = Instant::now();
            self.conn = Some(conn);
            self.shared.set_state("ok".into());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if work {
            let marker = (drops > self.recorded_drops)
                .then(|| Row::from_ecs(&dropped_event(drops - self.recorded_drops, drops)));
            insert(conn, &path, &self.pending, marker.as_ref())?;
            self.shared
                .written
                .fetch_add(self.pending.len() as u64, Relaxed);
            self.pending.clear();
            self.recorded_drops = drops;
            self.shared.set_state("ok".into());
        }
        let r = self.opts.retention;
        if let Some(max) = r.max_bytes {
            let n = prune_size(conn, &path, max)?;
            self.shared.pruned_size.fetch_add(n, Relaxed);
        }
        if let Some(age) = r.max_age {
            if self
                .last_age
                .is_none_or(|t| t.elapsed() >= self.opts.age_every)
            {
                self.last_age = Some(Instant::now());
                let cutoff = SystemTime::now()
                    .checked_sub(age)
                    .and_then(to_us)
                    .unwrap_or(0);
                let n = prune_age(conn, &path, cutoff)?;
                self.shared.pruned_age.fetch_add(n, Relaxed);
            }
        }
        if self.last_optimize.elapsed() >= OPTIMIZE_EVERY {
            self.last_optimize = Instant::now();
            let _ = conn.execute_batch("PRAGMA optimize");
        }
        let (count, _, size) = pages(conn, &path)?;
        self.shared.bytes.store(count * size, Relaxed);
        Ok(())
    }

    /// A failure: the batch stays pending (the queue absorbs new events meanwhile) and the
    /// step is retried later. A corrupt database is moved aside and a new one started.
    fn failed(&mut self, e: StoreError) {
        match &e {
            StoreError::Corrupt { .. } => {
                self.conn = None;
                match move_aside(&self.opts.path) {
                    Ok(to) => {
                        tracing::error!(
                            "{}; moved it to {} and started a new one",
                            e.chain(),
                            to.display()
                        );
                        *self
                            .shared
                            .moved_aside
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(to.display().to_string());
                        self.retry_at = Instant::now();
                    }
                    Err(m) => {
                        self.shared.set_state(format!("failed: {}; {m}", e.chain()));
                        self.retry_at = Instant::now() + Duration::from_secs(30);
                    }
                }
            }
            e if !e.is_transient() => {
                self.conn = None;
                self.shared.set_state(format!("failed: {}", e.chain()));
                self.retry_at = Instant::now() + Duration::from_secs(30);
            }
            e => {
                self.shared.set_state(format!("retrying: {}", e.chain()));
                self.retry_at = Instant::now() + Duration::from_secs(1);
            }
        }
    }
}

/// One transaction: the batch, and the drop marker if there were drops since the last one.
fn insert(
    conn: &mut Connection,
    path: &Path,
    rows: &[Row],
    marker: Option<&Row>,
) -> Result<(), StoreError> {
    let err = |e| StoreError::sqlite(path, "write events", e);
    let tx = conn.transaction().map_err(err)?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO events (ts, kind, action, outcome, pid, ppid, entity_id,
                   parent_entity_id, path, sha256, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(err)?;
        for r in rows.iter().chain(marker) {
            st.execute(rusqlite::params![
                r.ts_us,
                r.kind,
                r.action,
                r.outcome.map(|o| o.as_str()),
                r.pid,
                r.ppid,
                r.entity_id,
                r.parent_entity_id,
                r.path,
                r.sha256,
                r.doc,
            ])
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

/// The agent's own record of a gap: `kind` agent, action `events_dropped`.
fn dropped_event(dropped: u64, total: u64) -> Value {
    LossEvent {
        timestamp: custos_event::timestamp(SystemTime::now()),
        what: Loss::StoreEvents,
        lost: dropped,
        total,
    }
    .to_ecs()
}

/// Renames a corrupt database (and its WAL and shared-memory files) to
/// `NAME.corrupt-UNIXTIME`, keeping it for inspection.
fn move_aside(path: &Path) -> Result<PathBuf, String> {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".corrupt-{secs}"));
    let to = PathBuf::from(to);
    std::fs::rename(path, &to).map_err(|e| format!("cannot move it to {}: {e}", to.display()))?;
    for ext in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(ext);
        let mut dest = to.as_os_str().to_owned();
        dest.push(ext);
        let _ = std::fs::rename(&from, &dest);
    }
    Ok(to)
}
