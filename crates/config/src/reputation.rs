//! `[reputation]`: what the world knows about files, consulted after the rules.

use super::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// A reputation source, by its name in `reputation.order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    /// Known-bad hash feeds (`custos db import-feed`).
    Feeds,
    /// Debian package trust (`reputation.dpkg`).
    Dpkg,
    /// The NIST NSRL set (`custos db import-nsrl`).
    Nsrl,
    /// YARA rules (`reputation.yara.rules_dir`).
    Yara,
    /// A CIRCL hashlookup service (`reputation.hashlookup.url`).
    Hashlookup,
}

impl SourceName {
    /// Every source, in the default order: local hash sets first (cheap), then the content
    /// scan, then the network.
    pub const ALL: [SourceName; 5] = [
        SourceName::Feeds,
        SourceName::Dpkg,
        SourceName::Nsrl,
        SourceName::Yara,
        SourceName::Hashlookup,
    ];

    /// The name used in config, events and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceName::Feeds => "feeds",
            SourceName::Dpkg => "dpkg",
            SourceName::Nsrl => "nsrl",
            SourceName::Yara => "yara",
            SourceName::Hashlookup => "hashlookup",
        }
    }
}

/// `[reputation]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// The sources asked, in order; the first with a definite answer (known bad, or trusted)
    /// decides and the rest are not asked. A source left out is never asked; one listed but not
    /// set up (nothing imported, no rules directory, no URL) is skipped.
    pub order: Vec<SourceName>,
    /// Debian package trust: a file at a path dpkg installed, whose MD5 still matches, is
    /// trusted (allowed in lockdown). Reloaded when dpkg's database changes.
    pub dpkg: bool,
    /// dpkg's per-package lists.
    pub dpkg_info: PathBuf,
    /// A file in the imported NSRL set is trusted (allowed in lockdown). Off by default: the
    /// NSRL lists known software, not only benign software; without trust it is shown as
    /// "known" and the next source is asked.
    pub nsrl_trust: bool,
    /// YARA content scanning.
    pub yara: YaraConfig,
    /// Remote hash lookup.
    pub hashlookup: HashlookupConfig,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            order: SourceName::ALL.to_vec(),
            dpkg: true,
            dpkg_info: PathBuf::from("/var/lib/dpkg/info"),
            nsrl_trust: false,
            yara: YaraConfig::default(),
            hashlookup: HashlookupConfig::default(),
        }
    }
}

/// `[reputation.yara]`: files no hash source decided are scanned once (the verdict is cached
/// by file key); a match denies with the rule's name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YaraConfig {
    /// Directory of `*.yar`/`*.yara` files, compiled at start and whenever they change. Unset:
    /// no scanning. Rules that do not compile are refused and the previous ones kept.
    pub rules_dir: Option<PathBuf>,
    /// Larger files are not scanned (they are still judged by every other source).
    pub max_scan_mb: u64,
    /// Longest scan of one file; past it the scan says nothing.
    pub timeout_ms: u64,
}

impl Default for YaraConfig {
    fn default() -> Self {
        YaraConfig {
            rules_dir: None,
            max_scan_mb: 16,
            timeout_ms: 1000,
        }
    }
}

/// `[reputation.hashlookup]`: unknown SHA-256s are looked up at a service speaking the CIRCL
/// hashlookup API, on the hashing pool, never for a cached decision.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashlookupConfig {
    /// Base URL, e.g. `https://hashlookup.circl.lu`. Unset: no lookups.
    pub url: Option<String>,
    /// Deadline for one lookup; past it (or when the service is down) the answer is "unknown"
    /// and the decision is not cached. Keep it below `deadline_ms`, or an exec waiting on a
    /// slow service gets the mode's fallback.
    pub timeout_ms: u64,
    /// How long a "known" or "malicious" answer is reused.
    pub ttl_known_s: u64,
    /// How long an "unknown" answer is reused.
    pub ttl_unknown_s: u64,
    /// Answers kept.
    pub cache_entries: usize,
    /// A file the service knows (and does not call malicious) is trusted in lockdown.
    pub trust_known: bool,
}

impl Default for HashlookupConfig {
    fn default() -> Self {
        HashlookupConfig {
            url: None,
            timeout_ms: 500,
            ttl_known_s: 24 * 3600,
            ttl_unknown_s: 3600,
            cache_entries: 100_000,
            trust_known: false,
        }
    }
}

impl ReputationConfig {
    /// Checks what the types cannot: no source twice, sane limits, a usable URL.
    pub(crate) fn validate(
        &self,
        bad: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        for (i, s) in self.order.iter().enumerate() {
            if self.order[..i].contains(s) {
                return Err(bad(
                    "reputation.order",
                    &format!("`{}` is listed twice", s.as_str()),
                ));
            }
        }
        // A scan or lookup may outlast the exec deadline: that exec gets the fallback, and
        // the verdict still computed is cached for the next one.
        let range = "must be between 1 and 60000";
        if !(1..=60_000).contains(&self.yara.timeout_ms) {
            return Err(bad("reputation.yara.timeout_ms", range));
        }
        if !(1..=60_000).contains(&self.hashlookup.timeout_ms) {
            return Err(bad("reputation.hashlookup.timeout_ms", range));
        }
        // Each hashing thread may hold one file this large in memory.
        if !(1..=256).contains(&self.yara.max_scan_mb) {
            return Err(bad(
                "reputation.yara.max_scan_mb",
                "must be between 1 and 256",
            ));
        }
        if self.hashlookup.cache_entries == 0 {
            return Err(bad(
                "reputation.hashlookup.cache_entries",
                "must be at least 1",
            ));
        }
        if let Some(u) = &self.hashlookup.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(
                    "reputation.hashlookup.url",
                    &format!("{u:?} must start with http:// or https://"),
                ));
            }
            if self.hashlookup.trust_known && !u.starts_with("https://") {
                return Err(bad(
                    "reputation.hashlookup.trust_known",
                    "needs an https:// url: over plain http anyone on the path could make any \
                     file trusted",
                ));
            }
        }
        if let Some(d) = &self.yara.rules_dir {
            if !d.is_absolute() {
                return Err(bad(
                    "reputation.yara.rules_dir",
                    &format!("{} is not an absolute path", d.display()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, SourceName};
    use std::path::Path;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("/t/c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn sources_in_order_with_their_settings() {
        let c = parse(
            r#"
            [reputation]
            order = ["yara", "feeds"]
            nsrl_trust = true
            [reputation.yara]
            rules_dir = "/etc/custos/yara"
            max_scan_mb = 4
            [reputation.hashlookup]
            url = "https://127.0.0.1:8080"
            trust_known = true
            "#,
        )
        .expect("parses");
        let r = &c.reputation;
        assert_eq!(r.order, vec![SourceName::Yara, SourceName::Feeds]);
        assert!(r.nsrl_trust && r.hashlookup.trust_known);
        assert_eq!(r.yara.max_scan_mb, 4);
        assert_eq!(r.hashlookup.timeout_ms, 500);
        assert_eq!(Config::default().reputation.order, SourceName::ALL.to_vec());
    }

    #[test]
    fn bad_reputation_settings_are_named() {
        let e = parse("[reputation]\norder = [\"feeds\", \"virustotal\"]").unwrap_err();
        assert!(e.contains("virustotal"), "{e}");
        let e = parse("[reputation]\norder = [\"feeds\", \"feeds\"]").unwrap_err();
        assert!(e.contains("reputation.order") && e.contains("twice"), "{e}");
        let e = parse("[reputation.hashlookup]\ntimeout_ms = 0").unwrap_err();
        assert!(e.contains("reputation.hashlookup.timeout_ms"), "{e}");
        let e = parse("[reputation.hashlookup]\nurl = \"ftp://x\"").unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e =
            parse("[reputation.hashlookup]\nurl = \"http://x\"\ntrust_known = true").unwrap_err();
        assert!(e.contains("trust_known") && e.contains("https"), "{e}");
        let e = parse("[reputation.yara]\nrules_dir = \"rules\"").unwrap_err();
        assert!(e.contains("reputation.yara.rules_dir"), "{e}");
    }
}
