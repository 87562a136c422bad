//! Compiling a rules directory: listing, reading and checking the files, one namespace per
//! file, all-or-nothing.

use crate::{CompileIssue, YaraError};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Largest rule file accepted (16 MiB). Big public rule sets keep each file well under a few
/// MiB; anything larger is more likely a mistake (a sample dropped into the rules dir) than
/// rules.
pub const MAX_RULE_FILE_BYTES: u64 = 16 << 20;

/// The yara-x modules this build includes (the `*-module` features of the `yara-x`
/// dependency); rules importing any other module fail to compile.
pub const MODULES: &[&str] = &["console", "elf", "hash", "math", "string", "time"];

/// yara-x's code for "unknown module".
const UNKNOWN_MODULE: &str = "E010";

/// Most compile problems kept in [`YaraError::Compile`]; the rest are only counted.
pub const MAX_ISSUES: usize = 20;

/// A compiled rules directory, ready to scan with; immutable, `Send + Sync`.
pub struct Rules {
    pub(crate) inner: yara_x::Rules,
    dir: PathBuf,
    sources: Vec<PathBuf>,
    rule_count: usize,
    fingerprint: [u8; 32],
    warnings: Vec<CompileIssue>,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("dir", &self.dir)
            .field("sources", &self.sources)
            .field("rule_count", &self.rule_count)
            .field("fingerprint", &self.fingerprint_hex())
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

/// A rule file read and checked, not yet compiled.
struct Source {
    path: PathBuf,
    namespace: String,
    text: String,
}

impl Rules {
    /// Compiles every `*.yar` and `*.yara` file directly in `dir` (not in subdirectories),
    /// in file-name order, each in a namespace named after its file stem. Hidden files
    /// (`.name`) and other extensions are ignored; symbolic links are followed.
    ///
    /// An existing directory without rule files gives an empty set ([`Rules::is_empty`]),
    /// which the caller can treat as "no YARA source". A missing directory is
    /// [`YaraError::NoDir`]. Any unreadable, oversized, non-UTF-8 or failing file makes the
    /// whole call fail: a result is always the complete directory. `include` statements
    /// are refused, so the fingerprint covers everything the rules can depend on. Regular
    /// expressions get libyara's relaxed syntax, so rules written for YARA keep compiling.
    pub fn compile_dir(dir: &Path) -> Result<Rules, YaraError> {
        let sources = read_sources(dir)?;
        let fingerprint = fingerprint(&sources);

        let mut compiler = yara_x::Compiler::new();
        // Accept regexps as libyara does (`\R` as `R`, `{` as a literal where it cannot be a
        // repetition), so rule sets written for YARA compile here too. Must precede the rules.
        compiler.relaxed_re_syntax(true).enable_includes(false);
        let mut issues = Vec::new();
        let mut total = 0;
        let mut seen = 0;
        for src in &sources {
            compiler.new_namespace(&src.namespace);
            let code = yara_x::SourceCode::from(src.text.as_str())
                .with_origin(src.path.display().to_string());
            // The first error is also in `errors()`; collect from there to get them all.
            let _ = compiler.add_source(code);
            let errors = compiler.errors();
            for e in &errors[seen..] {
                total += 1;
                if issues.len() < MAX_ISSUES {
                    let label = e.labels().next();
                    let label = label.as_ref().map(|l| (l.span().start(), l.text()));
                    issues.push(issue(src, e.code(), e.title(), label));
                }
            }
            seen = errors.len();
        }
        if total > 0 {
            return Err(YaraError::Compile {
                dir: dir.to_owned(),
                issues,
                total,
            });
        }
        let warnings = warnings(&compiler, &sources);
        let inner = compiler.build();
        Ok(Rules {
            rule_count: inner.iter().count(),
            inner,
            dir: dir.to_owned(),
            sources: sources.into_iter().map(|s| s.path).collect(),
            fingerprint,
            warnings,
        })
    }

    /// The directory the rules were compiled from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The rule files compiled, in compile order.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Number of rules, private and global ones included.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// No rules at all: the directory had no rule files, or only empty ones.
    pub fn is_empty(&self) -> bool {
        self.rule_count == 0
    }

    /// SHA-256 over the rule files' names and contents, in compile order; equal to
    /// [`dir_fingerprint`] of the directory as it was compiled.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// [`Rules::fingerprint`] as 64 lowercase hex digits, for logs and status output.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Compiler warnings (slow patterns, unused patterns, …): the rules work, but the
    /// operator should hear about them.
    pub fn warnings(&self) -> &[CompileIssue] {
        &self.warnings
    }
}

/// The fingerprint [`Rules::compile_dir`] would give `dir` now, without compiling: a cheap
/// "did the rules change?" check before a reload. Fails where reading would fail.
pub fn dir_fingerprint(dir: &Path) -> Result<[u8; 32], YaraError> {
    Ok(fingerprint(&read_sources(dir)?))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> YaraError + 'a {
    move |source| YaraError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Rule files in `dir`, sorted by file name, read and checked.
fn read_sources(dir: &Path) -> Result<Vec<Source>, YaraError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(YaraError::NoDir {
                dir: dir.to_owned(),
            })
        }
        Err(e) => return Err(io_err("cannot list YARA rules directory", dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("cannot list YARA rules directory", dir))?;
        let path = entry.path();
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        let rule_ext = matches!(
            path.extension().and_then(OsStr::to_str),
            Some("yar" | "yara")
        );
        if rule_ext && !hidden {
            paths.push(path);
        }
    }
    paths.sort();

    let mut sources: Vec<Source> = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(namespace) = path.file_stem().and_then(OsStr::to_str) else {
            return Err(YaraError::BadFileName { path });
        };
        if let Some(prev) = sources.iter().find(|s| s.namespace == namespace) {
            return Err(YaraError::DuplicateNamespace {
                namespace: namespace.to_owned(),
                first: prev.path.clone(),
                second: path,
            });
        }
        let namespace = namespace.to_owned();
        let text = read_rule_file(&path)?;
        sources.push(Source {
            path,
            namespace,
            text,
        });
    }
    Ok(sources)
}

/// Reads one rule file: a regular file (links followed), at most [`MAX_RULE_FILE_BYTES`],
/// UTF-8.
fn read_rule_file(path: &Path) -> Result<String, YaraError> {
    let meta = fs::metadata(path).map_err(io_err("cannot stat YARA rule file", path))?;
    if !meta.is_file() {
        return Err(YaraError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_RULE_FILE_BYTES {
        return Err(YaraError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit: MAX_RULE_FILE_BYTES,
        });
    }
    let bytes = fs::read(path).map_err(io_err("cannot read YARA rule file", path))?;
    // Checked again: the file may have grown between stat and read.
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(YaraError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            limit: MAX_RULE_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        YaraError::NotUtf8 {
            path: path.to_owned(),
            line,
            offset,
        }
    })
}

/// SHA-256 over (name length, name, content length, content) of each file, in order.
fn fingerprint(sources: &[Source]) -> [u8; 32] {
    let mut h = Sha256::new();
    for s in sources {
        let name = s.path.file_name().unwrap_or_default().as_encoded_bytes();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    h.finalize().into()
}

/// 1-based (line, column in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
    (line, 1 + before[line_start..].chars().count())
}

/// Turns a yara-x error or warning into a located, one-line [`CompileIssue`]. The first label
/// gives the place and the detail; yara-x's multi-line source excerpt is left out.
/// `label` is the first label's byte offset and text (yara-x does not export the label type).
fn issue(
    src: &Source,
    code: &'static str,
    title: &str,
    label: Option<(usize, &str)>,
) -> CompileIssue {
    let (offset, detail) = label.map_or((0, ""), |(o, t)| (o, t.trim()));
    let (line, column) = line_col(&src.text, offset);
    let mut message = if detail.is_empty() || detail == title {
        title.to_owned()
    } else {
        format!("{title}: {detail}")
    };
    if code == UNKNOWN_MODULE {
        message.push_str(&format!(" (custos is built with: {})", MODULES.join(", ")));
    }
    CompileIssue {
        file: src.path.clone(),
        line,
        column,
        code,
        message,
    }
}

/// The compiler's warnings, located. Each warning's label names its file (the origin set in
/// `compile_dir`); a warning without a known origin is put on the first file.
fn warnings(compiler: &yara_x::Compiler<'_>, sources: &[Source]) -> Vec<CompileIssue> {
    compiler
        .warnings()
        .iter()
        .filter_map(|w| {
            let label = w.labels().next();
            let src = label
                .as_ref()
                .and_then(|l| l.origin())
                .and_then(|o| sources.iter().find(|s| s.path.display().to_string() == o))
                .or_else(|| sources.first())?;
            let label = label.as_ref().map(|l| (l.span().start(), l.text()));
            Some(issue(src, w.code(), w.title(), label))
        })
        .collect()
}

#[cfg(test)]
mod unit {
    use super::line_col;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "ab\ncé d\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        // 'd' is after a two-byte 'é': byte 7, character column 4.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 999), (3, 1));
    }
}
