//! Resolves the command line into actions: the agent, or requests to it.

use crate::cli::{Cli, Cmd, NetCmd, NetRuleAdd, NetRuleCmd, RuleAdd, RuleCmd};
use crate::daemon;
use anyhow::{bail, Context};
use custos_config::Config;
use custos_control::{Client, ControlError, NetStatus, Request, StatusReply};
use custos_event::Mode;
use custos_network::{Direction, NetRule, NetRuleStore, NewNetRule, Transport, CONFIG_ID_BASE};
use custos_verdict::{sha256_hex, NewRule, Policy, Rule, RuleStore, Target};

/// Runs one command.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load_or_default(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Run { mode } => {
            init_logging();
            let path = cli.config.clone().or_else(|| {
                Some(custos_config::DEFAULT_PATH.into()).filter(|p: &std::path::PathBuf| p.exists())
            });
            daemon::run(cfg, mode, path.as_deref())
        }
        Cmd::Status { json } => status(&cfg, json),
        Cmd::Rule { cmd } => rule(&cfg, cmd),
        Cmd::Net {
            cmd: NetCmd::Rule { cmd },
        } => net_rule(&cfg, cmd),
        Cmd::Mode { mode } => set_mode(&cfg, mode),
        Cmd::Fileinfo { path, json } => crate::fileinfo::fileinfo(&cfg, &path, json),
        Cmd::Db { cmd } => crate::db::db(&cfg, cmd),
        Cmd::Events { cmd, query } => crate::events::events(&cfg, cmd, query),
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
    let judged = if s.images { "judged" } else { "not judged now" };
    println!(
        "image loads:        {} allowed, {} denied; {} opens of other files passed ({judged})",
        e.loads_allowed, e.loads_denied, e.other_opens
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
    println!("reputation (asked in this order):");
    for src in &s.reputation.sources {
        println!("  {:<17} {}", src.name, src.state);
    }
    println!(
        "unseen execs:       hold {} ({} held, {} killed in kernel, {} could not be held)",
        t.unseen, t.holds, t.kernel_kills, t.unheld
    );
    println!(
        "events:             {} written, {} dropped (output {})",
        s.events_written, s.events_dropped, cfg.events
    );
    let kinds: Vec<String> = s
        .events_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  by kind:          {}", kinds.join(", "));
    match &s.store {
        None => println!("event store:        off"),
        Some(st) => {
            println!("event store:        {} ({})", st.state, st.path);
            println!(
                "  {} written, {} dropped, {} queued, {} MiB; pruned {} by age, {} by size",
                st.written,
                st.dropped,
                st.queued,
                st.bytes >> 20,
                st.pruned_age,
                st.pruned_size
            );
            if let Some(m) = &st.moved_aside {
                println!("  corrupt store moved to {m}");
            }
        }
    }
    print_files(&s.files);
    print_net(&s.net);
    Ok(())
}

fn print_files(f: &custos_control::FilesStatus) {
    if f.watched.is_empty() {
        println!("file events:        off");
    } else {
        println!("file events:        {}", f.watched.join(", "));
        println!(
            "  {} emitted, {} excluded, {} rate-limited, {} queue overflows, {} unresolved",
            f.emitted, f.excluded, f.rate_limited, f.overflows, f.unresolved
        );
    }
    match &f.access {
        None => println!("file access rules:  none"),
        Some(a) => {
            println!("file access rules:  {}", a.rules.join(", "));
            println!(
                "  {} files protected; {} allowed, {} denied, {} audited ({} from cache)",
                a.protected_files, a.allowed, a.denied, a.audited, a.cache_hits
            );
        }
    }
}

fn print_net(n: &NetStatus) {
    match (&n.cgroup, n.enabled) {
        (_, false) => println!("network:            off"),
        (Some(cg), true) => println!("network:            on, policy on cgroup {cg}"),
        (None, true) => println!("network:            on, no policy (not attached)"),
    }
    for m in &n.missing {
        println!("  missing:          {m}");
    }
    if !n.enabled {
        return;
    }
    println!(
        "  {} connection events, {} DNS answers ({} unparsed), {} records lost",
        n.events, n.dns_answers, n.dns_unparsed, n.lost
    );
    println!(
        "  {} rules in the kernel; {} denied, {} audited (would deny)",
        n.rules, n.denied, n.audited
    );
    let state = if n.quarantine { "on" } else { "off" };
    println!(
        "  quarantine:       {state} ({} denied, {} trusted programs)",
        n.quarantined, n.trusted_programs
    );
}

/// Sends a rule request to the agent; if it is not running, runs `offline` (on the state dir).
fn with_agent_or_store<T: serde::de::DeserializeOwned>(
    cfg: &Config,
    req: Request,
    offline: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match Client::connect(&cfg.socket) {
        Ok(mut c) => Ok(c.call_as(&req)?),
        Err(ControlError::NotRunning { path }) => {
            eprintln!(
                "custos: agent not running ({}); using {} directly",
                path.display(),
                cfg.state_dir.display()
            );
            offline()
        }
        Err(e) => Err(e.into()),
    }
}

fn rule(cfg: &Config, cmd: RuleCmd) -> anyhow::Result<()> {
    match cmd {
        RuleCmd::Add(a) => {
            let rule = new_rule(cfg, a)?;
            let r: Rule =
                with_agent_or_store(cfg, Request::RuleAdd { rule: rule.clone() }, || {
                    Ok(RuleStore::new(&cfg.state_dir).add(rule)?.0)
                })?;
            println!("added rule {}: {:?} {}", r.id, r.policy, r.target);
        }
        RuleCmd::List { json } => {
            let rules: Vec<Rule> = with_agent_or_store(cfg, Request::RuleList {}, || {
                Ok(RuleStore::new(&cfg.state_dir).load()?.rules().to_vec())
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
            let r: Rule = with_agent_or_store(cfg, Request::RuleRemove { id }, || {
                Ok(RuleStore::new(&cfg.state_dir).remove(id)?.0)
            })?;
            println!("removed rule {}: {:?} {}", r.id, r.policy, r.target);
        }
    }
    Ok(())
}

/// SHA-256 of `f`. Where lockdown refuses this process a plain open of an untrusted ELF image
/// (the very file an admin wants to allow), the running agent reads it: its reads are never
/// refused.
fn file_sha256(cfg: &Config, f: &std::path::Path) -> anyhow::Result<String> {
    match std::fs::File::open(f) {
        Ok(mut file) => {
            sha256_hex(&mut file).with_context(|| format!("cannot read {}", f.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let real = std::fs::canonicalize(f)
                .with_context(|| format!("cannot resolve {}", f.display()))?;
            let path = real.to_string_lossy().into_owned();
            let r: custos_control::InspectReply = connect(cfg)
                .and_then(|mut c| Ok(c.call_as(&Request::Inspect { path })?))
                .with_context(|| {
                    format!(
                        "cannot open {} ({e}), nor have the agent read it",
                        f.display()
                    )
                })?;
            Ok(r.sha256)
        }
        Err(e) => Err(e).with_context(|| format!("cannot open {}", f.display())),
    }
}

fn new_rule(cfg: &Config, a: RuleAdd) -> anyhow::Result<NewRule> {
    let target = match (a.sha256, a.path, a.file) {
        (Some(h), _, _) => Target::Sha256(h),
        (_, Some(p), _) => Target::Path(p),
        (_, _, Some(f)) => Target::Sha256(file_sha256(cfg, &f)?),
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

fn net_rule(cfg: &Config, cmd: NetRuleCmd) -> anyhow::Result<()> {
    let store = || NetRuleStore::new(&cfg.state_dir);
    match cmd {
        NetRuleCmd::Add(a) => {
            let rule = new_net_rule(a)?;
            let req = Request::NetRuleAdd { rule: rule.clone() };
            let r: NetRule = with_agent_or_store(cfg, req, || Ok(store().add(rule)?))?;
            println!("added network rule {}: {}", r.id, r.rule);
        }
        NetRuleCmd::List { json } => {
            // Offline: what the agent would apply, the config's rules first.
            let rules: Vec<NetRule> = with_agent_or_store(cfg, Request::NetRuleList {}, || {
                Ok(cfg.net.rules().into_iter().chain(store().load()?).collect())
            })?;
            if json {
                return print_json(&rules);
            }
            println!(
                "{:<17} {:<6} {:<5} {:<50} COMMENT",
                "ID", "ACTION", "AUDIT", "MATCHES"
            );
            for r in &rules {
                println!("{}", net_rule_row(r));
            }
        }
        NetRuleCmd::Remove { id } => {
            if id >= CONFIG_ID_BASE {
                bail!("network rule {id} comes from the config file; change it there");
            }
            let req = Request::NetRuleRemove { id };
            let r: NetRule = with_agent_or_store(cfg, req, || Ok(store().remove(id)?))?;
            println!("removed network rule {}: {}", r.id, r.rule);
        }
    }
    Ok(())
}

/// One line of `custos net rule list`.
fn net_rule_row(r: &NetRule) -> String {
    let id = if r.id >= CONFIG_ID_BASE {
        format!("{} (config)", r.id)
    } else {
        r.id.to_string()
    };
    let rule = &r.rule;
    let action = match rule.action {
        custos_network::Action::Allow => "allow",
        custos_network::Action::Deny => "deny",
    };
    let audit = if rule.audit { "yes" } else { "no" };
    // The summary without the action and audit it starts and ends with (their own columns).
    let summary = rule.to_string();
    let summary = summary.strip_prefix(action).unwrap_or(&summary);
    let summary = summary.strip_suffix(" (audit)").unwrap_or(summary).trim();
    let comment = rule.comment.as_deref().unwrap_or("");
    let line = format!("{id:<17} {action:<6} {audit:<5} {summary:<50} {comment}");
    line.trim_end().to_owned()
}

/// The rule the flags say, its program resolved to an absolute path that exists.
fn new_net_rule(a: NetRuleAdd) -> anyhow::Result<NewNetRule> {
    let program = match a.program {
        None => None,
        Some(p) => {
            let real = std::fs::canonicalize(&p)
                .with_context(|| format!("cannot resolve program {}", p.display()))?;
            if !real.is_file() {
                bail!("program {} is not a file", p.display());
            }
            Some(real)
        }
    };
    let criteria =
        a.cidr.is_some() || a.port.is_some() || program.is_some() || a.transport != Transport::Any;
    if a.deny && !criteria && !a.everything {
        let what = match a.direction {
            Direction::Out => "every connection and send",
            Direction::Bind => "every bind",
            Direction::Any => "every connection, send and bind",
        };
        bail!(
            "a --deny rule with no --cidr, --port, --transport or --program matches {what} of \
             every program; add --everything if that is meant"
        );
    }
    let rule = NewNetRule {
        action: if a.allow {
            custos_network::Action::Allow
        } else {
            custos_network::Action::Deny
        },
        cidr: a.cidr,
        ports: a.port,
        transport: a.transport,
        direction: a.direction,
        program,
        audit: a.audit,
        comment: a.comment,
    };
    rule.validate()?;
    Ok(rule)
}

fn set_mode(cfg: &Config, mode: Option<Mode>) -> anyhow::Result<()> {
    let v = connect(cfg)?.call(&Request::Mode { set: mode })?;
    match (mode, v["previous"].as_str()) {
        (Some(m), Some(prev)) => println!("mode: {prev} -> {m}"),
        _ => println!("{}", v["mode"].as_str().unwrap_or("?")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn add(args: &str) -> anyhow::Result<NewNetRule> {
        let argv = "custos net rule add"
            .split(' ')
            .chain(args.split_whitespace());
        match Cli::try_parse_from(argv)?.cmd {
            Cmd::Net {
                cmd: NetCmd::Rule {
                    cmd: NetRuleCmd::Add(a),
                },
            } => new_net_rule(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deny_with_no_criterion_needs_everything() {
        let e = add("--deny --direction bind").unwrap_err().to_string();
        assert!(
            e.contains("every bind") && e.contains("--everything"),
            "{e}"
        );
        assert!(add("--deny --everything").is_ok());
        assert!(add("--allow").is_ok());
        assert!(add("--deny --transport udp").is_ok());
        assert!(add("--deny --port 25").is_ok());
    }

    #[test]
    fn the_program_is_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("tool");
        std::fs::write(&exe, b"x").expect("write");
        let odd = format!("{}/./tool", dir.path().display());
        let r = add(&format!("--deny --program {odd}")).expect("rule");
        let real = std::fs::canonicalize(&exe).expect("canonical");
        assert_eq!(r.program.as_deref(), Some(real.as_path()));
        let missing = dir.path().join("gone");
        let e = add(&format!("--deny --program {}", missing.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        let e = add(&format!("--deny --program {}", dir.path().display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a file"), "{e}");
    }

    #[test]
    fn list_rows_mark_config_rules() {
        let rule = add("--deny --port 25 --audit --comment smtp").expect("rule");
        let row = net_rule_row(&NetRule {
            id: CONFIG_ID_BASE + 1,
            rule,
        });
        assert!(row.starts_with("1000001 (config)"), "{row}");
        assert!(row.contains(" deny ") && row.contains(" yes "), "{row}");
        assert!(row.ends_with("smtp") && !row.contains("(audit)"), "{row}");
    }
}
