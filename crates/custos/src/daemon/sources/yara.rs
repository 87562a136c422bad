//! YARA as a reputation source: the rules directory compiled with yara-x at start and whenever
//! its files change. Files no earlier source decided are scanned once (the verdict is cached by
//! file key) from the bytes read for hashing, up to `reputation.yara.max_scan_mb`; a match
//! denies and names the rule. Rules that do not compile, or that match a program every start
//! needs, are refused and the previous rules stay.

use super::{chain, watch, Registry};
use crate::daemon::guard::essential_paths;
use custos_config::{Config, SourceName};
use custos_verdict::{Finding, Need, Source, Subject};
use custos_yara::{dir_fingerprint, Rules, Scanner, YaraError};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long a failed scan's "unknown" holds before the file is scanned again.
const RESCAN: Duration = Duration::from_secs(60);

/// Compiled rules as a [`Source`].
pub struct Yara {
    rules: Arc<Rules>,
    max_bytes: u64,
    timeout: Duration,
}

thread_local! {
    // A yara-x scanner costs ~0.3 ms to make and cannot move between threads: each hashing
    // thread keeps one, and makes a new one when the rules change.
    static SCANNER: RefCell<Option<Scanner>> = const { RefCell::new(None) };
}

impl Yara {
    fn scan(&self, data: &[u8]) -> Result<Vec<String>, YaraError> {
        SCANNER.with_borrow_mut(|slot| {
            let current = slot
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s.rules(), &self.rules));
            if !current {
                *slot = Some(Scanner::new(self.rules.clone()));
            }
            let scanner = slot.get_or_insert_with(|| Scanner::new(self.rules.clone()));
            let scan = std::panic::AssertUnwindSafe(|| scanner.scan(data, self.timeout));
            match std::panic::catch_unwind(scan) {
                Ok(found) => Ok(found?.iter().map(ToString::to_string).collect()),
                Err(panic) => {
                    // Do not scan with that scanner again; the source's caller reports it.
                    *slot = None;
                    std::panic::resume_unwind(panic)
                }
            }
        })
    }
}

impl Source for Yara {
    fn name(&self) -> &str {
        "yara"
    }

    fn need(&self, _path: Option<&str>) -> Need {
        Need {
            content_up_to: self.max_bytes,
            ..Need::default()
        }
    }

    fn judge(&self, s: &Subject<'_>) -> Finding {
        let Some(data) = s.content else {
            return Finding::unknown(format!(
                "not scanned: {} bytes, over the {}-byte limit",
                s.size, self.max_bytes
            ));
        };
        match self.scan(data) {
            Ok(found) if found.is_empty() => Finding::unknown("no rule matched".to_owned()),
            Ok(found) => Finding::bad(found.join(", ")),
            // A scan that timed out (a loaded machine) is tried again a minute later.
            Err(e) => Finding::unknown(format!("scan failed: {}", chain(e))).valid_for(RESCAN),
        }
    }
}

/// Compiles the rules and checks that none matches an essential program.
fn compile(dir: &Path, max_bytes: u64, timeout: Duration) -> Result<Yara, String> {
    let rules = Rules::compile_dir(dir).map_err(chain)?;
    let yara = Yara {
        rules: Arc::new(rules),
        max_bytes,
        timeout,
    };
    for path in essential_paths() {
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(found) = yara.scan(&data) {
            if !found.is_empty() {
                return Err(format!(
                    "rule {} matches {}, which every program start needs; refusing the rules",
                    found.join(", "),
                    path.display()
                ));
            }
        }
    }
    Ok(yara)
}

/// (Re)loads the rules directory; on failure the previous rules stay.
pub fn load(reg: &Registry, cfg: &Config) -> Result<(), String> {
    let y = &cfg.reputation.yara;
    let Some(dir) = &y.rules_dir else {
        let state = "off (no reputation.yara.rules_dir)".into();
        reg.install(SourceName::Yara, None, state);
        return Ok(());
    };
    let timeout = Duration::from_millis(y.timeout_ms);
    match compile(dir, y.max_scan_mb << 20, timeout) {
        Ok(yara) if yara.rules.is_empty() => {
            let state = format!("no rules in {}", dir.display());
            reg.install(SourceName::Yara, None, state);
            Ok(())
        }
        Ok(yara) => {
            let state = format!(
                "{} rules from {} file(s) in {}",
                yara.rules.rule_count(),
                yara.rules.sources().len(),
                dir.display()
            );
            tracing::info!("YARA rules loaded: {state}");
            reg.install(SourceName::Yara, Some(Arc::new(yara)), state);
            Ok(())
        }
        Err(e) => {
            reg.keep(SourceName::Yara, &e);
            Err(e)
        }
    }
}

/// Recompiles whenever the rule files change, until `stop`.
pub fn follow(reg: Arc<Registry>, cfg: Config, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let Some(dir) = cfg.reputation.yara.rules_dir.clone() else {
        return Ok(());
    };
    let at: PathBuf = dir.clone();
    watch::spawn(
        "custos-yara",
        stop,
        move || dir_fingerprint(&at).map_err(|e| e.to_string()),
        move || {
            let _ = load(&reg, &cfg);
        },
    )
}
