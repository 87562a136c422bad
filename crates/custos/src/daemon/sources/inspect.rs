//! What every source knows about one file and what it would get, for `custos fileinfo`: the
//! running agent answers with its own sources; without an agent the command loads them itself.

use custos_control::{InspectReply, SourceAnswer};
use custos_event::Mode;
use custos_verdict::{evaluate_rep, trust_counts, FileType, RuleSet, Sources};
use std::os::unix::fs::FileExt;

/// Reads `path` once (digests, and the content if a scanning source wants it), asks every
/// source (not only up to the first definite answer) and evaluates it under every mode.
pub fn inspect(
    sources: &Sources,
    rules: &RuleSet,
    mode: Mode,
    path: &str,
) -> Result<InspectReply, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve {path}: {e}"))?;
    let real = real.to_string_lossy().into_owned();
    let mut f = std::fs::File::open(&real).map_err(|e| format!("cannot open {real}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot stat {real}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{real} is not a regular file"));
    }
    let mut head = [0u8; 256];
    let n = f
        .read_at(&mut head, 0)
        .map_err(|e| format!("cannot read {real}: {e}"))?;
    let (d, findings) = sources
        .read_and_consult(&mut f, meta.len(), Some(&real), true, true)
        .map_err(|e| format!("cannot read {real}: {e}"))?;
    // Each mode from the same answers: where trust counts the first definite one decides,
    // elsewhere the first bad one.
    let judge = |m| {
        let rep = if trust_counts(m) {
            findings.reputation()
        } else {
            findings.reputation_without_trust()
        };
        evaluate_rep(rules, m, Some(&d.sha256), Some(&real), rep)
    };
    let now = judge(mode);
    let rule = now
        .rule_id
        .and_then(|id| rules.rules().iter().find(|r| r.id == id).cloned());
    let answers = findings
        .each
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            Some(SourceAnswer {
                source: sources.name(u16::try_from(i).ok()?)?.to_owned(),
                finding: f.clone()?,
            })
        })
        .collect();
    Ok(InspectReply {
        path: real.clone(),
        size: meta.len(),
        md5: d.md5.map(hex::encode),
        sha1: d.sha1.map(hex::encode),
        sha256: d.sha256.clone(),
        sources: answers,
        deciding: now.source.and_then(|i| sources.name(i)).map(str::to_owned),
        mode,
        now,
        per_mode: Mode::ALL.into_iter().map(|m| (m, judge(m))).collect(),
        rule,
        file_type: Some(FileType::sniff(&head[..n])),
    })
}
