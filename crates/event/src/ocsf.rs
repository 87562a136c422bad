//! ECS → OCSF 1.7.0: the second event output, for tools that speak OCSF (Security Lake, Splunk,
//! Tenzir) rather than ECS.
//!
//! Classes used: Process Activity (1007), File System Activity (1001), Module Activity (1005),
//! Network Activity (4001), DNS Activity (4003), and Base Event (0) for everything else, with the
//! original document under `unmapped` so nothing is lost. On the mapped classes `unmapped` holds every `custos.*`
//! field (without the prefix) and every ECS leaf that has no OCSF home, by its dotted ECS name.

use serde_json::{json, Map, Value};
use std::time::UNIX_EPOCH;

/// The OCSF schema version of the output (`metadata.version`).
pub const OCSF_VERSION: &str = "1.7.0";

/// Class uid and caption, category uid and caption.
struct Class(u32, &'static str, u32, &'static str);

const PROCESS: Class = Class(1007, "Process Activity", 1, "System Activity");
const FILE: Class = Class(1001, "File System Activity", 1, "System Activity");
const MODULE: Class = Class(1005, "Module Activity", 1, "System Activity");
const BASE: Class = Class(0, "Base Event", 0, "Uncategorized");

/// A class, an activity and the class-specific attributes; the rest is common.
struct Mapped {
    class: Class,
    activity_id: u32,
    activity_name: String,
    attrs: Map<String, Value>,
    /// ECS leaves this class's attributes carry besides [`MAPPED_ECS`] (space-separated).
    also_mapped: &'static str,
}

impl Mapped {
    fn new(class: Class, activity_id: u32, activity_name: &str) -> Self {
        Mapped {
            class,
            activity_id,
            activity_name: activity_name.to_owned(),
            attrs: Map::new(),
            also_mapped: "",
        }
    }

    /// Sets an attribute unless it is null or an empty object.
    fn set(&mut self, key: &str, v: Value) {
        if !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()) {
            self.attrs.insert(key.to_owned(), v);
        }
    }
}

/// ECS leaves an OCSF attribute carries; every other leaf is kept under `unmapped`.
const MAPPED_ECS: &str = "@timestamp event.kind event.category event.type event.action \
    event.module event.outcome event.reason event.id host.name host.id user.id user.name \
    dll.path dll.name dll.hash.sha256 file.path file.name file.size file.type file.hash.sha256";

/// ECS leaves of a `process` object (also under `target.process`) that `process()` maps.
const MAPPED_PROCESS: &str = "pid entity_id executable name command_line args_count \
    hash.sha256 thread.id start working_directory exit_code parent.pid parent.entity_id \
    parent.executable";

/// Converts one custos ECS document (as the crate's `to_ecs()` functions produce it) to OCSF.
pub fn to_ocsf(ecs: &Value) -> Value {
    let action = text(ecs, "event.action").unwrap_or("");
    let mapped = match text(ecs, "event.module").unwrap_or("") {
        "custos.exec" if action == "load" => Some(load_decision(ecs)),
        "custos.exec" => Some(exec_decision(ecs)),
        "custos.process" if text(ecs, "event.kind") != Some("metric") => process_event(ecs, action),
        "custos.image" => Some(module_load(ecs)),
        "custos.injection" => Some(injection(ecs)),
        "custos.file" => Some(file_activity(ecs, action)),
        "custos.network" if action == "dns_answer" => Some(net::dns_activity(ecs)),
        "custos.network" => Some(net::network_activity(ecs, action)),
        _ => None,
    };
    let base = mapped.is_none();
    let mut m = mapped.unwrap_or_else(|| base_event(ecs, action));

    let type_uid = u64::from(m.class.0) * 100 + u64::from(m.activity_id);
    let caption = if m.activity_id == 99 {
        "Other"
    } else {
        &m.activity_name
    };
    let (severity_id, severity) = severity(ecs);
    let mut out = json!({
        "class_uid": m.class.0, "class_name": m.class.1,
        "category_uid": m.class.2, "category_name": m.class.3,
        "activity_id": m.activity_id, "activity_name": m.activity_name,
        "type_uid": type_uid, "type_name": format!("{}: {caption}", m.class.1),
        "severity_id": severity_id, "severity": severity,
    });
    if let Some(t) = text(ecs, "@timestamp").and_then(epoch_ms) {
        out["time"] = json!(t);
    }
    match text(ecs, "event.outcome") {
        Some("success") => (out["status_id"], out["status"]) = (json!(1), json!("Success")),
        Some("failure") => (out["status_id"], out["status"]) = (json!(2), json!("Failure")),
        _ => {}
    }
    // Outside the System Activity category `device` and `actor` come from the host profile.
    let mut profiles = if m.class.2 == 1 { vec![] } else { vec!["host"] };
    if decision(ecs, &mut out) {
        profiles.push("security_control");
    }
    out["metadata"] = metadata(ecs, &profiles);
    out["device"] = device(ecs);
    let unmapped = if base {
        ecs.clone()
    } else {
        unmapped(ecs, m.also_mapped)
    };
    if let Some(o) = out.as_object_mut() {
        o.append(&mut m.attrs);
        if unmapped.as_object().is_some_and(|u| !u.is_empty()) {
            o.insert("unmapped".into(), unmapped);
        }
    }
    out
}

/// Medium for denies (and audit-mode would-denies) and for injection that tampered with a held
/// exec; informational otherwise.
fn severity(ecs: &Value) -> (u8, &'static str) {
    let deny = text(ecs, "custos.decision") == Some("deny") || flag(ecs, "custos.would_deny");
    let tamper =
        text(ecs, "event.module") == Some("custos.injection") && flag(ecs, "custos.tamper");
    if deny || tamper {
        (3, "Medium")
    } else {
        (1, "Informational")
    }
}

/// Security-control outcome from `custos.decision`; returns whether one was set.
fn decision(ecs: &Value, out: &mut Value) -> bool {
    let (action, disposition) = match text(ecs, "custos.decision") {
        Some("deny") => ((2, "Denied"), (2, "Blocked")),
        // Audit mode let it run but would have denied it: detected, not blocked.
        Some("allow") if flag(ecs, "custos.would_deny") => ((1, "Allowed"), (15, "Detected")),
        Some("allow") => ((1, "Allowed"), (1, "Allowed")),
        _ => return false,
    };
    (out["action_id"], out["action"]) = (json!(action.0), json!(action.1));
    (out["disposition_id"], out["disposition"]) = (json!(disposition.0), json!(disposition.1));
    true
}

fn metadata(ecs: &Value, profiles: &[&str]) -> Value {
    let mut md = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "custos",
            "vendor_name": "custos",
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    let from = [
        ("log_name", "event.module"),
        ("event_code", "event.action"),
        ("original_time", "@timestamp"),
        ("uid", "event.id"),
    ];
    for (key, ecs_key) in from {
        if let Some(v) = text(ecs, ecs_key) {
            md[key] = json!(v);
        }
    }
    if !profiles.is_empty() {
        md["profiles"] = json!(profiles);
    }
    md
}

/// The reporting host: always Linux; name and id when the document carries `host.*`.
fn device(ecs: &Value) -> Value {
    let mut d = json!({
        "type_id": 0,
        "type": "Unknown",
        "os": { "name": "Linux", "type_id": 200, "type": "Linux" },
    });
    for (key, ecs_key) in [("hostname", "host.name"), ("uid", "host.id")] {
        if let Some(v) = text(ecs, ecs_key) {
            d[key] = json!(v);
        }
    }
    d
}

fn exec_decision(ecs: &Value) -> Mapped {
    let mut m = launch(ecs, 3, "Exec");
    let path = text(ecs, "process.executable").unwrap_or("(unknown)");
    m.set("message", decision_message(ecs, &format!("exec of {path}")));
    m
}

/// A judged image load: Module Activity Load, with the decision as the security control's.
fn load_decision(ecs: &Value) -> Mapped {
    // Opened by the standard loader (ld.so, dlopen) through the file system.
    let mut m = module_activity(ecs, 1, "Standard");
    let path = text(ecs, "dll.path").unwrap_or("(unknown)");
    let by = text(ecs, "process.executable").unwrap_or("(unknown)");
    let what = format!("load of {path} by {by}");
    m.set("message", decision_message(ecs, &what));
    m
}

/// "denied `what`: reason" (or "allowed …"), the message of a decision.
fn decision_message(ecs: &Value, what: &str) -> Value {
    let verb = if text(ecs, "custos.decision") == Some("deny") {
        "denied"
    } else {
        "allowed"
    };
    let reason = text(ecs, "custos.reason").unwrap_or("unknown");
    json!(format!("{verb} {what}: {reason}"))
}

fn process_event(ecs: &Value, action: &str) -> Option<Mapped> {
    let (id, name) = match action {
        "exec" => return Some(launch(ecs, 3, "Exec")),
        "fork" => return Some(launch(ecs, 2, "Fork")),
        "exit" => (2, "Terminate"),
        "thread_start" | "thread_end" | "snapshot" => (99, action),
        _ => return None,
    };
    let p = ecs.get("process").unwrap_or(&Value::Null);
    let mut m = Mapped::new(PROCESS, id, name);
    m.set("process", process(p, ecs.get("user")));
    // Exits and thread events are the process's own doing.
    m.set("actor", json!({ "process": process(p, None) }));
    m.set("exit_code", p.get("exit_code").cloned().unwrap_or_default());
    Some(m)
}

/// Process Activity: Launch. The actor is the creator: the parent when known, else the
/// process itself (the exec step is reflexive).
fn launch(ecs: &Value, launch_type_id: u32, launch_type: &str) -> Mapped {
    let p = ecs.get("process").unwrap_or(&Value::Null);
    let mut m = Mapped::new(PROCESS, 1, "Launch");
    m.set("process", process(p, ecs.get("user")));
    let actor = match p.get("parent") {
        Some(parent) => process(parent, None),
        None => process(p, None),
    };
    m.set("actor", json!({ "process": actor }));
    m.set("launch_type_id", json!(launch_type_id));
    m.set("launch_type", json!(launch_type));
    m
}

fn injection(ecs: &Value) -> Mapped {
    let action = text(ecs, "event.action").unwrap_or("");
    let mut m = Mapped::new(PROCESS, 4, "Inject");
    let target = get(ecs, "target.process").unwrap_or(&Value::Null);
    m.set("process", process(target, None));
    let source = ecs.get("process").unwrap_or(&Value::Null);
    let actor = process(source, ecs.get("user"));
    m.set("actor", json!({ "process": actor }));
    // ptrace and process_vm_writev are none of Remote Thread / Load Library / Queue APC.
    m.set("injection_type_id", json!(99));
    m.set("injection_type", json!(action));
    m
}

fn module_load(ecs: &Value) -> Mapped {
    // An executable file mapping: what the sensor sees, whichever loader made it.
    module_activity(ecs, 4, "Mapped")
}

/// Module Activity Load of `dll.*` (else `file.*`) by `process`.
fn module_activity(ecs: &Value, load_type_id: u32, load_type: &str) -> Mapped {
    let mut m = Mapped::new(MODULE, 1, "Load");
    let p = ecs.get("process").unwrap_or(&Value::Null);
    m.set("actor", json!({ "process": process(p, ecs.get("user")) }));
    let path = text(ecs, "dll.path").or_else(|| text(ecs, "file.path"));
    let sha = text(ecs, "dll.hash.sha256").or_else(|| text(ecs, "file.hash.sha256"));
    let mut module = json!({ "load_type_id": load_type_id, "load_type": load_type });
    if let Some(f) = file(path, sha, None, 1) {
        module["file"] = f;
    }
    if let Some(a) = text(ecs, "custos.addr") {
        module["base_address"] = json!(a);
    }
    m.set("module", module);
    m
}

/// ECS `event.action` values (space-separated) → File System Activity activity.
#[rustfmt::skip]
const FILE_ACTIONS: &[(&str, u32, &str)] = &[
    ("creation", 1, "Create"),
    ("modification", 3, "Update"),
    ("deletion", 4, "Delete"),
    ("rename", 5, "Rename"),
    ("attributes_modified", 6, "Set Attributes"),
    ("open", 14, "Open"),
];

fn lookup<'a>(table: &[(&str, u32, &'a str)], action: &str) -> Option<(u32, &'a str)> {
    let hit = table
        .iter()
        .find(|(names, ..)| names.split_whitespace().any(|n| n == action));
    hit.map(|&(_, id, name)| (id, name))
}

fn file_activity(ecs: &Value, action: &str) -> Mapped {
    // An unknown action falls back to the ECS event type.
    let by_type = match first_type(ecs) {
        Some("creation") => "creation",
        Some("access") => "open",
        Some("change") => "modification",
        Some("deletion") => "deletion",
        _ => "",
    };
    let (id, name) = lookup(FILE_ACTIONS, action)
        .or_else(|| lookup(FILE_ACTIONS, by_type))
        .unwrap_or((99, action));
    let mut m = Mapped::new(FILE, id, name);
    let p = ecs.get("process").unwrap_or(&Value::Null);
    m.set("actor", json!({ "process": process(p, ecs.get("user")) }));
    let type_id = match text(ecs, "file.type") {
        Some("file") => 1,
        Some("dir") => 2,
        Some("symlink") => 7,
        _ => 0,
    };
    let path = text(ecs, "file.path");
    let sha = text(ecs, "file.hash.sha256");
    let size = get(ecs, "file.size").and_then(Value::as_u64);
    let original = text(ecs, "custos.original_path");
    let f = |path| file(path, sha, size, type_id).unwrap_or(Value::Null);
    if id == 5 && original.is_some() {
        // Rename: `file` is what was renamed, `file_result` what it became.
        m.set("file", f(original));
        m.set("file_result", f(path));
    } else {
        m.set("file", f(path));
    }
    m
}

fn base_event(ecs: &Value, action: &str) -> Mapped {
    let name = if action.is_empty() { "Other" } else { action };
    let mut m = Mapped::new(BASE, 99, name);
    let message = if action == "records_lost" {
        format!(
            "sensor lost {} records ({} since start)",
            get(ecs, "custos.lost").unwrap_or(&Value::Null),
            get(ecs, "custos.lost_total").unwrap_or(&Value::Null)
        )
    } else {
        format!("{} {name}", text(ecs, "event.module").unwrap_or("custos"))
    };
    m.set("message", json!(message));
    m
}

/// OCSF `process` from an ECS `process` object; `user` is the ECS `user` of the event.
fn process(p: &Value, user: Option<&Value>) -> Value {
    let mut o = Map::new();
    let pairs = [
        ("pid", "pid"),
        ("uid", "entity_id"),
        ("name", "name"),
        ("cmd_line", "command_line"),
        ("tid", "thread.id"),
        ("working_directory", "working_directory"),
    ];
    for (key, ecs_key) in pairs {
        if let Some(v) = get(p, ecs_key).filter(|v| !v.is_null()) {
            o.insert(key.into(), v.clone());
        }
    }
    if let Some(f) = file(text(p, "executable"), text(p, "hash.sha256"), None, 1) {
        o.insert("file".into(), f);
    }
    if let Some(t) = text(p, "start").and_then(epoch_ms) {
        o.insert("created_time".into(), json!(t));
    }
    if let Some(parent) = p.get("parent") {
        o.insert("parent_process".into(), process(parent, None));
    }
    if let Some(u) = user.and_then(|u| u.get("id")) {
        let mut ou = json!({ "uid": u });
        if let Some(n) = user.and_then(|u| u.get("name")) {
            ou["name"] = n.clone();
        }
        o.insert("user".into(), ou);
    }
    Value::Object(o)
}

/// OCSF `file`; `type_id` 1 is Regular File.
fn file(path: Option<&str>, sha256: Option<&str>, size: Option<u64>, type_id: u8) -> Option<Value> {
    let path = path?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let type_name = match type_id {
        1 => "Regular File",
        2 => "Folder",
        7 => "Symbolic Link",
        _ => "Unknown",
    };
    let mut f = json!({ "path": path, "name": name, "type_id": type_id, "type": type_name });
    if let Some(h) = sha256 {
        f["hashes"] = json!([{ "algorithm_id": 3, "algorithm": "SHA-256", "value": h }]);
    }
    if let Some(s) = size {
        f["size"] = json!(s);
    }
    Some(f)
}

/// `custos.*` as is (without the prefix), plus every ECS leaf no OCSF attribute carries
/// (neither in [`MAPPED_ECS`] nor in `also`).
fn unmapped(ecs: &Value, also: &str) -> Value {
    let mut out = Map::new();
    if let Some(c) = ecs.get("custos").and_then(Value::as_object) {
        out.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut leaves = Vec::new();
    if let Some(o) = ecs.as_object() {
        for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "custos") {
            flatten(k, v, &mut leaves);
        }
    }
    for (k, v) in leaves {
        let proc_field = k
            .strip_prefix("process.")
            .or_else(|| k.strip_prefix("target.process."));
        let mapped = MAPPED_ECS
            .split_whitespace()
            .chain(also.split_whitespace())
            .any(|m| m == k)
            || proc_field.is_some_and(|f| MAPPED_PROCESS.split_whitespace().any(|m| m == f));
        if !mapped {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v.as_object() {
        Some(o) => {
            for (k, v) in o {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        None if !v.is_null() => out.push((prefix.to_owned(), v.clone())),
        None => {}
    }
}

fn get<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, dotted: &str) -> Option<&'a str> {
    get(v, dotted).and_then(Value::as_str)
}

fn flag(v: &Value, dotted: &str) -> bool {
    get(v, dotted).and_then(Value::as_bool).unwrap_or(false)
}

fn first_type(ecs: &Value) -> Option<&str> {
    get(ecs, "event.type")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
}

/// RFC 3339 → milliseconds since the epoch (OCSF `timestamp_t`).
fn epoch_ms(ts: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(ts)
        .or_else(|_| humantime::parse_rfc3339_weak(ts))
        .ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[path = "ocsf_net.rs"]
mod net;

#[cfg(test)]
#[path = "ocsf_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ocsf_file_net_tests.rs"]
mod file_net_tests;
