//! `custos db …`: importing and listing reputation databases.

use crate::cli::DbCmd;
use crate::commands::{connect, print_json};
use crate::daemon;
use anyhow::{bail, Context};
use custos_config::Config;
use custos_control::Request;

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
                    c.call(&Request::ReloadFeeds {})?;
                    println!("the running agent now uses it");
                }
                Err(_) => println!("the agent is not running; it loads the feed at start"),
            }
            Ok(())
        }
        DbCmd::List { json } => {
            let feeds = custos_reputation::list(&cfg.state_dir)?;
            if json {
                return print_json(&feeds);
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
            Ok(())
        }
    }
}

