//! Reputation sources as the verdict engine sees them. Each source says what it knows about a
//! file: known bad, trusted, known, or nothing. They are consulted in the configured order and
//! the first definite answer (bad or trusted) decides; later sources are not asked, so a
//! packaged program is not YARA-scanned and a known-bad hash costs no remote lookup. The
//! formats and services behind the sources live elsewhere (`custos-reputation`, `custos-yara`).

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a verdict that used a failed answer is cached before the source is asked again.
pub const RETRY_FAILED: Duration = Duration::from_secs(30);

/// What one source says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Opinion {
    /// Not listed, no match, or the source could not tell.
    Unknown,
    /// Listed as known software, but this source is not trusted to allow it (NSRL without
    /// `trust`): shown, and the next source is asked.
    Known,
    /// Trusted: allowed where the mode's default would deny (lockdown).
    Good,
    /// Known bad: denied in monitor and lockdown, a "would deny" in audit.
    Bad,
}

impl Opinion {
    /// Bad and good decide; known and unknown pass to the next source.
    pub fn is_definite(self) -> bool {
        matches!(self, Opinion::Good | Opinion::Bad)
    }
}

/// One source's answer with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The answer.
    pub opinion: Opinion,
    /// Why, in the source's words: the feed, the YARA rule, the service's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the answer holds (a remote service's answer has a TTL; one that did not
    /// answer is retried soon). `None`: as long as the file is unchanged. A verdict that used
    /// an answer with a limit is cached only that long and never marked in the kernel.
    #[serde(skip)]
    pub valid_for: Option<Duration>,
}

impl Finding {
    fn new(opinion: Opinion, detail: impl Into<Option<String>>) -> Finding {
        Finding {
            opinion,
            detail: detail.into(),
            valid_for: None,
        }
    }

    /// Nothing known.
    pub fn unknown(detail: impl Into<Option<String>>) -> Finding {
        Finding::new(Opinion::Unknown, detail)
    }

    /// Listed, not trusted.
    pub fn known(detail: impl Into<Option<String>>) -> Finding {
        Finding::new(Opinion::Known, detail)
    }

    /// Trusted.
    pub fn good(detail: impl Into<Option<String>>) -> Finding {
        Finding::new(Opinion::Good, detail)
    }

    /// Known bad.
    pub fn bad(detail: impl Into<Option<String>>) -> Finding {
        Finding::new(Opinion::Bad, detail)
    }

    /// The source could not answer this time: unknown, asked again after [`RETRY_FAILED`].
    pub fn failed(detail: String) -> Finding {
        Finding::new(Opinion::Unknown, detail).valid_for(RETRY_FAILED)
    }

    /// The same answer, holding only for `d`.
    pub fn valid_for(mut self, d: Duration) -> Finding {
        self.valid_for = Some(d);
        self
    }
}

/// What the read of a file must produce for a source besides SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// MD5 in the same read.
    pub md5: bool,
    /// SHA-1 in the same read.
    pub sha1: bool,
    /// The content itself, in memory, for files up to this many bytes (0: never).
    pub content_up_to: u64,
}

impl Need {
    /// The digests the read must compute.
    pub fn want(self) -> crate::Want {
        crate::Want {
            md5: self.md5,
            sha1: self.sha1,
        }
    }

    /// How many bytes to keep from a read of a `size`-byte file (`None`: none).
    pub fn keep(self, size: u64) -> Option<usize> {
        usize::try_from(size)
            .ok()
            .filter(|_| self.content_up_to >= size)
    }

    /// Both needs.
    pub fn union(self, o: Need) -> Need {
        Need {
            md5: self.md5 || o.md5,
            sha1: self.sha1 || o.sha1,
            content_up_to: self.content_up_to.max(o.content_up_to),
        }
    }
}

/// What a source may look at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// SHA-256, lowercase hex.
    pub sha256: &'a str,
    /// MD5, when some source needed it.
    pub md5: Option<&'a [u8; 16]>,
    /// SHA-1, when some source needed it.
    pub sha1: Option<&'a [u8; 20]>,
    /// The resolved path of this exec, if it could be named.
    pub path: Option<&'a str>,
    /// Size in bytes.
    pub size: u64,
    /// The content, when a source asked for it and the file fit ([`Need::content_up_to`]).
    pub content: Option<&'a [u8]>,
}

impl<'a> Subject<'a> {
    /// What one read of a file produced, for the file at `path`.
    pub fn of(
        d: &'a crate::FileDigests,
        path: Option<&'a str>,
        size: u64,
        content: Option<&'a [u8]>,
    ) -> Subject<'a> {
        Subject {
            sha256: &d.sha256,
            md5: d.md5.as_ref(),
            sha1: d.sha1.as_ref(),
            path,
            size,
            content,
        }
    }

    /// The SHA-256 as bytes.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(self.sha256, &mut b).ok()?;
        Some(b)
    }
}

/// A reputation source.
pub trait Source: Send + Sync {
    /// Short name for events, `status` and config (`feeds`, `dpkg`, `nsrl`, `yara`, …).
    fn name(&self) -> &str;
    /// Whether the answer depends on the path as well as the content (package trust): such a
    /// source is asked again for every path that reaches the same file, on the thread that
    /// found the cached verdict, so its `judge` must be a cheap in-memory lookup. A per-path
    /// source only vouches (good, known or unknown); it is not asked where trust does not
    /// count.
    fn by_path(&self) -> bool {
        false
    }
    /// What the read must produce for this source, for a file at `path`.
    fn need(&self, path: Option<&str>) -> Need;
    /// The answer. May block up to the source's own deadline (a YARA scan, a remote lookup);
    /// it runs on the hashing pool, never on the path of a cached decision.
    fn judge(&self, s: &Subject<'_>) -> Finding;
}

/// The sources in force, in the order they are asked.
#[derive(Clone, Default)]
pub struct Sources(Vec<Arc<dyn Source>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// Every source's answer for one file (the ones asked), and which one decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// Per source, in order: `None` where the source was not asked (an earlier one decided).
    pub each: Vec<Option<Finding>>,
    /// The first source with a definite answer.
    pub deciding: Option<u16>,
    /// A source that answers per path was asked before a decision (or none decided): another
    /// path to the same file may get another answer.
    pub by_path: bool,
}

impl Findings {
    /// The decision's input for the engine, for findings gathered with this `trust`
    /// ([`Sources::consult`]).
    pub fn reputation(&self) -> crate::engine::Reputation {
        let opinion = self
            .deciding
            .and_then(|i| self.each.get(usize::from(i))?.as_ref())
            .map(|f| f.opinion);
        crate::engine::Reputation {
            bad: self.deciding.filter(|_| opinion == Some(Opinion::Bad)),
            good: self.deciding.filter(|_| opinion == Some(Opinion::Good)),
            by_path: self.by_path,
        }
    }

    /// What decides in a mode where trust does not count, from findings gathered with `all`
    /// (`fileinfo`): the first bad answer.
    pub fn reputation_without_trust(&self) -> crate::engine::Reputation {
        let bad = self
            .each
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.opinion == Opinion::Bad));
        crate::engine::Reputation {
            bad: bad.and_then(|i| u16::try_from(i).ok()),
            ..crate::engine::Reputation::default()
        }
    }

    /// How long these answers hold together: the shortest limit among them.
    pub fn valid_for(&self) -> Option<Duration> {
        self.each.iter().flatten().filter_map(|f| f.valid_for).min()
    }

    /// The finding of source `idx`.
    pub fn get(&self, idx: u16) -> Option<&Finding> {
        self.each.get(usize::from(idx))?.as_ref()
    }
}

/// Asks one source; a panic in it (a parser bug on a crafted file) is its failure, not the
/// hashing thread's.
fn guarded(src: &dyn Source, s: &Subject<'_>) -> Finding {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| src.judge(s))).unwrap_or_else(|_| {
        tracing::error!(
            source = src.name(),
            "source panicked; answer taken as failed"
        );
        Finding::failed(format!(
            "{} failed on this file (internal error)",
            src.name()
        ))
    })
}

impl Sources {
    /// Sources in the order given.
    pub fn new(list: Vec<Arc<dyn Source>>) -> Sources {
        Sources(list)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Their names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.name()).collect()
    }

    /// The name of source `idx`.
    pub fn name(&self, idx: u16) -> Option<&str> {
        self.0.get(usize::from(idx)).map(|s| s.name())
    }

    /// What one read must produce for every source that will be asked, for a file at `path`
    /// (per-path sources only where trust counts).
    pub fn need(&self, path: Option<&str>, trust: bool) -> Need {
        self.0
            .iter()
            .filter(|s| trust || !s.by_path())
            .fold(Need::default(), |n, s| n.union(s.need(path)))
    }

    /// Asks the sources in order. With `trust` (the mode's default denies, so a trusted
    /// answer counts), the first definite answer decides; without it only a bad one does and
    /// per-path sources, which only vouch, are not asked. With `all`, every source is asked
    /// (for `fileinfo`); what decides is the same.
    pub fn consult(&self, s: &Subject<'_>, trust: bool, all: bool) -> Findings {
        self.walk(
            |_, src| {
                if !all && !trust && src.by_path() {
                    return Some(None);
                }
                Some(Some(guarded(src, s)))
            },
            trust,
            all,
        )
        .unwrap_or_default()
    }

    /// Reads `r` (a file of `size` bytes at `path`) once with everything the sources need and
    /// asks them ([`Sources::consult`]). For callers off the exec path: `fileinfo`, the
    /// lockout guard.
    pub fn read_and_consult(
        &self,
        r: &mut dyn std::io::Read,
        size: u64,
        path: Option<&str>,
        trust: bool,
        all: bool,
    ) -> std::io::Result<(crate::FileDigests, Findings)> {
        let need = self.need(path, trust || all);
        let (d, content) = crate::file::read_while(r, need.want(), need.keep(size), &mut || true)?
            .ok_or_else(|| std::io::Error::other("read stopped"))?;
        let findings = self.consult(&Subject::of(&d, path, size, content.as_deref()), trust, all);
        Ok((d, findings))
    }

    /// The findings for another path to a file already judged: content answers are taken from
    /// `prior`, per-path sources are asked again with `s` (which has no content). `None` when
    /// a content source that must be asked now was not asked then (the file must be read again).
    pub fn rejudge(&self, prior: &Findings, s: &Subject<'_>, trust: bool) -> Option<Findings> {
        self.walk(
            |i, src| {
                if src.by_path() && !trust {
                    Some(None)
                } else if src.by_path() {
                    let need = src.need(s.path);
                    if (need.md5 && s.md5.is_none()) || (need.sha1 && s.sha1.is_none()) {
                        return None;
                    }
                    Some(Some(guarded(src, s)))
                } else {
                    Some(Some(prior.each.get(i).cloned().flatten()?))
                }
            },
            trust,
            false,
        )
    }

    /// Walks the sources in order; `ask` gives a source's answer, `Some(None)` to skip it, or
    /// `None` to give up. `trust`: whether a good answer decides.
    fn walk(
        &self,
        mut ask: impl FnMut(usize, &dyn Source) -> Option<Option<Finding>>,
        trust: bool,
        all: bool,
    ) -> Option<Findings> {
        let mut f = Findings {
            each: vec![None; self.0.len()],
            ..Findings::default()
        };
        for (i, src) in self.0.iter().enumerate() {
            if f.deciding.is_some() && !all {
                break;
            }
            let Some(answer) = ask(i, src.as_ref())? else {
                continue;
            };
            if f.deciding.is_none() {
                f.by_path |= src.by_path() && trust;
                let decides = match answer.opinion {
                    Opinion::Bad => true,
                    Opinion::Good => trust,
                    Opinion::Known | Opinion::Unknown => false,
                };
                if decides {
                    f.deciding = u16::try_from(i).ok();
                }
            }
            f.each[i] = Some(answer);
        }
        Some(f)
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
