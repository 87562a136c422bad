//! Root-only: Debian package trust under lockdown. The sandbox's tmpfs is bind-mounted over
//! `/usr/bin` in a private mount namespace (never the host's), so a program there is seen at a
//! dpkg-listed path: it runs when its content is what the package shipped, and is denied when
//! it is not.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

/// Runs `prog` (a name under /usr/bin) with the sandbox's tmpfs over /usr/bin, in a private
/// mount namespace. Returns the exit code.
fn run_as_usr_bin(sb: &Sandbox, prog: &str) -> i32 {
    let script = format!("mount --bind \"$0\" /usr/bin && exec /usr/bin/{prog}");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", &script])
        .arg(&sb.mnt)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn lockdown_runs_packaged_programs_and_denies_altered_ones() {
    if !root_or_skip() {
        return;
    }
    if !std::path::Path::new("/var/lib/dpkg/info").is_dir() {
        eprintln!("skipped: not a dpkg system");
        return;
    }
    let sb = Sandbox::started("lockdown", "");
    let dpkg = sb.status()["reputation"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "dpkg")
        .map(|s| s["state"].to_string())
        .unwrap_or_default();
    assert!(dpkg.contains("files from"), "{dpkg}");
    // What coreutils shipped as true, and true's content under false's name.
    sb.install("/usr/bin/true", "true");
    sb.install("/usr/bin/true", "false");
    let mut other = std::fs::read("/usr/bin/true").unwrap();
    other.extend_from_slice(b"altered");
    sb.write_exec("echo", &other);
    settle();

    assert_eq!(
        run_as_usr_bin(&sb, "true"),
        0,
        "packaged content at its path runs"
    );
    assert_ne!(
        run_as_usr_bin(&sb, "false"),
        0,
        "another program's content is not trusted"
    );
    assert_ne!(
        run_as_usr_bin(&sb, "echo"),
        0,
        "altered content is not trusted"
    );

    let ev = sb.events_at_least(3);
    let reason = |exe: &str| {
        ev.iter()
            .filter(|e| e["event"]["module"] == "custos.exec" && e["process"]["executable"] == exe)
            .map(|e| e["custos"]["reason"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        reason("/usr/bin/true").contains(&"known_good".to_owned()),
        "{ev:?}"
    );
    assert!(
        reason("/usr/bin/false").contains(&"mode_default".to_owned()),
        "{ev:?}"
    );
    // Outside the namespace the same file is at an unlisted path: denied.
    assert_denied(&sb.mnt.join("true"));
    // fileinfo tells the three apart.
    let info = sb.ok(&["fileinfo", "/usr/bin/true"]);
    assert!(
        info.contains("TRUSTED  a package installed this path with this MD5  <- decides"),
        "{info}"
    );
    assert!(
        info.contains("decision:  Allow (known_good, by dpkg)"),
        "{info}"
    );
    assert!(sb
        .ok(&["fileinfo", sb.mnt.join("echo").to_str().unwrap()])
        .contains("no package installed a file at this path"));
}
