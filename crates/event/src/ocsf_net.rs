//! `custos.network` → Network Activity (4001) and DNS Activity (4003).

use super::{get, lookup, process, text, Class, Mapped};
use serde_json::{json, Value};
use std::net::IpAddr;

const NETWORK: Class = Class(4001, "Network Activity", 4, "Network Activity");
const DNS: Class = Class(4003, "DNS Activity", 4, "Network Activity");

/// ECS `event.action` → Network Activity activity. A deny is always Refuse (5), a failed
/// connect, accept or send Fail (4). Network Activity has no Bind: Other (99) named "Bind".
#[rustfmt::skip]
const NETWORK_ACTIONS: &[(&str, u32, &str)] = &[
    ("connect accept", 1, "Open"),
    ("close", 2, "Close"),
    ("send", 6, "Traffic"),
    ("listen", 7, "Listen"),
    ("bind", 99, "Bind"),
];

/// ECS leaves a network event's attributes carry.
const NETWORK_ECS: &str = "source.ip source.port source.domain source.bytes destination.ip \
    destination.port destination.domain destination.bytes network.transport network.direction \
    network.type network.bytes rule.id rule.name error.message";

/// ECS leaves a DNS answer's attributes carry.
const DNS_ECS: &str = "source.ip source.port network.transport network.type network.protocol \
    dns.type dns.question.name dns.response_code dns.resolved_ip dns.answers";

/// DNS response codes: ECS mnemonic, OCSF `rcode_id` and caption.
#[rustfmt::skip]
const RCODES: &[(&str, u32, &str)] = &[
    ("NOERROR", 0, "NoError"), ("FORMERR", 1, "FormError"), ("SERVFAIL", 2, "ServError"),
    ("NXDOMAIN", 3, "NXDomain"), ("NOTIMP", 4, "NotImp"), ("REFUSED", 5, "Refused"),
    ("YXDOMAIN", 6, "YXDomain"), ("YXRRSET", 7, "YXRRSet"), ("NXRRSET", 8, "NXRRSet"),
    ("NOTAUTH", 9, "NotAuth"), ("NOTZONE", 10, "NotZone"), ("DSOTYPENI", 11, "DSOTYPENI"),
    ("12 13 14 15", 24, "Unassigned"),
];

pub(super) fn network_activity(ecs: &Value, action: &str) -> Mapped {
    let deny = text(ecs, "custos.decision") == Some("deny");
    let failed = text(ecs, "event.outcome") == Some("failure")
        && matches!(action, "connect" | "accept" | "send");
    let (id, name) = match lookup(NETWORK_ACTIONS, action) {
        _ if deny => (5, "Refuse"),
        _ if failed => (4, "Fail"),
        Some(hit) => hit,
        None => (99, action),
    };
    let mut m = Mapped::new(NETWORK, id, name);
    m.also_mapped = NETWORK_ECS;
    m.set("src_endpoint", endpoint(ecs, "source"));
    m.set("dst_endpoint", endpoint(ecs, "destination"));
    m.set("connection_info", connection_info(ecs));
    let mut traffic = json!({});
    for (key, ecs_key) in [
        ("bytes_out", "source.bytes"),
        ("bytes_in", "destination.bytes"),
        ("bytes", "network.bytes"),
    ] {
        if let Some(n) = get(ecs, ecs_key) {
            traffic[key] = n.clone();
        }
    }
    m.set("traffic", traffic);
    let mut rule = json!({});
    for (key, ecs_key) in [("uid", "rule.id"), ("name", "rule.name")] {
        if let Some(v) = get(ecs, ecs_key) {
            rule[key] = v.clone();
        }
    }
    m.set("firewall_rule", rule);
    m.set("status_detail", json!(text(ecs, "error.message")));
    if deny && super::flag(ecs, "custos.quarantine") {
        // The host's network quarantine, not a rule, refused it.
        m.set("disposition_id", json!(4));
        m.set("disposition", json!("Isolated"));
    }
    actor(ecs, &mut m);
    m
}

/// A DNS answer: DNS Activity Response; the resolver is the responder (`dst_endpoint`).
pub(super) fn dns_activity(ecs: &Value) -> Mapped {
    let mut m = Mapped::new(DNS, 2, "Response");
    m.also_mapped = DNS_ECS;
    if let Some(q) = text(ecs, "dns.question.name") {
        m.set("query", json!({ "hostname": q }));
    }
    let answers: Vec<Value> = get(ecs, "dns.answers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            let mut o = json!({ "rdata": a.get("data").cloned().unwrap_or_default() });
            for key in ["type", "ttl"] {
                if let Some(v) = a.get(key) {
                    o[key] = v.clone();
                }
            }
            o
        })
        .collect();
    m.set("answers", json!(answers));
    if let Some(code) = text(ecs, "dns.response_code") {
        let (id, name) = lookup(RCODES, code).unwrap_or((99, code));
        m.set("rcode_id", json!(id));
        m.set("rcode", json!(name));
    }
    m.set("dst_endpoint", endpoint(ecs, "source"));
    m.set("connection_info", connection_info(ecs));
    actor(ecs, &mut m);
    m
}

fn actor(ecs: &Value, m: &mut Mapped) {
    if let Some(p) = ecs.get("process") {
        m.set("actor", json!({ "process": process(p, ecs.get("user")) }));
    }
}

fn endpoint(ecs: &Value, side: &str) -> Value {
    let mut e = json!({});
    for (key, ecs_key) in [("ip", "ip"), ("port", "port"), ("hostname", "domain")] {
        if let Some(v) = get(ecs, &format!("{side}.{ecs_key}")) {
            e[key] = v.clone();
        }
    }
    e
}

fn connection_info(ecs: &Value) -> Value {
    let (direction_id, direction) = match text(ecs, "network.direction") {
        Some("inbound" | "ingress") => (1, "Inbound"),
        Some("outbound" | "egress") => (2, "Outbound"),
        Some("internal") => (3, "Lateral"),
        _ => (0, "Unknown"),
    };
    let mut c = json!({ "direction_id": direction_id, "direction": direction });
    if let Some(t) = text(ecs, "network.transport").map(str::to_ascii_lowercase) {
        let num = match t.as_str() {
            "icmp" => Some(1),
            "tcp" => Some(6),
            "udp" => Some(17),
            "ipv6-icmp" | "icmpv6" => Some(58),
            _ => None,
        };
        if let Some(n) = num {
            c["protocol_num"] = json!(n);
        }
        c["protocol_name"] = json!(t);
    }
    let ip = text(ecs, "destination.ip").or_else(|| text(ecs, "source.ip"));
    match ip.and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(_)) => c["protocol_ver_id"] = json!(4),
        Some(IpAddr::V6(_)) => c["protocol_ver_id"] = json!(6),
        None => {}
    }
    c
}
