//! External sort of fixed-size digests: a buffer up to a memory budget is sorted,
//! de-duplicated and spilled as a run file; the runs are then k-way merged (duplicates across
//! runs dropped and counted) into a sink. Memory stays at the budget whatever the input size.
//!
//! Run files live in a caller-given work directory, which the caller removes ([`WorkDir`]).

use crate::atomic::IoFail;
use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most runs merged at once; more are first merged in groups (bounded open files and buffers).
pub(crate) const MAX_FAN_IN: usize = 64;

/// A private directory that is removed, with everything in it, when dropped.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `parent/.PREFIX.PID.SEQ` (mode 0700).
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir, IoFail> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = parent.join(format!(
            ".{prefix}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| IoFail {
                op: "cannot create",
                path: path.clone(),
                source,
            })?;
        Ok(WorkDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes `parent/.PREFIX.PID.*` directories whose process is gone (left by a killed
/// import; a clean failure removes its own).
pub(crate) fn sweep_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let lead = format!(".{prefix}.");
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&lead)) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Counts from a finished sort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SortStats {
    /// Digests pushed.
    pub pushed: u64,
    /// Distinct digests given to the sink.
    pub unique: u64,
    /// Repeats dropped.
    pub duplicates: u64,
    /// Run files spilled (0: everything fit in memory).
    pub runs: u64,
}

fn fail(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IoFail {
    let path = path.to_owned();
    move |source| IoFail { op, path, source }
}

/// Sorts `N`-byte digests with at most about `memory` bytes of buffer.
pub(crate) struct Sorter<'a, const N: usize> {
    dir: &'a Path,
    buf: Vec<[u8; N]>,
    cap: usize,
    runs: Vec<PathBuf>,
    pushed: u64,
    duplicates: u64,
    seq: u64,
}

impl<'a, const N: usize> Sorter<'a, N> {
    /// A sorter spilling into `dir` whenever `memory` bytes of digests are buffered.
    pub fn new(dir: &'a Path, memory: usize) -> Self {
        let cap = (memory / N).max(1);
        Sorter {
            dir,
            buf: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            runs: Vec::new(),
            pushed: 0,
            duplicates: 0,
            seq: 0,
        }
    }

    /// Adds one digest, spilling a run when the buffer is full.
    pub fn push(&mut self, d: [u8; N]) -> Result<(), IoFail> {
        self.pushed += 1;
        self.buf.push(d);
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_buf(&mut self) {
        self.buf.sort_unstable();
        let before = self.buf.len();
        self.buf.dedup();
        self.duplicates += (before - self.buf.len()) as u64;
    }

    fn new_run(&mut self) -> Result<(PathBuf, BufWriter<File>), IoFail> {
        let path = self.dir.join(format!("run.{}", self.seq));
        self.seq += 1;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail("cannot create", &path))?;
        Ok((path, BufWriter::with_capacity(1 << 20, f)))
    }

    fn spill(&mut self) -> Result<(), IoFail> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.sort_buf();
        let (path, mut w) = self.new_run()?;
        w.write_all(self.buf.as_flattened())
            .and_then(|()| w.flush())
            .map_err(fail("cannot write", &path))?;
        self.runs.push(path);
        self.buf.clear();
        Ok(())
    }

    /// Feeds every distinct digest, ascending, to `sink`; `progress(done, total)` is called
    /// every so often while merging (`total` counts digests in the runs, repeats included).
    /// A sink error is returned as is.
    pub fn finish<E: From<IoFail>>(
        mut self,
        mut sink: impl FnMut(&[u8; N]) -> Result<(), E>,
        mut progress: impl FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<SortStats, E> {
        let mut unique = 0u64;
        if self.runs.is_empty() {
            // Everything fit: no file at all.
            self.sort_buf();
            for d in &self.buf {
                sink(d)?;
                unique += 1;
            }
        } else {
            self.spill()?;
            // Bounded fan-in: merge the oldest groups into new runs until one merge is left.
            while self.runs.len() > MAX_FAN_IN {
                let group: Vec<PathBuf> = self.runs.drain(..MAX_FAN_IN).collect();
                let (path, mut w) = self.new_run()?;
                let dups = merge::<N, IoFail>(
                    &group,
                    |d| w.write_all(d).map_err(fail("cannot write", &path)),
                    |_, _| Ok(()),
                )?;
                w.flush().map_err(fail("cannot write", &path))?;
                self.duplicates += dups;
                for g in &group {
                    let _ = fs::remove_file(g);
                }
                self.runs.push(path);
            }
            let runs = std::mem::take(&mut self.runs);
            let dups = merge::<N, E>(
                &runs,
                |d| {
                    unique += 1;
                    sink(d)
                },
                &mut progress,
            )?;
            self.duplicates += dups;
        }
        Ok(SortStats {
            pushed: self.pushed,
            unique,
            duplicates: self.duplicates,
            runs: self.seq,
        })
    }
}

/// One run being read.
struct RunReader<const N: usize> {
    path: PathBuf,
    r: BufReader<File>,
}

impl<const N: usize> RunReader<N> {
    /// The next digest, `None` at the end; a partial digest is an error.
    fn next(&mut self) -> Result<Option<[u8; N]>, IoFail> {
        let mut d = [0u8; N];
        let mut got = 0;
        while got < N {
            match self.r.read(&mut d[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(fail("cannot read", &self.path)(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "run file ends inside a digest",
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail("cannot read", &self.path)(e)),
            }
        }
        Ok(Some(d))
    }
}

/// Merges sorted, individually de-duplicated runs into `sink`, dropping repeats across runs;
/// returns how many were dropped.
fn merge<const N: usize, E: From<IoFail>>(
    runs: &[PathBuf],
    mut sink: impl FnMut(&[u8; N]) -> Result<(), E>,
    mut progress: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<u64, E> {
    let mut total = 0u64;
    let mut readers = Vec::with_capacity(runs.len());
    for p in runs {
        let f = File::open(p).map_err(fail("cannot open", p))?;
        total += f.metadata().map_err(fail("cannot stat", p))?.len() / N as u64;
        readers.push(RunReader::<N> {
            path: p.clone(),
            r: BufReader::with_capacity(1 << 20, f),
        });
    }
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(d) = r.next()? {
            heap.push(Reverse((d, i)));
        }
    }
    let (mut done, mut dups) = (0u64, 0u64);
    let mut last: Option<[u8; N]> = None;
    // Replacing the top in place costs one sift-down per digest instead of a pop and a push.
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((d, i)) = *top;
        if last == Some(d) {
            dups += 1;
        } else {
            sink(&d)?;
            last = Some(d);
        }
        match readers[i].next()? {
            Some(next) => *top = Reverse((next, i)),
            None => drop(PeekMut::pop(top)),
        }
        done += 1;
        if done.is_multiple_of(1 << 20) {
            progress(done, total)?;
        }
    }
    progress(done, total)?;
    Ok(dups)
}

#[cfg(test)]
#[path = "sorter_tests.rs"]
mod tests;
