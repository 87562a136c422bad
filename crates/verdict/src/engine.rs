//! The decision itself: rules and mode in, verdict out. Pure; no I/O.

use crate::rules::{Policy, RuleSet};
use custos_event::{Decision, Mode, Reason};
use serde::{Deserialize, Serialize};

/// The outcome of evaluating one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// What the kernel is told.
    pub decision: Decision,
    /// Audit mode only: enforcing would have denied.
    pub would_deny: bool,
    /// Why.
    pub reason: Reason,
    /// The deciding rule.
    pub rule_id: Option<u64>,
    /// Whether the result could differ for another path to the same file (a path rule decided,
    /// or no hash rule matched while path rules exist). Such results get no kernel ignore mark.
    pub path_dependent: bool,
    /// The known-bad set that decided ([`crate::KnownBad`] index), for the event.
    pub known_bad: Option<u16>,
}

/// The answer when no verdict can be computed in time or at all.
///
/// audit and monitor fail open (the host keeps working), lockdown fails closed.
pub fn fallback(mode: Mode, reason: Reason) -> Verdict {
    let decision = match mode {
        Mode::Audit | Mode::Monitor => Decision::Allow,
        Mode::Lockdown => Decision::Deny,
    };
    Verdict {
        decision,
        would_deny: false,
        reason,
        rule_id: None,
        path_dependent: true,
        known_bad: None,
    }
}

/// Evaluates a file by hash and resolved path under `mode`.
///
/// - A matching rule decides: allow runs in every mode; block denies in monitor and lockdown
///   and is a "would deny" in audit.
/// - Otherwise the mode default: lockdown denies, audit and monitor allow.
pub fn evaluate(rules: &RuleSet, mode: Mode, sha256: Option<&str>, path: Option<&str>) -> Verdict {
    evaluate_with(rules, mode, sha256, path, None)
}

/// What the reputation sources said about a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reputation {
    /// The known-bad set that lists it.
    pub known_bad: Option<u16>,
    /// Package trust: this path and content are what a package shipped.
    pub trusted: bool,
}

/// Package trust for this path and MD5 (false when either is unknown).
pub(crate) fn trusted(
    g: Option<&dyn crate::KnownGood>,
    path: Option<&str>,
    md5: Option<&[u8; 16]>,
) -> bool {
    match (g, path, md5) {
        (Some(g), Some(p), Some(m)) => g.trusted(p, m),
        _ => false,
    }
}

/// [`evaluate_with`] plus package trust, which allows what would otherwise fall to the mode
/// default (it matters in lockdown). Rules and known-bad come first; the result depends on
/// the path.
pub fn evaluate_rep(
    rules: &RuleSet,
    mode: Mode,
    sha256: Option<&str>,
    path: Option<&str>,
    rep: Reputation,
) -> Verdict {
    let v = evaluate_with(rules, mode, sha256, path, rep.known_bad);
    // Only where the default denies: elsewhere the plain allow keeps its kernel mark (a
    // trusted verdict depends on the path, so it gets none).
    if rep.trusted && v.reason == Reason::ModeDefault && v.decision == Decision::Deny {
        return Verdict {
            decision: Decision::Allow,
            would_deny: false,
            reason: Reason::PackageTrust,
            rule_id: None,
            path_dependent: true,
            known_bad: None,
        };
    }
    v
}

/// [`evaluate`] with what the known-bad sets say (`known_bad`: the first set holding one of
/// the file's digests). Precedence: a hash rule (an admin's explicit word on this content),
/// then known-bad (denies in monitor and lockdown, "would deny" in audit), then a path rule
/// (weaker: paths can be spoofed), then the mode default.
pub fn evaluate_with(
    rules: &RuleSet,
    mode: Mode,
    sha256: Option<&str>,
    path: Option<&str>,
    known_bad: Option<u16>,
) -> Verdict {
    let by_hash = rules.lookup(sha256, None);
    if let (None, Some(idx)) = (by_hash, known_bad) {
        return Verdict {
            decision: if mode == Mode::Audit {
                Decision::Allow
            } else {
                Decision::Deny
            },
            would_deny: mode == Mode::Audit,
            reason: Reason::KnownBad,
            rule_id: None,
            path_dependent: false,
            known_bad: Some(idx),
        };
    }
    let path_dependent_if_unmatched = rules.has_path_rules();
    match by_hash.or_else(|| rules.lookup(None, path)) {
        Some(m) => {
            let reason = if m.by_hash {
                Reason::BinaryRule
            } else {
                Reason::PathRule
            };
            let (decision, would_deny) = match (m.policy, mode) {
                (Policy::Allow, _) => (Decision::Allow, false),
                (Policy::Block, Mode::Audit) => (Decision::Allow, true),
                (Policy::Block, _) => (Decision::Deny, false),
            };
            Verdict {
                decision,
                would_deny,
                reason,
                rule_id: Some(m.id),
                path_dependent: !m.by_hash,
                known_bad: None,
            }
        }
        None => Verdict {
            decision: if mode == Mode::Lockdown {
                Decision::Deny
            } else {
                Decision::Allow
            },
            would_deny: false,
            reason: Reason::ModeDefault,
            rule_id: None,
            path_dependent: path_dependent_if_unmatched,
            known_bad: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Rule, Target};

    fn set() -> RuleSet {
        let r = |id, target, policy| Rule {
            id,
            target,
            policy,
            comment: None,
            created: String::new(),
        };
        RuleSet::new(vec![
            r(1, Target::Sha256("b".repeat(64)), Policy::Block),
            r(2, Target::Sha256("a".repeat(64)), Policy::Allow),
            r(3, Target::Path("/opt/ok/*".into()), Policy::Allow),
        ])
        .expect("valid")
    }

    fn d(mode: Mode, sha: char, path: &str) -> (Decision, bool, Reason) {
        let v = evaluate(&set(), mode, Some(&sha.to_string().repeat(64)), Some(path));
        (v.decision, v.would_deny, v.reason)
    }

    #[test]
    fn package_trust_only_fills_in_for_the_mode_default() {
        let rep = |mode, sha: char, path: &str, trusted| {
            let r = Reputation {
                known_bad: None,
                trusted,
            };
            evaluate_rep(
                &set(),
                mode,
                Some(&sha.to_string().repeat(64)),
                Some(path),
                r,
            )
        };
        let v = rep(Mode::Lockdown, 'c', "/usr/bin/x", true);
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Allow, Reason::PackageTrust)
        );
        assert!(v.path_dependent, "trust is for this path");
        assert_eq!(
            rep(Mode::Lockdown, 'c', "/usr/bin/x", false).decision,
            Decision::Deny
        );
        // A block rule still blocks a trusted file; a known-bad listing too.
        assert_eq!(
            rep(Mode::Lockdown, 'b', "/usr/bin/x", true).reason,
            Reason::BinaryRule
        );
        let r = Reputation {
            known_bad: Some(0),
            trusted: true,
        };
        let v = evaluate_rep(&set(), Mode::Lockdown, Some(&"c".repeat(64)), Some("/x"), r);
        assert_eq!(v.reason, Reason::KnownBad);
        // In monitor the default allows anyway: no trust verdict, so it stays markable.
        let none = RuleSet::new(vec![]).expect("empty");
        let r = Reputation {
            known_bad: None,
            trusted: true,
        };
        let v = evaluate_rep(&none, Mode::Monitor, Some(&"c".repeat(64)), Some("/x"), r);
        assert_eq!((v.reason, v.path_dependent), (Reason::ModeDefault, false));
    }

    #[test]
    fn known_bad_sits_between_hash_and_path_rules() {
        let kb = |mode, sha: char, path: &str| {
            let v = evaluate_with(
                &set(),
                mode,
                Some(&sha.to_string().repeat(64)),
                Some(path),
                Some(0),
            );
            (v.decision, v.would_deny, v.reason)
        };
        // An explicit hash allow beats the feed.
        assert_eq!(kb(Mode::Lockdown, 'a', "/x").2, Reason::BinaryRule);
        // The feed beats a path allow, in monitor and lockdown; audit only logs.
        assert_eq!(
            kb(Mode::Monitor, 'c', "/opt/ok/x"),
            (Decision::Deny, false, Reason::KnownBad)
        );
        assert_eq!(
            kb(Mode::Lockdown, 'c', "/x"),
            (Decision::Deny, false, Reason::KnownBad)
        );
        assert_eq!(
            kb(Mode::Audit, 'c', "/x"),
            (Decision::Allow, true, Reason::KnownBad)
        );
        let v = evaluate_with(&set(), Mode::Monitor, Some(&"c".repeat(64)), None, Some(3));
        assert_eq!((v.known_bad, v.path_dependent), (Some(3), false));
    }

    #[test]
    fn mode_matrix() {
        use Decision::*;
        use Reason::*;
        // Block rule.
        assert_eq!(d(Mode::Audit, 'b', "/x"), (Allow, true, BinaryRule));
        assert_eq!(d(Mode::Monitor, 'b', "/x"), (Deny, false, BinaryRule));
        assert_eq!(d(Mode::Lockdown, 'b', "/x"), (Deny, false, BinaryRule));
        // Allow rule.
        for m in Mode::ALL {
            assert_eq!(d(m, 'a', "/x"), (Allow, false, BinaryRule));
        }
        // Unknown.
        assert_eq!(d(Mode::Audit, 'c', "/x"), (Allow, false, ModeDefault));
        assert_eq!(d(Mode::Monitor, 'c', "/x"), (Allow, false, ModeDefault));
        assert_eq!(d(Mode::Lockdown, 'c', "/x"), (Deny, false, ModeDefault));
        // Path allow in lockdown, but a hash block still wins over it.
        assert_eq!(
            d(Mode::Lockdown, 'c', "/opt/ok/p"),
            (Allow, false, PathRule)
        );
        assert_eq!(
            d(Mode::Lockdown, 'b', "/opt/ok/p"),
            (Deny, false, BinaryRule)
        );
    }

    #[test]
    fn path_dependence() {
        let s = set();
        let v = evaluate(&s, Mode::Monitor, Some(&"a".repeat(64)), Some("/x"));
        assert!(!v.path_dependent, "hash rule decides for every path");
        let v = evaluate(&s, Mode::Monitor, Some(&"c".repeat(64)), Some("/x"));
        assert!(v.path_dependent, "another link could match a path rule");
        let empty = RuleSet::default();
        let v = evaluate(&empty, Mode::Monitor, Some(&"c".repeat(64)), Some("/x"));
        assert!(!v.path_dependent);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            fallback(Mode::Audit, Reason::Deadline).decision,
            Decision::Allow
        );
        assert_eq!(
            fallback(Mode::Monitor, Reason::Deadline).decision,
            Decision::Allow
        );
        assert_eq!(
            fallback(Mode::Lockdown, Reason::Error).decision,
            Decision::Deny
        );
    }
}
