//! Where events go: the stream (stdout or a rotating file, in ECS, OCSF or Santa format) and
//! the store. Each has its own bounded queue and thread, so a slow disk, a blocked stdout or a
//! locked database never holds an exec, and neither holds the other. Events that do not fit
//! are counted as dropped, per destination.

use super::rotate::Rotating;
use anyhow::Context;
use custos_config::{Config, OutputFormat};
use custos_event::ExecEvent;
use custos_store::{kind_of, StoreStatus, Writer, WriterOptions, KINDS};
use serde_json::Value;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const QUEUE: usize = 65_536;
/// Lines gathered into one write.
const CHUNK: usize = 64 * 1024;

/// The event outputs.
pub struct Output {
    tx: Mutex<Option<crossbeam_channel::Sender<Arc<Value>>>>,
    written: Arc<AtomicU64>,
    dropped: AtomicU64,
    /// Events emitted, per kind ([`KINDS`], then everything else).
    by_kind: [AtomicU64; KINDS.len() + 1],
    writer: Mutex<Option<JoinHandle<()>>>,
    store: Option<Writer>,
}

impl Output {
    /// Opens the stream (`-` for stdout, or a file appended and created 0600) and starts the
    /// store's writer if the store is on.
    pub fn open(cfg: &Config) -> anyhow::Result<Arc<Output>> {
        let target = &cfg.events;
        let sink: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            let max = cfg.output.rotate_mb << 20;
            Box::new(
                Rotating::open(target.as_ref(), max, cfg.output.keep)
                    .with_context(|| format!("cannot open event output {target}"))?,
            )
        };
        let store = if cfg.store.enabled {
            let path = cfg.store.path_in(&cfg.state_dir);
            // Not fatal: the writer reports and retries what it cannot open.
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                if let Err(e) = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                {
                    tracing::error!("event store: cannot create {}: {e}", dir.display());
                }
            }
            let mut opts = WriterOptions::new(
                path,
                custos_store::Retention {
                    max_age: cfg.store.max_age,
                    max_bytes: cfg.store.max_bytes(),
                },
            );
            opts.queue = cfg.store.queue;
            Some(Writer::start(opts).context("cannot start the event store")?)
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::bounded::<Arc<Value>>(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let format = cfg.output.format;
        let writer = std::thread::Builder::new()
            .name("custos-events".into())
            .spawn(move || stream(rx, sink, format, &w))
            .context("cannot start event writer")?;
        Ok(Arc::new(Output {
            tx: Mutex::new(Some(tx)),
            written,
            dropped: AtomicU64::new(0),
            by_kind: Default::default(),
            writer: Mutex::new(Some(writer)),
            store,
        }))
    }

    /// Events written to the stream so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Events the stream dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Events emitted per kind (only kinds seen).
    pub fn by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        let names = KINDS.iter().copied().chain(["other"]);
        names
            .zip(&self.by_kind)
            .map(|(k, n)| (k.to_owned(), n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The store's counters and state, if it is on.
    pub fn store(&self) -> Option<StoreStatus> {
        self.store.as_ref().map(Writer::status)
    }

    /// Queues one ECS event for the stream and the store; never waits.
    pub fn emit(&self, event: Value) {
        let kind = kind_of(&event);
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
        self.by_kind[i].fetch_add(1, Relaxed);
        let event = Arc::new(event);
        if let Some(s) = &self.store {
            s.send(event.clone());
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = guard.as_ref().is_some_and(|tx| tx.try_send(event).is_ok());
        if !sent {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Stops accepting events and waits up to `limit` for the queues to be written. A writer
    /// stuck on a full pipe (stdout nobody reads) or a locked store must not keep the agent
    /// from exiting.
    pub fn close(&self, limit: Duration) {
        let t0 = std::time::Instant::now();
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(tx);
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            while !h.is_finished() && t0.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("event output did not drain in {limit:?}; exiting without it");
            }
        }
        if let Some(s) = &self.store {
            s.close(
                limit
                    .saturating_sub(t0.elapsed())
                    .max(Duration::from_secs(1)),
            );
        }
    }
}

/// The stream's thread: formats, gathers what is queued into one write, flushes when idle.
fn stream(
    rx: crossbeam_channel::Receiver<Arc<Value>>,
    mut out: Box<dyn Write + Send>,
    format: OutputFormat,
    written: &AtomicU64,
) {
    let mut failed = false;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut lines = 0u64;
    while let Ok(ev) = rx.recv() {
        let line = match format {
            OutputFormat::Ecs => Some(ev.to_string()),
            OutputFormat::Ocsf => Some(custos_event::to_ocsf(&ev).to_string()),
            OutputFormat::Santa => custos_event::to_santa_file_line(&ev),
        };
        if let Some(line) = line {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            lines += 1;
        }
        if buf.len() < CHUNK && !rx.is_empty() {
            continue;
        }
        let ok = out.write_all(&buf).is_ok() && out.flush().is_ok();
        if ok {
            written.fetch_add(lines, Relaxed);
        } else if !failed {
            failed = true;
            tracing::error!("writing events failed; further failures are not logged");
        }
        buf.clear();
        lines = 0;
    }
    let _ = out.write_all(&buf);
    let _ = out.flush();
}

impl custos_verdict::Sink for Output {
    fn emit(&self, event: ExecEvent) {
        Output::emit(self, event.to_ecs());
    }
}
