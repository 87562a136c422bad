//! `custos db …`: importing and listing reputation databases.

use crate::cli::DbCmd;
use crate::commands::{connect, print_json};
use crate::daemon;
use anyhow::{bail, Context};
use custos_config::Config;
use custos_control::Request;
use custos_reputation::nsrl::RejectReason;
use custos_reputation::{DigestKind, ImportOptions, NsrlError, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs one `custos db` command.
pub fn db(cfg: &Config, cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::ImportFeed { file, name } => {
            let (digests, parsed) = custos_reputation::parse_feed(&file)?;
            if let Some(p) = daemon::essential_in(&digests) {
                bail!(
                    "{} lists {p}, which every program start needs; refusing to import it",
                    file.display()
                );
            }
            let info = custos_reputation::import_feed(&cfg.state_dir, &name, &file)
                .with_context(|| format!("cannot import {}", file.display()))?;
            println!(
                "imported feed `{}`: {} rows, {} rejected; {} MD5, {} SHA-1, {} SHA-256 digests \
                 ({} duplicates dropped)",
                info.name,
                info.rows,
                info.rejected,
                info.unique[0],
                info.unique[1],
                info.unique[2],
                info.duplicates
            );
            for (line, why) in &parsed.reasons {
                println!("  rejected line {line}: {why}");
            }
            match connect(cfg) {
                Ok(mut c) => {
                    c.call(&Request::ReloadReputation {})?;
                    println!("the running agent now uses it");
                }
                Err(_) => println!("the agent is not running; it loads the feed at start"),
            }
            Ok(())
        }
        DbCmd::ImportNsrl {
            file,
            digest,
            memory,
        } => import_nsrl(cfg, &file, digest, memory),
        DbCmd::List { json } => {
            let feeds = custos_reputation::list(&cfg.state_dir)?;
            let nsrl = custos_reputation::nsrl::read_info(&cfg.state_dir)?;
            if json {
                return print_json(&serde_json::json!({ "feeds": feeds, "nsrl": nsrl }));
            }
            if feeds.is_empty() {
                println!("no feeds imported (custos db import-feed FILE --name NAME)");
            }
            for f in feeds {
                println!(
                    "{:<20} feed  {:>9} MD5 {:>9} SHA-1 {:>9} SHA-256  imported {}  from {}",
                    f.name, f.unique[0], f.unique[1], f.unique[2], f.imported_at, f.source
                );
            }
            match nsrl {
                Some(n) => println!(
                    "{:<20} nsrl  {} {} digests, {}  imported {}  from {} ({})",
                    "nsrl",
                    thousands(n.unique),
                    n.digest,
                    size(n.size),
                    n.imported_at,
                    n.source,
                    n.format
                ),
                None => println!("no NSRL imported (custos db import-nsrl FILE)"),
            }
            Ok(())
        }
    }
}

/// `custos db import-nsrl`: a progress bar on stderr (hidden when it is not a terminal), the
/// summary on stdout. SIGINT/SIGTERM cancel cleanly: the previous set stays.
fn import_nsrl(
    cfg: &Config,
    file: &Path,
    digest: Option<DigestKind>,
    memory_mib: u64,
) -> anyhow::Result<()> {
    let opts = ImportOptions {
        digest,
        memory: usize::try_from(memory_mib << 20).context("--memory is too large")?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut hooks = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        hooks.push(signal_hook::flag::register(sig, Arc::clone(&stop))?);
    }
    let bar = ProgressBar::new(0);
    let style =
        |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut phase = None;
    let result = custos_reputation::import_nsrl(&cfg.state_dir, file, &opts, &mut |p| {
        if phase != Some(p.phase) {
            phase = Some(p.phase);
            bar.reset();
            let (template, msg) = match p.phase {
                Phase::Reading => (
                    "{spinner} reading  [{bar:30}] {percent:>3}% {msg} ({elapsed})",
                    "reading",
                ),
                Phase::Merging => (
                    "{spinner} merging  [{bar:30}] {percent:>3}% {msg} ({elapsed})",
                    "merging",
                ),
                Phase::Verifying => ("{spinner} checking the new set {msg} ({elapsed})", ""),
            };
            bar.set_style(style(template));
            bar.set_message(msg);
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        match p.total {
            Some(t) => bar.set_length(t.max(p.done)),
            None => bar.set_length(p.done),
        }
        bar.set_position(p.done);
        bar.set_message(match p.phase {
            Phase::Reading => format!("{} rows", thousands(p.rows)),
            Phase::Merging => format!("{} digests", thousands(p.done)),
            Phase::Verifying => String::new(),
        });
        !stop.load(Ordering::Relaxed)
    });
    bar.finish_and_clear();
    for h in hooks {
        signal_hook::low_level::unregister(h);
    }
    let info = match result {
        Ok(i) => i,
        Err(e @ NsrlError::Cancelled { .. }) => {
            bail!("{e}; the previous NSRL set (if any) stays in force")
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot import {}; the previous NSRL set (if any) stays in force",
                file.display()
            )))
        }
    };
    let table = info
        .table
        .as_deref()
        .map(|t| format!(", table {t}"))
        .unwrap_or_default();
    println!(
        "imported NSRL from {} ({}{table}) as a {} set",
        info.source, info.format, info.digest
    );
    println!("  rows read    {:>15}", thousands(info.rows));
    println!("  unique       {:>15}", thousands(info.unique));
    println!("  duplicates   {:>15}", thousands(info.duplicates));
    let reasons: Vec<String> = info
        .rejected_by_reason
        .iter()
        .map(|(r, n)| format!("{} {}", reason_text(*r), thousands(*n)))
        .collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!("  ({})", reasons.join(", "))
    };
    println!("  rejected     {:>15}{reasons}", thousands(info.rejected));
    for r in &info.rejected_examples {
        println!(
            "    {}: {}: {}",
            info.at(r.at),
            reason_text(r.reason),
            r.detail
        );
    }
    println!(
        "  set          {:>15}  {}",
        size(info.size),
        custos_reputation::nsrl::set_path(&cfg.state_dir).display()
    );
    println!("  time         {:>13.1} s", info.seconds);
    match connect(cfg) {
        Ok(mut c) => {
            c.call(&Request::ReloadReputation {})?;
            println!("the running agent now uses it");
        }
        Err(_) => println!("the agent is not running; it loads the set at start"),
    }
    Ok(())
}

fn reason_text(r: RejectReason) -> &'static str {
    match r {
        RejectReason::Empty => "empty",
        RejectReason::BadHex => "bad hex",
        RejectReason::WrongLength => "wrong length",
        RejectReason::NotText => "not text",
        RejectReason::WrongFields => "wrong field count",
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units, one decimal.
fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_000_000), "200,000,000");
        assert_eq!(size(40), "40 B");
        assert_eq!(size(6_400_000_040), "6.0 GiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
