//! File access rules, compiled, and how they judge one open.

use crate::intent::Intent;
use crate::AccessError;
use custos_config::{Access, AccessRuleConfig};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The name of the built-in rule that protects custos's own files.
pub const SELF_RULE: &str = "custos self-protection";

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// The `paths` globs as written.
    pub patterns: Vec<String>,
    paths: GlobSet,
    programs: GlobSet,
    /// `allow` (only these programs) rather than `deny` (not these).
    only: bool,
    /// Which opens it judges.
    pub access: Access,
    /// Log only.
    pub audit: bool,
}

/// custos's own files, protected by the built-in [`SELF_RULE`].
#[derive(Debug, Clone)]
pub struct SelfFiles {
    /// The agent's program (`/proc/self/exe`).
    pub exe: PathBuf,
    /// The config file, if one was read.
    pub config: Option<PathBuf>,
    /// The state dir (rules, databases, the event store): everything below it.
    pub state_dir: PathBuf,
    /// Programs besides custos that may write them (package managers).
    pub writers: Vec<PathBuf>,
}

/// What a rule said about one open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Index of the rule.
    pub rule: usize,
    /// The rule is enforced and denies the open. `false`: it would deny, but audits only.
    pub deny: bool,
}

/// Every rule, in order.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// Path globs as rules and the `[files]` filters write them: `*` stays within one path
/// component, `**` crosses them. `what` names their owner in errors.
pub fn path_globs<'a>(
    what: &str,
    globs: impl IntoIterator<Item = &'a String>,
) -> Result<GlobSet, AccessError> {
    let bad = |glob: String, problem: String| AccessError::Glob {
        what: what.to_owned(),
        glob,
        problem,
    };
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g).literal_separator(true).build();
        b.add(glob.map_err(|e| bad(g.clone(), e.kind().to_string()))?);
    }
    b.build().map_err(|e| bad(String::new(), e.to_string()))
}

impl Rule {
    /// Compiles one configured rule.
    pub fn compile(c: &AccessRuleConfig) -> Result<Rule, AccessError> {
        let only = !c.allow.is_empty();
        let what = format!("file access rule {:?}", c.name);
        let set = |globs| path_globs(&what, globs);
        Ok(Rule {
            name: c.name.clone(),
            patterns: c.paths.clone(),
            paths: set(&c.paths)?,
            programs: set(if only { &c.allow } else { &c.deny })?,
            only,
            access: c.access,
            audit: c.audit,
        })
    }

    /// Whether this rule protects `path`.
    pub fn covers(&self, path: &Path) -> bool {
        self.paths.is_match(path)
    }

    /// Whether `program` opening a file this rule protects, with `intent`, breaks it.
    /// An unknown program (its executable could not be read) is never on a list.
    pub fn broken_by(&self, program: Option<&Path>, intent: Intent) -> bool {
        if self.access == Access::Write && !intent.writes() {
            return false;
        }
        let listed = program.is_some_and(|p| self.programs.is_match(p));
        listed != self.only
    }
}

impl Policy {
    /// Compiles the configured rules, plus the self-protection rule when `own` is given.
    pub fn compile(
        rules: &[AccessRuleConfig],
        own: Option<&SelfFiles>,
    ) -> Result<Policy, AccessError> {
        let mut out = Vec::with_capacity(rules.len() + 1);
        if let Some(s) = own {
            out.push(Rule::compile(&self_rule(s))?);
        }
        for r in rules {
            out.push(Rule::compile(r)?);
        }
        Ok(Policy { rules: out })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Indexes of the rules that protect `path`.
    pub fn rules_for(&self, path: &Path) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].covers(path))
            .collect()
    }

    /// Judges an open of a file protected by `rules` (indexes): the first enforced rule it
    /// breaks denies; else the first audit-only rule it breaks is reported; else `None` (allow).
    pub fn judge(
        &self,
        rules: &[usize],
        program: Option<&Path>,
        intent: Intent,
    ) -> Option<Verdict> {
        let mut audit = None;
        for &i in rules {
            let Some(r) = self.rules.get(i) else { continue };
            if !r.broken_by(program, intent) {
                continue;
            }
            if !r.audit {
                return Some(Verdict {
                    rule: i,
                    deny: true,
                });
            }
            audit = audit.or(Some(Verdict {
                rule: i,
                deny: false,
            }));
        }
        audit
    }
}

/// The built-in rule: only custos (and the configured writers) may open custos's program,
/// config and state for writing.
fn self_rule(s: &SelfFiles) -> AccessRuleConfig {
    let lit = |p: &Path| globset::escape(&p.to_string_lossy());
    let mut paths = vec![lit(&s.exe)];
    paths.extend(s.config.as_deref().map(lit));
    paths.push(format!("{}/**", lit(&s.state_dir)));
    let mut allow = vec![lit(&s.exe)];
    allow.extend(s.writers.iter().map(|w| lit(w)));
    AccessRuleConfig {
        name: SELF_RULE.to_owned(),
        paths,
        allow,
        deny: Vec::new(),
        access: Access::Write,
        audit: false,
    }
}

/// A file key for caching: (dev, ino, ctime in ns). A write, chmod, or new link changes ctime.
pub type FileId = (u64, u64, i64);

/// Verdicts per (program, file, writes), valid for one [`Policy`]; emptied when full.
#[derive(Debug, Default)]
pub struct DecisionCache {
    map: HashMap<(PathBuf, FileId, bool), Option<Verdict>>,
    /// Lookups answered from the cache.
    pub hits: u64,
}

impl DecisionCache {
    const CAP: usize = 16_384;

    /// The cached verdict, or `judge`'s (then cached).
    pub fn get_or(
        &mut self,
        program: Option<&Path>,
        file: FileId,
        writes: bool,
        judge: impl FnOnce() -> Option<Verdict>,
    ) -> Option<Verdict> {
        let Some(p) = program else { return judge() };
        let key = (p.to_owned(), file, writes);
        if let Some(v) = self.map.get(&key) {
            self.hits += 1;
            return *v;
        }
        let v = judge();
        if self.map.len() >= Self::CAP {
            self.map.clear();
        }
        self.map.insert(key, v);
        v
    }

    /// Forgets everything (the policy changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        name: &str,
        paths: &[&str],
        allow: &[&str],
        deny: &[&str],
        access: Access,
        audit: bool,
    ) -> AccessRuleConfig {
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        AccessRuleConfig {
            name: name.into(),
            paths: v(paths),
            allow: v(allow),
            deny: v(deny),
            access,
            audit,
        }
    }

    #[test]
    fn allow_lists_and_deny_lists() {
        let p = Policy::compile(
            &[
                rule(
                    "keys",
                    &["/etc/ssh/*_key"],
                    &["/usr/sbin/sshd"],
                    &[],
                    Access::Open,
                    false,
                ),
                rule(
                    "no curl",
                    &["/etc/**"],
                    &[],
                    &["/usr/bin/curl"],
                    Access::Open,
                    false,
                ),
            ],
            None,
        )
        .expect("compiles");
        let key = Path::new("/etc/ssh/host_key");
        assert_eq!(p.rules_for(key), vec![0, 1]);
        assert_eq!(p.rules_for(Path::new("/etc/ssh/sub/x_key")), vec![1]);
        let r = p.rules_for(key);
        let judge = |prog: Option<&str>| p.judge(&r, prog.map(Path::new), Intent::Read);
        assert_eq!(judge(Some("/usr/sbin/sshd")), None);
        assert_eq!(
            judge(Some("/usr/bin/cat")),
            Some(Verdict {
                rule: 0,
                deny: true
            })
        );
        assert_eq!(
            judge(None),
            Some(Verdict {
                rule: 0,
                deny: true
            })
        );
        let r1 = p.rules_for(Path::new("/etc/passwd"));
        assert_eq!(
            p.judge(&r1, Some(Path::new("/usr/bin/curl")), Intent::Read),
            Some(Verdict {
                rule: 1,
                deny: true
            })
        );
        assert_eq!(
            p.judge(&r1, Some(Path::new("/usr/bin/cat")), Intent::Read),
            None
        );
        assert_eq!(p.judge(&r1, None, Intent::Read), None);
    }

    #[test]
    fn write_rules_and_audit() {
        let own = SelfFiles {
            exe: "/usr/sbin/custos".into(),
            config: Some("/etc/custos/custos.toml".into()),
            state_dir: "/var/lib/custos".into(),
            writers: vec!["/usr/bin/dpkg".into()],
        };
        let p = Policy::compile(
            &[rule(
                "audit",
                &["/srv/x"],
                &[],
                &["/bin/sh"],
                Access::Open,
                true,
            )],
            Some(&own),
        )
        .expect("compiles");
        assert_eq!(p.rules()[0].name, SELF_RULE);
        for f in [
            "/usr/sbin/custos",
            "/etc/custos/custos.toml",
            "/var/lib/custos/events.db-wal",
            "/var/lib/custos/rules/x",
        ] {
            assert_eq!(p.rules_for(Path::new(f)), vec![0], "{f}");
        }
        assert!(p.rules_for(Path::new("/etc/custos/other")).is_empty());
        let r = vec![0];
        let j = |prog: &str, i| p.judge(&r, Some(Path::new(prog)), i);
        assert_eq!(j("/bin/sh", Intent::Read), None);
        assert_eq!(
            j("/bin/sh", Intent::Write),
            Some(Verdict {
                rule: 0,
                deny: true
            })
        );
        assert_eq!(
            j("/bin/sh", Intent::Unknown),
            Some(Verdict {
                rule: 0,
                deny: true
            })
        );
        assert_eq!(j("/usr/sbin/custos", Intent::Write), None);
        assert_eq!(j("/usr/bin/dpkg", Intent::Write), None);
        let a = p.rules_for(Path::new("/srv/x"));
        assert_eq!(
            p.judge(&a, Some(Path::new("/bin/sh")), Intent::Read),
            Some(Verdict {
                rule: 1,
                deny: false
            })
        );
    }

    #[test]
    fn cache_keys_on_program_file_and_intent() {
        let mut c = DecisionCache::default();
        let v = Some(Verdict {
            rule: 0,
            deny: true,
        });
        let prog = Some(Path::new("/bin/sh"));
        assert_eq!(c.get_or(prog, (1, 2, 3), true, || v), v);
        assert_eq!(c.get_or(prog, (1, 2, 3), true, || None), v);
        assert_eq!(c.hits, 1);
        assert_eq!(
            c.get_or(prog, (1, 2, 4), true, || None),
            None,
            "a changed file is judged again"
        );
        assert_eq!(c.get_or(prog, (1, 2, 3), false, || None), None);
        assert_eq!(
            c.get_or(None, (1, 2, 3), true, || None),
            None,
            "no program, no caching"
        );
        c.clear();
        assert_eq!(c.get_or(prog, (1, 2, 3), true, || None), None);
    }
}
