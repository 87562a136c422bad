//! The indexed columns of one event, pulled out of its ECS document.

use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Event kinds: the part of `event.module` after `custos.`. `agent` is the agent's own
/// metrics (records lost, events dropped).
pub const KINDS: &[&str] = &[
    "exec",
    "process",
    "image",
    "injection",
    "file",
    "network",
    "input",
    "agent",
];

/// What the kernel was told, for events that carry a decision (`custos.decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl Outcome {
    /// `allow` or `deny`, as stored and as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }

    /// Parses `allow` or `deny`.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "allow" => Some(Outcome::Allow),
            "deny" => Some(Outcome::Deny),
            _ => None,
        }
    }
}

/// One event as stored: the indexed columns and the whole ECS document.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `@timestamp` in microseconds since the Unix epoch.
    pub ts_us: i64,
    /// See [`KINDS`].
    pub kind: String,
    /// `event.action`.
    pub action: String,
    /// `custos.decision`, when the event carries one.
    pub outcome: Option<Outcome>,
    /// `process.pid`.
    pub pid: Option<i64>,
    /// `process.parent.pid`.
    pub ppid: Option<i64>,
    /// `process.entity_id`.
    pub entity_id: Option<String>,
    /// `process.parent.entity_id`.
    pub parent_entity_id: Option<String>,
    /// The path the event is about: `dll.path`, else `file.path`, else `process.executable`.
    pub path: Option<String>,
    /// SHA-256 (lower-case hex) of that file, when known.
    pub sha256: Option<String>,
    /// The ECS document, one JSON line.
    pub doc: String,
}

/// The kind of an ECS event: `event.module` without `custos.`; `other` if absent.
pub fn kind_of(ecs: &Value) -> &str {
    ecs["event"]["module"]
        .as_str()
        .map(|m| m.strip_prefix("custos.").unwrap_or(m))
        .unwrap_or("other")
}

/// Microseconds since the epoch of an RFC 3339 timestamp.
pub(crate) fn parse_ts(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    to_us(t)
}

/// Microseconds since the epoch, as the store keeps times; `None` before 1970 or past 2262.
pub fn to_us(t: SystemTime) -> Option<i64> {
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// The time of a stored `ts` (µs since the epoch; negative clamps to the epoch).
pub fn from_us(us: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl Row {
    /// The row for an ECS document. An event without a readable `@timestamp` gets `now`.
    pub fn from_ecs(ecs: &Value) -> Row {
        let p = &ecs["process"];
        let kind = kind_of(ecs);
        let ts_us = ecs["@timestamp"]
            .as_str()
            .and_then(parse_ts)
            .or_else(|| to_us(SystemTime::now()))
            .unwrap_or(0);
        let path = text(&ecs["dll"]["path"])
            .or_else(|| text(&ecs["file"]["path"]))
            .or_else(|| text(&p["executable"]));
        let sha256 = text(&ecs["dll"]["hash"]["sha256"])
            .or_else(|| text(&ecs["file"]["hash"]["sha256"]))
            .or_else(|| text(&p["hash"]["sha256"]))
            .map(|s| s.to_ascii_lowercase());
        Row {
            ts_us,
            kind: kind.to_owned(),
            action: text(&ecs["event"]["action"]).unwrap_or_default(),
            outcome: ecs["custos"]["decision"].as_str().and_then(Outcome::parse),
            pid: p["pid"].as_i64(),
            ppid: p["parent"]["pid"].as_i64(),
            entity_id: text(&p["entity_id"]),
            parent_entity_id: text(&p["parent"]["entity_id"]),
            path,
            sha256,
            doc: ecs.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_decision_columns() {
        let r = Row::from_ecs(&json!({
            "@timestamp": "2026-11-22T05:00:00.000001Z",
            "event": {"module": "custos.exec", "action": "exec"},
            "process": {"pid": 42, "executable": "/tmp/x", "hash": {"sha256": "AB"},
                        "parent": {"pid": 1}},
            "custos": {"decision": "deny"},
        }));
        assert_eq!(r.kind, "exec");
        assert_eq!(r.action, "exec");
        assert_eq!(r.outcome, Some(Outcome::Deny));
        assert_eq!((r.pid, r.ppid), (Some(42), Some(1)));
        assert_eq!(r.path.as_deref(), Some("/tmp/x"));
        assert_eq!(r.sha256.as_deref(), Some("ab"));
        assert_eq!(r.ts_us, 1_795_323_600_000_001);
    }

    #[test]
    fn image_path_is_the_library() {
        let r = Row::from_ecs(&json!({
            "@timestamp": "2026-11-22T05:00:00Z",
            "event": {"module": "custos.image", "action": "image_load"},
            "process": {"pid": 5, "entity_id": "b:1:5", "executable": "/usr/bin/python3"},
            "dll": {"path": "/usr/lib/libz.so.1"},
            "file": {"path": "/usr/lib/libz.so.1"},
        }));
        assert_eq!(r.kind, "image");
        assert_eq!(r.path.as_deref(), Some("/usr/lib/libz.so.1"));
        assert_eq!(r.entity_id.as_deref(), Some("b:1:5"));
        assert_eq!(r.outcome, None);
    }

    #[test]
    fn missing_fields_are_none() {
        let r = Row::from_ecs(&json!({"@timestamp": "garbage"}));
        assert_eq!(r.kind, "other");
        assert!(r.ts_us > 1_700_000_000_000_000, "bad timestamp is now");
        assert!(r.pid.is_none() && r.path.is_none() && r.sha256.is_none());
    }
}
