//! The answer cache: bounded, expiring, evicting the entry closest to expiry; and its file
//! (JSON lines, replaced atomically) so answers survive a restart.

use super::{later, lock, parse_sha256, unix_ms, Client, ClientError, LoadSummary, Lookup, Sha256};
use crate::atomic;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug)]
struct Entry {
    lookup: Lookup,
    expires: Instant,
    seq: u64,
}

/// Answers by digest, bounded; `by_expiry` orders them for eviction (expired ones first).
#[derive(Debug)]
pub(super) struct Cache {
    map: HashMap<Sha256, Entry>,
    by_expiry: BTreeMap<(Instant, u64), Sha256>,
    seq: u64,
    max: usize,
}

impl Cache {
    pub(super) fn new(max: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            by_expiry: BTreeMap::new(),
            seq: 0,
            max,
        }
    }

    /// Entries held (expired ones not yet dropped included).
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&mut self, key: &Sha256, now: Instant) -> Option<Lookup> {
        match self.map.get(key) {
            Some(e) if e.expires > now => Some(e.lookup.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn insert(&mut self, key: Sha256, lookup: Lookup, expires: Instant) {
        if self.max == 0 {
            return;
        }
        self.remove(&key);
        while self.map.len() >= self.max {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        self.seq += 1;
        self.by_expiry.insert((expires, self.seq), key);
        let seq = self.seq;
        self.map.insert(
            key,
            Entry {
                lookup,
                expires,
                seq,
            },
        );
    }

    fn remove(&mut self, key: &Sha256) {
        if let Some(e) = self.map.remove(key) {
            self.by_expiry.remove(&(e.expires, e.seq));
        }
    }
}

pub(super) const CACHE_FORMAT: &str = "custos-hashlookup-cache-1";

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    format: String,
    /// The request prefix (`{base_url}/lookup/sha256/`) the answers came from.
    service: String,
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    sha256: String,
    /// Wall-clock expiry, Unix milliseconds.
    expires_ms: u64,
    #[serde(flatten)]
    answer: Answer,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "lowercase")]
enum Answer {
    Malicious { detail: String },
    Known { trust: Option<u8>, detail: String },
    Unknown,
}

impl Answer {
    fn from_lookup(l: &Lookup) -> Option<Answer> {
        Some(match l {
            Lookup::Malicious { detail } => Answer::Malicious {
                detail: detail.clone(),
            },
            Lookup::Known { trust, detail } => Answer::Known {
                trust: *trust,
                detail: detail.clone(),
            },
            Lookup::Unknown => Answer::Unknown,
            Lookup::Failed { .. } => return None,
        })
    }

    fn into_lookup(self) -> Lookup {
        match self {
            Answer::Malicious { detail } => Lookup::Malicious { detail },
            Answer::Known { trust, detail } => Lookup::Known { trust, detail },
            Answer::Unknown => Lookup::Unknown,
        }
    }
}

impl Client {
    /// Writes the unexpired answers to `path` (JSON lines, replaced atomically), returning how
    /// many. The first line names the service, so a cache never answers for another one.
    pub fn save_cache(&self, path: &Path) -> Result<usize, ClientError> {
        let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
        let lines: Vec<CacheLine> = {
            let cache = lock(&self.cache);
            let live = cache.map.iter().filter(|(_, e)| e.expires > now);
            live.filter_map(|(key, e)| {
                let left = e.expires.saturating_duration_since(now).as_millis();
                Some(CacheLine {
                    sha256: hex::encode(key),
                    expires_ms: wall.saturating_add(u64::try_from(left).unwrap_or(u64::MAX)),
                    answer: Answer::from_lookup(&e.lookup)?,
                })
            })
            .collect()
        };
        let header = CacheHeader {
            format: CACHE_FORMAT.to_owned(),
            service: self.prefix.clone(),
        };
        atomic::write_file(path, |w| {
            serde_json::to_writer(&mut *w, &header)?;
            w.write_all(b"\n")?;
            for line in &lines {
                serde_json::to_writer(&mut *w, line)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
        Ok(lines.len())
    }

    /// Adds the unexpired answers of a file written by [`Client::save_cache`] to the cache.
    /// A missing file, or one saved for another service, adds nothing. Expiry is capped at the
    /// configured TTLs, so a wrong wall clock at save time cannot pin an answer.
    pub fn load_cache(&self, path: &Path) -> Result<LoadSummary, ClientError> {
        let io = |op| {
            let path = path.to_owned();
            move |source| ClientError::Io { op, path, source }
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadSummary::default()),
            Err(e) => return Err(io("cannot open")(e)),
        };
        let mut lines = BufReader::new(file).lines();
        let first = lines.next().transpose().map_err(io("cannot read"))?;
        let header: CacheHeader = first
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
            .filter(|h: &CacheHeader| h.format == CACHE_FORMAT)
            .ok_or_else(|| ClientError::CacheFormat {
                path: path.to_owned(),
                reason: format!("first line is not a {CACHE_FORMAT} header"),
            })?;
        let mut summary = LoadSummary::default();
        if header.service != self.prefix {
            return Ok(summary);
        }
        let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
        for line in lines {
            let line = line.map_err(io("cannot read"))?;
            let Some((key, entry)) = serde_json::from_str::<CacheLine>(&line)
                .ok()
                .and_then(|l| Some((parse_sha256(&l.sha256).ok()?, l)))
            else {
                summary.rejected += 1;
                continue;
            };
            if entry.expires_ms <= wall {
                summary.expired += 1;
                continue;
            }
            let lookup = entry.answer.into_lookup();
            let cap = match lookup {
                Lookup::Unknown => self.config.ttl_unknown,
                _ => self.config.ttl_known,
            };
            let left = Duration::from_millis(entry.expires_ms - wall).min(cap);
            lock(&self.cache).insert(key, lookup, later(now, left));
            summary.loaded += 1;
        }
        Ok(summary)
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
