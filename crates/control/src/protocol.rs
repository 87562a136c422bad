//! Requests, replies and the client.

use custos_event::Mode;
use custos_verdict::{Finding, NewRule, Rule, StatsSnapshot, Verdict};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest request line the server reads.
pub const MAX_LINE: usize = 64 * 1024;

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Counters and configuration.
    Status {},
    /// Add a rule.
    RuleAdd {
        /// The rule.
        rule: NewRule,
    },
    /// All rules.
    RuleList {},
    /// Remove a rule.
    RuleRemove {
        /// Its id.
        id: u64,
    },
    /// Read or set the mode.
    Mode {
        /// New mode; absent to read.
        #[serde(default)]
        set: Option<Mode>,
    },
    /// Load the reputation databases from the state dir again (after an import): feeds,
    /// the NSRL set, YARA rules.
    #[serde(alias = "reload_feeds")]
    ReloadReputation {},
    /// Read a file and say what every reputation source knows about it and what the agent
    /// would decide for it, now and per mode.
    Inspect {
        /// The file (resolved by the caller; the agent resolves it again).
        path: String,
    },
    /// Add a network rule (after the config's and the stored ones).
    NetRuleAdd {
        /// The rule (its program path absolute).
        rule: custos_network::NewNetRule,
    },
    /// All network rules, the config's first, in the order they are matched.
    NetRuleList {},
    /// Remove a stored network rule.
    NetRuleRemove {
        /// Its id.
        id: u64,
    },
}

/// A reply line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Payload on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Message on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success with a payload.
    pub fn ok(data: impl Serialize) -> Reply {
        Reply {
            ok: true,
            data: Some(serde_json::to_value(data).unwrap_or(serde_json::Value::Null)),
            error: None,
        }
    }
    /// A failure.
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

/// `status` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    /// custos version.
    pub version: String,
    /// Agent pid.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Current mode.
    pub mode: Mode,
    /// Verdict deadline.
    pub deadline_ms: u64,
    /// Watched filesystems.
    pub watched: Vec<serde_json::Value>,
    /// Number of rules.
    pub rules: usize,
    /// Decision counters.
    pub exec: StatsSnapshot,
    /// Decision events written.
    pub events_written: u64,
    /// Decision events dropped because the output fell behind.
    pub events_dropped: u64,
    /// Whether kernel ignore marks are used.
    pub kernel_cache: bool,
    /// Plain opens of ELF images are judged now (lockdown with `[exec] images`).
    #[serde(default)]
    pub images: bool,
    /// Ignore marks removed because a writer closed the file.
    pub unmarked_on_write: u64,
    /// fanotify events that could not be handled (overflow, version mismatch).
    pub bad_events: u64,
    /// Event reads that failed because the kernel could not open an event fd (it denied those).
    pub read_errors: u64,
    /// eBPF process telemetry.
    pub telemetry: TelemetryStatus,
    /// Reputation sources in force.
    #[serde(default)]
    pub reputation: ReputationStatus,
    /// Events emitted since start, per kind (exec, process, image, …).
    #[serde(default)]
    pub events_by_kind: std::collections::BTreeMap<String, u64>,
    /// The event store; absent when it is off.
    #[serde(default)]
    pub store: Option<custos_store::StoreStatus>,
    /// File events and file access rules.
    #[serde(default)]
    pub files: FilesStatus,
    /// The network sensor and policy.
    #[serde(default)]
    pub net: NetStatus,
}

/// The network sensor and network policy, in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetStatus {
    /// The network sensor runs.
    pub enabled: bool,
    /// The cgroup the policy programs are attached to.
    pub cgroup: Option<String>,
    /// Parts that could not load: "name: why".
    pub missing: Vec<String>,
    /// Connection events emitted.
    pub events: u64,
    /// DNS answers read.
    pub dns_answers: u64,
    /// DNS answers that did not parse.
    pub dns_unparsed: u64,
    /// Records the kernel could not queue (ring buffer full).
    pub lost: u64,
    /// Operations denied by rules.
    pub denied: u64,
    /// Operations an audit rule (or audit mode) would have denied.
    pub audited: u64,
    /// Operations denied by the quarantine.
    pub quarantined: u64,
    /// The quarantine is in force now (lockdown and `[net] quarantine`).
    pub quarantine: bool,
    /// Programs the quarantine lets through.
    pub trusted_programs: u64,
    /// Rules in the kernel table.
    pub rules: u64,
}

/// File events (fanotify FID mode) and file access rules, in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FilesStatus {
    /// Filesystems reporting file events (empty: file events are off).
    pub watched: Vec<String>,
    /// File events emitted.
    pub emitted: u64,
    /// Left out by `files.include`/`files.exclude` (or the agent's own).
    pub excluded: u64,
    /// Dropped by the per-process rate limit.
    pub rate_limited: u64,
    /// Kernel queue overflows (an unknown number of events lost each time).
    pub overflows: u64,
    /// Events whose path could not be resolved any more.
    pub unresolved: u64,
    /// File access rules, when any are in force.
    pub access: Option<AccessStatus>,
}

/// File access rules in force, in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessStatus {
    /// Rule names, the built-in self-protection first.
    pub rules: Vec<String>,
    /// Inodes held by the rules.
    pub protected_files: u64,
    /// Opens of protected files allowed.
    pub allowed: u64,
    /// Opens denied.
    pub denied: u64,
    /// Opens an audit-only rule (or audit mode) would have denied.
    pub audited: u64,
    /// Decisions answered from the decision cache.
    pub cache_hits: u64,
}

/// Reputation sources as the agent has them loaded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReputationStatus {
    /// Every configured source in the order asked, with its state (`off`, what is loaded, or
    /// why it is not).
    pub sources: Vec<SourceStatus>,
}

/// One reputation source in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Its name (`feeds`, `dpkg`, `nsrl`, `yara`, `hashlookup`).
    pub name: String,
    /// Whether it is asked now.
    pub active: bool,
    /// What is loaded, or why nothing is.
    pub state: String,
}

/// State of the eBPF process telemetry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TelemetryStatus {
    /// `off`, `starting`, `running`, or `unavailable: why` / `failed: why`.
    pub process: String,
    /// Records turned into events.
    pub records: u64,
    /// Records the kernel could not queue (ring buffer full).
    pub lost: u64,
    /// Records that could not be decoded.
    pub decode_errors: u64,
    /// Parts of the sensor that are not running, each with the reason.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Processes in the process table (live and recently exited).
    #[serde(default)]
    pub processes: u64,
    /// Which execs fanotify cannot see are held for a verdict (`off`, `memfd`, `unwatched`).
    #[serde(default)]
    pub unseen: String,
    /// Execs held for a verdict so far.
    #[serde(default)]
    pub holds: u64,
    /// Execs killed in the kernel because their file was known to be blocked.
    #[serde(default)]
    pub kernel_kills: u64,
    /// Execs that should have been held but could not be (map or ring buffer full).
    #[serde(default)]
    pub unheld: u64,
}

/// One source's answer in an [`InspectReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceAnswer {
    /// The source.
    pub source: String,
    /// What it said.
    #[serde(flatten)]
    pub finding: Finding,
}

/// `inspect` payload: what is known about one file and what it would get.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectReply {
    /// The resolved path judged.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// MD5, hex, when a source needed it.
    pub md5: Option<String>,
    /// SHA-1, hex, when a source needed it.
    pub sha1: Option<String>,
    /// Every source's answer, in the order they are asked.
    pub sources: Vec<SourceAnswer>,
    /// The source whose answer counts (the first definite one).
    pub deciding: Option<String>,
    /// Current mode.
    pub mode: Mode,
    /// The verdict in the current mode.
    pub now: Verdict,
    /// The verdict in each mode.
    pub per_mode: Vec<(Mode, Verdict)>,
    /// The deciding rule, if any.
    pub rule: Option<Rule>,
    /// What the file is, from its first bytes (read by the agent: in lockdown a process may
    /// not be allowed to open an untrusted ELF image itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<custos_verdict::FileType>,
}

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("custos agent is not running (no listener on {path})")]
    NotRunning {
        /// The socket.
        path: PathBuf,
    },
    /// Another agent already listens on the socket.
    #[error("another custos agent is already running on {path}")]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
    },
    /// Socket I/O failed.
    #[error("control socket {path}: {op}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The agent answered something unreadable.
    #[error("bad reply from agent: {0}")]
    BadReply(String),
    /// The agent refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to the agent.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the agent's socket (10 s I/O timeout).
    pub fn connect(path: &Path) -> Result<Client, ControlError> {
        let io = |op| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, op, source }
        };
        let s = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ControlError::NotRunning {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io("connect")(e)),
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("set timeout"))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(io("set timeout"))?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::new(s),
        })
    }

    /// Sends a request and returns the payload of a successful reply.
    pub fn call(&mut self, req: &Request) -> Result<serde_json::Value, ControlError> {
        let mut line =
            serde_json::to_string(req).map_err(|e| ControlError::BadReply(e.to_string()))?;
        line.push('\n');
        self.raw(&line)
    }

    /// Sends one raw line (for tests of malformed input) and returns the payload.
    pub fn raw(&mut self, line: &str) -> Result<serde_json::Value, ControlError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| ControlError::Io { path, op, source }
        };
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(io("write"))?;
        let mut reply = String::new();
        self.reader.read_line(&mut reply).map_err(io("read"))?;
        if reply.is_empty() {
            return Err(ControlError::BadReply("connection closed".into()));
        }
        let r: Reply =
            serde_json::from_str(&reply).map_err(|e| ControlError::BadReply(e.to_string()))?;
        match r {
            Reply { ok: true, data, .. } => Ok(data.unwrap_or(serde_json::Value::Null)),
            Reply { error, .. } => Err(ControlError::Refused(
                error.unwrap_or_else(|| "request failed".into()),
            )),
        }
    }

    /// Typed call.
    pub fn call_as<T: serde::de::DeserializeOwned>(
        &mut self,
        req: &Request,
    ) -> Result<T, ControlError> {
        let v = self.call(req)?;
        serde_json::from_value(v).map_err(|e| ControlError::BadReply(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(r#"{"cmd":"mode","set":"lockdown"}"#).expect("parse");
        assert_eq!(
            r,
            Request::Mode {
                set: Some(Mode::Lockdown)
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"mode"}"#).expect("parse");
        assert_eq!(r, Request::Mode { set: None });
        let r: Request = serde_json::from_str(r#"{"cmd":"rule_remove","id":3}"#).expect("parse");
        assert_eq!(r, Request::RuleRemove { id: 3 });
        let r: Request =
            serde_json::from_str(r#"{"cmd":"net_rule_remove","id":1000001}"#).expect("parse");
        assert_eq!(r, Request::NetRuleRemove { id: 1_000_001 });
        let r: Request = serde_json::from_str(r#"{"cmd":"net_rule_list"}"#).expect("parse");
        assert_eq!(r, Request::NetRuleList {});
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"mode","set":"bogus"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"status","x":1}"#).is_err());
    }

    #[test]
    fn net_rule_add_wire_format() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"net_rule_add","rule":{"action":"deny","audit":true}}"#)
                .expect("parse");
        let Request::NetRuleAdd { rule } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(rule.action, custos_network::Action::Deny);
        assert!(rule.audit && rule.cidr.is_none() && rule.program.is_none());
        let back: Request =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Request>(
            r#"{"cmd":"net_rule_add","rule":{"action":"deny","bogus":1}}"#
        )
        .is_err());
    }

    #[test]
    fn net_status_reads_partial_documents() {
        let mut v = serde_json::to_value(NetStatus {
            enabled: true,
            cgroup: Some("/sys/fs/cgroup".into()),
            rules: 3,
            ..NetStatus::default()
        })
        .expect("json");
        assert_eq!(v["cgroup"], "/sys/fs/cgroup");
        v["missing"] = serde_json::json!(["accept: no BTF"]);
        let n: NetStatus = serde_json::from_value(v).expect("parse");
        assert_eq!((n.enabled, n.rules, n.missing.len()), (true, 3, 1));
        let n: NetStatus = serde_json::from_str(r#"{"enabled":true}"#).expect("parse");
        assert!(n.enabled && n.cgroup.is_none() && n.events == 0);
    }
}
