//! Remote lookup as a reputation source: SHA-256s no earlier source decided are looked up at a
//! service speaking the CIRCL hashlookup API, on the hashing pool (never for a cached
//! decision), within `reputation.hashlookup.timeout_ms`. Answers are cached by the client with
//! their expiry and saved in the state dir across restarts; a service that is down or slow
//! answers "unknown", and that verdict is not cached.

use super::{chain, Registry};
use crate::daemon::guard::essential_paths;
use custos_config::{Config, SourceName};
use custos_reputation::hashlookup::{Client, Config as ClientConfig, Lookup, Sha256};
use custos_verdict::{sha256_hex, Finding, Need, Source, Subject};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hashlookup client as a [`Source`].
pub struct Remote {
    client: Client,
    trust_known: bool,
    ttl_known: Duration,
    ttl_unknown: Duration,
    /// Programs every start needs: a "malicious" answer for them is not believed (it would
    /// stop every program).
    essentials: HashSet<Sha256>,
}

impl Source for Remote {
    fn name(&self) -> &str {
        "hashlookup"
    }

    fn need(&self, _path: Option<&str>) -> Need {
        Need::default()
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        let Some(sha) = s.sha256_bytes() else {
            return Finding::unknown(None);
        };
        // Answers hold as long as the client caches them; a failure is retried soon.
        let (known, unknown) = (self.ttl_known, self.ttl_unknown);
        match self.client.lookup(&sha) {
            Lookup::Malicious { detail } if self.essentials.contains(&sha) => Finding::unknown(
                format!("called malicious ({detail}), not believed: every program start needs it"),
            )
            .valid_for(known),
            Lookup::Malicious { detail } => {
                Finding::bad(format!("known malicious: {detail}")).valid_for(known)
            }
            Lookup::Known { trust, detail } => {
                let t = trust.map(|t| format!(", trust {t}")).unwrap_or_default();
                let why = format!("known file{t}: {detail}");
                let f = if self.trust_known {
                    Finding::good(why)
                } else {
                    Finding::known(why)
                };
                f.valid_for(known)
            }
            Lookup::Unknown => {
                Finding::unknown("not known to the service".to_owned()).valid_for(unknown)
            }
            Lookup::Failed { error } => Finding::failed(format!("lookup failed: {error}")),
        }
    }
}

/// Where answers are kept across restarts.
fn cache_file(state_dir: &Path) -> PathBuf {
    state_dir.join("hashlookup-cache.jsonl")
}

fn essentials() -> HashSet<Sha256> {
    essential_paths()
        .filter_map(|p| {
            let mut f = std::fs::File::open(p).ok()?;
            let mut b = [0u8; 32];
            hex::decode_to_slice(sha256_hex(&mut f).ok()?, &mut b).ok()?;
            Some(b)
        })
        .collect()
}

/// Sets the client up from the config (no network yet) and loads the saved answers. Returns
/// the client to save answers from, if one is in force.
pub fn load(reg: &Registry, cfg: &Config) -> Option<Arc<Remote>> {
    let h = &cfg.reputation.hashlookup;
    let Some(url) = &h.url else {
        let state = "off (no reputation.hashlookup.url)".into();
        reg.install(SourceName::Hashlookup, None, state);
        return None;
    };
    let client = Client::new(ClientConfig {
        base_url: url.clone(),
        timeout: Duration::from_millis(h.timeout_ms),
        ttl_known: Duration::from_secs(h.ttl_known_s),
        ttl_unknown: Duration::from_secs(h.ttl_unknown_s),
        max_entries: h.cache_entries,
        ..ClientConfig::default()
    });
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            reg.keep(SourceName::Hashlookup, &chain(e));
            return None;
        }
    };
    let saved = match client.load_cache(&cache_file(&cfg.state_dir)) {
        Ok(n) => format!("{} saved answers", n.loaded),
        Err(e) => format!("saved answers not loaded: {}", chain(e)),
    };
    let remote = Arc::new(Remote {
        client,
        trust_known: h.trust_known,
        ttl_known: Duration::from_secs(h.ttl_known_s),
        ttl_unknown: Duration::from_secs(h.ttl_unknown_s),
        essentials: essentials(),
    });
    let state = format!("{url} ({} ms deadline, {saved})", h.timeout_ms);
    reg.install(SourceName::Hashlookup, Some(remote.clone()), state);
    Some(remote)
}

/// Saves the answers to the state dir (atomically); a failure is only logged.
pub fn save(remote: &Remote, state_dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    // The state dir only exists once something was stored in it.
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir);
    if let Err(e) = made {
        tracing::warn!(
            "hashlookup answers not saved: cannot create {}: {e}",
            state_dir.display()
        );
        return;
    }
    if let Err(e) = remote.client.save_cache(&cache_file(state_dir)) {
        tracing::warn!("hashlookup answers not saved: {}", chain(e));
    }
}

/// Saves the answers every ten minutes until `stop` (the agent saves them once more as it
/// stops).
pub fn follow(
    remote: Arc<Remote>,
    state_dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("custos-hashlookup".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                if last.elapsed() >= Duration::from_secs(600) {
                    save(&remote, &state_dir);
                    last = Instant::now();
                }
            }
        })?;
    Ok(())
}
