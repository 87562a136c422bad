//! Remote hash reputation: an optional lookup of SHA-256 digests against an HTTP service
//! speaking the CIRCL hashlookup API, with a hard deadline per lookup, a bounded cache of
//! answers that expire, and a circuit breaker so a dead service costs one deadline per back-off
//! window instead of one per new file. Callers on a hot path use [`Client::cached`], which
//! never touches the network.
//!
//! # The API, as its sources describe it
//! - `GET {base}/lookup/sha256/{hex}` answers JSON. **200**: the hash is in at least one of the
//!   service's databases; the body is one flat record (`FileName`, `FileSize`, `MD5`, `SHA-1`,
//!   `SHA-256`, `source`, `db`, nested `ProductCode`/`OpSystemCode`, `parents`, `children`,
//!   `hashlookup:trust`, …). **404**: in none, body `{"message": "Non existing SHA-256",
//!   "query": …}`. **400**: not a hex digest of the right length. Sources: adulau/hashlookup-server
//!   `bin/server.py` (the md5/sha1 handlers: same 400/404 bodies; the key is upper-cased before
//!   the database lookup, so the case of the hex in the URL does not matter: we send lowercase)
//!   and its README "API and HTTP return codes"; the OpenAPI-generated client docs for
//!   `getLookupSha256` (200 / 400 "SHA-256 value incorrect, expecting a SHA-256 value in hex
//!   format" / 404 "Non existing SHA-256").
//! - `hashlookup:trust` is 0–100: 50 no opinion, lower less trust, higher seen in several sources
//!   (<https://www.circl.lu/services/hashlookup/>).
//! - `KnownMalicious` is the "source of the hashlookup record if it's a known malicious file"
//!   (MISP/misp-objects `objects/hashlookup/definition.json`). Clients in the wild meet it as a
//!   string (`"malshare.com"`) and as a list of source names, on records that also carry
//!   `hashlookup:trust: 100` — so any non-empty `KnownMalicious` wins over trust.
//! - The service says it is not a database of malicious or benign files but of *known* files:
//!   [`Lookup::Known`] is context (a published file), not a clean bill.

mod answer;
mod cache;

use crate::atomic;
use answer::{clean, interpret};
use cache::Cache;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A SHA-256 digest.
pub type Sha256 = [u8; 32];

/// The public CIRCL instance (needs the crate's `https` feature).
pub const CIRCL_BASE_URL: &str = "https://hashlookup.circl.lu";

/// Settings of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The service, `http://host[:port][/prefix]` (or `https://` with the `https` feature);
    /// requests go to `{base_url}/lookup/sha256/{hex}`.
    pub base_url: String,
    /// Deadline of one lookup, end to end: DNS, connect, request, headers and body.
    pub timeout: Duration,
    /// How long a known or malicious answer is reused.
    pub ttl_known: Duration,
    /// How long a "not in the service" answer is reused (shorter: the service keeps growing).
    pub ttl_unknown: Duration,
    /// Most answers kept; when full, the entry closest to expiry goes first. Zero: no cache.
    pub max_entries: usize,
    /// After a failed lookup, skip the service this long (then let one probe through).
    /// Zero: retry on the next lookup.
    pub backoff: Duration,
    /// Largest answer body read, in bytes; a longer one is a failure.
    pub max_body: u64,
    /// HTTP proxy (`http://host:port`). The environment's proxy variables are not read.
    pub proxy: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            base_url: CIRCL_BASE_URL.to_owned(),
            timeout: Duration::from_millis(500),
            ttl_known: Duration::from_secs(24 * 3600),
            ttl_unknown: Duration::from_secs(3600),
            max_entries: 32_768,
            backoff: Duration::from_secs(30),
            max_body: 1 << 20,
            proxy: None,
        }
    }
}

/// What the service said about a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A record with a non-empty `KnownMalicious`.
    Malicious {
        /// The sources named there, and what the record says the file is.
        detail: String,
    },
    /// A record without `KnownMalicious`: a known, published file.
    Known {
        /// `hashlookup:trust` (0–100, 50 = no opinion) when present and in range.
        trust: Option<u8>,
        /// What the record says the file is (`FileName`, `source`, `db`, product).
        detail: String,
    },
    /// The service has no record of the hash (404).
    Unknown,
    /// No usable answer: invalid hash, service skipped, down, slow, or answering garbage.
    /// Never cached.
    Failed {
        /// What went wrong.
        error: LookupError,
    },
}

impl Lookup {
    /// Whether this is a [`Lookup::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Lookup::Failed { .. })
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Malicious { detail } => write!(f, "known malicious ({detail})"),
            Lookup::Known {
                trust: Some(t),
                detail,
            } => write!(f, "known, trust {t} ({detail})"),
            Lookup::Known {
                trust: None,
                detail,
            } => write!(f, "known ({detail})"),
            Lookup::Unknown => f.write_str("unknown to the service"),
            Lookup::Failed { error } => write!(f, "lookup failed: {error}"),
        }
    }
}

/// Why a lookup gave no answer. Cloneable, so it can travel inside [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The digest is not 64 hex digits; nothing was sent.
    #[error("invalid SHA-256 {hash:?}: {reason}")]
    InvalidHash {
        /// The text given (shortened).
        hash: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The circuit breaker is open after a failure, or its one probe is in flight.
    #[error(
        "reputation service unavailable, retry after {retry_after:.1?} (last error: {last_error})"
    )]
    Unavailable {
        /// Time left before a probe is allowed (a probe in flight: the deadline).
        retry_after: Duration,
        /// The failure that opened the breaker.
        last_error: String,
    },
    /// No complete answer within the deadline.
    #[error("{url}: no answer within {after:?}")]
    Timeout {
        /// The request.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// Connection refused, name not resolved, reset, TLS or protocol error.
    #[error("{url}: {reason}")]
    Transport {
        /// The request.
        url: String,
        /// The HTTP client's message.
        reason: String,
    },
    /// A status other than 200 or 404.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The request.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is longer than [`Config::max_body`].
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge {
        /// The request.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The body is not JSON.
    #[error("{url}: answer is not JSON: {reason}")]
    BadJson {
        /// The request.
        url: String,
        /// The parser's message.
        reason: String,
    },
    /// JSON, but not a hashlookup answer (wrong shape, other hash, HTML 404 of a wrong base URL).
    #[error("{url}: not a hashlookup answer: {reason}")]
    BadAnswer {
        /// The request.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Errors building a [`Client`] or reading and writing its cache file.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A [`Config`] field is unusable.
    #[error("hashlookup config: {field}: {reason}")]
    BadConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// I/O on the cache file.
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
    /// The cache file is not one written by [`Client::save_cache`].
    #[error("{path}: not a hashlookup cache file: {reason}")]
    CacheFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<atomic::IoFail> for ClientError {
    fn from(e: atomic::IoFail) -> ClientError {
        ClientError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// Counters since the client was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that gave no usable answer.
    pub failures: u64,
    /// Lookups not sent because the breaker was open.
    pub skipped: u64,
}

/// What [`Client::load_cache`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Answers now in the cache.
    pub loaded: u64,
    /// Answers dropped as expired.
    pub expired: u64,
    /// Lines that could not be read.
    pub rejected: u64,
}

/// A hashlookup client: `Send + Sync`, one per process, shared by the worker threads.
/// No lock is held during a request; two threads asking for the same new hash at once may
/// both send a request.
pub struct Client {
    agent: ureq::Agent,
    /// `{base_url}/lookup/sha256/`.
    prefix: String,
    config: Config,
    cache: Mutex<Cache>,
    breaker: Mutex<Breaker>,
    cache_hits: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("prefix", &self.prefix)
            .field("cached", &self.cache_len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks `config` and builds the client. Nothing is sent yet.
    pub fn new(config: Config) -> Result<Client, ClientError> {
        let bad = |field, reason: &str| {
            Err(ClientError::BadConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        let base = config.base_url.trim_end_matches('/');
        let rest = if let Some(r) = base.strip_prefix("http://") {
            r
        } else if let Some(r) = base.strip_prefix("https://") {
            if !cfg!(feature = "https") {
                return bad(
                    "base_url",
                    "https needs custos-reputation built with the `https` feature",
                );
            }
            r
        } else {
            return bad("base_url", "must start with http:// or https://");
        };
        if rest.is_empty() || rest.starts_with('/') {
            return bad("base_url", "has no host");
        }
        if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("base_url", "must not contain a query, fragment or spaces");
        }
        if config.timeout.is_zero() {
            return bad("timeout", "must be above zero");
        }
        let proxy = match &config.proxy {
            None => None,
            Some(p) => match ureq::Proxy::new(p) {
                Ok(p) => Some(p),
                Err(e) => return bad("proxy", &e.to_string()),
            },
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            // The API does not redirect: a 3xx means a wrong base_url and is reported as such.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(proxy)
            .user_agent(concat!("custos/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            prefix: format!("{base}/lookup/sha256/"),
            cache: Mutex::new(Cache::new(config.max_entries)),
            breaker: Mutex::new(Breaker {
                gate: Gate::Closed,
                last_error: String::new(),
            }),
            config,
            cache_hits: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Looks up a hex SHA-256 (either case): the cache, else the service within
    /// [`Config::timeout`]. An invalid digest is [`LookupError::InvalidHash`], sent nowhere.
    pub fn lookup_sha256(&self, sha256_hex: &str) -> Lookup {
        match parse_sha256(sha256_hex) {
            Ok(d) => self.lookup(&d),
            Err(error) => Lookup::Failed { error },
        }
    }

    /// Looks up a digest: the cache, else the service within [`Config::timeout`]. Answers
    /// are cached; failures are not, but open the breaker for [`Config::backoff`].
    pub fn lookup(&self, sha256: &Sha256) -> Lookup {
        if let Some(hit) = self.cached(sha256) {
            return hit;
        }
        if let Err(error) = self.admit() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Lookup::Failed { error };
        }
        let mut attempt = Attempt {
            client: self,
            settled: false,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch(&hex::encode(sha256));
        attempt.settle(result.as_ref().err());
        match result {
            Ok(answer) => {
                let ttl = match answer {
                    Lookup::Unknown => self.config.ttl_unknown,
                    _ => self.config.ttl_known,
                };
                let now = Instant::now();
                lock(&self.cache).insert(*sha256, answer.clone(), later(now, ttl));
                answer
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Lookup::Failed { error }
            }
        }
    }

    /// The cached answer for a hex SHA-256, if any and not expired; never sends anything.
    /// An invalid digest has none.
    pub fn cached_only(&self, sha256_hex: &str) -> Option<Lookup> {
        self.cached(&parse_sha256(sha256_hex).ok()?)
    }

    /// The cached answer for a digest, if any and not expired; never sends anything.
    pub fn cached(&self, sha256: &Sha256) -> Option<Lookup> {
        let hit = lock(&self.cache).get(sha256, Instant::now());
        if hit.is_some() {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Answers in the cache (expired ones not yet dropped included).
    pub fn cache_len(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        *lock(&self.cache) = Cache::new(self.config.max_entries);
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> Stats {
        Stats {
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// One request; any non-answer is an error.
    fn fetch(&self, hex: &str) -> Result<Lookup, LookupError> {
        let url = format!("{}{hex}", self.prefix);
        let mut response = self
            .agent
            .get(&url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.transport_error(&url, e))?;
        let status = response.status().as_u16();
        if status != 200 && status != 404 {
            return Err(LookupError::Status { url, status });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.config.max_body)
            .read_to_vec()
            .map_err(|e| self.transport_error(&url, e))?;
        interpret(&url, hex, status, &body)
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> LookupError {
        let url = url.to_owned();
        match e {
            ureq::Error::Timeout(_) => LookupError::Timeout {
                url,
                after: self.config.timeout,
            },
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                LookupError::Timeout {
                    url,
                    after: self.config.timeout,
                }
            }
            ureq::Error::BodyExceedsLimit(limit) => LookupError::TooLarge { url, limit },
            other => LookupError::Transport {
                url,
                reason: other.to_string(),
            },
        }
    }

    /// Lets a request through unless the breaker is open or probing.
    fn admit(&self) -> Result<(), LookupError> {
        let now = Instant::now();
        let mut b = lock(&self.breaker);
        let retry_after = match b.gate {
            Gate::Closed => return Ok(()),
            Gate::Open { until } if now < until => until - now,
            Gate::Open { .. } => {
                b.gate = Gate::Probing;
                return Ok(());
            }
            Gate::Probing => self.config.timeout,
        };
        Err(LookupError::Unavailable {
            retry_after,
            last_error: b.last_error.clone(),
        })
    }

    fn settle(&self, error: Option<String>) {
        let mut b = lock(&self.breaker);
        match error {
            None => b.gate = Gate::Closed,
            Some(e) => {
                b.gate = Gate::Open {
                    until: later(Instant::now(), self.config.backoff),
                };
                b.last_error = e;
            }
        }
    }
}

/// Parses 64 hex digits (either case) into a digest.
pub fn parse_sha256(hex: &str) -> Result<Sha256, LookupError> {
    let bad = |reason| {
        Err(LookupError::InvalidHash {
            hash: clean(hex, 80),
            reason,
        })
    };
    if hex.len() != 64 {
        return bad("expected 64 hex digits");
    }
    let mut out = [0u8; 32];
    match hex::decode_to_slice(hex, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => bad("not hexadecimal"),
    }
}

/// `now + d`, saturating far in the future instead of panicking on overflow.
fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

fn unix_ms(t: SystemTime) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closed: requests go out. Open: skipped until `until`. Probing: one request is testing the
/// service again; others are skipped until it settles.
#[derive(Debug)]
enum Gate {
    Closed,
    Open { until: Instant },
    Probing,
}

#[derive(Debug)]
struct Breaker {
    gate: Gate,
    last_error: String,
}

/// A request let through by the breaker; settles it as failed if dropped unsettled, so a
/// probe can never leave the breaker stuck in `Probing`.
struct Attempt<'a> {
    client: &'a Client,
    settled: bool,
}

impl Attempt<'_> {
    fn settle(&mut self, error: Option<&LookupError>) {
        self.settled = true;
        self.client.settle(error.map(ToString::to_string));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.client.settle(Some("lookup abandoned".to_owned()));
        }
    }
}

#[cfg(test)]
mod test_server;
#[cfg(test)]
#[path = "hashlookup_tests.rs"]
mod tests;
