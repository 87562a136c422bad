//! Network activity (module `custos.network`): connections, listens, binds and first UDP sends
//! with the network policy's decision on them, and the DNS answers processes received.

use crate::activity::base;
use crate::{Actor, Decision};
use serde_json::{json, Value};
use std::net::IpAddr;

/// What a process did on the network. ECS `event.action` is [`NetAction::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetAction {
    /// An outbound connection (TCP: once its outcome is known; UDP: `connect()`).
    Connect,
    /// An inbound TCP connection accepted.
    Accept,
    /// A TCP socket began listening.
    Listen,
    /// A socket bound to a local address and port (UDP servers, and refused binds).
    Bind,
    /// The first UDP datagram from a socket to an address.
    Send,
    /// A reported TCP connection ended.
    Close,
}

impl NetAction {
    /// ECS `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetAction::Connect => "connect",
            NetAction::Accept => "accept",
            NetAction::Listen => "listen",
            NetAction::Bind => "bind",
            NetAction::Send => "send",
            NetAction::Close => "close",
        }
    }

    /// ECS `event.type` (before the policy's `allowed`/`denied`).
    fn ecs_types(self) -> &'static [&'static str] {
        match self {
            NetAction::Connect | NetAction::Accept => &["connection", "start"],
            NetAction::Close => &["connection", "end"],
            NetAction::Listen | NetAction::Bind => &["start"],
            NetAction::Send => &["connection"],
        }
    }

    /// ECS `network.direction` (host-based values); `None` for a close, which does not say
    /// who opened the connection.
    fn direction(self) -> Option<&'static str> {
        match self {
            NetAction::Connect | NetAction::Send => Some("egress"),
            NetAction::Accept | NetAction::Listen | NetAction::Bind => Some("ingress"),
            NetAction::Close => None,
        }
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetTransport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl NetTransport {
    /// ECS `network.transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetTransport::Tcp => "tcp",
            NetTransport::Udp => "udp",
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Address, when known.
    pub ip: Option<IpAddr>,
    /// Port (0: none or not known).
    pub port: u16,
    /// A name DNS gave this address.
    pub domain: Option<String>,
}

impl Endpoint {
    /// ECS `source`/`destination` object (empty when nothing is known).
    fn to_ecs(&self, bytes: Option<u64>) -> Value {
        let mut e = json!({});
        if let Some(ip) = self.ip {
            e["ip"] = json!(ip.to_string());
        }
        if self.port != 0 {
            e["port"] = json!(self.port);
        }
        if let Some(d) = &self.domain {
            e["domain"] = json!(d);
        }
        if let Some(b) = bytes {
            e["bytes"] = json!(b);
        }
        e
    }
}

/// What a network rule or the quarantine decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPolicy {
    /// What the kernel did.
    pub decision: Decision,
    /// A rule would have denied, but it is audit-only (or the agent is in audit mode).
    pub would_deny: bool,
    /// The deciding rule's id (none for the quarantine).
    pub rule_id: Option<u64>,
    /// The deciding rule's comment.
    pub rule_name: Option<String>,
    /// Decided by the quarantine (lockdown with `[net] quarantine`), not a rule.
    pub quarantine: bool,
}

/// One connection or socket operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// What happened.
    pub action: NetAction,
    /// TCP or UDP.
    pub transport: NetTransport,
    /// The initiator: for connect/send the local end; for accept the remote client; for close
    /// the local end.
    pub source: Endpoint,
    /// The responder: for connect/send the remote end; for accept, listen and bind the local
    /// end; for close the remote end.
    pub destination: Endpoint,
    /// None: not known (e.g. a UDP send); Some(false): failed (refused, unreachable, denied).
    pub success: Option<bool>,
    /// Why it failed, short text (e.g. "refused or unreachable", "denied by network rule").
    pub error: Option<String>,
    /// Close of a TCP connection: bytes this host sent on it.
    pub bytes_out: Option<u64>,
    /// Close of a TCP connection: bytes this host received on it.
    pub bytes_in: Option<u64>,
    /// A network rule or the quarantine decided (absent: nothing matched).
    pub policy: Option<NetPolicy>,
    /// Who did it.
    pub actor: Actor,
}

impl NetworkEvent {
    /// ECS `event.outcome`: a deny is a failure whatever else is known.
    pub fn outcome(&self) -> &'static str {
        let denied = self
            .policy
            .as_ref()
            .is_some_and(|p| p.decision == Decision::Deny);
        match self.success {
            _ if denied => "failure",
            Some(true) => "success",
            Some(false) => "failure",
            None => "unknown",
        }
    }

    /// The event as an ECS object.
    pub fn to_ecs(&self) -> Value {
        let action = self.action;
        let types = action.ecs_types();
        let mut v = base(
            &self.timestamp,
            "network",
            types[0],
            action.as_str(),
            "custos.network",
        );
        let mut types = types.to_vec();
        if let Some(p) = &self.policy {
            types.push(match p.decision {
                Decision::Allow => "allowed",
                Decision::Deny => "denied",
            });
        }
        v["event"]["type"] = json!(types);
        v["event"]["outcome"] = json!(self.outcome());

        // ECS `source.bytes` is what the source sent; the source is this host except on
        // accept.
        let (src_bytes, dst_bytes) = match action {
            NetAction::Accept => (self.bytes_in, self.bytes_out),
            _ => (self.bytes_out, self.bytes_in),
        };
        v["source"] = self.source.to_ecs(src_bytes);
        v["destination"] = self.destination.to_ecs(dst_bytes);
        let mut network = json!({ "transport": self.transport.as_str() });
        if let Some(t) = ip_type(&[self.destination.ip, self.source.ip]) {
            network["type"] = json!(t);
        }
        if let Some(d) = action.direction() {
            network["direction"] = json!(d);
        }
        if src_bytes.is_some() || dst_bytes.is_some() {
            let sum = src_bytes
                .unwrap_or(0)
                .saturating_add(dst_bytes.unwrap_or(0));
            network["bytes"] = json!(sum);
        }
        v["network"] = network;
        if let Some(e) = &self.error {
            v["error"] = json!({ "message": e });
        }
        if let Some(p) = &self.policy {
            p.add_to(&mut v);
        }
        add_actor(&self.actor, &mut v);
        v
    }
}

impl NetPolicy {
    fn add_to(&self, v: &mut Value) {
        v["custos"]["decision"] = json!(self.decision);
        v["custos"]["would_deny"] = json!(self.would_deny);
        if self.quarantine {
            v["custos"]["quarantine"] = json!(true);
        }
        if self.rule_id.is_some() || self.rule_name.is_some() {
            let mut rule = json!({ "ruleset": "network" });
            if let Some(id) = self.rule_id {
                rule["id"] = json!(id.to_string());
            }
            if let Some(n) = &self.rule_name {
                rule["name"] = json!(n);
            }
            v["rule"] = rule;
        }
    }
}

/// A DNS answer (UDP from port 53) read as it arrived at a process's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvent {
    /// `@timestamp`, RFC 3339.
    pub timestamp: String,
    /// The resolver that answered.
    pub server: Endpoint,
    /// The name asked for.
    pub question: String,
    /// The response code (0 NOERROR, 3 NXDOMAIN, …).
    pub rcode: u8,
    /// A and AAAA records: address and TTL in seconds.
    pub addresses: Vec<(IpAddr, u32)>,
    /// The CNAME chain from the question, in order (the addresses belong to the last).
    pub cnames: Vec<String>,
    /// The answer section is incomplete (the copy was cut, or the server set TC).
    pub truncated: bool,
    /// The process the answer went to (pid 0: not known).
    pub actor: Actor,
}

impl DnsEvent {
    /// ECS `dns.response_code`: the mnemonic, else the number.
    pub fn response_code(&self) -> String {
        const NAMES: [&str; 12] = [
            "NOERROR",
            "FORMERR",
            "SERVFAIL",
            "NXDOMAIN",
            "NOTIMP",
            "REFUSED",
            "YXDOMAIN",
            "YXRRSET",
            "NXRRSET",
            "NOTAUTH",
            "NOTZONE",
            "DSOTYPENI",
        ];
        NAMES
            .get(usize::from(self.rcode))
            .map_or_else(|| self.rcode.to_string(), |n| (*n).to_owned())
    }

    /// The event as an ECS object (`event.action: dns_answer`).
    pub fn to_ecs(&self) -> Value {
        let mut v = base(
            &self.timestamp,
            "network",
            "protocol",
            "dns_answer",
            "custos.network",
        );
        v["event"]["type"] = json!(["protocol", "info"]);
        let mut answers = Vec::new();
        let mut owner = self.question.as_str();
        for c in &self.cnames {
            answers.push(json!({ "name": owner, "type": "CNAME", "data": c }));
            owner = c;
        }
        for (ip, ttl) in &self.addresses {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            let data = ip.to_string();
            answers.push(json!({ "name": owner, "type": kind, "ttl": ttl, "data": data }));
        }
        let resolved: Vec<String> = self
            .addresses
            .iter()
            .map(|(ip, _)| ip.to_string())
            .collect();
        v["dns"] = json!({
            "type": "answer",
            "question": { "name": self.question },
            "response_code": self.response_code(),
            "resolved_ip": resolved,
            "answers": answers,
        });
        if self.truncated {
            v["custos"] = json!({ "dns_truncated": true });
        }
        v["source"] = self.server.to_ecs(None);
        let mut network = json!({ "protocol": "dns", "transport": "udp" });
        if let Some(t) = ip_type(&[self.server.ip]) {
            network["type"] = json!(t);
        }
        v["network"] = network;
        add_actor(&self.actor, &mut v);
        v
    }
}

/// ECS `network.type` of the first known address.
fn ip_type(ips: &[Option<IpAddr>]) -> Option<&'static str> {
    match ips.iter().flatten().next()? {
        IpAddr::V4(_) => Some("ipv4"),
        IpAddr::V6(_) => Some("ipv6"),
    }
}

/// `process.*` and `user.id`, as file events have them; nothing for an unknown process.
fn add_actor(a: &Actor, v: &mut Value) {
    if a.process.pid != 0 || a.process.executable.is_some() {
        v["process"] = a.process.to_ecs();
    }
    if let Some(uid) = a.uid {
        v["user"] = json!({ "id": uid.to_string() });
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
pub(crate) mod tests;
