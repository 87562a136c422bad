//! Shared by the root test suites of several crates (included with `#[path]`): the root check
//! and compiling the C programs next to this file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the test may run; false (after saying so) when it must be skipped. With
/// `CUSTOS_E2E_REQUIRED=1` (set by CI) a run without root fails instead.
pub fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CUSTOS_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("CUSTOS_E2E_REQUIRED=1 but not running as root");
    }
    eprintln!("skipped: needs root");
    false
}

/// Compiles tests/programs/`name`.c into `dir` with extra `args` (gcc comes from
/// scripts/setup.sh).
pub fn cc(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    // Every crate with root tests is at crates/NAME.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/programs/{name}.c"));
    let out = dir.join(name);
    let st = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(args)
        .status()
        .expect("run cc (install gcc: bash scripts/setup.sh)");
    assert!(st.success(), "cc {name}.c");
    out
}
