//! Refuses lockdown when it would lock the admin out: if the current rules would deny a program
//! that everything else needs (the shell, the ELF loader, custos itself, and the shared
//! libraries they load) on a watched filesystem.

use custos_event::{Decision, Mode};
use custos_verdict::{
    digests_while, evaluate_rep, trust_counts, FileDigests, Reputation, RuleSet, Sources, Want,
};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Programs that must keep running for the host (and custos's CLI) to stay usable.
pub const ESSENTIAL: &[&str] = &[
    "/proc/self/exe",
    "/bin/sh",
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
];

/// The essential programs that exist on this host, resolved, and the shared libraries custos
/// itself runs with (among them the C library, all the shell needs on Debian): in lockdown with
/// `[exec] images` a library that may not load stops every program as surely as the loader.
/// The libraries are those mapped when this is first called (at start), so the guard and the
/// `essential` source always agree, whatever the agent maps later.
pub fn essential_paths() -> impl Iterator<Item = PathBuf> {
    static OWN: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        mapped_images(&std::fs::read_to_string("/proc/self/maps").unwrap_or_default())
    });
    let mut seen = HashSet::new();
    ESSENTIAL
        .iter()
        .map(PathBuf::from)
        .chain(own.iter().cloned())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(move |p| seen.insert(p.clone()))
}

/// The files mapped executable in a `/proc/PID/maps` text (not deleted ones).
fn mapped_images(maps: &str) -> Vec<PathBuf> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            let perms = f.nth(1)?;
            let path = f.nth(3)?.trim_start();
            let file = path.starts_with('/') && !path.ends_with(" (deleted)");
            (perms.contains('x') && file).then(|| PathBuf::from(path))
        })
        .collect()
}

/// The first essential program for which `hit` says something, given its digests (computed
/// as `want` says), with what it said.
pub fn essential_where(
    want: Want,
    mut hit: impl FnMut(&FileDigests) -> Option<String>,
) -> Option<(PathBuf, String)> {
    essential_paths().find_map(|path| {
        let mut f = std::fs::File::open(&path).ok()?;
        let d = digests_while(&mut f, want, &mut || true).ok()??;
        Some((path, hit(&d)?))
    })
}

/// An essential file as found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Essential {
    /// Resolved path.
    pub path: PathBuf,
    /// Device it lives on.
    pub dev: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// What the reputation sources say about it (package trust lets lockdown run it).
    pub rep: Reputation,
}

/// Resolves the essential files that exist here and judges those on `devs` by the reputation
/// `sources` (the others cannot be denied, so reading them would only slow every rule change).
/// Only where trust counts (lockdown) are the sources asked: elsewhere they could only deny,
/// and sources that would deny these programs are refused when they load.
pub fn essentials(devs: &HashSet<u64>, sources: &Sources, mode: Mode) -> Vec<Essential> {
    let none = Sources::default();
    let trust = trust_counts(mode);
    let sources = if trust { sources } else { &none };
    essential_paths()
        .filter_map(|path| {
            let mut f = std::fs::File::open(&path).ok()?;
            let dev = f.metadata().ok()?.dev();
            if !devs.contains(&dev) {
                return None;
            }
            let p = path.to_string_lossy().into_owned();
            let size = f.metadata().ok()?.len();
            let (d, findings) = sources
                .read_and_consult(&mut f, size, Some(&p), trust, false)
                .ok()?;
            Some(Essential {
                path,
                dev,
                sha256: d.sha256,
                rep: findings.reputation(),
            })
        })
        .collect()
}

/// The essential files on watched devices that `mode` would deny under `rules`.
pub fn blockers(
    rules: &RuleSet,
    mode: Mode,
    watched_devs: &HashSet<u64>,
    files: &[Essential],
) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|e| watched_devs.contains(&e.dev))
        .filter(|e| {
            let path = e.path.to_string_lossy();
            evaluate_rep(rules, mode, Some(&e.sha256), Some(&path), e.rep).decision
                == Decision::Deny
        })
        .map(|e| e.path.clone())
        .collect()
}

/// The paths whose devices the guard treats as judged: the watched mounts, plus (when the eBPF
/// sensor holds execs from every unwatched filesystem) the essential programs themselves,
/// wherever they are.
pub fn covered(mounts: &[PathBuf], holds_unwatched: bool) -> Vec<PathBuf> {
    let mut v = mounts.to_vec();
    if holds_unwatched {
        v.extend(ESSENTIAL.iter().map(PathBuf::from));
    }
    v
}

/// Devices of the watched mount points.
fn watched_devs(watched: &[PathBuf]) -> HashSet<u64> {
    watched
        .iter()
        .filter_map(|m| std::fs::metadata(m).ok().map(|md| md.dev()))
        .collect()
}

fn listed(paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    list.join(", ")
}

/// `Err` with an explanation when running in `mode` under `rules` would deny an essential
/// program: lockdown without allows for them, or monitor with a block rule over one of them
/// (rules edited while the agent was down are only checked here).
pub fn check_mode(
    rules: &RuleSet,
    mode: Mode,
    watched: &[PathBuf],
    sources: &Sources,
) -> Result<(), String> {
    if mode == Mode::Audit {
        return Ok(());
    }
    let devs = watched_devs(watched);
    let blockers = blockers(rules, mode, &devs, &essentials(&devs, sources, mode));
    if blockers.is_empty() {
        return Ok(());
    }
    let advice = match mode {
        Mode::Lockdown => {
            "Add allow rules for them first (custos rule add --file PATH --allow), let package \
             trust vouch for them (reputation.dpkg), or watch only the filesystems that need \
             lockdown ([exec] watch)"
        }
        _ => "Remove or narrow the block rule that matches them (custos rule list)",
    };
    Err(format!(
        "refusing {mode}: it would deny {} on a watched filesystem, and with it every program \
         (and custos's own CLI). {advice}",
        listed(&blockers)
    ))
}

/// The essential files that lockdown would deny under `new` but not under `old`.
pub fn new_blockers(
    old: &RuleSet,
    new: &RuleSet,
    mode: Mode,
    watched_devs: &HashSet<u64>,
    files: &[Essential],
) -> Vec<PathBuf> {
    let before: HashSet<PathBuf> = blockers(old, mode, watched_devs, files)
        .into_iter()
        .collect();
    blockers(new, mode, watched_devs, files)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect()
}

/// For a rule change in `mode`: `Err` with an explanation when replacing `old` by `new` would
/// deny an essential program that `old` lets run (in lockdown by removing its allow, in monitor
/// by a block rule, e.g. a path block over the ELF loader). A change that leaves an existing
/// blocker in place is not refused, so the admin can still add the rules that fix it. Audit
/// never denies.
pub fn check_rule_change(
    old: &RuleSet,
    new: &RuleSet,
    mode: Mode,
    watched: &[PathBuf],
    sources: &Sources,
) -> Result<(), String> {
    if mode == Mode::Audit {
        return Ok(());
    }
    let devs = watched_devs(watched);
    let blockers = new_blockers(old, new, mode, &devs, &essentials(&devs, sources, mode));
    if blockers.is_empty() {
        return Ok(());
    }
    let advice = match mode {
        Mode::Lockdown => {
            "Leave lockdown first (custos mode monitor), or keep another allow rule that covers them"
        }
        _ => "Narrow the block rule, or add allow rules by SHA-256 for them first",
    };
    Err(format!(
        "refusing rule change in {mode}: it would deny {} on a watched filesystem, and with it \
         every program (and custos's own CLI). {advice}",
        listed(&blockers)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_verdict::{Policy, Rule, Target};
    use std::path::Path;

    fn is_self(path: &Path) -> bool {
        std::fs::canonicalize("/proc/self/exe").is_ok_and(|p| p == path)
    }

    fn ess(path: &str, dev: u64, c: char) -> Essential {
        Essential {
            path: PathBuf::from(path),
            dev,
            sha256: std::iter::repeat_n(c, 64).collect(),
            rep: Reputation::default(),
        }
    }
    fn allow(id: u64, t: Target) -> Rule {
        Rule {
            id,
            target: t,
            policy: Policy::Allow,
            comment: None,
            created: String::new(),
        }
    }

    #[test]
    fn unknown_essentials_on_watched_fs_block_lockdown() {
        let files = [
            ess("/usr/bin/dash", 1, 'a'),
            ess("/usr/lib/ld.so", 1, 'b'),
            ess("/opt/x", 2, 'c'),
        ];
        let watched = HashSet::from([1]);
        let none = RuleSet::default();
        assert_eq!(
            blockers(&none, Mode::Lockdown, &watched, &files),
            vec![
                PathBuf::from("/usr/bin/dash"),
                PathBuf::from("/usr/lib/ld.so")
            ]
        );
        // Only the tmpfs (dev 2) watched: nothing essential is at risk there... unless it is.
        assert_eq!(
            blockers(&none, Mode::Lockdown, &HashSet::from([3]), &files),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            blockers(&none, Mode::Lockdown, &HashSet::from([2]), &files),
            vec![PathBuf::from("/opt/x")]
        );
    }

    #[test]
    fn allow_rules_by_hash_or_path_clear_the_guard() {
        let files = [ess("/usr/bin/dash", 1, 'a'), ess("/usr/lib/ld.so", 1, 'b')];
        let rules = RuleSet::new(vec![
            allow(1, Target::Sha256("a".repeat(64))),
            allow(2, Target::Path("/usr/lib/*".into())),
        ])
        .expect("rules");
        assert!(blockers(&rules, Mode::Lockdown, &HashSet::from([1]), &files).is_empty());
    }

    #[test]
    fn trusted_essentials_do_not_block_lockdown() {
        let mut dash = ess("/usr/bin/dash", 1, 'a');
        dash.rep = Reputation {
            good: Some(0),
            by_path: true,
            ..Reputation::default()
        };
        let files = [dash, ess("/usr/lib/ld.so", 1, 'b')];
        assert_eq!(
            blockers(
                &RuleSet::default(),
                Mode::Lockdown,
                &HashSet::from([1]),
                &files
            ),
            vec![PathBuf::from("/usr/lib/ld.so")]
        );
    }

    #[test]
    fn rule_changes_are_refused_only_for_new_blockers() {
        let files = [ess("/usr/bin/dash", 1, 'a'), ess("/usr/lib/ld.so", 1, 'b')];
        let devs = HashSet::from([1]);
        let both = RuleSet::new(vec![
            allow(1, Target::Sha256("a".repeat(64))),
            allow(2, Target::Sha256("b".repeat(64))),
        ])
        .expect("rules");
        let only_a = RuleSet::new(vec![allow(1, Target::Sha256("a".repeat(64)))]).expect("rules");
        // Removing the allow for ld.so makes it a blocker.
        assert_eq!(
            new_blockers(&both, &only_a, Mode::Lockdown, &devs, &files),
            vec![PathBuf::from("/usr/lib/ld.so")]
        );
        // Adding it back (or anything else) while ld.so is already denied is not refused.
        assert!(new_blockers(&only_a, &both, Mode::Lockdown, &devs, &files).is_empty());
        let none = RuleSet::default();
        assert!(new_blockers(&none, &only_a, Mode::Lockdown, &devs, &files).is_empty());
        // A block rule for dash on top of its allow: hash allow beats a path block.
        let mut rules = both.rules().to_vec();
        rules.push(Rule {
            policy: Policy::Block,
            ..allow(3, Target::Path("/usr/bin/*".into()))
        });
        let blocked = RuleSet::new(rules).expect("rules");
        assert!(new_blockers(&both, &blocked, Mode::Lockdown, &devs, &files).is_empty());
        // ... but turning dash's hash allow into a block is refused, unless dash is unwatched.
        let blocked = RuleSet::new(vec![Rule {
            policy: Policy::Block,
            ..allow(1, Target::Sha256("a".repeat(64)))
        }])
        .expect("rules");
        assert_eq!(
            new_blockers(&only_a, &blocked, Mode::Lockdown, &devs, &files),
            vec![PathBuf::from("/usr/bin/dash")]
        );
        assert!(new_blockers(
            &only_a,
            &blocked,
            Mode::Lockdown,
            &HashSet::from([2]),
            &files
        )
        .is_empty());
    }

    #[test]
    fn finds_this_hosts_essentials() {
        let all_devs: HashSet<u64> = ESSENTIAL
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.dev()))
            .collect();
        let e = essentials(&all_devs, &Sources::default(), Mode::Lockdown);
        assert!(
            essentials(&HashSet::new(), &Sources::default(), Mode::Lockdown).is_empty(),
            "nothing hashed off watched devices"
        );
        assert!(e.iter().any(|f| is_self(&f.path)), "{e:?}");
        assert!(e.iter().all(|f| f.sha256.len() == 64));
    }

    #[test]
    fn libraries_mapped_executable_are_essential() {
        let maps = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 fe:01 1234 /usr/bin/custos
55d0c0a28000-55d0c0b28000 r-xp 00028000 fe:01 1234 /usr/bin/custos
7f0000000000-7f0000100000 r-xp 00028000 fe:01 77   /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 00:05 9    /memfd:jit (deleted)
7f0000400000-7f0000500000 rw-p 00000000 00:00 0    [heap]
7ffc00000000-7ffc00001000 r-xp 00000000 00:00 0    [vdso]
7f0000600000-7f0000700000 r-xp 00000000 fe:01 78   /opt/my lib/libx.so
";
        assert_eq!(
            mapped_images(maps),
            [
                "/usr/bin/custos",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/opt/my lib/libx.so"
            ]
            .map(PathBuf::from)
        );
        // Here: this test binary's C library, once.
        let all: Vec<PathBuf> = essential_paths().collect();
        assert!(
            all.iter().any(|p| p.to_string_lossy().contains("libc.so")),
            "{all:?}"
        );
        assert_eq!(all.len(), all.iter().collect::<HashSet<_>>().len());
    }

    #[test]
    fn a_block_rule_over_an_essential_is_refused_in_monitor_not_audit() {
        let files = [ess("/usr/lib/ld.so", 1, 'b'), ess("/opt/tool", 1, 'c')];
        let devs = HashSet::from([1]);
        let none = RuleSet::default();
        let block = RuleSet::new(vec![Rule {
            id: 1,
            target: Target::Path("/usr/*/*".into()),
            policy: Policy::Block,
            comment: None,
            created: String::new(),
        }])
        .expect("rules");
        assert_eq!(
            new_blockers(&none, &block, Mode::Monitor, &devs, &files),
            vec![PathBuf::from("/usr/lib/ld.so")]
        );
        assert!(new_blockers(&none, &block, Mode::Audit, &devs, &files).is_empty());
        assert!(new_blockers(&none, &none, Mode::Monitor, &devs, &files).is_empty());
    }
}
