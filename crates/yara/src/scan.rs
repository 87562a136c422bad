//! Scanning bytes or a file against compiled [`Rules`], with a time limit.

use crate::{Rules, YaraError};
use std::fmt;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// The namespace: the stem of the rule's file (`elf_malware` for `elf_malware.yar`).
    pub namespace: String,
    /// The rule's identifier.
    pub rule: String,
    /// The rule's tags, in declaration order.
    pub tags: Vec<String>,
}

impl fmt::Display for Match {
    /// `namespace:rule`, the name a deny reason shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.rule)
    }
}

/// What scanning a file ([`Scanner::scan_open`], [`Rules::scan_file`]) did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileScan {
    /// Scanned; the rules that matched (empty: none did).
    Scanned(Vec<Match>),
    /// Larger than the limit, not read: the file is not judged by YARA.
    TooBig {
        /// The file's size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
}

/// A scanner a worker thread keeps between files: it owns an `Arc` of the rules it scans
/// with, and reuses one yara-x scanner.
///
/// Why: a yara-x scanner instantiates the rules' WebAssembly module, 0.2–0.4 ms when
/// measured, while a 4 KiB scan with a warm scanner takes 0.5 µs (3 rules) to 10–20 µs
/// (1000 rules); `examples/scan_overhead.rs` measures it. [`Rules::scan`] pays the
/// creation on every call; a `Scanner` pays it once. After a reload the
/// worker compares [`Scanner::rules`] with the current rules (`Arc::ptr_eq`) and makes a new
/// `Scanner` if they differ. One per thread, made on that thread: a yara-x scanner is
/// neither `Send` nor `Sync` (so neither is this).
pub struct Scanner {
    // Declared before `rules`: fields drop in declaration order, so the yara-x scanner that
    // borrows the rules is gone before the `Arc` can free them.
    engine: Engine<'static>,
    rules: Arc<Rules>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.fingerprint_hex())
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner over `rules`.
    pub fn new(rules: Arc<Rules>) -> Scanner {
        let ptr: *const Rules = Arc::as_ptr(&rules);
        // SAFETY: the `Rules` live in the `Arc`'s heap allocation, which does not move and
        // stays alive while `self.rules` holds it; `engine` is dropped first (field order
        // above). The `'static` borrow never leaves this type: every method returns owned
        // data, and the `Arc` is only handed out by shared reference.
        let rules_ref: &'static Rules = unsafe { &*ptr };
        Scanner {
            engine: Engine::new(rules_ref),
            rules,
        }
    }

    /// The rules this scanner scans with.
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    /// Scans `data` and returns the public rules that matched, in rule order.
    ///
    /// `timeout` is coarse: yara-x counts a one-second heartbeat, so the scan is aborted
    /// with [`YaraError::Timeout`] after at least `timeout` and less than `timeout` + 2 s.
    /// (yara-x alone would round a 100 ms limit to "the next heartbeat", anything from 0 to
    /// 1 s, failing quick scans at random; one extra beat makes the lower bound hold.)
    pub fn scan(&mut self, data: &[u8], timeout: Duration) -> Result<Vec<Match>, YaraError> {
        self.engine.scan(data, timeout)
    }

    /// Opens the file at `path` and scans it; see [`Scanner::scan_open`].
    pub fn scan_file(
        &mut self,
        path: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<FileScan, YaraError> {
        self.engine.scan_file(path, max_bytes, timeout)
    }

    /// Scans an already open file (say the descriptor a fanotify event carries, so the bytes
    /// judged are those about to run, not whatever the path names now). A file over
    /// `max_bytes` is not read and gives [`FileScan::TooBig`]. Reads from offset 0 without
    /// moving the file position; `path` only names the file in errors.
    ///
    /// The file is read into memory rather than mapped: a mapped file truncated during the
    /// scan would kill the agent with `SIGBUS`.
    pub fn scan_open(
        &mut self,
        file: &File,
        path: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<FileScan, YaraError> {
        self.engine.scan_open(file, path, max_bytes, timeout)
    }
}

impl Rules {
    /// Scans `data` with a one-off scanner; see [`Scanner::scan`]. Costs a scanner
    /// creation per call: workers should keep a [`Scanner`].
    pub fn scan(&self, data: &[u8], timeout: Duration) -> Result<Vec<Match>, YaraError> {
        Engine::new(self).scan(data, timeout)
    }

    /// Reads and scans the file at `path` with a one-off scanner; see
    /// [`Scanner::scan_open`].
    pub fn scan_file(
        &self,
        path: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<FileScan, YaraError> {
        Engine::new(self).scan_file(path, max_bytes, timeout)
    }
}

/// The scanning itself, over borrowed rules.
struct Engine<'r> {
    inner: yara_x::Scanner<'r>,
}

impl<'r> Engine<'r> {
    fn new(rules: &'r Rules) -> Engine<'r> {
        let mut inner = yara_x::Scanner::new(&rules.inner);
        // Only whether a rule matched is reported, not every pattern occurrence: stop
        // looking for a boolean-only pattern after its first hit.
        inner.fast_scan(true);
        Engine { inner }
    }

    fn scan(&mut self, data: &[u8], timeout: Duration) -> Result<Vec<Match>, YaraError> {
        self.inner.set_timeout(heartbeats(timeout));
        let results = self.inner.scan(data).map_err(|e| match e {
            yara_x::ScanError::Timeout => YaraError::Timeout { timeout },
            source => YaraError::Scan { source },
        })?;
        Ok(results
            .matching_rules()
            .map(|r| Match {
                namespace: r.namespace().to_owned(),
                rule: r.identifier().to_owned(),
                tags: r.tags().map(|t| t.identifier().to_owned()).collect(),
            })
            .collect())
    }

    fn scan_file(
        &mut self,
        path: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<FileScan, YaraError> {
        let file = File::open(path).map_err(|source| YaraError::Io {
            op: "cannot open file to scan",
            path: path.to_owned(),
            source,
        })?;
        self.scan_open(&file, path, max_bytes, timeout)
    }

    fn scan_open(
        &mut self,
        file: &File,
        path: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<FileScan, YaraError> {
        let io = |op| {
            move |source| YaraError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let size = file
            .metadata()
            .map_err(io("cannot stat file to scan"))?
            .len();
        if size > max_bytes {
            return Ok(FileScan::TooBig {
                size,
                limit: max_bytes,
            });
        }
        let data = read_at_most(file, max_bytes, size).map_err(io("cannot read file to scan"))?;
        // It grew past the limit since the stat: judge it as the big file it now is.
        if data.len() as u64 > max_bytes {
            return Ok(FileScan::TooBig {
                size: data.len() as u64,
                limit: max_bytes,
            });
        }
        self.scan(&data, timeout).map(FileScan::Scanned)
    }
}

/// The yara-x timeout giving "at least `t`": whole seconds rounded up, plus one beat because
/// the first beat can come at any moment.
fn heartbeats(t: Duration) -> Duration {
    Duration::from_secs(
        t.as_secs()
            .saturating_add(u64::from(t.subsec_nanos() > 0))
            .saturating_add(1),
    )
}

/// Reads from offset 0 until end of file or one byte past `limit`, whichever comes first;
/// `size_hint` (the size from `stat`) sizes the first allocation.
fn read_at_most(file: &File, limit: u64, size_hint: u64) -> std::io::Result<Vec<u8>> {
    let cap = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let hint = usize::try_from(size_hint.saturating_add(1)).unwrap_or(usize::MAX);
    let mut data: Vec<u8> = Vec::with_capacity(hint.min(cap));
    while data.len() < cap {
        let start = data.len();
        if start == data.capacity() {
            data.reserve(64 << 10);
        }
        data.resize(data.capacity().min(cap), 0);
        match file.read_at(&mut data[start..], start as u64) {
            Ok(n) => {
                data.truncate(start + n);
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => data.truncate(start),
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}

#[cfg(test)]
mod unit {
    use super::heartbeats;
    use std::time::Duration;

    #[test]
    fn timeout_rounds_up_to_at_least_the_limit() {
        assert_eq!(heartbeats(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            heartbeats(Duration::from_millis(100)),
            Duration::from_secs(2)
        );
        assert_eq!(heartbeats(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(
            heartbeats(Duration::from_millis(1500)),
            Duration::from_secs(3)
        );
        assert_eq!(heartbeats(Duration::MAX), Duration::from_secs(u64::MAX));
    }
}
