//! Decision cache keyed by [`FileKey`].
//!
//! Allows stay until the key changes (any write changes it) or the cache is flushed by a rule or
//! mode change. Denies expire after a short TTL so that a newly added allow rule takes effect
//! even for a file whose deny is cached. When the bound is reached the cache is emptied: simple,
//! and a miss only costs one hash.

use crate::engine::Verdict;
use crate::file::FileKey;
use custos_event::Decision;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A cached result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The verdict computed for this content.
    pub verdict: Verdict,
    /// The content's SHA-256 (shared: a hit must not allocate).
    pub sha256: std::sync::Arc<str>,
    /// Every source's answer, for re-evaluating a path-dependent verdict for another path.
    pub findings: std::sync::Arc<crate::source::Findings>,
    /// The content's MD5, when it was computed (package trust needs it per path).
    pub md5: Option<[u8; 16]>,
    /// The policy generation it was computed under: a hit from another generation is ignored
    /// (its source indices may not be the ones in force).
    pub generation: u64,
    /// When it stops holding (an answer with a time limit went into it).
    pub until: Option<Instant>,
    /// The content is an ELF image ([`crate::file::is_image`]): a plain open of it is a load
    /// and gets this verdict; otherwise a plain open passes.
    pub image: bool,
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    map: HashMap<FileKey, (Cached, Instant)>,
    deny_ttl: Duration,
    max: usize,
}

impl Cache {
    /// An empty cache.
    pub fn new(deny_ttl: Duration, max: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            deny_ttl,
            max: max.max(1),
        }
    }

    /// Looks up a key; an expired deny is removed and is a miss.
    pub fn get(&mut self, key: &FileKey, now: Instant) -> Option<Cached> {
        let (c, at) = self.map.get(key)?;
        let expired = (c.verdict.decision == Decision::Deny || c.verdict.would_deny)
            && now.duration_since(*at) >= self.deny_ttl
            || c.until.is_some_and(|u| now >= u);
        if expired {
            self.map.remove(key);
            return None;
        }
        Some(c.clone())
    }

    /// Stores a result.
    pub fn insert(&mut self, key: FileKey, value: Cached, now: Instant) {
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.map.clear();
        }
        self.map.insert(key, (value, now));
    }

    /// Moves every time-limited entry past its limit (tests).
    #[cfg(test)]
    pub fn clear_expired_for_test(&mut self) {
        self.map.retain(|_, (c, _)| c.until.is_none());
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_event::Reason;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: 5,
            ctime_ns: 6,
        }
    }
    fn cached(decision: Decision) -> Cached {
        Cached {
            verdict: Verdict {
                decision,
                would_deny: false,
                reason: Reason::ModeDefault,
                rule_id: None,
                path_dependent: false,
                source: None,
            },
            sha256: "00".into(),
            findings: Default::default(),
            md5: None,
            generation: 0,
            until: None,
            image: true,
        }
    }

    #[test]
    fn allow_stays_deny_expires() {
        let mut c = Cache::new(Duration::from_millis(1500), 10);
        let t0 = Instant::now();
        c.insert(key(1), cached(Decision::Allow), t0);
        c.insert(key(2), cached(Decision::Deny), t0);
        let later = t0 + Duration::from_secs(2);
        assert!(c.get(&key(1), later).is_some());
        assert!(c.get(&key(2), t0 + Duration::from_millis(100)).is_some());
        assert!(c.get(&key(2), later).is_none());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn any_key_field_change_is_a_miss() {
        let mut c = Cache::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        c.insert(key(1), cached(Decision::Allow), t0);
        for k in [
            FileKey { size: 11, ..key(1) },
            FileKey {
                mtime_ns: 7,
                ..key(1)
            },
            FileKey {
                ctime_ns: 7,
                ..key(1)
            },
            FileKey { dev: 2, ..key(1) },
            key(3),
        ] {
            assert!(c.get(&k, t0).is_none(), "{k:?}");
        }
    }

    #[test]
    fn bounded() {
        let mut c = Cache::new(Duration::from_secs(1), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            c.insert(key(i), cached(Decision::Allow), t0);
        }
        assert_eq!(c.len(), 3);
        c.insert(key(99), cached(Decision::Allow), t0);
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.is_empty());
    }
}
