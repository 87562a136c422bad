//! Allow/block rules by SHA-256 and by path glob, and their precedence.
//!
//! Precedence: a SHA-256 rule beats a path rule, which beats the mode default. Among path
//! rules that match the same path, a block beats an allow (fail closed), then the lowest id.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Longest comment accepted on a rule.
pub const MAX_COMMENT: usize = 1024;

/// Errors in a rule as given by a user or read from the rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not 64 hex digits.
    #[error("invalid SHA-256 {value:?}: expected 64 hex digits")]
    BadSha256 {
        /// What was given.
        value: String,
    },
    /// Not an absolute, valid glob.
    #[error("invalid path glob {value:?}: {problem}")]
    BadGlob {
        /// What was given.
        value: String,
        /// Why it is rejected.
        problem: String,
    },
    /// Comment too long.
    #[error("comment is {len} bytes; at most {MAX_COMMENT} allowed")]
    CommentTooLong {
        /// Its length.
        len: usize,
    },
    /// Another rule already names this target.
    #[error("rule {id} already covers {target}; remove it first")]
    Duplicate {
        /// Id of the existing rule.
        id: u64,
        /// The target, displayed.
        target: String,
    },
    /// Two rules share an id (only in a hand-edited rules file).
    #[error("rule id {id} is used twice")]
    DuplicateId {
        /// The id.
        id: u64,
    },
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The file's SHA-256, lower-case hex.
    Sha256(String),
    /// A glob over the resolved path of the executed file (`*` stays within a directory,
    /// `**` crosses directories).
    Path(String),
}

impl Target {
    /// Checks and normalises (hex to lower case).
    pub fn validated(self) -> Result<Target, RuleError> {
        match self {
            Target::Sha256(s) => {
                let t = s.trim().to_ascii_lowercase();
                if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(RuleError::BadSha256 { value: s });
                }
                Ok(Target::Sha256(t))
            }
            Target::Path(p) => {
                if !p.starts_with('/') {
                    return Err(RuleError::BadGlob {
                        value: p,
                        problem: "must be absolute (start with /)".into(),
                    });
                }
                compile_glob(&p)?;
                Ok(Target::Path(p))
            }
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sha256(s) => write!(f, "sha256 {s}"),
            Target::Path(p) => write!(f, "path {p}"),
        }
    }
}

fn compile_glob(p: &str) -> Result<globset::Glob, RuleError> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .build()
        .map_err(|e| RuleError::BadGlob {
            value: p.to_owned(),
            problem: e.kind().to_string(),
        })
}

/// Allow or block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Let it run (also in lockdown).
    Allow,
    /// Deny it in monitor and lockdown; log "would deny" in audit.
    Block,
}

/// A rule as a user asks for it, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRule {
    /// What it matches.
    pub target: Target,
    /// What it does.
    pub policy: Policy,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl NewRule {
    /// Validates and normalises.
    pub fn validated(self) -> Result<NewRule, RuleError> {
        if let Some(c) = &self.comment {
            if c.len() > MAX_COMMENT {
                return Err(RuleError::CommentTooLong { len: c.len() });
            }
        }
        Ok(NewRule {
            target: self.target.validated()?,
            ..self
        })
    }
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable id, never reused.
    pub id: u64,
    /// What it matches.
    pub target: Target,
    /// What it does.
    pub policy: Policy,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was added, RFC 3339.
    pub created: String,
}

/// Which rule matched, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMatch {
    /// Rule id.
    pub id: u64,
    /// Its policy.
    pub policy: Policy,
    /// `true` for a SHA-256 rule, `false` for a path rule.
    pub by_hash: bool,
}

/// Rules compiled for lookup.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_hash: HashMap<String, (u64, Policy)>,
    globs: GlobSet,
    /// (id, policy) per glob in `globs`.
    glob_rules: Vec<(u64, Policy)>,
}

impl RuleSet {
    /// Compiles rules, rejecting invalid ones, duplicate targets and duplicate ids.
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut by_hash = HashMap::new();
        let mut builder = GlobSetBuilder::new();
        let mut glob_rules = Vec::new();
        let mut seen_targets: HashMap<Target, u64> = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        let mut checked = Vec::with_capacity(rules.len());
        for r in rules {
            if !ids.insert(r.id) {
                return Err(RuleError::DuplicateId { id: r.id });
            }
            let target = r.target.clone().validated()?;
            if let Some(&id) = seen_targets.get(&target) {
                return Err(RuleError::Duplicate {
                    id,
                    target: target.to_string(),
                });
            }
            seen_targets.insert(target.clone(), r.id);
            match &target {
                Target::Sha256(h) => {
                    by_hash.insert(h.clone(), (r.id, r.policy));
                }
                Target::Path(p) => {
                    builder.add(compile_glob(p)?);
                    glob_rules.push((r.id, r.policy));
                }
            }
            checked.push(Rule { target, ..r });
        }
        let globs = builder.build().map_err(|e| RuleError::BadGlob {
            value: "<rule set>".into(),
            problem: e.to_string(),
        })?;
        Ok(RuleSet {
            rules: checked,
            by_hash,
            globs,
            glob_rules,
        })
    }

    /// The rules, in id order of insertion.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any path rule exists (then decisions may depend on the path used).
    pub fn has_path_rules(&self) -> bool {
        !self.glob_rules.is_empty()
    }

    /// The deciding rule for a file, by precedence.
    pub fn lookup(&self, sha256: Option<&str>, path: Option<&str>) -> Option<RuleMatch> {
        if let Some(&(id, policy)) = sha256.and_then(|h| self.by_hash.get(h)) {
            return Some(RuleMatch {
                id,
                policy,
                by_hash: true,
            });
        }
        let path = path?;
        self.globs
            .matches(path)
            .into_iter()
            .map(|i| self.glob_rules[i])
            .min_by_key(|&(id, policy)| (policy == Policy::Allow, id))
            .map(|(id, policy)| RuleMatch {
                id,
                policy,
                by_hash: false,
            })
    }

    /// Finds an existing rule with the same target.
    pub fn find_target(&self, target: &Target) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.target == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u64, target: Target, policy: Policy) -> Rule {
        Rule {
            id,
            target,
            policy,
            comment: None,
            created: String::new(),
        }
    }
    fn sha(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn hash_beats_path() {
        let set = RuleSet::new(vec![
            rule(1, Target::Path("/opt/**".into()), Policy::Block),
            rule(2, Target::Sha256(sha('a')), Policy::Allow),
        ])
        .expect("valid");
        let m = set.lookup(Some(&sha('a')), Some("/opt/x")).expect("match");
        assert_eq!((m.id, m.policy, m.by_hash), (2, Policy::Allow, true));
        let m = set.lookup(Some(&sha('b')), Some("/opt/x")).expect("match");
        assert_eq!((m.id, m.policy, m.by_hash), (1, Policy::Block, false));
        assert!(set.lookup(Some(&sha('b')), Some("/usr/x")).is_none());
        assert!(set.lookup(None, None).is_none());
    }

    #[test]
    fn block_beats_allow_among_paths() {
        let set = RuleSet::new(vec![
            rule(1, Target::Path("/opt/**".into()), Policy::Allow),
            rule(5, Target::Path("/opt/bad/*".into()), Policy::Block),
            rule(3, Target::Path("/opt/*/x".into()), Policy::Block),
        ])
        .expect("valid");
        let m = set.lookup(None, Some("/opt/bad/x")).expect("match");
        assert_eq!((m.id, m.policy), (3, Policy::Block));
        let m = set.lookup(None, Some("/opt/good/y")).expect("match");
        assert_eq!((m.id, m.policy), (1, Policy::Allow));
    }

    #[test]
    fn star_stays_in_directory() {
        let set = RuleSet::new(vec![rule(1, Target::Path("/opt/*".into()), Policy::Block)])
            .expect("valid");
        assert!(set.lookup(None, Some("/opt/a")).is_some());
        assert!(set.lookup(None, Some("/opt/a/b")).is_none());
    }

    #[test]
    fn validation() {
        assert!(matches!(
            Target::Sha256("xyz".into()).validated(),
            Err(RuleError::BadSha256 { .. })
        ));
        assert_eq!(
            Target::Sha256(sha('A')).validated(),
            Ok(Target::Sha256(sha('a')))
        );
        assert!(matches!(
            Target::Path("relative/*".into()).validated(),
            Err(RuleError::BadGlob { .. })
        ));
        assert!(matches!(
            Target::Path("/a/[".into()).validated(),
            Err(RuleError::BadGlob { .. })
        ));
        let long = NewRule {
            target: Target::Path("/x".into()),
            policy: Policy::Allow,
            comment: Some("c".repeat(MAX_COMMENT + 1)),
        };
        assert!(matches!(
            long.validated(),
            Err(RuleError::CommentTooLong { .. })
        ));
    }

    #[test]
    fn duplicates_rejected() {
        let e = RuleSet::new(vec![
            rule(1, Target::Sha256(sha('a')), Policy::Allow),
            rule(2, Target::Sha256(sha('A')), Policy::Block),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            RuleError::Duplicate {
                id: 1,
                target: format!("sha256 {}", sha('a'))
            }
        );
        let e = RuleSet::new(vec![
            rule(1, Target::Path("/a".into()), Policy::Allow),
            rule(1, Target::Path("/b".into()), Policy::Block),
        ])
        .unwrap_err();
        assert_eq!(e, RuleError::DuplicateId { id: 1 });
    }
}
