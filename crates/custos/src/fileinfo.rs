//! `custos fileinfo PATH`: the file's type and hashes, every reputation source's answer, and
//! the decision per mode — from the running agent, or from the config and state dir when it
//! is not running.

use crate::commands::print_json;
use crate::daemon;
use anyhow::{bail, Context};
use custos_config::Config;
use custos_control::{Client, ControlError, InspectReply, Request};
use custos_verdict::{FileType, Opinion, RuleStore};
use std::io::Read;
use std::path::Path;

#[derive(serde::Serialize)]
struct FileInfo {
    #[serde(rename = "type")]
    file_type: FileType,
    executable_bits: bool,
    agent_running: bool,
    #[serde(flatten)]
    inspect: InspectReply,
}

/// Runs `custos fileinfo`.
pub fn fileinfo(cfg: &Config, path: &Path, json: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Judged like an exec: by the resolved path, which is what the kernel reports.
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let meta = std::fs::metadata(&real)?;
    if !meta.is_file() {
        bail!("{} is not a regular file", real.display());
    }
    // In lockdown this process may not open an untrusted ELF image; the agent reads it then.
    let head = match std::fs::File::open(&real) {
        Ok(mut f) => {
            let mut head = Vec::with_capacity(256);
            (&mut f).take(256).read_to_end(&mut head)?;
            Some(head)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", real.display())),
    };
    let real_s = real.to_string_lossy().into_owned();
    let (mut inspect, agent_running): (InspectReply, bool) = match Client::connect(&cfg.socket) {
        Ok(mut c) => (c.call_as(&Request::Inspect { path: real_s })?, true),
        Err(ControlError::NotRunning { .. }) => {
            let rules = RuleStore::new(&cfg.state_dir).load()?;
            let reg = daemon::offline(cfg);
            let r = daemon::inspect(&reg.sources(), &rules, cfg.mode, &real_s)
                .map_err(anyhow::Error::msg)?;
            (r, false)
        }
        Err(e) => return Err(e.into()),
    };
    let file_type = match head {
        Some(h) => FileType::sniff(&h),
        None => inspect.file_type.clone().unwrap_or(FileType::Other),
    };
    inspect.file_type = None;
    let info = FileInfo {
        file_type,
        executable_bits: meta.permissions().mode() & 0o111 != 0,
        agent_running,
        inspect,
    };
    if json {
        return print_json(&info);
    }
    print(&info);
    Ok(())
}

fn print(info: &FileInfo) {
    let v = &info.inspect;
    println!("path:      {}", v.path);
    println!("size:      {} bytes", v.size);
    let t = match &info.file_type {
        FileType::Elf => "ELF".to_owned(),
        FileType::Script { interpreter } => format!("script (#!{interpreter})"),
        FileType::Other => "other (not directly executable)".to_owned(),
    };
    println!("type:      {t}");
    println!("sha256:    {}", v.sha256);
    if let Some(m) = &v.md5 {
        println!("md5:       {m}");
    }
    if let Some(s) = &v.sha1 {
        println!("sha1:      {s}");
    }
    match &v.rule {
        Some(r) => println!("rule:      {} ({:?} {})", r.id, r.policy, r.target),
        None => println!("rule:      none"),
    }
    if v.sources.is_empty() {
        println!("sources:   none configured or loaded");
    } else {
        println!("sources (asked in this order; the first bad or trusted answer counts):");
    }
    for a in &v.sources {
        let word = match a.finding.opinion {
            Opinion::Unknown => "unknown",
            Opinion::Known => "known",
            Opinion::Good => "TRUSTED",
            Opinion::Bad => "BAD",
        };
        let decides = if v.deciding.as_deref() == Some(a.source.as_str()) {
            "  <- decides"
        } else {
            ""
        };
        let detail = a.finding.detail.as_deref().unwrap_or("");
        println!("  {:<11} {word:<8} {detail}{decides}", a.source);
    }
    let src = if info.agent_running {
        "running agent"
    } else {
        "config; agent not running"
    };
    println!("mode:      {} ({src})", v.mode);
    let by = v
        .now
        .source
        .and(v.deciding.as_deref())
        .map(|s| format!(", by {s}"))
        .unwrap_or_default();
    println!(
        "decision:  {:?} ({}{by})",
        v.now.decision,
        v.now.reason.as_str()
    );
    for (m, d) in &v.per_mode {
        let w = if d.would_deny { ", would deny" } else { "" };
        println!("  {:<9} {:?}{w}", m.as_str(), d.decision);
    }
}
