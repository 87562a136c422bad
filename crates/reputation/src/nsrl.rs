//! NIST NSRL (known software) import: an RDS v3 SQLite database, a legacy `NSRLFile.txt`, or a
//! plain digest list becomes one memory-mapped [`DigestSet`] of a single digest kind, built by
//! an external sort so memory stays within a budget at any size (200M × 32 B = 6.4 GB).
//!
//! Store: `STATE/nsrl/nsrl.set` and `STATE/nsrl/nsrl.json` ([`NsrlInfo`]). Both are built in a
//! hidden work directory beside them, the set fully checked, and only then renamed into
//! place; a failed, cancelled or killed import leaves the previous pair in force (a killed
//! one leaves its work directory, which the next import removes).

use crate::atomic::IoFail;
use crate::hashset::{self, DigestSet, SetError, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use crate::nsrl_import::import_nsrl;
pub use crate::nsrl_read::LEGACY_COLUMNS;

/// Default sort buffer: 512 MiB (16M SHA-256 digests per run).
pub const DEFAULT_MEMORY: usize = 512 << 20;
/// How many rejected rows [`NsrlInfo::rejected_examples`] keeps.
pub const MAX_EXAMPLES: usize = 20;

/// Errors importing or loading the NSRL set. Each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum NsrlError {
    /// I/O on the input, the store or a work file.
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
    /// Neither SQLite, nor the legacy header, nor a digest list.
    #[error(
        "{path} is not an NSRL RDS v3 SQLite database, a legacy NSRLFile.txt (header \
         \"SHA-1\",\"MD5\",…) or a list of hex digests; it starts with {start:?}"
    )]
    NotRecognized {
        /// The input.
        path: PathBuf,
        /// Its first line, cut to 60 characters.
        start: String,
    },
    /// A SQLite file shorter than its header says.
    #[error("SQLite database {path} is truncated: {len} bytes, its header says {expected}")]
    Truncated {
        /// The input.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length the header implies.
        expected: u64,
    },
    /// SQLite reports the file as not a database, or corrupt.
    #[error("SQLite database {path} is corrupt (after {rows} rows)")]
    Corrupt {
        /// The input.
        path: PathBuf,
        /// Rows read before the error.
        rows: u64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("cannot read SQLite database {path}")]
    Sqlite {
        /// The input.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// No `FILE` or `METADATA` table or view.
    #[error("{path} has no FILE or METADATA table (RDS v3); tables: {tables:?}")]
    NoTable {
        /// The input.
        path: PathBuf,
        /// The tables and views it has.
        tables: Vec<String>,
    },
    /// The table lacks the digest column asked for.
    #[error("{path}: table {table} has no {column} column; columns: {found:?}")]
    MissingColumn {
        /// The input.
        path: PathBuf,
        /// The table read.
        table: String,
        /// The missing column.
        column: &'static str,
        /// The columns it has.
        found: Vec<String>,
    },
    /// A legacy file whose header is not [`LEGACY_COLUMNS`].
    #[error("{path}: legacy NSRLFile.txt header {found:?} does not match {LEGACY_COLUMNS:?}")]
    LegacyHeader {
        /// The input.
        path: PathBuf,
        /// The header found.
        found: Vec<String>,
    },
    /// The CSV reader failed on malformed input.
    #[error("{path} line {line}: {reason}")]
    Csv {
        /// The input.
        path: PathBuf,
        /// Where the reader stopped.
        line: u64,
        /// The reader's message.
        reason: String,
    },
    /// The input format does not carry the digest asked for.
    #[error("{path}: a {format} file has no {digest} digests")]
    DigestNotInFormat {
        /// The input.
        path: PathBuf,
        /// Its format.
        format: NsrlFormat,
        /// The digest asked for.
        digest: DigestKind,
    },
    /// No data rows.
    #[error("{path} has no data rows")]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// Every row was rejected.
    #[error("{path}: all {rows} rows rejected (first, {at}: {reason})")]
    AllRejected {
        /// The input.
        path: PathBuf,
        /// Rows read.
        rows: u64,
        /// Where the first rejection was (`row N` or `line N`).
        at: String,
        /// Why.
        reason: String,
    },
    /// The progress callback asked to stop.
    #[error("import of {path} cancelled")]
    Cancelled {
        /// The input.
        path: PathBuf,
    },
    /// Writing or opening the set failed.
    #[error(transparent)]
    Set(#[from] SetError),
    /// `nsrl.json` is unreadable, or does not describe `nsrl.set`.
    #[error("NSRL metadata {path} is corrupt: {reason}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<IoFail> for NsrlError {
    fn from(e: IoFail) -> NsrlError {
        NsrlError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsrlFormat {
    /// RDS v3 SQLite (`FILE` or `METADATA` table).
    Rds3,
    /// RDS 2.x `NSRLFile.txt` CSV.
    Legacy,
    /// One hex digest per line (`sha256sum` output works).
    List,
}

impl std::fmt::Display for NsrlFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NsrlFormat::Rds3 => "RDS v3 SQLite",
            NsrlFormat::Legacy => "legacy NSRLFile.txt",
            NsrlFormat::List => "digest list",
        })
    }
}

/// The digest kind a set holds (one per import keeps the set small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestKind {
    /// MD5, 16 bytes.
    Md5,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-256, 32 bytes.
    Sha256,
}

impl DigestKind {
    /// Digest length in bytes.
    pub fn bytes(self) -> usize {
        hashset::DIGEST_LENS[self.section()]
    }

    /// The section of a [`DigestSet`] holding this kind.
    pub(crate) fn section(self) -> usize {
        self as usize
    }

    /// The RDS v3 column name.
    pub fn column(self) -> &'static str {
        match self {
            DigestKind::Md5 => "md5",
            DigestKind::Sha1 => "sha1",
            DigestKind::Sha256 => "sha256",
        }
    }

    /// The kind whose hex form has `n` digits.
    pub fn from_hex_len(n: usize) -> Option<DigestKind> {
        [DigestKind::Md5, DigestKind::Sha1, DigestKind::Sha256]
            .into_iter()
            .find(|k| k.bytes() * 2 == n)
    }
}

impl std::fmt::Display for DigestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DigestKind::Md5 => "MD5",
            DigestKind::Sha1 => "SHA-1",
            DigestKind::Sha256 => "SHA-256",
        })
    }
}

impl std::str::FromStr for DigestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<DigestKind, String> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => Ok(DigestKind::Md5),
            "sha1" => Ok(DigestKind::Sha1),
            "sha256" => Ok(DigestKind::Sha256),
            _ => Err(format!(
                "unknown digest {s:?}: expected md5, sha1 or sha256"
            )),
        }
    }
}

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Empty or NULL.
    Empty,
    /// Not hex.
    BadHex,
    /// Hex of the wrong length for the digest kind.
    WrongLength,
    /// A number where a digest belongs.
    NotText,
    /// A CSV row with the wrong number of fields.
    WrongFields,
}

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// SQLite row (scan order, from 1) or text line.
    pub at: u64,
    /// Why.
    pub reason: RejectReason,
    /// Detail for people.
    pub detail: String,
}

/// What an import read and wrote, stored as `STATE/nsrl/nsrl.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NsrlInfo {
    /// When (RFC 3339, UTC).
    pub imported_at: String,
    /// The input file.
    pub source: String,
    /// Its format.
    pub format: NsrlFormat,
    /// The SQLite table read (RDS v3 only).
    pub table: Option<String>,
    /// The digest kind kept.
    pub digest: DigestKind,
    /// Data rows read, rejected ones included.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Rejections per reason.
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    /// The first [`MAX_EXAMPLES`] rejections.
    pub rejected_examples: Vec<RejectedRow>,
    /// Distinct digests in the set.
    pub unique: u64,
    /// Repeated digests dropped.
    pub duplicates: u64,
    /// Set file size in bytes.
    pub size: u64,
    /// Import wall time.
    pub seconds: f64,
}

impl NsrlInfo {
    /// How [`RejectedRow::at`] reads for this format: `row 5` (SQLite) or `line 5`.
    pub fn at(&self, at: u64) -> String {
        at_text(self.format, at)
    }
}

pub(crate) fn at_text(format: NsrlFormat, at: u64) -> String {
    match format {
        NsrlFormat::Rds3 => format!("row {at}"),
        _ => format!("line {at}"),
    }
}

/// Import settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Digest kind to keep; default SHA-256 for RDS v3, SHA-1 for legacy, a list's own.
    pub digest: Option<DigestKind>,
    /// Sort buffer in bytes (the merge adds about 1 MiB per run).
    pub memory: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            digest: None,
            memory: DEFAULT_MEMORY,
        }
    }
}

/// Import phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the input and spilling sorted runs.
    Reading,
    /// Merging runs into the set file.
    Merging,
    /// Re-reading the new set to check it.
    Verifying,
}

/// Where an import is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Rows read so far.
    pub rows: u64,
    /// Done in this phase: rows (SQLite) or bytes (text) when reading, digests when merging.
    pub done: u64,
    /// The phase's total, when known.
    pub total: Option<u64>,
}

/// `STATE/nsrl`.
pub fn nsrl_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("nsrl")
}

/// `STATE/nsrl/nsrl.set`.
pub fn set_path(state_dir: &Path) -> PathBuf {
    nsrl_dir(state_dir).join("nsrl.set")
}

/// `STATE/nsrl/nsrl.json`.
pub fn info_path(state_dir: &Path) -> PathBuf {
    nsrl_dir(state_dir).join("nsrl.json")
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NsrlError {
    let path = path.to_owned();
    move |source| NsrlError::Io { op, path, source }
}

/// Reads `STATE/nsrl/nsrl.json`; `None` if there is no NSRL import.
pub fn read_info(state_dir: &Path) -> Result<Option<NsrlInfo>, NsrlError> {
    let p = info_path(state_dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &p)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| NsrlError::Metadata {
            path: p,
            reason: e.to_string(),
        })
}

/// The imported NSRL set, mapped: lookups of the one digest kind it holds.
#[derive(Debug)]
pub struct Nsrl {
    set: DigestSet,
    info: NsrlInfo,
}

impl Nsrl {
    /// Opens the imported set; `None` if nothing was imported. The sort order is checked by
    /// sampling ([`Validation::Sampled`]): the import checked it in full before installing
    /// the file, and a full pass over gigabytes at every agent start or reload is too slow.
    pub fn load(state_dir: &Path) -> Result<Option<Nsrl>, NsrlError> {
        let p = set_path(state_dir);
        if !p.exists() {
            return Ok(None);
        }
        let set = DigestSet::open_with(&p, Validation::Sampled)?;
        let meta = info_path(state_dir);
        let info = read_info(state_dir)?.ok_or_else(|| NsrlError::Metadata {
            path: meta.clone(),
            reason: "missing".to_owned(),
        })?;
        let mut want = [0u64; 3];
        want[info.digest.section()] = info.unique;
        if set.counts() != want {
            return Err(NsrlError::Metadata {
                path: meta,
                reason: format!(
                    "it describes {} {} digests but {} holds {:?} (MD5, SHA-1, SHA-256); \
                     import again",
                    info.unique,
                    info.digest,
                    p.display(),
                    set.counts()
                ),
            });
        }
        Ok(Some(Nsrl { set, info }))
    }

    /// What the import recorded.
    pub fn info(&self) -> &NsrlInfo {
        &self.info
    }

    /// The digest kind held.
    pub fn kind(&self) -> DigestKind {
        self.info.digest
    }

    /// Distinct digests held.
    pub fn len(&self) -> u64 {
        self.info.unique
    }

    /// Whether the set is empty (an import never writes an empty set).
    pub fn is_empty(&self) -> bool {
        self.info.unique == 0
    }

    /// Whether `digest` is in the set; a digest of another length than [`Nsrl::kind`]'s is
    /// never in it.
    pub fn contains(&self, digest: &[u8]) -> bool {
        match self.kind() {
            DigestKind::Md5 => digest.try_into().is_ok_and(|d| self.set.contains_md5(d)),
            DigestKind::Sha1 => digest.try_into().is_ok_and(|d| self.set.contains_sha1(d)),
            DigestKind::Sha256 => digest.try_into().is_ok_and(|d| self.set.contains_sha256(d)),
        }
    }

    /// The underlying set.
    pub fn set(&self) -> &DigestSet {
        &self.set
    }
}

#[cfg(test)]
#[path = "nsrl_tests.rs"]
mod tests;
