//! `[store]` and `[output]`: where events go besides the decision.

use crate::ConfigError;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[store]`: the embedded event store (SQLite, in the state dir by default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Keep every event in the store. Off: events only stream out.
    pub enabled: bool,
    /// The database file. Default: `STATE_DIR/events.db`.
    pub path: Option<PathBuf>,
    /// Events older than this are deleted ("30d", "12h"; "0" keeps them regardless of age).
    #[serde(deserialize_with = "duration")]
    pub max_age: Option<Duration>,
    /// The database file is kept under this size; the oldest events go first. 0: no bound.
    pub max_size_mb: u64,
    /// Events that may wait for the store's writer; more are counted as dropped.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: None,
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_size_mb: 1024,
            queue: 65_536,
        }
    }
}

impl StoreConfig {
    /// The database file for this state dir.
    pub fn path_in(&self, state_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| state_dir.join("events.db"))
    }

    /// The size bound in bytes, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        (self.max_size_mb > 0).then_some(self.max_size_mb << 20)
    }
}

/// Format of the event output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Elastic Common Schema, one JSON object per line.
    #[default]
    Ecs,
    /// OCSF 1.7 JSON, one object per line.
    Ocsf,
    /// Santa-style `key=value|…` lines (decisions, fork, exit, file writes).
    Santa,
}

/// `[output]`: the format and rotation of the `events` output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// ecs, ocsf or santa.
    pub format: OutputFormat,
    /// When the output file reaches this many MiB it is renamed to `FILE.1` (older ones
    /// shift up) and a new one started. 0: never. Not used for stdout.
    pub rotate_mb: u64,
    /// Rotated files kept (`FILE.1` … `FILE.N`).
    pub keep: u32,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            format: OutputFormat::Ecs,
            rotate_mb: 100,
            keep: 5,
        }
    }
}

/// `"30d"` → 30 days; `"0"` → none.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim() == "0" {
        return Ok(None);
    }
    humantime::parse_duration(&s).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration ({e}); e.g. \"30d\", \"12h\", \"0\""
        ))
    })
}

pub(crate) fn validate(
    store: &StoreConfig,
    output: &OutputConfig,
    bad: &dyn Fn(&'static str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if store.max_size_mb != 0 && store.max_size_mb < 4 {
        return Err(bad(
            "store.max_size_mb",
            "must be 0 (no bound) or at least 4",
        ));
    }
    if !(1..=1 << 24).contains(&store.queue) {
        return Err(bad("store.queue", "must be between 1 and 16777216"));
    }
    if store.path.as_ref().is_some_and(|p| !p.is_absolute()) {
        return Err(bad("store.path", "must be an absolute path"));
    }
    if !(1..=1000).contains(&output.keep) {
        return Err(bad("output.keep", "must be between 1 and 1000"));
    }
    Ok(())
}
