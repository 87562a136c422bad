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
    /// no hash rule matched while path rules exist, or a per-path source such as package trust
    /// was asked). Such results get no kernel ignore mark.
    pub path_dependent: bool,
    /// The reputation source that decided ([`crate::Sources`] index), for the event.
    #[serde(default, alias = "known_bad")]
    pub source: Option<u16>,
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
        source: None,
    }
}

/// Evaluates a file by hash and resolved path under `mode`, with no reputation sources.
///
/// - A matching rule decides: allow runs in every mode; block denies in monitor and lockdown
///   and is a "would deny" in audit.
/// - Otherwise the mode default: lockdown denies, audit and monitor allow.
pub fn evaluate(rules: &RuleSet, mode: Mode, sha256: Option<&str>, path: Option<&str>) -> Verdict {
    evaluate_rep(rules, mode, sha256, path, Reputation::default())
}

/// Whether a trusted answer counts in `mode`: only where the default denies (lockdown).
/// Elsewhere only bad answers are looked for.
pub fn trust_counts(mode: Mode) -> bool {
    mode == Mode::Lockdown
}

/// What the reputation sources decided about a file ([`crate::Findings::reputation`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reputation {
    /// The source that decided "known bad".
    pub bad: Option<u16>,
    /// The source that decided "trusted".
    pub good: Option<u16>,
    /// A per-path source was asked, so another path could get another answer.
    pub by_path: bool,
}

/// Evaluates a file with what the reputation sources said. Precedence:
///
/// 1. a SHA-256 rule (an admin's explicit word on this content);
/// 2. known bad: denies in monitor and lockdown, "would deny" in audit;
/// 3. a path rule (weaker: paths can be spoofed);
/// 4. trusted: allows where the mode's default denies (lockdown). Elsewhere the plain
///    default stands, so a monitor-mode allow keeps its kernel mark;
/// 5. the mode default.
pub fn evaluate_rep(
    rules: &RuleSet,
    mode: Mode,
    sha256: Option<&str>,
    path: Option<&str>,
    rep: Reputation,
) -> Verdict {
    let by_hash = rules.lookup(sha256, None);
    if let (None, Some(idx)) = (by_hash, rep.bad) {
        return Verdict {
            decision: if mode == Mode::Audit {
                Decision::Allow
            } else {
                Decision::Deny
            },
            would_deny: mode == Mode::Audit,
            reason: Reason::KnownBad,
            rule_id: None,
            path_dependent: rep.by_path,
            source: Some(idx),
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
                source: None,
            }
        }
        None if mode == Mode::Lockdown => match rep.good {
            Some(idx) => Verdict {
                decision: Decision::Allow,
                would_deny: false,
                reason: Reason::KnownGood,
                rule_id: None,
                path_dependent: path_dependent_if_unmatched || rep.by_path,
                source: Some(idx),
            },
            // Another path could be trusted where this one is not.
            None => Verdict {
                decision: Decision::Deny,
                would_deny: false,
                reason: Reason::ModeDefault,
                rule_id: None,
                path_dependent: path_dependent_if_unmatched || rep.by_path,
                source: None,
            },
        },
        None => Verdict {
            decision: Decision::Allow,
            would_deny: false,
            reason: Reason::ModeDefault,
            rule_id: None,
            path_dependent: path_dependent_if_unmatched,
            source: None,
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

    fn rep(mode: Mode, sha: char, path: &str, r: Reputation) -> Verdict {
        evaluate_rep(
            &set(),
            mode,
            Some(&sha.to_string().repeat(64)),
            Some(path),
            r,
        )
    }

    const TRUSTED: Reputation = Reputation {
        bad: None,
        good: Some(1),
        by_path: true,
    };

    #[test]
    fn trust_only_fills_in_for_the_mode_default() {
        let v = rep(Mode::Lockdown, 'c', "/usr/bin/x", TRUSTED);
        assert_eq!(
            (v.decision, v.reason, v.source),
            (Decision::Allow, Reason::KnownGood, Some(1))
        );
        assert!(v.path_dependent, "a per-path source decided");
        let untrusted = Reputation {
            good: None,
            ..TRUSTED
        };
        let v = rep(Mode::Lockdown, 'c', "/usr/bin/x", untrusted);
        assert_eq!(v.decision, Decision::Deny);
        assert!(v.path_dependent, "another path could be trusted");
        // Trust by content alone (NSRL) holds for every path.
        let by_content = Reputation {
            by_path: false,
            ..TRUSTED
        };
        let none = RuleSet::new(vec![]).expect("empty");
        let v = evaluate_rep(&none, Mode::Lockdown, None, Some("/x"), by_content);
        assert_eq!((v.reason, v.path_dependent), (Reason::KnownGood, false));
        // A block rule still blocks a trusted file.
        assert_eq!(
            rep(Mode::Lockdown, 'b', "/usr/bin/x", TRUSTED).reason,
            Reason::BinaryRule
        );
        // In monitor the default allows anyway: no trust verdict, so it stays markable.
        let v = evaluate_rep(
            &none,
            Mode::Monitor,
            Some(&"c".repeat(64)),
            Some("/x"),
            TRUSTED,
        );
        assert_eq!((v.reason, v.path_dependent), (Reason::ModeDefault, false));
    }

    #[test]
    fn known_bad_sits_between_hash_and_path_rules() {
        let bad = Reputation {
            bad: Some(0),
            ..Reputation::default()
        };
        let kb = |mode, sha: char, path: &str| {
            let v = rep(mode, sha, path, bad);
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
        let v = rep(Mode::Monitor, 'c', "/x", bad);
        assert_eq!((v.source, v.path_dependent), (Some(0), false));
        // Asked after a per-path source, a known-bad answer holds for this path only.
        let after = Reputation {
            by_path: true,
            ..bad
        };
        assert!(rep(Mode::Monitor, 'c', "/x", after).path_dependent);
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
