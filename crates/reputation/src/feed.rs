//! Parsing known-bad feed files into [`Digests`]: plain hash lists (one hex digest per line,
//! `#` comments, kind by length) and MalwareBazaar CSV exports (`bazaar.rs`).
//!
//! Bad rows are counted and reported, not fatal; a file with no usable row is an error, so a
//! wrong file never silently replaces a good feed.

use crate::atomic::IoFail;
use crate::bazaar;
use crate::hashset::{Digests, SetError};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};

/// How many rejected rows [`ParseSummary::reasons`] keeps.
pub const MAX_REASONS: usize = 20;

/// Errors parsing, importing or loading feeds.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// I/O on a feed file, the feed store or its metadata.
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
    /// A feed name outside `[A-Za-z0-9_.-]{1,64}` (or starting with `.`).
    #[error("invalid feed name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Comma-separated data without a `sha256_hash` header column.
    #[error("{path} line {line}: looks like CSV but has no sha256_hash column")]
    NoSha256Column {
        /// The feed file.
        path: PathBuf,
        /// The first comma-separated data line.
        line: u64,
    },
    /// The CSV reader failed on malformed input.
    #[error("{path} line {line}: {reason}")]
    Csv {
        /// The feed file.
        path: PathBuf,
        /// Where the reader stopped.
        line: u64,
        /// The reader's message.
        reason: String,
    },
    /// No data rows at all (only comments or blank lines).
    #[error("{path} has no data rows")]
    Empty {
        /// The feed file.
        path: PathBuf,
    },
    /// Every data row was rejected.
    #[error("{path}: all {rows} data rows rejected (first, line {line}: {reason})")]
    AllRejected {
        /// The feed file.
        path: PathBuf,
        /// Data rows seen.
        rows: u64,
        /// Line of the first rejected row.
        line: u64,
        /// Why it was rejected.
        reason: String,
    },
    /// Writing or opening a digest set failed.
    #[error(transparent)]
    Set(#[from] SetError),
    /// A feed's metadata file is unreadable JSON.
    #[error("feed metadata {path} is corrupt: {reason}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// serde's message.
        reason: String,
    },
}

impl From<IoFail> for FeedError {
    fn from(e: IoFail) -> FeedError {
        FeedError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// What parsing a feed found, beside the digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Data rows seen (not comments or blank lines), rejected ones included.
    pub rows: u64,
    /// Rows that yielded nothing.
    pub rejected: u64,
    /// The first [`MAX_REASONS`] rejections: line number and why.
    pub reasons: Vec<(u64, String)>,
}

/// Digests and summary being built by a parser.
#[derive(Default)]
pub(crate) struct Collector {
    pub digests: Digests,
    pub summary: ParseSummary,
}

impl Collector {
    pub fn reject(&mut self, line: u64, reason: String) {
        self.summary.rejected += 1;
        if self.summary.reasons.len() < MAX_REASONS {
            self.summary.reasons.push((line, reason));
        }
    }

    /// Adds one digest of any kind; `Err` says why the text is not one.
    pub fn add_any(&mut self, hex: &str) -> Result<(), String> {
        match hex.len() {
            32 => self.digests.md5.push(decode(hex)?),
            40 => self.digests.sha1.push(decode(hex)?),
            64 => self.digests.sha256.push(decode(hex)?),
            n => {
                return Err(format!(
                    "wrong length: {n} characters, expected 32, 40 or 64 hex digits"
                ))
            }
        }
        Ok(())
    }
}

/// Decodes exactly `2 * N` hex digits, either case.
pub(crate) fn decode<const N: usize>(hex: &str) -> Result<[u8; N], String> {
    if hex.len() != 2 * N {
        return Err(format!(
            "wrong length: {} characters, expected {}",
            hex.len(),
            2 * N
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(hex, &mut out).map_err(|e| format!("bad hex: {e}"))?;
    Ok(out)
}

/// The format of a feed, decided from its leading lines.
pub(crate) enum Format {
    /// One digest per line.
    Plain,
    /// CSV with these lowercased column names, from the header on `header_line`, which is a
    /// `#` comment (MalwareBazaar) or, when `header_is_data`, the first data line.
    Csv {
        columns: Vec<String>,
        header_line: u64,
        header_is_data: bool,
    },
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FeedError {
    let path = path.to_owned();
    move |source| FeedError::Io { op, path, source }
}

/// Reads lines up to the first data line: a `#` line naming `"sha256_hash"` (MalwareBazaar
/// style) or a first data line naming `sha256_hash` makes it CSV, anything else plain.
fn detect(reader: impl BufRead, path: &Path) -> Result<Format, FeedError> {
    let mut lines = reader.split(b'\n');
    let mut n = 0u64;
    while let Some(line) = lines
        .next()
        .transpose()
        .map_err(io_err("cannot read", path))?
    {
        n += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if let Some(comment) = text.strip_prefix('#') {
            if comment.contains("\"sha256_hash\"") {
                let columns = bazaar::header(comment, path, n)?;
                return Ok(Format::Csv {
                    columns,
                    header_line: n,
                    header_is_data: false,
                });
            }
        } else if !text.is_empty() {
            if text.contains(',') && text.contains("sha256_hash") {
                let columns = bazaar::header(text, path, n)?;
                return Ok(Format::Csv {
                    columns,
                    header_line: n,
                    header_is_data: true,
                });
            }
            break;
        }
    }
    Ok(Format::Plain)
}

/// Parses a plain hash list: `#` comment lines and trailing ` # comments`, blank lines
/// ignored; anything else must be one 32/40/64-digit hex digest.
fn parse_plain(reader: impl BufRead, path: &Path, c: &mut Collector) -> Result<(), FeedError> {
    let mut n = 0u64;
    for line in reader.split(b'\n') {
        let line = line.map_err(io_err("cannot read", path))?;
        n += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if text.contains(',') {
            return Err(FeedError::NoSha256Column {
                path: path.to_owned(),
                line: n,
            });
        }
        c.summary.rows += 1;
        let (digest, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim_start();
        if !rest.is_empty() && !rest.starts_with('#') {
            c.reject(n, "unexpected text after the digest".to_owned());
            continue;
        }
        if let Err(reason) = c.add_any(digest) {
            c.reject(n, reason);
        }
    }
    Ok(())
}

/// Parses a feed file of either format. A file with no data rows, or whose every data row is
/// rejected, is an error.
pub fn parse_feed(path: &Path) -> Result<(Digests, ParseSummary), FeedError> {
    let mut file = File::open(path).map_err(io_err("cannot open", path))?;
    let format = detect(BufReader::new(&file), path)?;
    file.rewind().map_err(io_err("cannot read", path))?;
    let mut c = Collector::default();
    match format {
        Format::Plain => parse_plain(BufReader::new(file), path, &mut c)?,
        Format::Csv {
            columns,
            header_line,
            header_is_data,
        } => {
            let skip = header_is_data.then_some(header_line);
            bazaar::parse(
                BufReader::new(file),
                path,
                &columns,
                header_line,
                skip,
                &mut c,
            )?
        }
    }
    let s = &c.summary;
    if s.rows == 0 {
        return Err(FeedError::Empty {
            path: path.to_owned(),
        });
    }
    if s.rejected == s.rows {
        let (line, reason) = s.reasons.first().cloned().unwrap_or_default();
        return Err(FeedError::AllRejected {
            path: path.to_owned(),
            rows: s.rows,
            line,
            reason,
        });
    }
    Ok((c.digests, c.summary))
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
