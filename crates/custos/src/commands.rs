//! Resolves the command line into actions: the agent, or requests to it.

use crate::cli::{Cli, Cmd, RuleAdd, RuleCmd};
use crate::daemon;
use anyhow::{bail, Context};
use custos_config::Config;
use custos_control::{Client, ControlError, EvaluateReply, Request, StatusReply};
use custos_event::Mode;
use custos_verdict::{
    digests_while, sha256_hex, FileType, NewRule, Policy, Rule, RuleStore, Target, Want,
};
use std::io::Read;
use std::path::Path;

/// Runs one command.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load_or_default(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Run { mode } => {
            init_logging();
            daemon::run(cfg, mode)
        }
        Cmd::Status { json } => status(&cfg, json),
        Cmd::Rule { cmd } => rule(&cfg, cmd),
        Cmd::Mode { mode } => set_mode(&cfg, mode),
        Cmd::Fileinfo { path, json } => fileinfo(&cfg, &path, json),
        Cmd::Db { cmd } => crate::db::db(&cfg, cmd),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

pub(crate) fn connect(cfg: &Config) -> anyhow::Result<Client> {
    Ok(Client::connect(&cfg.socket)?)
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn status(cfg: &Config, json: bool) -> anyhow::Result<()> {
    let s: StatusReply = connect(cfg)?.call_as(&Request::Status {})?;
    if json {
        return print_json(&s);
    }
    let e = &s.exec;
    println!("custos {} (pid {}, up {} s)", s.version, s.pid, s.uptime_s);
    println!("mode:               {}", s.mode);
    println!("rules:              {}", s.rules);
    println!("deadline:           {} ms", s.deadline_ms);
    println!("watched:");
    for w in &s.watched {
        println!(
            "  {:<30} {:<8} {}",
            w["mount"].as_str().unwrap_or("?"),
            w["fstype"].as_str().unwrap_or(""),
            w["dev"].as_str().unwrap_or("")
        );
    }
    println!(
        "decisions:          {} allowed, {} denied, {} would-deny (audit)",
        e.allowed, e.denied, e.would_deny
    );
    println!(
        "cache:              {} hits, {} misses, {} files hashed",
        e.cache_hits, e.cache_misses, e.hashed
    );
    let kc = if s.kernel_cache {
        ""
    } else {
        " (kernel cache off)"
    };
    println!(
        "ignore marks:       {} placed, {} dropped on write{kc}",
        e.ignore_marks, s.unmarked_on_write
    );
    println!("deadline fallbacks: {}", e.deadline_fallbacks);
    println!(
        "overload fallbacks: {} (too many held at once)",
        e.overloaded
    );
    println!(
        "hashes abandoned:   {} (nobody waiting any more)",
        e.abandoned
    );
    println!(
        "errors:             {} ({} unhandled fanotify events, {} failed event reads)",
        e.errors, s.bad_events, s.read_errors
    );
    println!("pending now:        {}", e.pending);
    let t = &s.telemetry;
    println!(
        "process telemetry:  {} ({} records, {} lost, {} undecodable)",
        t.process, t.records, t.lost, t.decode_errors
    );
    for m in &t.missing {
        println!("  missing:          {m}");
    }
    println!("process table:      {} processes", t.processes);
    println!("package trust:      {}", s.reputation.dpkg);
    println!("known-bad feeds:    {}", s.reputation.feeds);
    println!(
        "unseen execs:       hold {} ({} held, {} killed in kernel, {} could not be held)",
        t.unseen, t.holds, t.kernel_kills, t.unheld
    );
    println!(
        "events:             {} written, {} dropped",
        s.events_written, s.events_dropped
    );
    Ok(())
}

/// Sends a rule request to the agent; if it is not running, applies `offline` to the state dir.
fn with_agent_or_store<T: serde::de::DeserializeOwned>(
    cfg: &Config,
    req: Request,
    offline: impl FnOnce(&RuleStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match Client::connect(&cfg.socket) {
        Ok(mut c) => Ok(c.call_as(&req)?),
        Err(ControlError::NotRunning { path }) => {
            eprintln!(
                "custos: agent not running ({}); using {} directly",
                path.display(),
                cfg.state_dir.display()
            );
            offline(&RuleStore::new(&cfg.state_dir))
        }
        Err(e) => Err(e.into()),
    }
}

fn rule(cfg: &Config, cmd: RuleCmd) -> anyhow::Result<()> {
    match cmd {
        RuleCmd::Add(a) => {
            let rule = new_rule(a)?;
            let r: Rule = with_agent_or_store(cfg, Request::RuleAdd { rule: rule.clone() }, |s| {
                Ok(s.add(rule)?.0)
            })?;
            println!("added rule {}: {:?} {}", r.id, r.policy, r.target);
        }
        RuleCmd::List { json } => {
            let rules: Vec<Rule> = with_agent_or_store(cfg, Request::RuleList {}, |s| {
                Ok(s.load()?.rules().to_vec())
            })?;
            if json {
                return print_json(&rules);
            }
            println!(
                "{:<5} {:<6} {:<8} {:<66} COMMENT",
                "ID", "POLICY", "KIND", "TARGET"
            );
            for r in rules {
                let (kind, t) = match &r.target {
                    Target::Sha256(h) => ("sha256", h),
                    Target::Path(p) => ("path", p),
                };
                let policy = match r.policy {
                    Policy::Allow => "allow",
                    Policy::Block => "block",
                };
                println!(
                    "{:<5} {:<6} {:<8} {:<66} {}",
                    r.id,
                    policy,
                    kind,
                    t,
                    r.comment.unwrap_or_default()
                );
            }
        }
        RuleCmd::Remove { id } => {
            let r: Rule =
                with_agent_or_store(cfg, Request::RuleRemove { id }, |s| Ok(s.remove(id)?.0))?;
            println!("removed rule {}: {:?} {}", r.id, r.policy, r.target);
        }
    }
    Ok(())
}

fn new_rule(a: RuleAdd) -> anyhow::Result<NewRule> {
    let target = match (a.sha256, a.path, a.file) {
        (Some(h), _, _) => Target::Sha256(h),
        (_, Some(p), _) => Target::Path(p),
        (_, _, Some(f)) => {
            let mut file =
                std::fs::File::open(&f).with_context(|| format!("cannot open {}", f.display()))?;
            Target::Sha256(
                sha256_hex(&mut file).with_context(|| format!("cannot read {}", f.display()))?,
            )
        }
        _ => bail!("give --sha256, --path or --file"),
    };
    let policy = if a.allow {
        Policy::Allow
    } else {
        Policy::Block
    };
    Ok(NewRule {
        target,
        policy,
        comment: a.comment,
    }
    .validated()?)
}

fn set_mode(cfg: &Config, mode: Option<Mode>) -> anyhow::Result<()> {
    let v = connect(cfg)?.call(&Request::Mode { set: mode })?;
    match (mode, v["previous"].as_str()) {
        (Some(m), Some(prev)) => println!("mode: {prev} -> {m}"),
        _ => println!("{}", v["mode"].as_str().unwrap_or("?")),
    }
    Ok(())
}

/// What dpkg says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum PackageTrust {
    /// Not installed by a package at this path (or package trust is off).
    NotListed,
    /// Installed here, and its MD5 is what the package shipped.
    Trusted,
    /// Installed here, but changed since.
    Altered,
}

#[derive(serde::Serialize)]
struct FileInfo {
    path: String,
    size: u64,
    #[serde(rename = "type")]
    file_type: FileType,
    executable_bits: bool,
    sha256: String,
    /// The known-bad feed that lists the file, if any.
    known_bad_feed: Option<String>,
    /// Debian package trust for this path and content.
    package: PackageTrust,
    agent_running: bool,
    #[serde(flatten)]
    verdict: EvaluateReply,
}

fn fileinfo(cfg: &Config, path: &Path, json: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Judged like an exec: by the resolved path, which is what the kernel reports.
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut f =
        std::fs::File::open(&real).with_context(|| format!("cannot open {}", real.display()))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", real.display());
    }
    let mut head = Vec::with_capacity(256);
    (&mut f).take(256).read_to_end(&mut head)?;
    // Known-bad feeds are looked up here, from the state dir, with the digests they need.
    let feeds = custos_reputation::Feeds::load(&cfg.state_dir);
    let real_s = real.to_string_lossy().into_owned();
    // Package trust: the MD5 dpkg recorded for this path, if it is listed.
    let dpkg_md5 = if cfg.reputation.dpkg {
        custos_reputation::DpkgIndex::load(&cfg.reputation.dpkg_info)
            .ok()
            .and_then(|i| i.md5_for(&real_s).copied())
    } else {
        None
    };
    let mut want = feeds.as_ref().map_or(Want::default(), |f| Want {
        md5: f.wants_md5(),
        sha1: f.wants_sha1(),
    });
    want.md5 |= dpkg_md5.is_some();
    let mut f = std::fs::File::open(&real)?;
    let digests = digests_while(&mut f, want, &mut || true)
        .with_context(|| format!("cannot read {}", real.display()))?
        .context("hashing stopped")?;
    let feed = match &feeds {
        Ok(feeds) => digests.sha256_bytes().and_then(|s| {
            feeds
                .lookup(digests.md5.as_ref(), digests.sha1.as_ref(), &s)
                .map(str::to_owned)
        }),
        Err(e) => {
            eprintln!("custos: feeds not consulted: {e:#}");
            None
        }
    };
    let package = match dpkg_md5 {
        None => PackageTrust::NotListed,
        Some(m) if Some(m) == digests.md5 => PackageTrust::Trusted,
        Some(_) => PackageTrust::Altered,
    };
    let sha = digests.sha256;
    let (verdict, agent_running) = match Client::connect(&cfg.socket) {
        Ok(mut c) => (
            c.call_as(&Request::Evaluate {
                sha256: sha.clone(),
                path: Some(real_s.clone()),
                known_bad: feed.is_some(),
                trusted: package == PackageTrust::Trusted,
            })?,
            true,
        ),
        Err(ControlError::NotRunning { .. }) => {
            let rules = RuleStore::new(&cfg.state_dir).load()?;
            (
                daemon::evaluate_all(
                    &rules,
                    cfg.mode,
                    &sha,
                    Some(&real_s),
                    feed.is_some(),
                    package == PackageTrust::Trusted,
                ),
                false,
            )
        }
        Err(e) => return Err(e.into()),
    };
    let info = FileInfo {
        path: real_s,
        size: meta.len(),
        file_type: FileType::sniff(&head),
        executable_bits: meta.permissions().mode() & 0o111 != 0,
        sha256: sha,
        known_bad_feed: feed,
        package,
        agent_running,
        verdict,
    };
    if json {
        return print_json(&info);
    }
    let v = &info.verdict;
    println!("path:      {}", info.path);
    println!("size:      {} bytes", info.size);
    let t = match &info.file_type {
        FileType::Elf => "ELF".to_owned(),
        FileType::Script { interpreter } => format!("script (#!{interpreter})"),
        FileType::Other => "other (not directly executable)".to_owned(),
    };
    println!("type:      {t}");
    println!("sha256:    {}", info.sha256);
    match &v.rule {
        Some(r) => println!("rule:      {} ({:?} {})", r.id, r.policy, r.target),
        None => println!("rule:      none"),
    }
    match &info.known_bad_feed {
        Some(f) => println!("feeds:     listed as known-bad by `{f}`"),
        None => println!("feeds:     not listed"),
    }
    let pkg = match info.package {
        PackageTrust::NotListed => "not a package file at this path",
        PackageTrust::Trusted => "trusted (dpkg lists this path with this MD5)",
        PackageTrust::Altered => "ALTERED (dpkg lists this path with another MD5)",
    };
    println!("package:   {pkg}");
    let src = if info.agent_running {
        "running agent"
    } else {
        "config; agent not running"
    };
    println!("mode:      {} ({src})", v.mode);
    println!(
        "decision:  {:?} ({})",
        v.now.decision,
        v.now.reason.as_str()
    );
    for (m, d) in &v.per_mode {
        let w = if d.would_deny { ", would deny" } else { "" };
        println!("  {m:<9} {:?}{w}", d.decision);
    }
    Ok(())
}
