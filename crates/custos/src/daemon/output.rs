//! Decision event output: a bounded queue drained by one writer thread, so a slow disk or a
//! blocked stdout never holds an exec. Events that do not fit are counted as dropped.

use anyhow::Context;
use custos_event::ExecEvent;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const QUEUE: usize = 65_536;

/// The event output.
pub struct Output {
    tx: Mutex<Option<crossbeam_channel::Sender<String>>>,
    written: Arc<AtomicU64>,
    dropped: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Output {
    /// Opens `-` (stdout) or a file (appended, created 0600).
    pub fn open(target: &str) -> anyhow::Result<Arc<Output>> {
        let sink: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(target)
                    .with_context(|| format!("cannot open event output {target}"))?,
            )
        };
        let (tx, rx) = crossbeam_channel::bounded::<String>(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let writer = std::thread::Builder::new()
            .name("custos-events".into())
            .spawn(move || {
                let mut out = BufWriter::new(sink);
                let mut failed = false;
                while let Ok(mut line) = rx.recv() {
                    line.push('\n');
                    let mut ok = out.write_all(line.as_bytes()).is_ok();
                    if rx.is_empty() {
                        ok &= out.flush().is_ok();
                    }
                    if ok {
                        w.fetch_add(1, Relaxed);
                    } else if !failed {
                        failed = true;
                        tracing::error!(
                            "writing decision events failed; further failures are not logged"
                        );
                    }
                }
                let _ = out.flush();
            })
            .context("cannot start event writer")?;
        Ok(Arc::new(Output {
            tx: Mutex::new(Some(tx)),
            written,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Stops accepting events and waits up to `limit` for the queue to be written. A writer
    /// stuck on a full pipe (stdout nobody reads) must not keep the agent from exiting.
    pub fn close(&self, limit: std::time::Duration) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(tx);
        let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let t0 = std::time::Instant::now();
        while !h.is_finished() {
            if t0.elapsed() >= limit {
                tracing::warn!("event output did not drain in {limit:?}; exiting without it");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = h.join();
    }
}

impl Output {
    /// Queues one JSON line (without newline); counts it as dropped if the queue is full.
    pub fn emit_line(&self, line: String) {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = guard.as_ref().is_some_and(|tx| tx.try_send(line).is_ok());
        if !sent {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

impl custos_verdict::Sink for Output {
    fn emit(&self, event: ExecEvent) {
        self.emit_line(event.to_json_line());
    }
}
