//! The digest set file: sorted, de-duplicated MD5, SHA-1 and SHA-256 arrays behind a small
//! header, memory-mapped and binary-searched so a set of millions of digests costs page cache,
//! not heap.
//!
//! Layout (little-endian): `CUSTOSHS` magic (8 B), version `1` (u32), reserved (u32), counts
//! of MD5, SHA-1, SHA-256 digests (3 × u64), then the three arrays back to back.
//! Files are only ever replaced by rename ([`write_atomic`]), never changed in place.

use crate::atomic::{self, IoFail};
use memmap2::{Advice, Mmap, UncheckedAdvice};
use std::cmp::Ordering;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CUSTOSHS";
const VERSION: u32 = 1;
/// Header size: magic, version, reserved, three counts.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 3 * 8;
/// Digest length of each section, in file order.
pub const DIGEST_LENS: [usize; 3] = [16, 20, 32];
const SECTION_NAMES: [&str; 3] = ["md5", "sha1", "sha256"];

/// Errors writing or opening a digest set file.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// I/O on the set file or its temp file.
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
    /// Shorter than the header.
    #[error(
        "digest set {path} is corrupt: {len} bytes, shorter than the {HEADER_LEN}-byte header"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Does not start with `CUSTOSHS`.
    #[error("digest set {path} is corrupt: bad magic (not a custos digest set)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A format version this build does not read.
    #[error("digest set {path}: unsupported version {version} (expected {VERSION})")]
    BadVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The length is not header + counts × digest lengths.
    #[error(
        "digest set {path} is corrupt: {actual} bytes, header counts {counts:?} need {}",
        expected.map_or("more than 2^64".to_owned(), |n| n.to_string())
    )]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// The counts in the header.
        counts: [u64; 3],
        /// The length they imply (`None` if it overflows).
        expected: Option<u64>,
        /// The real length.
        actual: u64,
    },
    /// A section is not strictly increasing (unsorted or duplicated).
    #[error(
        "digest set {path} is corrupt: {section} section not strictly sorted at entry {index}"
    )]
    Unsorted {
        /// The file.
        path: PathBuf,
        /// `md5`, `sha1` or `sha256`.
        section: &'static str,
        /// The first entry not greater than its predecessor.
        index: u64,
    },
}

impl From<IoFail> for SetError {
    fn from(e: IoFail) -> SetError {
        SetError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// Digests to write into a set, in any order, duplicates allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// MD5 digests.
    pub md5: Vec<[u8; 16]>,
    /// SHA-1 digests.
    pub sha1: Vec<[u8; 20]>,
    /// SHA-256 digests.
    pub sha256: Vec<[u8; 32]>,
}

/// What [`write_atomic`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Distinct digests per section: MD5, SHA-1, SHA-256.
    pub unique: [u64; 3],
    /// Digests dropped as repeats, all sections together.
    pub duplicates: u64,
}

/// The header of a set with these counts (MD5, SHA-1, SHA-256).
pub(crate) fn header(counts: [u64; 3]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    for (i, n) in counts.iter().enumerate() {
        h[16 + 8 * i..24 + 8 * i].copy_from_slice(&n.to_le_bytes());
    }
    h
}

/// Sorts and de-duplicates; returns how many repeats were dropped.
fn sort_dedup<const N: usize>(v: &mut Vec<[u8; N]>) -> u64 {
    v.sort_unstable();
    let before = v.len();
    v.dedup();
    (before - v.len()) as u64
}

/// Writes `d` as a set file at `path`: sorted, de-duplicated, to a temp file in the same
/// directory, fsynced, renamed over `path`. On error the old file is untouched.
pub fn write_atomic(path: &Path, mut d: Digests) -> Result<WriteStats, SetError> {
    let duplicates = sort_dedup(&mut d.md5) + sort_dedup(&mut d.sha1) + sort_dedup(&mut d.sha256);
    let unique = [
        d.md5.len() as u64,
        d.sha1.len() as u64,
        d.sha256.len() as u64,
    ];
    atomic::write_file(path, |w| {
        w.write_all(&header(unique))?;
        w.write_all(d.md5.as_flattened())?;
        w.write_all(d.sha1.as_flattened())?;
        w.write_all(d.sha256.as_flattened())
    })?;
    Ok(WriteStats { unique, duplicates })
}

/// An opened, validated set file. Lookups read the mapping; nothing is copied to the heap.
///
/// The mapping stays valid when the file is replaced by rename (the old inode lives on); a
/// file truncated in place by someone else would fault, which is why writers only rename.
#[derive(Debug)]
pub struct DigestSet {
    path: PathBuf,
    map: Mmap,
    counts: [u64; 3],
    /// Byte offset of each section in the mapping.
    starts: [usize; 3],
    /// Per section, empty or [`FENCES`] + 1 bucket starts (see [`fences`]).
    fences: [Vec<usize>; 3],
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Header + counts × lengths, `None` on overflow.
fn expected_len(counts: [u64; 3]) -> Option<u64> {
    counts
        .iter()
        .zip(DIGEST_LENS)
        .try_fold(HEADER_LEN as u64, |acc, (&n, len)| {
            n.checked_mul(len as u64)?.checked_add(acc)
        })
}

/// Index of the first entry not greater than its predecessor.
fn first_unsorted(section: &[u8], len: usize) -> Option<u64> {
    let mut entries = section.chunks_exact(len);
    let mut prev = entries.next()?;
    for (i, cur) in entries.enumerate() {
        if cur <= prev {
            return Some(i as u64 + 1);
        }
        prev = cur;
    }
    None
}

/// The first 8 bytes of a digest as a big-endian number: its position in the key space.
fn prefix(d: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    u64::from_be_bytes(a)
}

/// Ranges at most this long are binary-searched: they span a few cache lines.
const BISECT_BELOW: usize = 64;
/// Interpolation steps before falling back to bisection: uniform digests need about
/// log2(log2(n)) (5 at 200M); a skewed set must not get the O(n) worst case.
const MAX_INTERPOLATIONS: u32 = 8;

/// Finds `key` in a section of sorted `N`-byte entries. Digests are uniformly distributed, so
/// the key's value predicts its position: interpolation search touches about 5 entries at
/// 200M where bisection touches 28 (each a cache miss on a big set). The step count is capped,
/// and the rest is bisection, so any input stays O(log n).
///
/// With `fences` (see [`fences`]) the search starts inside the key's bucket, so its first
/// probe lands within about a page of the key instead of ~200 KB away at 200M: one page
/// walk per lookup instead of two or three.
fn search<const N: usize>(section: &[u8], key: &[u8; N], fences: &[usize]) -> bool {
    let at = |i: usize| &section[i * N..(i + 1) * N];
    let k = prefix(key);
    // Invariant: key is in [lo, hi) if anywhere; lo_v <= k <= hi_v bound the prefixes there.
    let (mut lo, mut hi) = (0usize, section.len() / N);
    let (mut lo_v, mut hi_v) = (0u64, u64::MAX);
    if fences.len() == FENCES + 1 {
        let b = (k >> (64 - FENCE_BITS)) as usize;
        (lo, hi) = (fences[b], fences[b + 1]);
        lo_v = (b as u64) << (64 - FENCE_BITS);
        hi_v = lo_v | (u64::MAX >> FENCE_BITS);
    }
    let mut steps = 0;
    while hi - lo > BISECT_BELOW && steps < MAX_INTERPOLATIONS {
        steps += 1;
        let span = u128::from(hi_v - lo_v) + 1;
        let off = (u128::from(k - lo_v) * (hi - lo) as u128 / span) as usize;
        let mid = lo + off.min(hi - lo - 1);
        let e = at(mid);
        match e.cmp(&key[..]) {
            Ordering::Less => {
                lo = mid + 1;
                lo_v = prefix(e);
            }
            Ordering::Greater => {
                hi = mid;
                hi_v = prefix(e);
            }
            Ordering::Equal => return true,
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid).cmp(&key[..]) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return true,
        }
    }
    false
}

/// Top bits of the key that pick a bucket of the in-memory index over a big section.
const FENCE_BITS: u32 = 12;
/// Buckets: 4096, so the index is 32 KB and stays in cache.
const FENCES: usize = 1 << FENCE_BITS;
/// Sections smaller than this get no index (a plain search is already a few cache lines).
const FENCE_MIN: usize = 1 << 16;

/// For a big section, the position of the first entry of each bucket (entries whose top
/// [`FENCE_BITS`] bits are `b`), plus the length: `FENCES + 1` numbers. Found by bisection at
/// open, about 4096 × 28 probes; exact whatever the distribution, so lookups stay correct.
fn fences(section: &[u8], len: usize) -> Vec<usize> {
    let n = section.len() / len;
    if n < FENCE_MIN {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(FENCES + 1);
    let mut lo = 0;
    for b in 0..FENCES as u64 {
        let v = b << (64 - FENCE_BITS);
        let mut hi = n;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if prefix(&section[mid * len..]) < v {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        out.push(lo);
    }
    out.push(n);
    out
}

/// Binary search, kept to check [`search`] against in tests and benchmarks.
#[cfg(test)]
fn bisect<const N: usize>(section: &[u8], key: &[u8; N]) -> bool {
    let (mut lo, mut hi) = (0, section.len() / N);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match section[mid * N..(mid + 1) * N].cmp(&key[..]) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return true,
        }
    }
    false
}

/// How much of a set [`DigestSet::open_with`] reads to check the sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Every entry: reads the whole file once (right for feeds, and for a set just written).
    Full,
    /// The first and last 4096 entries of each section and 4096 evenly spaced adjacent pairs:
    /// a few MB whatever the size. For sets of hundreds of millions of entries that were
    /// fully checked when written; an undetected disorder can only make lookups miss.
    Sampled,
}

/// Entries checked at each end, and pairs checked in between, by [`Validation::Sampled`].
const SAMPLE: usize = 4096;

/// Index of an entry found not greater than its predecessor by sampling.
fn first_unsorted_sampled(section: &[u8], len: usize) -> Option<u64> {
    let n = section.len() / len;
    if n <= 3 * SAMPLE {
        return first_unsorted(section, len);
    }
    let check = |from: usize, to: usize| {
        first_unsorted(&section[from * len..to * len], len).map(|i| (from as u64) + i)
    };
    if let Some(i) = check(0, SAMPLE).or_else(|| check(n - SAMPLE, n)) {
        return Some(i);
    }
    let step = n / SAMPLE;
    (1..SAMPLE).find_map(|j| check(j * step - 1, j * step + 1))
}

impl DigestSet {
    /// Maps and validates a set file: magic, version, exact length, every section strictly
    /// sorted. Validation reads the file once; a corrupt file is an error naming it.
    pub fn open(path: &Path) -> Result<DigestSet, SetError> {
        DigestSet::open_with(path, Validation::Full)
    }

    /// Like [`DigestSet::open`], checking the sort order as `validation` says (header and
    /// length are always checked in full).
    pub fn open_with(path: &Path, validation: Validation) -> Result<DigestSet, SetError> {
        let io = |op| {
            let path = path.to_owned();
            move |source| SetError::Io { op, path, source }
        };
        let file = File::open(path).map_err(io("cannot open"))?;
        let actual = file.metadata().map_err(io("cannot stat"))?.len();
        if actual < HEADER_LEN as u64 {
            return Err(SetError::Truncated {
                path: path.to_owned(),
                len: actual,
            });
        }
        // SAFETY: set files are only replaced by rename, never written in place, so the
        // mapped bytes do not change under us (see the type's docs).
        let map = unsafe { Mmap::map(&file) }.map_err(io("cannot map"))?;
        if &map[..8] != MAGIC {
            return Err(SetError::BadMagic {
                path: path.to_owned(),
            });
        }
        let version = u32::from_le_bytes([map[8], map[9], map[10], map[11]]);
        if version != VERSION {
            return Err(SetError::BadVersion {
                path: path.to_owned(),
                version,
            });
        }
        let counts = [u64_at(&map, 16), u64_at(&map, 24), u64_at(&map, 32)];
        let expected = expected_len(counts);
        if expected != Some(actual) || map.len() as u64 != actual {
            return Err(SetError::WrongLength {
                path: path.to_owned(),
                counts,
                expected,
                actual,
            });
        }
        // The length check proves every section fits in the mapping, so these cannot overflow.
        let mut starts = [HEADER_LEN; 3];
        for i in 1..3 {
            starts[i] = starts[i - 1] + counts[i - 1] as usize * DIGEST_LENS[i - 1];
        }
        let mut set = DigestSet {
            path: path.to_owned(),
            map,
            counts,
            starts,
            fences: Default::default(),
        };
        let check = match validation {
            Validation::Full => {
                let _ = set.map.advise(Advice::Sequential);
                first_unsorted
            }
            Validation::Sampled => {
                // Before the first touch: no readahead around the sampled pages.
                let _ = set.map.advise(Advice::Random);
                first_unsorted_sampled
            }
        };
        for (i, section) in SECTION_NAMES.iter().enumerate() {
            if let Some(index) = check(set.section(i), DIGEST_LENS[i]) {
                return Err(SetError::Unsorted {
                    path: set.path,
                    section,
                    index,
                });
            }
        }
        let _ = set.map.advise(Advice::Random);
        // Only after the order check: fences assume sorted sections.
        set.fences = [0, 1, 2].map(|i| fences(set.section(i), DIGEST_LENS[i]));
        // The checks above touched pages all over the file, and fault-around mapped their
        // neighbours too (at 200M, the whole 6 GB showed as RSS). Drop those page-table
        // entries; the pages stay in the page cache and lookups map what they touch.
        // SAFETY: a read-only shared file mapping: MADV_DONTNEED only unmaps, and the next
        // access maps the same file bytes again. Nothing else holds references into it yet.
        let _ = unsafe { set.map.unchecked_advise(UncheckedAdvice::DontNeed) };
        Ok(set)
    }

    fn section(&self, i: usize) -> &[u8] {
        let start = self.starts[i];
        &self.map[start..start + self.counts[i] as usize * DIGEST_LENS[i]]
    }

    /// The file this set was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Digests per section: MD5, SHA-1, SHA-256.
    pub fn counts(&self) -> [u64; 3] {
        self.counts
    }

    /// Whether the set holds any MD5 digest (so callers know whether MD5 is worth computing).
    pub fn has_md5(&self) -> bool {
        self.counts[0] > 0
    }

    /// Whether the set holds any SHA-1 digest.
    pub fn has_sha1(&self) -> bool {
        self.counts[1] > 0
    }

    /// Whether `d` is in the MD5 section.
    pub fn contains_md5(&self, d: &[u8; 16]) -> bool {
        search(self.section(0), d, &self.fences[0])
    }

    /// Whether `d` is in the SHA-1 section.
    pub fn contains_sha1(&self, d: &[u8; 20]) -> bool {
        search(self.section(1), d, &self.fences[1])
    }

    /// Whether `d` is in the SHA-256 section.
    pub fn contains_sha256(&self, d: &[u8; 32]) -> bool {
        search(self.section(2), d, &self.fences[2])
    }
}

#[cfg(test)]
#[path = "hashset_tests.rs"]
mod tests;
