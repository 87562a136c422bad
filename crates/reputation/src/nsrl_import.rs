//! Building the NSRL set: rows from `nsrl_read` are decoded, counted and external-sorted
//! (`sorter`) into a set file in a work directory, which is checked in full and only then
//! renamed into the store with its metadata.

use crate::hashset::{self, SetError, HEADER_LEN};
use crate::nsrl::{
    at_text, info_path, io, nsrl_dir, set_path, DigestKind, ImportOptions, NsrlError, NsrlFormat,
    NsrlInfo, Phase, Progress, RejectReason, RejectedRow, LEGACY_COLUMNS, MAX_EXAMPLES,
};
use crate::nsrl_read::{self, Field, RowSink};
use crate::sorter::{self, Sorter, WorkDir};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// Prefix of import work directories under `STATE/nsrl`.
const WORK_PREFIX: &str = "import";

/// Decodes and counts rows, feeding the sorter.
struct Collect<'a, 'p, const N: usize> {
    sorter: Sorter<'a, N>,
    format: NsrlFormat,
    path: &'a Path,
    rows: u64,
    rejected_by_reason: BTreeMap<RejectReason, u64>,
    examples: Vec<RejectedRow>,
    progress: &'p mut dyn FnMut(&Progress) -> bool,
}

/// Decodes `2N` hex digits (surrounding blanks ignored), or says why not.
fn decode<const N: usize>(field: Field<'_>) -> Result<[u8; N], (RejectReason, String)> {
    let text = match field {
        Field::Blob(b) if b.len() == N => {
            let mut d = [0u8; N];
            d.copy_from_slice(b);
            return Ok(d);
        }
        Field::Text(t) | Field::Blob(t) => t.trim_ascii(),
        Field::Null => return Err((RejectReason::Empty, "NULL".to_owned())),
        Field::Number => return Err((RejectReason::NotText, "a number, not hex".to_owned())),
        Field::Fields(n) => {
            return Err((
                RejectReason::WrongFields,
                format!("{n} fields, expected {}", LEGACY_COLUMNS.len()),
            ))
        }
    };
    if text.is_empty() {
        return Err((RejectReason::Empty, "empty".to_owned()));
    }
    if text.len() != 2 * N {
        return Err((
            RejectReason::WrongLength,
            format!("{} characters, expected {} hex digits", text.len(), 2 * N),
        ));
    }
    let mut d = [0u8; N];
    hex::decode_to_slice(text, &mut d).map_err(|e| (RejectReason::BadHex, format!("{e}")))?;
    Ok(d)
}

impl<const N: usize> RowSink for Collect<'_, '_, N> {
    fn row(&mut self, at: u64, field: Field<'_>) -> Result<(), NsrlError> {
        self.rows += 1;
        match decode::<N>(field) {
            Ok(d) => self.sorter.push(d)?,
            Err((reason, detail)) => {
                *self.rejected_by_reason.entry(reason).or_default() += 1;
                if self.examples.len() < MAX_EXAMPLES {
                    self.examples.push(RejectedRow { at, reason, detail });
                }
            }
        }
        Ok(())
    }

    fn position(&mut self, done: u64, total: Option<u64>) -> Result<(), NsrlError> {
        let p = Progress {
            phase: Phase::Reading,
            rows: self.rows,
            done,
            total,
        };
        if (self.progress)(&p) {
            Ok(())
        } else {
            Err(NsrlError::Cancelled {
                path: self.path.to_owned(),
            })
        }
    }
}

/// What the build step hands back.
struct Built {
    table: Option<String>,
    rows: u64,
    rejected_by_reason: BTreeMap<RejectReason, u64>,
    examples: Vec<RejectedRow>,
    unique: u64,
    duplicates: u64,
}

/// Reads `file`, sorts, and writes a checked set file to `out` (in `work`).
fn build<const N: usize>(
    file: &Path,
    format: NsrlFormat,
    kind: DigestKind,
    opts: &ImportOptions,
    work: &Path,
    out: &Path,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Built, NsrlError> {
    let mut c = Collect::<N> {
        sorter: Sorter::new(work, opts.memory),
        format,
        path: file,
        rows: 0,
        rejected_by_reason: BTreeMap::new(),
        examples: Vec::new(),
        progress,
    };
    let table = match format {
        NsrlFormat::Rds3 => Some(nsrl_read::read_sqlite(file, kind, &mut c)?),
        NsrlFormat::Legacy => {
            nsrl_read::read_legacy(file, kind, &mut c)?;
            None
        }
        NsrlFormat::List => {
            nsrl_read::read_list(file, &mut c)?;
            None
        }
    };
    let rejected: u64 = c.rejected_by_reason.values().sum();
    if c.rows == 0 {
        return Err(NsrlError::Empty {
            path: file.to_owned(),
        });
    }
    if rejected == c.rows {
        let first = c.examples.first();
        return Err(NsrlError::AllRejected {
            path: file.to_owned(),
            rows: c.rows,
            at: first.map_or_else(String::new, |r| at_text(c.format, r.at)),
            reason: first.map_or_else(String::new, |r| r.detail.clone()),
        });
    }
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io("cannot create", out))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    // A zeroed header until the counts are known: an unfinished file never looks valid.
    w.write_all(&[0u8; HEADER_LEN])
        .map_err(io("cannot write", out))?;
    let rows = c.rows;
    let progress = c.progress;
    let stats = c.sorter.finish(
        |d| w.write_all(d).map_err(io("cannot write", out)),
        |done, total| {
            let p = Progress {
                phase: Phase::Merging,
                rows,
                done,
                total: Some(total),
            };
            if progress(&p) {
                Ok(())
            } else {
                Err(NsrlError::Cancelled {
                    path: file.to_owned(),
                })
            }
        },
    )?;
    let f = w
        .into_inner()
        .map_err(|e| io("cannot write", out)(e.into_error()))?;
    let mut counts = [0u64; 3];
    counts[kind.section()] = stats.unique;
    f.write_all_at(&hashset::header(counts), 0)
        .map_err(io("cannot write", out))?;
    f.sync_all().map_err(io("cannot sync", out))?;
    drop(f);
    let verifying = Progress {
        phase: Phase::Verifying,
        rows,
        done: 0,
        total: None,
    };
    if !progress(&verifying) {
        return Err(NsrlError::Cancelled {
            path: file.to_owned(),
        });
    }
    verify::<N>(out, &hashset::header(counts), stats.unique)?;
    Ok(Built {
        table,
        rows,
        rejected_by_reason: c.rejected_by_reason,
        examples: c.examples,
        unique: stats.unique,
        duplicates: stats.duplicates,
    })
}

/// Re-reads a written set with plain reads (a mapping would count the whole file as our RSS):
/// the header must be `header`, every entry greater than the one before, `count` entries
/// and no partial one (the same checks as `DigestSet::open` with `Validation::Full`).
fn verify<const N: usize>(
    path: &Path,
    header: &[u8; HEADER_LEN],
    count: u64,
) -> Result<(), NsrlError> {
    let f = File::open(path).map_err(io("cannot open", path))?;
    let len = f.metadata().map_err(io("cannot stat", path))?.len();
    let expected = HEADER_LEN as u64 + count * N as u64;
    if len != expected {
        return Err(SetError::WrongLength {
            path: path.to_owned(),
            counts: [0, 0, count],
            expected: Some(expected),
            actual: len,
        }
        .into());
    }
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).map_err(io("cannot read", path))?;
    let corrupt = |index| SetError::Unsorted {
        path: path.to_owned(),
        section: "new",
        index,
    };
    if &h != header {
        return Err(corrupt(0).into());
    }
    let mut prev: Option<[u8; N]> = None;
    let mut d = [0u8; N];
    let mut i = 0u64;
    loop {
        match r.read_exact(&mut d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io("cannot read", path)(e)),
        }
        if prev.is_some_and(|p| p >= d) {
            return Err(corrupt(i).into());
        }
        prev = Some(d);
        i += 1;
    }
    if i != count {
        return Err(corrupt(i).into());
    }
    Ok(())
}

/// Imports `file` as the NSRL set, replacing the previous one only when everything worked.
/// `progress` is called every 64K rows or 1M merged digests; returning `false` cancels.
pub fn import_nsrl(
    state_dir: &Path,
    file: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<NsrlInfo, NsrlError> {
    let t0 = Instant::now();
    let detected = nsrl_read::detect(file)?;
    let format = detected.format;
    let kind = opts.digest.unwrap_or(match format {
        NsrlFormat::Rds3 => DigestKind::Sha256,
        NsrlFormat::Legacy => DigestKind::Sha1,
        NsrlFormat::List => detected.list_kind.unwrap_or(DigestKind::Sha256),
    });
    let dir = nsrl_dir(state_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("cannot create", &dir))?;
    sorter::sweep_stale(&dir, WORK_PREFIX);
    let work = WorkDir::create(&dir, WORK_PREFIX)?;
    let new_set = work.path().join("nsrl.set");
    let out = new_set.as_path();
    let b = match kind {
        DigestKind::Md5 => build::<16>(file, format, kind, opts, work.path(), out, progress),
        DigestKind::Sha1 => build::<20>(file, format, kind, opts, work.path(), out, progress),
        DigestKind::Sha256 => build::<32>(file, format, kind, opts, work.path(), out, progress),
    }?;
    let size = fs::metadata(&new_set)
        .map_err(io("cannot stat", &new_set))?
        .len();
    let source = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let info = NsrlInfo {
        imported_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        source: source.to_string_lossy().into_owned(),
        format,
        table: b.table,
        digest: kind,
        rows: b.rows,
        rejected: b.rejected_by_reason.values().sum(),
        rejected_by_reason: b.rejected_by_reason,
        rejected_examples: b.examples,
        unique: b.unique,
        duplicates: b.duplicates,
        size,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let new_info = work.path().join("nsrl.json");
    let mut f = File::create(&new_info).map_err(io("cannot create", &new_info))?;
    serde_json::to_writer_pretty(&mut f, &info)
        .map_err(std::io::Error::from)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io("cannot write", &new_info))?;
    // Set first: a crash between the renames leaves a new set with the old metadata, which
    // `Nsrl::load` reports (the counts disagree) rather than trusting.
    let (set_dst, info_dst) = (set_path(state_dir), info_path(state_dir));
    fs::rename(&new_set, &set_dst).map_err(io("cannot replace", &set_dst))?;
    fs::rename(&new_info, &info_dst).map_err(io("cannot replace", &info_dst))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(info)
}
