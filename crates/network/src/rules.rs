//! Network rules: what users write (config `[[net.rule]]`, `custos net rule add`), how they
//! are kept (`net-rules.json` in the state dir) and the flat form the kernel matches.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod store;
mod text;
pub use text::unmap;

/// Longest comment accepted, in characters.
pub const MAX_COMMENT: usize = 200;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through (and stop looking at later rules).
    Allow,
    /// Refuse it with EPERM (or, for an audit rule, log that it would be).
    Deny,
}

/// Which transport a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP and UDP.
    #[default]
    Any,
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
}

/// Which operations a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Outbound: `connect` and UDP sends to an address (the address and port are the remote
    /// end).
    #[default]
    Out,
    /// `bind` (the address and port are the local end): who may serve on a port.
    Bind,
    /// Both.
    Any,
}

/// An IPv4 or IPv6 network, `10.0.0.0/8`, `::1` (a single address is /32 or /128).
/// Serialised as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// Ports `lo..=hi`; serialised as `"80"` or `"8000-8100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

/// A rule as written: every criterion optional (absent matches everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNetRule {
    /// Allow or deny.
    pub action: Action,
    /// Remote network (for `bind`, the local address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    /// Remote port range (for `bind`, the local port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
    /// Transport.
    #[serde(default)]
    pub transport: Transport,
    /// Operations.
    #[serde(default)]
    pub direction: Direction,
    /// The program: a path, resolved to its file identity (device, inode) when the rules are
    /// applied, so a hard link under another name is the same program, and a copy, or
    /// another file later put under this name, is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    /// Log what it would deny, deny nothing.
    #[serde(default)]
    pub audit: bool,
    /// Free text, shown in events (`rule.name`) and lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRule {
    /// Unique, never reused in one state dir. Config rules have ids from
    /// [`CONFIG_ID_BASE`] up, in file order.
    pub id: u64,
    /// The rule.
    #[serde(flatten)]
    pub rule: NewNetRule,
}

/// Ids of rules from the config file start here (they are not in the store).
pub const CONFIG_ID_BASE: u64 = 1_000_000;

/// One rule in the flat form the kernel matches (`struct net_rule` in `bpf/net.h`; the
/// sensor copies these fields into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelRule {
    /// The rule's id (events name it).
    pub id: u64,
    /// 0 any, 4, 6.
    pub family: u8,
    /// Network address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Prefix length (0 with family 0).
    pub prefix: u8,
    /// Ports `lo..=hi` (0..=65535 for any).
    pub port_lo: u16,
    /// See `port_lo`.
    pub port_hi: u16,
    /// 0 any, 6 TCP, 17 UDP.
    pub protocol: u8,
    /// Bit 1 outbound (connect, send), bit 2 bind.
    pub hooks: u8,
    /// The program's (st_dev, st_ino) as `stat` gives them; `None` for any program.
    pub program: Option<(u64, u64)>,
    /// Deny (else allow).
    pub deny: bool,
    /// Audit only.
    pub audit: bool,
}

/// Hook bit: `connect` and sends to an address.
pub const HOOK_OUT: u8 = 1;
/// Hook bit: `bind`.
pub const HOOK_BIND: u8 = 2;

/// Errors about network rules.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A criterion does not parse.
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        /// Which criterion.
        what: &'static str,
        /// The text given.
        value: String,
        /// Why.
        why: String,
    },
    /// A rule's program cannot be resolved.
    #[error("rule {id}: cannot resolve program {path}")]
    Program {
        /// The rule.
        id: u64,
        /// The path.
        path: PathBuf,
        /// The stat error.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot be read or written.
    #[error("network rules store {path}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store holds something that is not a rule list.
    #[error("network rules store {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No rule has this id.
    #[error("no network rule with id {0}")]
    NotFound(u64),
    /// A check given to [`NetRuleStore::add_with`] or [`NetRuleStore::remove_with`] refused
    /// the change (callers may use this or any other variant).
    #[error("{reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// A rule handed to [`compile`] is not valid.
    #[error("network rule {id} is invalid")]
    Rule {
        /// The rule.
        id: u64,
        /// What is wrong.
        #[source]
        source: Box<NetError>,
    },
    /// More rules than the kernel table holds.
    #[error("{count} network rules; at most {max} fit in the kernel table")]
    TooMany {
        /// Rules given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The rules kept in `<state>/net-rules.json` (added and removed at runtime).
#[derive(Debug, Clone)]
pub struct NetRuleStore {
    path: PathBuf,
}

impl NetRuleStore {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> NetRuleStore {
        NetRuleStore {
            path: state_dir.join("net-rules.json"),
        }
    }
}

impl NewNetRule {
    /// Checks what the types do not: an absolute program path, a comment of at most
    /// [`MAX_COMMENT`] characters, and (their fields being public) a well-formed network and
    /// port range. A rule with no criteria is valid: it matches everything.
    pub fn validate(&self) -> Result<(), NetError> {
        if let Some(c) = &self.cidr {
            c.check()?;
        }
        if let Some(p) = &self.ports {
            p.check()?;
        }
        if let Some(p) = self.program.as_ref().filter(|p| !p.is_absolute()) {
            return Err(NetError::Invalid {
                what: "program",
                value: p.display().to_string(),
                why: "must be an absolute path".into(),
            });
        }
        if let Some(c) = &self.comment {
            let n = c.chars().count();
            if n > MAX_COMMENT {
                return Err(NetError::Invalid {
                    what: "comment",
                    value: c.chars().take(40).chain("…".chars()).collect(),
                    why: format!("{n} characters; at most {MAX_COMMENT}"),
                });
            }
        }
        Ok(())
    }

    /// What events and lists call the rule: its comment, else its summary ([`describe`]).
    pub fn name(&self) -> String {
        match &self.comment {
            Some(c) if !c.trim().is_empty() => c.clone(),
            _ => describe(self),
        }
    }
}

/// A one-line summary: `deny tcp out to 10.0.0.0/8 port 80-90 by /usr/bin/curl (audit)`.
pub fn describe(rule: &NewNetRule) -> String {
    rule.to_string()
}

/// Written as [`describe`] says.
impl fmt::Display for NewNetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })?;
        if self.cidr.is_none() && self.ports.is_none() && self.program.is_none() {
            f.write_str(" all")?;
        }
        f.write_str(match self.transport {
            Transport::Any => "",
            Transport::Tcp => " tcp",
            Transport::Udp => " udp",
        })?;
        let (dir, prep) = match self.direction {
            Direction::Out => ("out", "to"),
            Direction::Bind => ("bind", "on"),
            Direction::Any => ("out and bind", "at"),
        };
        write!(f, " {dir}")?;
        if let Some(c) = &self.cidr {
            write!(f, " {prep} {c}")?;
        }
        if let Some(p) = &self.ports {
            write!(f, " port {p}")?;
        }
        if let Some(p) = &self.program {
            write!(f, " by {}", p.display())?;
        }
        if self.audit {
            f.write_str(" (audit)")?;
        }
        Ok(())
    }
}

/// Compiles `rules` (config rules first, then stored ones: the first match decides) into the
/// kernel form, resolving programs with `stat`. Fails naming the first rule that is wrong.
pub fn compile(rules: &[NetRule], max: usize) -> Result<Vec<KernelRule>, NetError> {
    use std::os::unix::fs::MetadataExt;
    compile_with(rules, max, |p| {
        std::fs::metadata(p).map(|m| (m.dev(), m.ino()))
    })
}

/// [`compile`] with the program lookup given: `stat` returns a path's (st_dev, st_ino).
pub fn compile_with(
    rules: &[NetRule],
    max: usize,
    stat: impl Fn(&Path) -> std::io::Result<(u64, u64)>,
) -> Result<Vec<KernelRule>, NetError> {
    if rules.len() > max {
        return Err(NetError::TooMany {
            count: rules.len(),
            max,
        });
    }
    rules.iter().map(|r| kernel_rule(r, &stat)).collect()
}

fn kernel_rule(
    r: &NetRule,
    stat: &impl Fn(&Path) -> std::io::Result<(u64, u64)>,
) -> Result<KernelRule, NetError> {
    let rule = &r.rule;
    rule.validate().map_err(|e| NetError::Rule {
        id: r.id,
        source: Box::new(e),
    })?;
    let mut k = KernelRule {
        id: r.id,
        port_lo: 0,
        port_hi: u16::MAX,
        deny: rule.action == Action::Deny,
        audit: rule.audit,
        ..KernelRule::default()
    };
    if let Some(c) = rule.cidr.map(|c| c.canonical()) {
        k.prefix = c.prefix;
        match c.addr {
            IpAddr::V4(a) => {
                k.family = 4;
                k.addr[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                k.family = 6;
                k.addr = a.octets();
            }
        }
    }
    if let Some(p) = rule.ports {
        (k.port_lo, k.port_hi) = (p.lo, p.hi);
    }
    k.protocol = match rule.transport {
        Transport::Any => 0,
        Transport::Tcp => 6,
        Transport::Udp => 17,
    };
    k.hooks = match rule.direction {
        Direction::Out => HOOK_OUT,
        Direction::Bind => HOOK_BIND,
        Direction::Any => HOOK_OUT | HOOK_BIND,
    };
    if let Some(path) = &rule.program {
        k.program = Some(stat(path).map_err(|source| NetError::Program {
            id: r.id,
            path: path.clone(),
            source,
        })?);
    }
    Ok(k)
}

#[cfg(test)]
mod tests;
