//! Command-line surface (raw flags only; resolution happens in `commands`).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand};
use custos_event::Mode;
use custos_network::{Cidr, Direction, PortRange, Transport};
use std::path::PathBuf;

const ABOUT: &str = "Linux endpoint agent: holds every program start (fanotify) while it hashes \
the file and checks its rules, then allows or denies it.";

const AFTER: &str = "\
Modes:
  audit     never block; log what would be denied
  monitor   block only what a block rule names (default)
  lockdown  allow only what an allow rule names

Examples:
  custos run --mode monitor                  run the agent in the foreground
  custos rule add --file ./tool --block      block a program by its SHA-256
  custos rule add --path '/opt/app/**' --allow --comment 'vendor app'
  custos net rule add --deny --port 25 --transport tcp   no outbound SMTP
  custos fileinfo /usr/bin/ls                what would happen if it ran now
  custos db import-feed bad.txt --name abuse  block what a hash list names
  custos db import-nsrl RDS_modern.db        import the NIST NSRL (known software)
  custos events --outcome deny --since 1d    what was blocked today
  custos events tree 4242                    where a process came from, what it started
  custos status";

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
        .map_err(|e: custos_network::NetError| e.to_string())
}

fn parse_ports(s: &str) -> Result<PortRange, String> {
    s.parse()
        .map_err(|e: custos_network::NetError| e.to_string())
}

fn transport() -> impl TypedValueParser<Value = Transport> {
    PossibleValuesParser::new(["tcp", "udp", "any"]).map(|s| match s.as_str() {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        _ => Transport::Any,
    })
}

fn direction() -> impl TypedValueParser<Value = Direction> {
    PossibleValuesParser::new(["out", "bind", "any"]).map(|s| match s.as_str() {
        "out" => Direction::Out,
        "bind" => Direction::Bind,
        _ => Direction::Any,
    })
}

/// custos command line.
#[derive(Debug, Parser)]
#[command(name = "custos", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/custos/custos.toml if it exists, else built-in defaults.
    /// Commands use it to find the agent's control socket and state dir.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the agent in the foreground (needs root). Decisions are written as ECS JSON lines
    /// to the configured `events` output (stdout by default); logs go to stderr.
    Run {
        /// Mode at start, overriding the config (audit, monitor, lockdown).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<Mode>,
    },
    /// Show the running agent's mode, watched filesystems and counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage allow/block rules (through the agent, or the state dir if it is not running).
    Rule {
        /// Rule action.
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// Network policy: which programs may connect where, and who may bind which ports.
    Net {
        /// Network action.
        #[command(subcommand)]
        cmd: NetCmd,
    },
    /// Show the running agent's mode, or change it (flushes the decision cache).
    Mode {
        /// New mode: audit, monitor or lockdown.
        #[arg(value_parser = parse_mode)]
        mode: Option<Mode>,
    },
    /// Reputation databases: import and list known-bad feeds and the NSRL.
    Db {
        /// Database action.
        #[command(subcommand)]
        cmd: DbCmd,
    },
    /// Query the event store: what ran, what was blocked, what loaded what. Reads the
    /// store directly (the agent need not run). Newest last; filters combine.
    #[command(after_help = EVENTS_AFTER, args_conflicts_with_subcommands = true)]
    Events {
        /// `tree`, or none for a query.
        #[command(subcommand)]
        cmd: Option<EventsCmd>,
        /// The query.
        #[command(flatten)]
        query: EventsQuery,
    },
    /// Hash a file and show its type, matching rule and the decision it would get now.
    Fileinfo {
        /// The file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const EVENTS_AFTER: &str = "\
Kinds: exec (decisions), process (exec, fork, exit, threads, snapshot), image (libraries
mapped), injection (ptrace, process_vm_writev), agent (the agent's own: records lost,
events dropped), and file, network, input when those sensors run.

Examples:
  custos events --since 1h                          the last hour, as columns
  custos events --kind exec --outcome deny --limit 20
  custos events --path '/tmp/*' --format json       * matches across / (SQLite GLOB)
  custos events --sha256 <HEX> --format ecs         every event about one file, as stored
  custos events --follow --kind exec                new decisions as they happen
  custos events tree 4242                           lineage and children of a pid";

/// Output format of `custos events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    /// Readable columns.
    Text,
    /// One flat JSON object per event: the store's indexed fields and its id.
    Json,
    /// The ECS document as recorded, one per line.
    Ecs,
    /// OCSF 1.7, one per line.
    Ocsf,
    /// Santa-style decision lines (events Santa has no line for are skipped).
    Santa,
}

/// `custos events` filters.
#[derive(Debug, Args)]
pub struct EventsQuery {
    /// Keep printing new events as they are stored (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events at or after: a duration ago (`90s`, `1h`, `2d`) or a time
    /// (`2026-11-22T10:00:00Z`, `2026-11-22 10:00:00` is UTC).
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only events at or before: a time, or a duration ago.
    #[arg(long, value_name = "TIME|DURATION")]
    pub until: Option<String>,
    /// Only these kinds (repeat or comma-separate).
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only events of this process id.
    #[arg(long, value_name = "N")]
    pub pid: Option<i64>,
    /// Only events whose path (program, library or file) matches this SQLite GLOB: `*` and `?`
    /// (both also match `/`), `[...]`; case-sensitive.
    #[arg(long, value_name = "GLOB")]
    pub path: Option<String>,
    /// Only events about the file with this SHA-256.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Only decisions that allowed or denied.
    #[arg(long, value_name = "allow|deny", value_parser = ["allow", "deny"])]
    pub outcome: Option<String>,
    /// At most this many (the newest), 0 for all.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EventsFormat::Text)]
    pub format: EventsFormat,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Read this store instead of the configured one (e.g. a copy, or one moved aside).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

/// `custos events …` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// A process's lineage (parents up to the oldest stored) and its children, from stored
    /// fork, exec, exit and snapshot events.
    Tree {
        /// A pid (the most recent process with it) or an entity id.
        process: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read this store instead of the configured one.
        #[arg(long, value_name = "FILE")]
        db: Option<PathBuf>,
    },
}

/// `custos db …`
#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Import a known-bad feed: a hash list (MD5, SHA-1 or SHA-256 per line, by length; `#`
    /// comments) or a MalwareBazaar CSV export. A file whose digest it lists is denied in
    /// monitor and lockdown. Replaces the feed of the same name atomically; a bad file leaves
    /// the previous one in force. A running agent reloads its feeds.
    ImportFeed {
        /// The feed file.
        file: PathBuf,
        /// Its name (letters, digits, `_`, `-`, `.`), shown in decisions.
        #[arg(long)]
        name: String,
    },
    /// Import the NIST NSRL (known software) as one memory-mapped digest set, replacing the
    /// previous import only when this one succeeds. Accepts an RDS v3 SQLite database (its
    /// FILE table, or METADATA), a legacy RDS 2.x NSRLFile.txt, or a list of hex digests one
    /// per line (sha256sum output works); the format is read from the content. Sorts on disk
    /// beside the set (STATE/nsrl), so memory stays within --memory at any size; needs free
    /// space there of about twice the set (32 bytes per SHA-256). A running agent reloads.
    #[command(after_help = "Examples:
  custos db import-nsrl RDS_2024.03.1_modern.db                 SHA-256 set (default)
  custos db import-nsrl RDS_2024.03.1_modern.db --digest md5    MD5 set (16 bytes per entry)
  custos db import-nsrl NSRLFile.txt                            legacy: SHA-1 set (default)")]
    ImportNsrl {
        /// The RDS v3 database, NSRLFile.txt, or digest list.
        file: PathBuf,
        /// Digest kind to keep: md5, sha1 or sha256. Default: sha256 for RDS v3, sha1 for
        /// NSRLFile.txt (it has no SHA-256), the list's own kind for a digest list.
        #[arg(long, value_name = "KIND")]
        digest: Option<custos_reputation::DigestKind>,
        /// Sort buffer in MiB; more means fewer temporary runs to merge.
        #[arg(long, value_name = "MIB", default_value_t = 512,
              value_parser = clap::value_parser!(u64).range(8..=1 << 20))]
        memory: u64,
    },
    /// List imported feeds and the NSRL set with their counts and import time.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `custos rule …`
#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Add a rule. A SHA-256 rule beats a path rule, which beats the mode default.
    Add(RuleAdd),
    /// List rules.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule by id.
    Remove {
        /// Rule id (see `custos rule list`).
        id: u64,
    },
}

/// `custos rule add`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["sha256", "path", "file"])))]
#[command(group(ArgGroup::new("policy").required(true).args(["allow", "block"])))]
pub struct RuleAdd {
    /// Match a file by its SHA-256 (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Match by resolved path glob: `*` stays in a directory, `**` crosses directories.
    #[arg(long, value_name = "GLOB")]
    pub path: Option<String>,
    /// Match the SHA-256 of this file (hashed now).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Allow it (in every mode).
    #[arg(long)]
    pub allow: bool,
    /// Block it (in monitor and lockdown; audit logs a would-deny).
    #[arg(long)]
    pub block: bool,
    /// Free text kept with the rule.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

/// `custos net …`
#[derive(Debug, Subcommand)]
pub enum NetCmd {
    /// Manage network rules (through the agent, or the state dir if it is not running).
    Rule {
        /// Rule action.
        #[command(subcommand)]
        cmd: NetRuleCmd,
    },
}

/// `custos net rule …`
#[derive(Debug, Subcommand)]
pub enum NetRuleCmd {
    /// Add a network rule (the first rule that matches decides).
    ///
    /// Rules are matched in order: the config file's `[[net.rule]]` first, then added ones,
    /// oldest first. Nothing matching: allowed, unless the quarantine is in force (lockdown
    /// with `[net] quarantine`: then only programs the agent trusts).
    #[command(after_help = NET_RULE_AFTER)]
    Add(NetRuleAdd),
    /// List network rules in the order they are matched (config rules first, marked).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an added network rule by id (config rules are changed in the config file).
    Remove {
        /// Rule id (see `custos net rule list`).
        id: u64,
    },
}

const NET_RULE_AFTER: &str = "\
A rule matches an operation when every criterion given matches; one left out matches
anything. Added rules are kept in the state dir (net-rules.json).

Examples:
  custos net rule add --deny --port 25 --transport tcp --comment 'no SMTP'
  custos net rule add --allow --cidr 10.0.0.0/8 --program /usr/bin/ssh
  custos net rule add --deny --program /usr/bin/nc           no network for nc
  custos net rule add --deny --direction bind --port 1-1023 --audit
  custos net rule add --deny --everything --audit            log what a deny-all would stop";

/// `custos net rule add`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("net_action").required(true).args(["allow", "deny"])))]
pub struct NetRuleAdd {
    /// Allow what the rule matches (later rules are not looked at).
    #[arg(long)]
    pub allow: bool,
    /// Deny what the rule matches: the connect, send or bind fails with EPERM.
    #[arg(long)]
    pub deny: bool,
    /// Only this network: the remote address for outbound, the local one for bind. An
    /// address (192.0.2.7, ::1) or a CIDR (10.0.0.0/8, 2001:db8::/32).
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub cidr: Option<Cidr>,
    /// Only this port or inclusive range (443, 8000-8100): the remote port for outbound,
    /// the local one for bind.
    #[arg(long, value_name = "PORT|LO-HI", value_parser = parse_ports)]
    pub port: Option<PortRange>,
    /// Only this transport.
    #[arg(long, value_name = "tcp|udp|any", default_value = "any", value_parser = transport())]
    pub transport: Transport,
    /// Which operations: out (connect and UDP sends to an address), bind (who may serve on
    /// an address or port), or any (both).
    #[arg(long, value_name = "out|bind|any", default_value = "out", value_parser = direction())]
    pub direction: Direction,
    /// Only this program: the file at PATH, matched by its identity (device and inode) when
    /// the rule is applied; a hard link is the same program, a copy is not.
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// Deny nothing: log what the rule would deny (events with `custos.would_deny`).
    #[arg(long)]
    pub audit: bool,
    /// Free text kept with the rule, shown in lists and in events (`rule.name`).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Accept a --deny rule with no --cidr, --port, --transport or --program: it matches every
    /// connection (or bind) of every program.
    #[arg(long, conflicts_with = "allow")]
    pub everything: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rule_add_needs_one_target_and_one_policy() {
        let ok = Cli::try_parse_from(["custos", "rule", "add", "--path", "/x", "--block"]);
        assert!(ok.is_ok());
        for bad in [
            vec!["custos", "rule", "add", "--block"],
            vec!["custos", "rule", "add", "--path", "/x"],
            vec![
                "custos", "rule", "add", "--path", "/x", "--sha256", "a", "--block",
            ],
            vec![
                "custos", "rule", "add", "--path", "/x", "--allow", "--block",
            ],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_flags_and_tree() {
        let c = Cli::try_parse_from([
            "custos",
            "events",
            "--kind",
            "exec,process",
            "--kind",
            "image",
            "--outcome",
            "deny",
            "--limit",
            "5",
            "-f",
        ])
        .expect("parse");
        let Cmd::Events { cmd: None, query } = c.cmd else {
            panic!("not a query")
        };
        assert_eq!(query.kind, ["exec", "process", "image"]);
        assert!(query.follow);
        assert_eq!(query.limit, 5);
        let c = Cli::try_parse_from(["custos", "events", "tree", "42"]).expect("parse");
        assert!(matches!(
            c.cmd,
            Cmd::Events {
                cmd: Some(EventsCmd::Tree { .. }),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["custos", "events", "--outcome", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["custos", "events", "--json", "--format", "ecs"]).is_err());
    }

    /// `custos net rule add ARGS`, parsed.
    fn net_add(args: &str) -> Result<NetRuleAdd, clap::Error> {
        let argv = "custos net rule add"
            .split(' ')
            .chain(args.split_whitespace());
        match Cli::try_parse_from(argv)?.cmd {
            Cmd::Net {
                cmd: NetCmd::Rule {
                    cmd: NetRuleCmd::Add(a),
                },
            } => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn net_rule_add_flags() {
        let a = net_add(
            "--deny --cidr 10.0.0.0/8 --port 8000-8100 --transport udp --direction any \
             --program /usr/bin/nc --audit --comment x",
        )
        .expect("parse");
        assert!(a.deny && !a.allow && a.audit && !a.everything);
        assert_eq!(a.cidr.map(|c| c.prefix), Some(8));
        assert_eq!(a.port.map(|p| (p.lo, p.hi)), Some((8000, 8100)));
        assert_eq!((a.transport, a.direction), (Transport::Udp, Direction::Any));
        assert_eq!(a.program, Some(PathBuf::from("/usr/bin/nc")));
        assert_eq!(a.comment.as_deref(), Some("x"));

        let a = net_add("--allow").expect("parse");
        assert_eq!((a.transport, a.direction), (Transport::Any, Direction::Out));
        assert!(a.cidr.is_none() && a.port.is_none() && a.program.is_none());
        assert!(net_add("--deny --everything").is_ok_and(|a| a.everything));

        for bad in [
            "",
            "--allow --deny",
            "--deny --cidr 10.0.0.0/33",
            "--deny --port 90-80",
            "--deny --port http",
            "--deny --transport icmp",
            "--deny --direction in",
            "--allow --everything",
        ] {
            assert!(net_add(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn net_rule_list_and_remove() {
        let c = Cli::try_parse_from("custos net rule list --json".split(' ')).expect("parse");
        assert!(matches!(
            c.cmd,
            Cmd::Net {
                cmd: NetCmd::Rule {
                    cmd: NetRuleCmd::List { json: true }
                }
            }
        ));
        let c = Cli::try_parse_from("custos net rule remove 1000002".split(' ')).expect("parse");
        assert!(matches!(
            c.cmd,
            Cmd::Net {
                cmd: NetCmd::Rule {
                    cmd: NetRuleCmd::Remove { id: 1_000_002 }
                }
            }
        ));
        assert!(Cli::try_parse_from("custos net rule remove x".split(' ')).is_err());
    }

    #[test]
    fn mode_values() {
        let c = Cli::try_parse_from(["custos", "mode", "lockdown", "--config", "/c.toml"])
            .expect("parse");
        assert!(matches!(
            c.cmd,
            Cmd::Mode {
                mode: Some(Mode::Lockdown)
            }
        ));
        assert_eq!(c.config.as_deref(), Some(std::path::Path::new("/c.toml")));
        let e = Cli::try_parse_from(["custos", "mode", "strict"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("strict"), "{e}");
    }
}
