//! Reading NSRL inputs row by row: the RDS v3 SQLite database, the legacy RDS 2.x
//! `NSRLFile.txt` CSV, and a plain digest list (`sha256sum` style). The format is told by
//! content, never by file name. Readers hand one digest field per row to a [`RowSink`];
//! decoding and counting are the importer's.

use crate::nsrl::{DigestKind, NsrlError, NsrlFormat};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The SQLite file header magic.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The legacy `NSRLFile.txt` columns, in order.
pub const LEGACY_COLUMNS: [&str; 8] = [
    "SHA-1",
    "MD5",
    "CRC32",
    "FileName",
    "FileSize",
    "ProductCode",
    "OpSystemCode",
    "SpecialCode",
];
/// Rows between progress reports.
const TICK: u64 = 1 << 16;

/// One row's digest field as found.
pub(crate) enum Field<'a> {
    /// Text (hex expected).
    Text(&'a [u8]),
    /// A SQLite blob: raw bytes, or hex stored as a blob.
    Blob(&'a [u8]),
    /// SQL NULL.
    Null,
    /// A SQL number where a digest belongs.
    Number,
    /// A CSV row with the wrong number of fields.
    Fields(usize),
}

/// Where rows go.
pub(crate) trait RowSink {
    /// One row (`at`: SQLite scan position or text line, from 1).
    fn row(&mut self, at: u64, field: Field<'_>) -> Result<(), NsrlError>;
    /// How far the reader is: `done` of `total` rows (SQLite) or bytes (text files).
    fn position(&mut self, done: u64, total: Option<u64>) -> Result<(), NsrlError>;
}

/// What the start of a file says it is.
pub(crate) struct Detected {
    /// The format.
    pub format: NsrlFormat,
    /// For a digest list, the kind its first digest's length implies.
    pub list_kind: Option<DigestKind>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NsrlError {
    let path = path.to_owned();
    move |source| NsrlError::Io { op, path, source }
}

/// Decides the format from the first bytes: the SQLite magic, the legacy header line, or a
/// first data line that is one hex digest (optionally followed by a file name).
pub(crate) fn detect(path: &Path) -> Result<Detected, NsrlError> {
    let file = File::open(path).map_err(io("cannot open", path))?;
    let mut head = Vec::with_capacity(4096);
    file.take(4096)
        .read_to_end(&mut head)
        .map_err(io("cannot read", path))?;
    if head.starts_with(SQLITE_MAGIC) {
        return Ok(Detected {
            format: NsrlFormat::Rds3,
            list_kind: None,
        });
    }
    let text = String::from_utf8_lossy(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head));
    let first = text.lines().next().unwrap_or("").trim();
    let first_field = first
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if first_field.eq_ignore_ascii_case("SHA-1") {
        return Ok(Detected {
            format: NsrlFormat::Legacy,
            list_kind: None,
        });
    }
    let data = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if let Some(line) = data {
        let token = line.split_ascii_whitespace().next().unwrap_or("");
        if token.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(kind) = DigestKind::from_hex_len(token.len()) {
                return Ok(Detected {
                    format: NsrlFormat::List,
                    list_kind: Some(kind),
                });
            }
        }
    }
    let start: String = first.chars().take(60).collect();
    Err(NsrlError::NotRecognized {
        path: path.to_owned(),
        start,
    })
}

/// Checks the SQLite header's page count against the file length, so a cut file is named
/// as such before any query (SQLite itself may only fail deep into the scan).
fn check_sqlite_length(path: &Path) -> Result<(), NsrlError> {
    let mut file = File::open(path).map_err(io("cannot open", path))?;
    let len = file.metadata().map_err(io("cannot stat", path))?.len();
    let mut h = [0u8; 100];
    if len < 100 {
        return Err(NsrlError::Truncated {
            path: path.to_owned(),
            len,
            expected: 100,
        });
    }
    file.read_exact(&mut h).map_err(io("cannot read", path))?;
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let page_size = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    // The in-header size is only valid when "version-valid-for" matches the change counter;
    // a garbled header (bad page size) is left to SQLite to call "not a database".
    let valid = (512..=65536).contains(&page_size) && page_size.is_power_of_two();
    if valid && pages > 0 && be32(92) == be32(24) && len < pages * page_size {
        return Err(NsrlError::Truncated {
            path: path.to_owned(),
            len,
            expected: pages * page_size,
        });
    }
    Ok(())
}

/// Maps a SQLite error: not-a-database and corruption become [`NsrlError::Corrupt`].
fn sqlite_err(path: &Path, rows: u64) -> impl FnOnce(rusqlite::Error) -> NsrlError {
    let path = path.to_owned();
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            NsrlError::Corrupt { path, rows, source }
        }
        _ => NsrlError::Sqlite { path, source },
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Reads column `kind` of the `FILE` table (or `METADATA` if there is no `FILE`) of an RDS v3
/// database, opened read-only. Returns the table read.
pub(crate) fn read_sqlite(
    path: &Path,
    kind: DigestKind,
    sink: &mut dyn RowSink,
) -> Result<String, NsrlError> {
    check_sqlite_length(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path, 0))?;
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
        .and_then(|mut s| {
            let v = s.query_map([], |r| r.get(0))?.collect();
            v
        })
        .map_err(sqlite_err(path, 0))?;
    let pick = |want: &str| names.iter().find(|n| n.eq_ignore_ascii_case(want)).cloned();
    let Some(table) = pick("FILE").or_else(|| pick("METADATA")) else {
        return Err(NsrlError::NoTable {
            path: path.to_owned(),
            tables: names,
        });
    };
    let columns: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({})", quote(&table)))
        .and_then(|mut s| {
            let v = s.query_map([], |r| r.get(1))?.collect();
            v
        })
        .map_err(sqlite_err(path, 0))?;
    let Some(column) = columns
        .iter()
        .find(|c| c.eq_ignore_ascii_case(kind.column()))
        .cloned()
    else {
        return Err(NsrlError::MissingColumn {
            path: path.to_owned(),
            table,
            column: kind.column(),
            found: columns,
        });
    };
    // For the progress bar only: exact for a table without deletions, absent for a view.
    let total: Option<u64> = conn
        .query_row(
            &format!("SELECT max(rowid) FROM {}", quote(&table)),
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok());
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM {}", quote(&column), quote(&table)))
        .map_err(sqlite_err(path, 0))?;
    let mut rows = stmt.query([]).map_err(sqlite_err(path, 0))?;
    let mut n = 0u64;
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(sqlite_err(path, n)(e)),
        };
        n += 1;
        let field = match row.get_ref(0).map_err(sqlite_err(path, n))? {
            ValueRef::Text(t) => Field::Text(t),
            ValueRef::Blob(b) => Field::Blob(b),
            ValueRef::Null => Field::Null,
            ValueRef::Integer(_) | ValueRef::Real(_) => Field::Number,
        };
        sink.row(n, field)?;
        if n.is_multiple_of(TICK) {
            sink.position(n, total)?;
        }
    }
    sink.position(n, total)?;
    Ok(table)
}

/// Reads the SHA-1 or MD5 column of a legacy `NSRLFile.txt`; the header must be exactly
/// [`LEGACY_COLUMNS`] (any case).
pub(crate) fn read_legacy(
    path: &Path,
    kind: DigestKind,
    sink: &mut dyn RowSink,
) -> Result<(), NsrlError> {
    let column = match kind {
        DigestKind::Sha1 => 0,
        DigestKind::Md5 => 1,
        DigestKind::Sha256 => {
            return Err(NsrlError::DigestNotInFormat {
                path: path.to_owned(),
                format: NsrlFormat::Legacy,
                digest: kind,
            })
        }
    };
    let file = File::open(path).map_err(io("cannot open", path))?;
    let total = file.metadata().map_err(io("cannot stat", path))?.len();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let csv_err = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(source) => NsrlError::Io {
                op: "cannot read",
                path: path.to_owned(),
                source,
            },
            other => NsrlError::Csv {
                path: path.to_owned(),
                line,
                reason: format!("{other:?}"),
            },
        }
    };
    let header = rdr.byte_headers().map_err(csv_err)?.clone();
    let found: Vec<String> = header
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_owned()
        })
        .collect();
    let ok = found.len() == LEGACY_COLUMNS.len()
        && found
            .iter()
            .zip(LEGACY_COLUMNS)
            .all(|(f, want)| f.eq_ignore_ascii_case(want));
    if !ok {
        return Err(NsrlError::LegacyHeader {
            path: path.to_owned(),
            found,
        });
    }
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec).map_err(csv_err)? {
        n += 1;
        let line = rec.position().map_or(n + 1, |p| p.line());
        let field = if rec.len() == LEGACY_COLUMNS.len() {
            Field::Text(&rec[column])
        } else {
            Field::Fields(rec.len())
        };
        sink.row(line, field)?;
        if n.is_multiple_of(TICK) {
            sink.position(rec.position().map_or(0, |p| p.byte()), Some(total))?;
        }
    }
    sink.position(total, Some(total))?;
    Ok(())
}

/// Reads a digest list: one digest per line as the first whitespace-separated token (so
/// `sha256sum` output works); blank lines and `#` comments skipped.
pub(crate) fn read_list(path: &Path, sink: &mut dyn RowSink) -> Result<(), NsrlError> {
    let file = File::open(path).map_err(io("cannot open", path))?;
    let total = file.metadata().map_err(io("cannot stat", path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(256);
    let (mut n, mut bytes, mut rows) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let got = r
            .read_until(b'\n', &mut line)
            .map_err(io("cannot read", path))?;
        if got == 0 {
            break;
        }
        n += 1;
        bytes += got as u64;
        let text = line.trim_ascii();
        if text.is_empty() || text.starts_with(b"#") {
            continue;
        }
        let token = text
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or(text);
        sink.row(n, Field::Text(token))?;
        rows += 1;
        if rows.is_multiple_of(TICK) {
            sink.position(bytes, Some(total))?;
        }
    }
    sink.position(bytes, Some(total))?;
    Ok(())
}
