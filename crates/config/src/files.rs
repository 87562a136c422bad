//! `[files]`: file events (fanotify FID mode) and file access rules (fanotify `FAN_OPEN_PERM`).

use crate::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// `[files]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Report create, close-after-write, delete, rename and attribute changes, filesystem-wide.
    pub events: bool,
    /// Mount points whose filesystems report file events. Empty: every filesystem the exec
    /// loop would discover (`exec.watch`, else `exec.watch_types`).
    pub watch: Vec<PathBuf>,
    /// Only paths matching one of these globs are reported (empty: all). `**` crosses `/`.
    pub include: Vec<String>,
    /// Paths matching one of these globs are not reported.
    pub exclude: Vec<String>,
    /// File events per second per process; more are counted as dropped. 0: no limit.
    pub rate: u32,
    /// Only custos (and `writers`) may open custos's binary, config and state dir for writing.
    pub protect_self: bool,
    /// Programs besides custos that may write custos's own files (package managers), by path.
    pub writers: Vec<PathBuf>,
    /// File access rules.
    pub rule: Vec<AccessRuleConfig>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            events: true,
            watch: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            rate: 1000,
            protect_self: true,
            writers: Vec::new(),
            rule: Vec::new(),
        }
    }
}

/// Which opens a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every open, for reading or writing.
    #[default]
    Open,
    /// Opens for writing (or truncating) only.
    Write,
}

/// `[[files.rule]]`: "only these programs may open these paths" (`allow`) or "these programs
/// may not open these paths" (`deny`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// Shown in events and `custos status`.
    pub name: String,
    /// Protected files: absolute paths or globs (`*` within a component, `**` across them).
    pub paths: Vec<String>,
    /// Only these programs (absolute executable paths or globs) may open the paths.
    #[serde(default)]
    pub allow: Vec<String>,
    /// These programs may not open the paths.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Which opens the rule judges.
    #[serde(default)]
    pub access: Access,
    /// Log what the rule would deny, but allow it.
    #[serde(default)]
    pub audit: bool,
}

/// Checks what serde cannot: absolute paths and globs that compile, one of `allow`/`deny`.
pub(crate) fn validate(
    f: &FilesConfig,
    bad: &dyn Fn(&'static str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(p) = f.watch.iter().find(|p| !p.is_absolute()) {
        return Err(bad(
            "files.watch",
            &format!("{} is not an absolute path", p.display()),
        ));
    }
    if let Some(p) = f.writers.iter().find(|p| !p.is_absolute()) {
        return Err(bad(
            "files.writers",
            &format!("{} is not an absolute path", p.display()),
        ));
    }
    for (key, list) in [("files.include", &f.include), ("files.exclude", &f.exclude)] {
        for g in list {
            // A filter may also start with `**` ("**/.cache/**": anywhere).
            let anchored = if g.starts_with("**") {
                format!("/{g}")
            } else {
                g.clone()
            };
            check_glob(&anchored).map_err(|p| bad(key, &p))?;
        }
    }
    let mut names = std::collections::HashSet::new();
    for r in &f.rule {
        let rule = |p: String| bad("files.rule", &format!("rule {:?}: {p}", r.name));
        if r.name.trim().is_empty() {
            return Err(bad("files.rule", "every rule needs a `name`"));
        }
        if !names.insert(r.name.as_str()) {
            return Err(rule("two rules have this name".into()));
        }
        if r.paths.is_empty() {
            return Err(rule("`paths` is empty".into()));
        }
        match (r.allow.is_empty(), r.deny.is_empty()) {
            (true, true) => {
                return Err(rule("give `allow` (only these programs) or `deny`".into()))
            }
            (false, false) => return Err(rule("give `allow` or `deny`, not both".into())),
            _ => {}
        }
        for g in r.paths.iter().chain(&r.allow).chain(&r.deny) {
            check_glob(g).map_err(rule)?;
        }
    }
    Ok(())
}

/// An absolute path or glob that compiles.
fn check_glob(g: &str) -> Result<(), String> {
    if !g.starts_with('/') {
        return Err(format!("{g:?} is not an absolute path"));
    }
    globset::GlobBuilder::new(g)
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|e| format!("bad glob {g:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("/t/custos.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn rules_parse() {
        let c = parse(
            r#"
            [files]
            events = false
            exclude = ["/var/log/**"]
            rate = 0
            writers = ["/usr/bin/dpkg"]
            [[files.rule]]
            name = "ssh keys"
            paths = ["/etc/ssh/ssh_host_*_key"]
            allow = ["/usr/sbin/sshd"]
            [[files.rule]]
            name = "no curl on shadow"
            paths = ["/etc/shadow"]
            deny = ["/usr/bin/curl"]
            access = "write"
            audit = true
            "#,
        )
        .expect("parses");
        assert!(!c.files.events);
        assert_eq!(c.files.rule.len(), 2);
        assert_eq!(c.files.rule[1].access, super::Access::Write);
        assert!(c.files.rule[1].audit);
        assert!(c.files.protect_self);
    }

    #[test]
    fn bad_rules_are_named() {
        let rule = |body: &str| parse(&format!("[[files.rule]]\nname = \"r\"\n{body}"));
        let e = rule("paths = [\"/a\"]").unwrap_err();
        assert!(e.contains("rule \"r\"") && e.contains("allow"), "{e}");
        let e = rule("paths = [\"/a\"]\nallow = [\"/x\"]\ndeny = [\"/y\"]").unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = rule("paths = [\"etc/a\"]\nallow = [\"/x\"]").unwrap_err();
        assert!(e.contains("\"etc/a\" is not an absolute path"), "{e}");
        let e = rule("paths = [\"/a/[\"]\nallow = [\"/x\"]").unwrap_err();
        assert!(e.contains("bad glob"), "{e}");
        let e = rule("paths = []\nallow = [\"/x\"]").unwrap_err();
        assert!(e.contains("`paths` is empty"), "{e}");
        let e = rule("paths = [\"/a\"]\nallow = [\"/x\"]\naccess = \"read\"").unwrap_err();
        assert!(e.contains("read"), "{e}");
        let e = parse("[files]\nexclude = [\"tmp\"]").unwrap_err();
        assert!(e.contains("files.exclude"), "{e}");
        parse("[files]\nexclude = [\"**/.cache/**\"]").expect("anywhere");
    }
}
