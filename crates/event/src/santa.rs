//! ECS → Santa log lines, so tools that parse santad's log (Filebeat's `santa` module, Zentral)
//! read custos's decisions and process events unchanged.
//!
//! Field order and escaping follow santad's `BasicString` serializer: pipe-separated `key=value`,
//! with `|` in a value written as `<pipe>`, newline as `\n` and carriage return as `\r`
//! (Santa's `SanitizableString`). Values custos does not know (Santa's `pidversion`, certificate
//! fields, user and group names unless the document has `user.name` / `group.name`) are left
//! out rather than invented.
//!
//! Lines: exec decisions → `EXEC`; process fork / exit → `FORK` / `EXIT`; file events
//! `modification`, `rename`, `deletion` → `WRITE`, `RENAME`, `DELETE` (for renames the old path
//! is `custos.original_path` and the new one `file.path`). Image-load decisions
//! (`action: load`) have no santad line (Santa does not judge libraries), and neither do file
//! creations, attribute changes or access decisions: santad has no such lines, so none is
//! written. Network events and DNS answers (`custos.network`) have none either: santad logs no
//! network flows.

use serde_json::Value;

/// One custos ECS document as the body of a santad log line (no timestamp prefix, no trailing
/// newline), or `None` when Santa has no line for it.
pub fn to_santa(ecs: &Value) -> Option<String> {
    let action = text(ecs, "event.action").unwrap_or("");
    match (text(ecs, "event.module")?, action) {
        ("custos.exec", "load") => None,
        ("custos.exec", _) => Some(exec(ecs)),
        ("custos.process", "fork") => Some(process(ecs, "FORK")),
        ("custos.process", "exit") => Some(process(ecs, "EXIT")),
        ("custos.file", a) => file(ecs, a),
        _ => None,
    }
}

/// [`to_santa`] with the prefix santad writes to its file log (`/var/db/santa/santa.log`):
/// `[2026-11-22T05:00:00.123Z] I santad: action=…`, which Filebeat's `santa` module expects.
pub fn to_santa_file_line(ecs: &Value) -> Option<String> {
    let body = to_santa(ecs)?;
    let raw = text(ecs, "@timestamp").unwrap_or("");
    let time = humantime::parse_rfc3339_weak(raw)
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_else(|_| sanitize(raw));
    Some(format!("[{time}] I santad: {body}"))
}

/// Santa's `SanitizableString`: keeps a value inside its field and the record on one line.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("<pipe>"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

struct Line(String);

impl Line {
    fn new(action: &str) -> Self {
        Line(format!("action={action}"))
    }

    fn kv(&mut self, key: &str, value: &str) {
        self.0.push('|');
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&sanitize(value));
    }

    /// A field only when the document has it.
    fn opt(&mut self, key: &str, value: Option<String>) {
        if let Some(v) = value {
            self.kv(key, &v);
        }
    }
}

fn exec(ecs: &Value) -> String {
    let mut l = Line::new("EXEC");
    let decision = match text(ecs, "custos.decision") {
        Some("allow") => "ALLOW",
        Some("deny") => "DENY",
        _ => "UNKNOWN",
    };
    l.kv("decision", decision);
    let reason = text(ecs, "custos.reason").unwrap_or("");
    let (santa_reason, direct) = santa_reason(reason);
    l.kv("reason", santa_reason);
    let mut explain = Vec::new();
    if !direct {
        explain.push(reason.to_owned());
    }
    if let Some(name) = text(ecs, "custos.source.name") {
        explain.push(match text(ecs, "custos.source.detail") {
            Some(d) => format!("{name}: {d}"),
            None => name.to_owned(),
        });
    }
    if let Some(e) = text(ecs, "error.message") {
        explain.push(e.to_owned());
    }
    if get(ecs, "custos.would_deny").and_then(Value::as_bool) == Some(true) {
        explain.push("would deny (audit)".to_owned());
    }
    if !explain.is_empty() {
        l.kv("explain", &explain.join("; "));
    }
    l.opt("sha256", string(ecs, "process.hash.sha256"));
    l.opt("pid", string(ecs, "process.pid"));
    l.opt("ppid", string(ecs, "process.parent.pid"));
    user_group(&mut l, ecs);
    let mode = match text(ecs, "custos.mode") {
        Some("lockdown") => "L",
        Some("monitor" | "audit") => "M",
        _ => "U",
    };
    l.kv("mode", mode);
    l.opt("path", string(ecs, "process.executable"));
    if let Some(args) = get(ecs, "process.args").and_then(Value::as_array) {
        let args: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        if !args.is_empty() {
            l.kv("args", &args.join(" "));
        }
    }
    l.0
}

/// custos reason → Santa reason, and whether the Santa reason says it all (otherwise custos's
/// own reason goes into `explain=`).
fn santa_reason(reason: &str) -> (&'static str, bool) {
    match reason {
        "binary_rule" => ("BINARY", true),
        "path_rule" => ("SCOPE", true),
        "mode_default" => ("UNKNOWN", true),
        // A reputation source judged this content (digest, YARA, package trust): Santa's
        // nearest is a decision about the binary itself.
        "known_bad" | "known_good" => ("BINARY", false),
        // Fallbacks of the mode (deadline, error, overload, shutdown, mutable, traced) and
        // anything newer: no rule decided.
        _ => ("UNKNOWN", false),
    }
}

fn process(ecs: &Value, action: &str) -> String {
    let mut l = Line::new(action);
    l.opt("pid", string(ecs, "process.pid"));
    l.opt("ppid", string(ecs, "process.parent.pid"));
    l.opt("uid", string(ecs, "user.id"));
    l.opt("gid", string(ecs, "group.id"));
    l.0
}

fn file(ecs: &Value, action: &str) -> Option<String> {
    let path = string(ecs, "file.path");
    let null = || Some("(null)".to_owned());
    let mut l = match action {
        "modification" => {
            let mut l = Line::new("WRITE");
            l.kv("path", &path?);
            l
        }
        "deletion" => {
            let mut l = Line::new("DELETE");
            l.kv("path", &path?);
            l
        }
        "rename" => {
            let mut l = Line::new("RENAME");
            l.opt("path", string(ecs, "custos.original_path").or_else(null));
            l.kv("newpath", &path?);
            l
        }
        _ => return None,
    };
    l.opt("pid", string(ecs, "process.pid"));
    l.opt("ppid", string(ecs, "process.parent.pid"));
    let exe = text(ecs, "process.executable");
    let name = text(ecs, "process.name").or_else(|| exe.map(|p| p.rsplit('/').next().unwrap_or(p)));
    l.opt("process", name.map(str::to_owned));
    l.opt("processpath", exe.map(str::to_owned));
    user_group(&mut l, ecs);
    Some(l.0)
}

fn user_group(l: &mut Line, ecs: &Value) {
    l.opt("uid", string(ecs, "user.id"));
    l.opt("user", string(ecs, "user.name"));
    l.opt("gid", string(ecs, "group.id"));
    l.opt("group", string(ecs, "group.name"));
}

fn get<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, dotted: &str) -> Option<&'a str> {
    get(v, dotted).and_then(Value::as_str)
}

/// A string or number leaf as text.
fn string(v: &Value, dotted: &str) -> Option<String> {
    match get(v, dotted)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "santa_tests.rs"]
mod tests;
