//! Typed custos configuration.
//!
//! Layers: built-in defaults < the TOML file (`/etc/custos/custos.toml` unless `--config`) <
//! command-line flags (applied by the binary). Every key is optional; an unknown key or a bad
//! value is an error that names the key.

use custos_event::Mode;
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod events;
mod files;
mod net;
mod reputation;
pub use events::{OutputConfig, OutputFormat, StoreConfig};
pub use files::{Access, AccessRuleConfig, FilesConfig};
pub use net::NetConfig;
pub use reputation::{HashlookupConfig, ReputationConfig, SourceName, YaraConfig};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/custos/custos.toml";

/// Errors loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, or a key is unknown or has the wrong type.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message, which names the key and the line.
        message: String,
    },
    /// A key parsed but its value is out of range.
    #[error("invalid config {path}: key `{key}`: {problem}")]
    Value {
        /// The config file (or `<defaults>`).
        path: PathBuf,
        /// The dotted key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The whole configuration, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Enforcement mode at start.
    pub mode: Mode,
    /// Control socket (root-only, 0600).
    pub socket: PathBuf,
    /// Persistent state: rules and later databases.
    pub state_dir: PathBuf,
    /// Event output: a file path (appended) or `-` for stdout. Format and rotation: `[output]`.
    pub events: String,
    /// Format and rotation of the `events` output.
    pub output: OutputConfig,
    /// The embedded event store.
    pub store: StoreConfig,
    /// How long an exec may be held before the mode's fallback answers it.
    pub deadline_ms: u64,
    /// The exec verdict loop.
    pub exec: ExecConfig,
    /// Telemetry sensors.
    pub telemetry: TelemetryConfig,
    /// Reputation sources.
    pub reputation: ReputationConfig,
    /// File events and file access rules.
    pub files: FilesConfig,
    /// The network sensor and network rules.
    pub net: NetConfig,
}

/// `[telemetry]`: event sensors besides the exec verdict loop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The eBPF process sensor: exec (path, argv, cwd), fork, thread, exit, image-load and
    /// injection events, the process table, and holds for execs fanotify cannot see
    /// (`exec.unseen`). If it cannot load, the agent runs without it and says why.
    pub process: bool,
    /// Also report every executable mapping (shared libraries). Many per process start.
    pub images: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            process: true,
            images: true,
        }
    }
}

/// `exec.unseen`: which execs that never reach fanotify (memfd, unwatched filesystems) the
/// eBPF sensor stops for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unseen {
    /// None: they run unjudged (still reported as process events).
    Off,
    /// `memfd_create` programs only.
    Memfd,
    /// Everything not on a watched filesystem, memfd included.
    Unwatched,
}

/// Filesystem types watched by default: local, and able to hold executable files.
pub const DEFAULT_WATCH_TYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "f2fs", "jfs", "reiserfs",
    "bcachefs", "zfs", "vfat", "exfat", "ntfs3", "squashfs", "erofs", "ramfs", "fuseblk",
];

/// `[exec]`: the fanotify exec verdict loop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// Mount points whose filesystems are watched. Empty (the default) means every mounted
    /// filesystem whose type is in `watch_types`, including ones mounted after start.
    pub watch: Vec<PathBuf>,
    /// Filesystem types watched when `watch` is empty.
    pub watch_types: Vec<String>,
    /// Decision worker threads (hashing). 0 means one per CPU, at least 2.
    pub workers: usize,
    /// How long a cached deny stays valid, so a new allow rule takes effect quickly.
    pub deny_cache_ms: u64,
    /// Upper bound on cached decisions; the cache is emptied when it is reached.
    pub cache_entries: usize,
    /// After an allow, tell the kernel to stop reporting execs of that file until it is written
    /// (fanotify ignore marks). Much faster; see docs/exec-control.md for the one race it has.
    pub kernel_cache: bool,
    /// Files larger than this many MiB are not hashed; the mode's fallback applies at once.
    pub max_hash_mb: u64,
    /// Execs fanotify cannot see that the eBPF sensor holds (SIGSTOP) for the same verdict.
    /// Needs `telemetry.process`.
    pub unseen: Unseen,
    /// In lockdown, also judge plain opens of ELF executables and shared objects (what `ld.so`
    /// and `dlopen` do), not only exec opens: an untrusted library does not load. Every first
    /// open of a file on a watched filesystem then goes to custos once (docs/exec-control.md).
    pub images: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Monitor,
            socket: PathBuf::from("/run/custos/custos.sock"),
            state_dir: PathBuf::from("/var/lib/custos"),
            events: "-".into(),
            output: OutputConfig::default(),
            store: StoreConfig::default(),
            deadline_ms: 2000,
            exec: ExecConfig::default(),
            telemetry: TelemetryConfig::default(),
            reputation: ReputationConfig::default(),
            files: FilesConfig::default(),
            net: NetConfig::default(),
        }
    }
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            watch: Vec::new(),
            watch_types: DEFAULT_WATCH_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            workers: 0,
            deny_cache_ms: 1500,
            cache_entries: 65_536,
            kernel_cache: true,
            max_hash_mb: 2048,
            unseen: Unseen::Unwatched,
            images: true,
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    let src = text.lines().nth(line - 1).unwrap_or("").trim();
                    format!("line {line}, column {col}: {} (in `{src}`)", e.message())
                }
                None => e.message().to_owned(),
            },
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Loads `explicit` if given (it must exist); otherwise [`DEFAULT_PATH`] if it exists,
    /// else the defaults.
    pub fn load_or_default(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => Config::load(p),
            None if Path::new(DEFAULT_PATH).exists() => Config::load(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default()),
        }
    }

    /// Checks ranges that the types cannot express.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key, problem: &str| ConfigError::Value {
            path: path.to_owned(),
            key,
            problem: problem.to_owned(),
        };
        if !(10..=60_000).contains(&self.deadline_ms) {
            return Err(bad("deadline_ms", "must be between 10 and 60000"));
        }
        if self.exec.deny_cache_ms > 2000 {
            return Err(bad("exec.deny_cache_ms", "must be at most 2000"));
        }
        if self.exec.workers > 256 {
            return Err(bad("exec.workers", "must be at most 256"));
        }
        if !(1..=1 << 20).contains(&self.exec.max_hash_mb) {
            return Err(bad("exec.max_hash_mb", "must be between 1 and 1048576"));
        }
        if self.exec.cache_entries == 0 {
            return Err(bad("exec.cache_entries", "must be at least 1"));
        }
        if self.events.is_empty() {
            return Err(bad("events", "must be a path or \"-\""));
        }
        for (key, p) in [("socket", &self.socket), ("state_dir", &self.state_dir)] {
            if !p.is_absolute() {
                return Err(bad(key, "must be an absolute path"));
            }
        }
        if self.exec.watch.is_empty() && self.exec.watch_types.is_empty() {
            return Err(bad(
                "exec.watch_types",
                "must name at least one type when exec.watch is empty",
            ));
        }
        self.reputation.validate(&bad)?;
        events::validate(&self.store, &self.output, &bad)?;
        files::validate(&self.files, &bad)?;
        net::validate(&self.net, &bad)?;
        if let Some(p) = self.exec.watch.iter().find(|p| !p.is_absolute()) {
            return Err(bad(
                "exec.watch",
                &format!("{} is not an absolute path", p.display()),
            ));
        }
        Ok(())
    }

    /// Worker count with `0` resolved to one per CPU (at least 2).
    pub fn workers(&self) -> usize {
        match self.exec.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("/t/custos.toml"))
    }

    #[test]
    fn empty_is_defaults() {
        assert_eq!(parse("").expect("parses"), Config::default());
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            mode = "lockdown"
            socket = "/tmp/c/s.sock"
            state_dir = "/tmp/c/state"
            events = "/tmp/c/events.json"
            deadline_ms = 150
            [exec]
            watch = ["/mnt/a", "/mnt/b"]
            workers = 3
            deny_cache_ms = 500
            kernel_cache = false
            images = false
            "#,
        )
        .expect("parses");
        assert_eq!(c.mode, Mode::Lockdown);
        assert_eq!(c.deadline_ms, 150);
        assert_eq!(c.exec.watch.len(), 2);
        assert_eq!(c.workers(), 3);
        assert_eq!(c.exec.cache_entries, 65_536);
        assert!(!c.exec.kernel_cache);
        assert!(!c.exec.images);
        assert!(Config::default().exec.images);
        let e = parse("[exec]\nimages = \"yes\"").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("images"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("mod = \"audit\"").unwrap_err().to_string();
        assert!(e.contains("line 1, column 1: unknown field `mod`"), "{e}");
        let e = parse("[exec]\nwatches = []").unwrap_err().to_string();
        assert!(e.contains("watches"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("mode = \"paranoid\"").unwrap_err().to_string();
        assert!(e.contains("paranoid"), "{e}");
        let e = parse("deadline_ms = \"fast\"").unwrap_err().to_string();
        assert!(e.contains("deadline_ms"), "{e}");
        let e = parse("deadline_ms = 0").unwrap_err().to_string();
        assert!(e.contains("`deadline_ms`"), "{e}");
        let e = parse("[exec]\nwatch = [\"relative\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exec.watch") && e.contains("relative"), "{e}");
        let e = parse("socket = \"x.sock\"").unwrap_err().to_string();
        assert!(e.contains("`socket`"), "{e}");
        let e = parse("[exec]\nwatch_types = []").unwrap_err().to_string();
        assert!(e.contains("`exec.watch_types`"), "{e}");
        // With explicit mount points the type list is not used.
        assert!(parse("[exec]\nwatch = [\"/mnt\"]\nwatch_types = []").is_ok());
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load_or_default(Some(Path::new("/nonexistent/c.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.toml"));
    }

    #[test]
    fn load_reads_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "mode = \"audit\"\n").expect("write");
        assert_eq!(Config::load(&p).expect("loads").mode, Mode::Audit);
    }

    #[test]
    fn store_and_output() {
        let d = Config::default();
        assert!(d.store.enabled);
        assert_eq!(d.store.path_in(Path::new("/s")), Path::new("/s/events.db"));
        assert_eq!(d.store.max_bytes(), Some(1 << 30));
        let c = parse(
            "[store]\nmax_age = \"12h\"\nmax_size_mb = 0\npath = \"/x/e.db\"\n\
             [output]\nformat = \"ocsf\"\nrotate_mb = 0\nkeep = 2",
        )
        .expect("parses");
        assert_eq!(
            c.store.max_age,
            Some(std::time::Duration::from_secs(43_200))
        );
        assert_eq!(c.store.max_bytes(), None);
        assert_eq!(c.store.path_in(Path::new("/s")), Path::new("/x/e.db"));
        assert_eq!(c.output.format, OutputFormat::Ocsf);
        assert_eq!((c.output.rotate_mb, c.output.keep), (0, 2));
        assert_eq!(
            parse("[store]\nmax_age = \"0\"")
                .expect("parses")
                .store
                .max_age,
            None
        );
        let e = parse("[store]\nmax_age = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"soon\" is not a duration") && e.contains("line 2"),
            "{e}"
        );
        let e = parse("[store]\nmax_size_mb = 1").unwrap_err().to_string();
        assert!(e.contains("`store.max_size_mb`"), "{e}");
        let e = parse("[output]\nformat = \"xml\"").unwrap_err().to_string();
        assert!(e.contains("unknown variant `xml`"), "{e}");
    }

    #[test]
    fn unseen_and_telemetry() {
        let d = Config::default();
        assert!(d.telemetry.process && d.telemetry.images);
        assert_eq!(d.exec.unseen, Unseen::Unwatched);
        let c = parse("[telemetry]\nimages = false\n[exec]\nunseen = \"memfd\"").expect("parses");
        assert_eq!(c.exec.unseen, Unseen::Memfd);
        assert!(!c.telemetry.images);
        let e = parse("[exec]\nunseen = \"all\"").unwrap_err().to_string();
        assert!(
            e.contains("unknown variant `all`") && e.contains("line 2"),
            "{e}"
        );
    }
}
