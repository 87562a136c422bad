//! `custos events`: queries, following and process trees over the event store.

use crate::cli::{EventsCmd, EventsFormat, EventsQuery};
use anyhow::{bail, Context};
use custos_config::Config;
use custos_store::{Filter, Outcome, ProcessNode, Reader, Stored, Tree, TreeKey, KINDS};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How often `--follow` looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Runs `custos events`.
pub fn events(cfg: &Config, cmd: Option<EventsCmd>, q: EventsQuery) -> anyhow::Result<()> {
    let result = match cmd {
        Some(EventsCmd::Tree { process, json, db }) => tree(&open(cfg, db)?, &process, json),
        None => query(cfg, q),
    };
    // `custos events | head`: a closed pipe ends the output, it is not an error.
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn open(cfg: &Config, db: Option<PathBuf>) -> anyhow::Result<Reader> {
    let path = db.unwrap_or_else(|| cfg.store.path_in(&cfg.state_dir));
    Ok(Reader::open(&path)?)
}

/// `1h` (that long ago) or an RFC 3339 time, in µs since the epoch.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    let t = match humantime::parse_duration(s) {
        Ok(d) => SystemTime::now()
            .checked_sub(d)
            .with_context(|| format!("{flag} {s}: too long ago"))?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            anyhow::anyhow!(
                "{flag} {s:?}: not a duration (90s, 1h, 2d) or a time (2026-11-22T10:00:00Z)"
            )
        })?,
    };
    Ok(custos_store::to_us(t).unwrap_or(0))
}

fn filter(q: &EventsQuery) -> anyhow::Result<Filter> {
    for k in &q.kind {
        if !KINDS.contains(&k.as_str()) {
            bail!("--kind {k:?}: unknown kind (one of {})", KINDS.join(", "));
        }
    }
    if let Some(h) = &q.sha256 {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 {h:?}: not 64 hex digits");
        }
    }
    Ok(Filter {
        since_us: q
            .since
            .as_deref()
            .map(|s| parse_time("--since", s))
            .transpose()?,
        until_us: q
            .until
            .as_deref()
            .map(|s| parse_time("--until", s))
            .transpose()?,
        kinds: q.kind.clone(),
        pid: q.pid,
        path_glob: q.path.clone(),
        sha256: q.sha256.clone(),
        outcome: q.outcome.as_deref().and_then(Outcome::parse),
    })
}

fn query(cfg: &Config, q: EventsQuery) -> anyhow::Result<()> {
    let f = filter(&q)?;
    let format = if q.json { EventsFormat::Json } else { q.format };
    let reader = open(cfg, q.db.clone())?;
    let start = reader.last_id()?;
    let limit = (q.limit > 0).then_some(q.limit);
    let (rows, more) = reader.latest(&f, limit)?;
    let mut out = std::io::stdout().lock();
    if format == EventsFormat::Text && !rows.is_empty() {
        writeln!(out, "{}", header())?;
    }
    let mut last = start;
    for r in &rows {
        print(&mut out, r, format)?;
        last = last.max(r.id);
    }
    out.flush()?;
    if more && !q.follow {
        eprintln!(
            "custos: showing the newest {} matching events; --limit 0 shows all",
            rows.len()
        );
    }
    if !q.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        loop {
            let new = reader.after(&f, last, 1000)?;
            for r in &new {
                print(&mut out, r, format)?;
                last = r.id;
            }
            out.flush()?;
            if new.len() < 1000 {
                break;
            }
        }
    }
}

fn header() -> String {
    format!(
        "{:<24}  {:<9} {:<12} {:<7} {:>7}  DETAIL",
        "TIME (UTC)", "KIND", "ACTION", "OUTCOME", "PID"
    )
}

fn print(out: &mut impl Write, r: &Stored, format: EventsFormat) -> anyhow::Result<()> {
    let doc = || serde_json::from_str::<Value>(&r.row.doc).unwrap_or(Value::Null);
    match format {
        EventsFormat::Ecs => writeln!(out, "{}", r.row.doc)?,
        EventsFormat::Ocsf => writeln!(out, "{}", custos_event::to_ocsf(&doc()))?,
        EventsFormat::Santa => {
            if let Some(line) = custos_event::to_santa(&doc()) {
                writeln!(out, "{line}")?;
            }
        }
        EventsFormat::Json => writeln!(out, "{}", flat(r))?,
        EventsFormat::Text => writeln!(out, "{}", text(r, &doc()))?,
    }
    Ok(())
}

fn time(us: i64) -> String {
    let t = custos_store::from_us(us);
    // 2026-11-22T10:00:01.123Z
    humantime::format_rfc3339_millis(t).to_string()
}

/// `--format json`: the indexed fields, flat.
fn flat(r: &Stored) -> Value {
    json!({
        "id": r.id,
        "@timestamp": custos_event::timestamp(custos_store::from_us(r.row.ts_us)),
        "kind": r.row.kind,
        "action": r.row.action,
        "outcome": r.row.outcome.map(|o| o.as_str()),
        "pid": r.row.pid,
        "ppid": r.row.ppid,
        "entity_id": r.row.entity_id,
        "parent_entity_id": r.row.parent_entity_id,
        "path": r.row.path,
        "sha256": r.row.sha256,
    })
}

/// One readable line.
fn text(r: &Stored, d: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let p = &d["process"];
    let path = r.row.path.clone().unwrap_or_default();
    let detail = match (r.row.kind.as_str(), r.row.action.as_str()) {
        ("exec", action) => {
            let mut t = format!("{path}  reason={}", s(&d["custos"]["reason"]));
            if action == "load" {
                t += &format!(" in {}", s(&p["executable"]));
            }
            if let Some(src) = d["custos"]["source"]["name"].as_str() {
                t += &format!(" source={src}");
                if let Some(det) = d["custos"]["source"]["detail"].as_str() {
                    t += &format!(":{det}");
                }
            }
            if d["custos"]["would_deny"] == json!(true) {
                t += " (would deny)";
            }
            t
        }
        ("process", "exit") => match d["custos"]["signal"].as_u64() {
            Some(sig) => format!("{path}  signal {sig}"),
            None => format!("{path}  exit {}", p["exit_code"].as_u64().unwrap_or(0)),
        },
        ("process", "thread_start" | "thread_end") => {
            format!("{path}  tid {}", p["thread"]["id"].as_u64().unwrap_or(0))
        }
        ("process", "fork") => format!("{path}  parent {}", r.row.ppid.unwrap_or(0)),
        ("process", _) => p["command_line"].as_str().map_or(path, |c| {
            format!("{c}  ({})", r.row.path.as_deref().unwrap_or(""))
        }),
        ("image", _) => format!("{path}  in {}", s(&p["executable"])),
        ("injection", _) => format!(
            "-> pid {} {}{}",
            d["target"]["process"]["pid"],
            s(&d["target"]["process"]["executable"]),
            if d["custos"]["tamper"] == json!(true) {
                "  TAMPER"
            } else {
                ""
            }
        ),
        ("agent", "events_dropped") => {
            format!("{} events dropped by the store", d["custos"]["dropped"])
        }
        (_, "records_lost") => format!("{} sensor records lost", d["custos"]["lost"]),
        _ => path,
    };
    format!(
        "{:<24}  {:<9} {:<12} {:<7} {:>7}  {}",
        time(r.row.ts_us),
        r.row.kind,
        r.row.action,
        r.row.outcome.map(|o| o.as_str()).unwrap_or(""),
        r.row.pid.map_or(String::new(), |p| p.to_string()),
        detail
    )
}

fn tree(reader: &Reader, process: &str, json: bool) -> anyhow::Result<()> {
    let key = TreeKey::parse(process);
    let Some(t) = reader.tree(&key)? else {
        bail!(
            "no process {process} in the event store (it needs fork, exec or snapshot events: \
             telemetry.process on)"
        );
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&tree_json(&t))?)?;
        return Ok(());
    }
    // Ancestors: a single chain, each one level further in.
    let mut prefix = String::new();
    for (depth, a) in t.ancestors.iter().enumerate() {
        let branch = if depth == 0 { "" } else { "└─ " };
        writeln!(out, "{prefix}{branch}{}", describe(a))?;
        if depth > 0 {
            prefix += "   ";
        }
    }
    let branch = if t.ancestors.is_empty() {
        ""
    } else {
        "└─ "
    };
    writeln!(
        out,
        "{prefix}{branch}{}  <- {}",
        describe(&t.node),
        t.node.entity_id
    )?;
    if !t.ancestors.is_empty() {
        prefix += "   ";
    }
    children(&mut out, &t.node, &prefix)?;
    if t.truncated {
        writeln!(out, "(more descendants not shown)")?;
    }
    Ok(())
}

fn children(out: &mut impl Write, n: &ProcessNode, prefix: &str) -> std::io::Result<()> {
    for (i, c) in n.children.iter().enumerate() {
        let last = i + 1 == n.children.len();
        let (branch, more) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        writeln!(out, "{prefix}{branch}{}", describe(c))?;
        children(out, c, &format!("{prefix}{more}"))?;
    }
    Ok(())
}

/// Command lines longer than this are cut in the tree (the JSON has them whole).
const MAX_CMDLINE: usize = 160;

/// `name[pid] command line (programs) ended`.
fn describe(n: &ProcessNode) -> String {
    let pid = n.pid.map_or("?".into(), |p| p.to_string());
    if !n.known {
        return format!("[{pid}] (not in the store)");
    }
    let prog = n.programs.last().map_or("?", String::as_str);
    let name = prog.rsplit('/').next().unwrap_or(prog);
    let mut s = format!("{name}[{pid}]");
    match &n.command_line {
        Some(c) if c.chars().count() > MAX_CMDLINE => {
            s += &format!(" {}…", c.chars().take(MAX_CMDLINE).collect::<String>());
        }
        Some(c) => s += &format!(" {c}"),
        None => s += &format!(" {prog}"),
    }
    // The first program is the one inherited at fork; more than one exec is worth showing.
    if n.programs.len() > 2 {
        s += &format!("  (ran {})", n.programs[1..].join(" -> "));
    }
    if let Some(e) = &n.ended {
        s += &format!("  [{e}]");
    }
    s
}

fn node_json(n: &ProcessNode) -> Value {
    json!({
        "entity_id": n.entity_id,
        "pid": n.pid,
        "ppid": n.ppid,
        "parent_entity_id": n.parent_entity_id,
        "programs": n.programs,
        "command_line": n.command_line,
        "first_seen": n.first_us.map(time),
        "ended": n.ended,
        "known": n.known,
        "children": n.children.iter().map(node_json).collect::<Vec<_>>(),
    })
}

fn tree_json(t: &Tree) -> Value {
    json!({
        "ancestors": t.ancestors.iter().map(node_json).collect::<Vec<_>>(),
        "process": node_json(&t.node),
        "truncated": t.truncated,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_and_durations() {
        let now = parse_time("--since", "0s").unwrap();
        let hour = parse_time("--since", "1h").unwrap();
        assert!((now - hour - 3_600_000_000).abs() < 5_000_000);
        assert_eq!(
            parse_time("--until", "2026-11-22T05:00:00Z").unwrap(),
            1_795_323_600_000_000
        );
        assert_eq!(
            parse_time("--until", "2026-11-22 05:00:00").unwrap(),
            1_795_323_600_000_000
        );
        let e = parse_time("--since", "yesterday").unwrap_err().to_string();
        assert!(e.contains("--since \"yesterday\""), "{e}");
    }
}
