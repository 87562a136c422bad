//! Root-only: image loads under control. In lockdown (with `[exec] images`, the default) a plain
//! open of an ELF image that nothing trusts is denied, so `dlopen` of an untrusted library and
//! `ld.so ./untrusted` fail, while trusted libraries load. Each test locks down only its own
//! tmpfs.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

/// The programs a test needs: the loader (`tests/programs/dlopen.c`) and a shared library
/// (`tests/programs/lib.c`), built outside the watched tmpfs.
struct Built {
    loader: PathBuf,
    lib: Vec<u8>,
}

/// A sandbox in `mode` (`extra` config), the programs built, and the loader put on the watched
/// tmpfs (so its exec open is also reported as a plain open where images are controlled).
fn with_loader(mode: &str, extra: &str) -> (Sandbox, PathBuf, Vec<u8>) {
    let sb = Sandbox::started(mode, extra);
    let b = build(&sb);
    let loader = put(&sb, "loader", &std::fs::read(&b.loader).unwrap(), "");
    (sb, loader, b.lib)
}

fn build(sb: &Sandbox) -> Built {
    let dir = sb.dir.path();
    let loader = cc(dir, "dlopen");
    let lib = dir.join("lib.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs/lib.c");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(src)
        .status()
        .unwrap();
    assert!(st.success(), "cc lib.c");
    Built {
        loader,
        lib: std::fs::read(lib).unwrap(),
    }
}

/// Writes `content` with `tail` appended (an ELF file still loads with trailing bytes, and
/// hashes differently) into the tmpfs as `name`.
fn put(sb: &Sandbox, name: &str, content: &[u8], tail: &str) -> PathBuf {
    let p = sb.mnt.join(name);
    let mut b = content.to_vec();
    b.extend_from_slice(tail.as_bytes());
    std::fs::write(&p, b).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn allow_file(sb: &Sandbox, path: &Path) {
    sb.ok(&["rule", "add", "--file", path.to_str().unwrap(), "--allow"]);
}

/// Runs `program ARGS` to the end.
fn output(program: &Path, args: &[&Path]) -> Output {
    retry_txtbsy(|| Command::new(program).args(args).output()).unwrap()
}

/// `loader LIB custos_test_answer`: the library's function answers 42 when it loads.
fn dlopen(loader: &Path, lib: &Path) -> Output {
    retry_txtbsy(|| {
        Command::new(loader)
            .arg(lib)
            .arg("custos_test_answer")
            .output()
    })
    .unwrap()
}

#[track_caller]
fn assert_loads(loader: &Path, lib: &Path) {
    let o = dlopen(loader, lib);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{} did not load: {err}", lib.display());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42");
}

#[track_caller]
fn assert_refused(loader: &Path, lib: &Path) {
    let o = dlopen(loader, lib);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{} loaded: {err}", lib.display());
    assert!(err.contains("Operation not permitted"), "{err}");
}

/// Load decisions for `image`.
fn loads(sb: &Sandbox, image: &Path) -> Vec<Value> {
    let p = image.to_str().unwrap();
    sb.events_at_least(0)
        .into_iter()
        .filter(|e| e["event"]["module"] == "custos.exec" && e["dll"]["path"] == p)
        .collect()
}

fn wait_load(sb: &Sandbox, image: &Path, decision: &str) -> Value {
    wait_for(
        Duration::from_secs(5),
        format!("no {decision} load event for {}", image.display()),
        || {
            loads(sb, image)
                .into_iter()
                .find(|e| e["custos"]["decision"] == decision)
        },
    )
}

#[test]
fn lockdown_refuses_an_untrusted_library_and_loads_a_trusted_one() {
    if !root_or_skip() {
        return;
    }
    let (sb, loader, lib) = with_loader("lockdown", "");
    let untrusted = put(&sb, "libuntrusted.so", &lib, "untrusted");
    let trusted = put(&sb, "libtrusted.so", &lib, "trusted");
    allow_file(&sb, &loader);
    allow_file(&sb, &trusted);
    assert_eq!(sb.status()["images"], true);

    assert_refused(&loader, &untrusted);
    let e = wait_load(&sb, &untrusted, "deny");
    assert_eq!(e["event"]["action"], "load");
    assert_eq!(e["event"]["category"], serde_json::json!(["library"]));
    assert_eq!(e["event"]["outcome"], "failure");
    assert_eq!(e["custos"]["reason"], "mode_default");
    assert_eq!(e["dll"]["name"], "libuntrusted.so");
    assert_eq!(e["dll"]["hash"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(e["process"]["executable"], loader.to_str().unwrap());

    assert_loads(&loader, &trusted);
    let e = wait_load(&sb, &trusted, "allow");
    assert_eq!(e["custos"]["reason"], "binary_rule");
    // Again, now that it is known: still refused, still loads.
    assert_refused(&loader, &untrusted);
    assert_loads(&loader, &trusted);

    // Each exec of the loader is one decision, never a second one for the same open. (The
    // only load of it is the CLI's: `rule add --file` was refused the open and asked the agent.)
    let dup: Vec<Value> = loads(&sb, &loader)
        .into_iter()
        .filter(|e| e["process"]["executable"] != BIN)
        .collect();
    assert!(dup.is_empty(), "{dup:?}");
    let all = sb.events_at_least(0);
    let execs = events_for(&all, &loader)
        .into_iter()
        .filter(|e| e["event"]["action"] == "exec")
        .count();
    // At most one per run (fewer once the loader is old enough for a kernel mark).
    assert!(
        (1..=4).contains(&execs),
        "{execs} exec decisions for 4 runs"
    );
    let st = sb.status()["exec"].clone();
    assert!(st["loads_denied"].as_u64().unwrap() >= 2, "{st}");
    assert!(st["loads_allowed"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["denied"], 0, "no exec was denied: {st}");

    // Reading an untrusted library is no load when the file is not an image: a script or
    // data with the same name opens fine.
    let text = put(&sb, "libnotelf.so", b"not an ELF file\n", "");
    assert_eq!(std::fs::read(&text).unwrap(), b"not an ELF file\n");
    assert!(sb.stat("other_opens") >= 1);
    assert!(loads(&sb, &text).is_empty());
}

#[test]
fn lockdown_refuses_ld_so_on_an_untrusted_program() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("lockdown", "");
    let ld = std::fs::canonicalize(LD_SO).unwrap();
    let prog = put(&sb, "prog", &std::fs::read("/bin/true").unwrap(), "prog");
    assert_denied(&prog);
    let o = output(&ld, &[&prog]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "ld.so ran it: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    let e = wait_load(&sb, &prog, "deny");
    assert_eq!(e["process"]["executable"], ld.to_str().unwrap());

    // Allowed by a rule, it runs both ways.
    allow_file(&sb, &prog);
    let o = output(&ld, &[&prog]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    settle();
    let before = sb.status()["exec"].clone();
    assert_runs(&prog);
    // Old enough for a kernel mark now: the mark placed before the exec is answered covers the
    // plain-open report of the same open too, so no load is counted.
    let after = sb.status()["exec"].clone();
    assert_eq!(after["loads_allowed"], before["loads_allowed"], "{after}");
    assert_eq!(
        after["ignore_marks"].as_u64(),
        before["ignore_marks"].as_u64().map(|n| n + 1)
    );
    assert_runs(&prog);
    assert_eq!(
        sb.status()["exec"]["allowed"],
        after["allowed"],
        "answered by the kernel"
    );
}

#[test]
fn without_image_control_the_untrusted_library_loads() {
    if !root_or_skip() {
        return;
    }
    // Lockdown still denies the unknown exec, but plain opens are not held.
    let (sb, loader, lib) = with_loader("lockdown", "[exec]\nimages = false\n");
    let untrusted = put(&sb, "libuntrusted.so", &lib, "untrusted");
    assert_denied(&loader);
    allow_file(&sb, &loader);
    assert_loads(&loader, &untrusted);
    let ld = std::fs::canonicalize(LD_SO).unwrap();
    let prog = put(&sb, "prog", &std::fs::read("/bin/true").unwrap(), "prog");
    assert!(output(&ld, &[&prog]).status.success());
    assert_eq!(sb.status()["images"], false);
    assert!(loads(&sb, &untrusted).is_empty());
}

#[test]
fn switching_to_lockdown_and_back_turns_image_control_on_and_off() {
    if !root_or_skip() {
        return;
    }
    let (sb, loader, lib) = with_loader("monitor", "");
    let lib = put(&sb, "libunknown.so", &lib, "unknown");
    allow_file(&sb, &loader);
    // Monitor: plain opens are not held at all.
    assert_loads(&loader, &lib);
    assert_eq!(sb.status()["images"], false);
    assert!(loads(&sb, &lib).is_empty());

    sb.ok(&["mode", "lockdown"]);
    assert_eq!(sb.status()["images"], true);
    assert_refused(&loader, &lib);
    wait_load(&sb, &lib, "deny");

    sb.ok(&["mode", "monitor"]);
    assert_eq!(sb.status()["images"], false);
    assert_loads(&loader, &lib);
    assert_eq!(loads(&sb, &lib).len(), 1, "only the lockdown one");
}
