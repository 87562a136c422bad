//! YARA rules for custos: a directory of `*.yar` / `*.yara` files compiled with
//! [yara-x](https://virustotal.github.io/yara-x/), and a scanner that judges file contents
//! against them under a time limit.
//!
//! Why: hash sources only know files someone has seen before; a YARA rule can recognise a
//! family (a marker string, a packer stub, an ELF with a suspicious section) in a file nobody
//! has hashed yet. The verdict engine scans a file that no hash source decided, once per file
//! key, and denies it on a match, naming the rule.
//!
//! What this crate guarantees:
//! - [`Rules::compile_dir`] returns a complete rule set or an error, never part of one: one bad
//!   file fails the whole directory, so a reload that fails keeps the caller's previous rules.
//! - Every file gets its own namespace (its file stem), so same-named rules in two files do not
//!   clash; a [`Match`] prints as `namespace:rule`.
//! - Errors name the file, the line and column, and yara-x's message, on one line per problem.
//! - [`Rules`] is `Send + Sync`: compile once, share through an `Arc`, scan from any worker.
//!
//! Timeouts are coarse: yara-x checks a one-second heartbeat, so a scan is aborted after at
//! least the requested time and less than two seconds more (see [`Scanner::scan`]). The
//! caller's own deadline (the fanotify permission answer) must not rely on it to the
//! millisecond; it bounds how long a worker can be stuck on a pathological rule.

mod compile;
mod scan;
#[cfg(test)]
mod tests;

pub use compile::{dir_fingerprint, Rules, MAX_ISSUES, MAX_RULE_FILE_BYTES, MODULES};
pub use scan::{FileScan, Match, Scanner};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One problem the YARA compiler found, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileIssue {
    /// The rule file.
    pub file: PathBuf,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub column: usize,
    /// yara-x's error code, e.g. `E001` for a syntax error, `E009` for an unknown identifier.
    pub code: &'static str,
    /// What is wrong: yara-x's title and, if it adds one, its label (`unknown identifier
    /// `foo`: this identifier has not been declared`).
    pub message: String,
}

impl fmt::Display for CompileIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} [{}]",
            self.file.display(),
            self.line,
            self.column,
            self.message,
            self.code
        )
    }
}

/// Errors compiling a rules directory or scanning with it.
#[derive(Debug, thiserror::Error)]
pub enum YaraError {
    /// The rules directory does not exist.
    #[error("YARA rules directory {dir} does not exist")]
    NoDir {
        /// The directory.
        dir: PathBuf,
    },
    /// I/O on a rules directory, a rule file or a scanned file.
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
    /// A `*.yar` entry that is not a regular file (a directory, a device, a FIFO).
    #[error("YARA rule file {path} is not a regular file")]
    NotAFile {
        /// The entry.
        path: PathBuf,
    },
    /// A rule file larger than [`MAX_RULE_FILE_BYTES`].
    #[error("YARA rule file {path} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A rule file that is not UTF-8 text.
    #[error("YARA rule file {path} is not UTF-8 text: invalid byte at line {line}, byte {offset}")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte in the file.
        offset: usize,
    },
    /// A rule file whose name is not UTF-8, so it cannot name a namespace.
    #[error("YARA rule file {path}: file name is not UTF-8")]
    BadFileName {
        /// The file.
        path: PathBuf,
    },
    /// Two rule files with the same stem (`a.yar` and `a.yara`) would share a namespace.
    #[error(
        "YARA rule files {first} and {second} both map to namespace `{namespace}`; rename one"
    )]
    DuplicateNamespace {
        /// The shared stem.
        namespace: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The rules do not compile; nothing from the directory is used.
    #[error("{}", compile_message(dir, issues, *total))]
    Compile {
        /// The rules directory.
        dir: PathBuf,
        /// The first [`MAX_ISSUES`] problems, in file order.
        issues: Vec<CompileIssue>,
        /// How many problems there were in all.
        total: usize,
    },
    /// The scan ran out of time; the file is neither cleared nor condemned.
    #[error("YARA scan timed out (limit {timeout:?})")]
    Timeout {
        /// The limit that was asked for.
        timeout: Duration,
    },
    /// yara-x failed the scan for another reason (a module could not parse its input).
    #[error("YARA scan failed")]
    Scan {
        /// yara-x's error.
        #[source]
        source: yara_x::ScanError,
    },
}

fn compile_message(dir: &std::path::Path, issues: &[CompileIssue], total: usize) -> String {
    let mut m = format!("YARA rules in {} do not compile", dir.display());
    for issue in issues {
        m.push_str("\n  ");
        m.push_str(&issue.to_string());
    }
    if total > issues.len() {
        m.push_str(&format!("\n  … and {} more", total - issues.len()));
    }
    m
}
