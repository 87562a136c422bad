//! MalwareBazaar CSV exports: `#` comment lines, the column header itself a comment
//! (`# "first_seen_utc","sha256_hash","md5_hash","sha1_hash",...`), then quoted rows separated
//! by `", "`. The `sha256_hash` column is required; `md5_hash` and `sha1_hash` are taken when
//! present.

use crate::feed::{decode, io_err, Collector, FeedError};
use std::io::BufRead;
use std::path::Path;

/// Where [`Scanner`] is within a CSV line, mirroring the CSV reader's own states.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    LineStart,
    AfterComma,
    Unquoted,
    Quoted,
    QuoteInQuoted,
    Comment,
}

/// Splits CSV text into records with their first line number, and drops spaces and tabs right
/// after a field separator (outside quotes).
///
/// MalwareBazaar writes `"a", "b"`; the csv crate only honours a quote at the very start of a
/// field, so without this ` "b, c"` would be split at its inner comma. Records are split here
/// rather than by the csv reader because its line numbers skip comment and blank lines.
#[derive(Default)]
struct Scanner {
    state: State,
}

impl Scanner {
    /// Advances over `b`; false if `b` is to be dropped.
    fn keep(&mut self, b: u8) -> bool {
        use State::*;
        self.state = match (self.state, b) {
            (Comment, b'\n') => LineStart,
            (Comment, _) => Comment,
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (QuoteInQuoted, b'"') => Quoted,
            (AfterComma, b' ' | b'\t') => return false,
            (LineStart, b' ' | b'\t') => LineStart,
            (LineStart, b'#') => Comment,
            (LineStart | AfterComma, b'"') => Quoted,
            (_, b',') => AfterComma,
            (_, b'\n') => LineStart,
            _ => Unquoted,
        };
        true
    }

    /// Filters `line` (without its newline) into `out`; true if the record goes on to the
    /// next line (a newline inside quotes).
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        out.extend(line.iter().copied().filter(|&b| self.keep(b)));
        let open = self.state == State::Quoted;
        self.keep(b'\n');
        if open {
            out.push(b'\n');
        }
        open
    }
}

fn builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).trim(csv::Trim::All);
    b
}

/// Parses one record's (filtered) bytes; `None` for a blank line.
fn parse_record(
    b: &csv::ReaderBuilder,
    bytes: &[u8],
    path: &Path,
    line: u64,
) -> Result<Option<csv::ByteRecord>, FeedError> {
    let mut rec = csv::ByteRecord::new();
    match b.from_reader(bytes).read_byte_record(&mut rec) {
        Ok(true) => Ok(Some(rec)),
        Ok(false) => Ok(None),
        Err(e) => Err(FeedError::Csv {
            path: path.to_owned(),
            line,
            reason: e.to_string(),
        }),
    }
}

/// Column names (trimmed, lowercased) of a header line, without its leading `#`.
pub(crate) fn header(text: &str, path: &Path, line: u64) -> Result<Vec<String>, FeedError> {
    let mut bytes = Vec::new();
    Scanner::default().line(text.trim().as_bytes(), &mut bytes);
    let record = parse_record(&builder(), &bytes, path, line)?.unwrap_or_default();
    Ok(record
        .iter()
        .map(|c| String::from_utf8_lossy(c).trim().to_lowercase())
        .collect())
}

/// The positions of the columns we read.
struct Columns {
    sha256: usize,
    md5: Option<usize>,
    sha1: Option<usize>,
}

/// A field as text; the hash columns are ASCII, anything else fails to decode anyway.
fn field(rec: &csv::ByteRecord, i: usize) -> Option<String> {
    rec.get(i).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// An optional hash column: absent, empty or `n/a` is `None`; anything else must decode.
fn optional<const N: usize>(
    rec: &csv::ByteRecord,
    i: Option<usize>,
    name: &str,
) -> Result<Option<[u8; N]>, String> {
    match i.and_then(|i| field(rec, i)) {
        None => Ok(None),
        Some(s) if s.is_empty() || s.eq_ignore_ascii_case("n/a") => Ok(None),
        Some(s) => decode(&s).map(Some).map_err(|e| format!("{name}: {e}")),
    }
}

/// Adds a row's digests, or says why none are taken. Any malformed hash rejects the whole row.
fn row(rec: &csv::ByteRecord, cols: &Columns, c: &mut Collector) -> Result<(), String> {
    let sha256 = field(rec, cols.sha256).ok_or("missing sha256_hash field")?;
    let sha256: [u8; 32] = decode(&sha256).map_err(|e| format!("sha256_hash: {e}"))?;
    let md5 = optional::<16>(rec, cols.md5, "md5_hash")?;
    let sha1 = optional::<20>(rec, cols.sha1, "sha1_hash")?;
    c.digests.sha256.push(sha256);
    c.digests.md5.extend(md5);
    c.digests.sha1.extend(sha1);
    Ok(())
}

/// Parses CSV rows with the given header. `skip_line` is the header line when it is data.
pub(crate) fn parse(
    r: impl BufRead,
    path: &Path,
    columns: &[String],
    header_line: u64,
    skip_line: Option<u64>,
    c: &mut Collector,
) -> Result<(), FeedError> {
    let find = |name: &str| columns.iter().position(|c| c == name);
    let cols = Columns {
        sha256: find("sha256_hash").ok_or_else(|| FeedError::NoSha256Column {
            path: path.to_owned(),
            line: header_line,
        })?,
        md5: find("md5_hash"),
        sha1: find("sha1_hash"),
    };
    let csv = builder();
    let (mut scanner, mut bytes) = (Scanner::default(), Vec::new());
    let (mut n, mut first) = (0u64, 0u64);
    for line in r.split(b'\n') {
        let line = line.map_err(io_err("cannot read", path))?;
        n += 1;
        if bytes.is_empty() {
            first = n;
        }
        if scanner.line(&line, &mut bytes) {
            continue;
        }
        record(&csv, &bytes, path, first, skip_line, &cols, c)?;
        bytes.clear();
    }
    // An unterminated quote at end of file: let the csv reader make what it can of it.
    record(&csv, &bytes, path, first, skip_line, &cols, c)
}

/// Handles one record starting on `line`: comments, blanks and the header are skipped.
fn record(
    csv: &csv::ReaderBuilder,
    bytes: &[u8],
    path: &Path,
    line: u64,
    skip_line: Option<u64>,
    cols: &Columns,
    c: &mut Collector,
) -> Result<(), FeedError> {
    if bytes.trim_ascii_start().starts_with(b"#") || Some(line) == skip_line {
        return Ok(());
    }
    let Some(rec) = parse_record(csv, bytes, path, line)? else {
        return Ok(());
    };
    c.summary.rows += 1;
    if let Err(reason) = row(&rec, cols, c) {
        c.reject(line, reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of `input` as (first line, filtered text).
    fn records(input: &str) -> Vec<(u64, String)> {
        let (mut s, mut out, mut recs, mut first) = (Scanner::default(), vec![], vec![], 0);
        for (i, line) in input.lines().enumerate() {
            if out.is_empty() {
                first = i as u64 + 1;
            }
            if !s.line(line.as_bytes(), &mut out) {
                recs.push((first, String::from_utf8(std::mem::take(&mut out)).unwrap()));
            }
        }
        recs
    }

    #[test]
    fn drops_space_after_separator_only() {
        assert_eq!(records(r#""a", "b c",  d"#), [(1, r#""a","b c",d"#.into())]);
    }

    #[test]
    fn keeps_quoted_commas_and_escaped_quotes() {
        assert_eq!(
            records(r#""x, y", "say ""hi"", ok", z"#),
            [(1, r#""x, y","say ""hi"", ok",z"#.into())]
        );
    }

    #[test]
    fn comment_lines_are_left_alone_even_with_odd_quotes() {
        assert_eq!(
            records("# a, b, \"c\n\"1\", \"2\""),
            [(1, "# a, b, \"c".into()), (2, "\"1\",\"2\"".into())]
        );
    }

    #[test]
    fn quoted_newline_continues_the_record_and_keeps_its_first_line() {
        assert_eq!(
            records("\"a\nb\", \"c\"\n\"d\""),
            [(1, "\"a\nb\",\"c\"".into()), (3, "\"d\"".into())]
        );
    }

    #[test]
    fn header_columns_are_trimmed_and_lowercased() {
        let cols = header(
            r#" "First_Seen_UTC", "SHA256_HASH","md5_hash""#,
            Path::new("f"),
            1,
        )
        .unwrap();
        assert_eq!(cols, ["first_seen_utc", "sha256_hash", "md5_hash"]);
    }

    #[test]
    fn line_numbers_count_comments_and_blank_lines() {
        let text = "# \"sha256_hash\"\n\n# c\n\"bad\"\n\n\"worse\"\n";
        let mut c = Collector::default();
        let cols = ["sha256_hash".to_owned()];
        parse(text.as_bytes(), Path::new("f"), &cols, 1, None, &mut c).unwrap();
        let lines: Vec<u64> = c.summary.reasons.iter().map(|r| r.0).collect();
        assert_eq!(lines, [4, 6]);
        assert_eq!(c.summary.rows, 2);
    }
}
