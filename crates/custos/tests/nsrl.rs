//! `custos db import-nsrl` and `db list` end to end, without root or an agent: a legacy
//! NSRLFile.txt and a digest list into a private state dir; a bad file is refused with a
//! clear error and the previous set stays listed.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_custos");

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("custos.toml");
        let d = dir.path().display();
        std::fs::write(
            &config,
            format!("state_dir = \"{d}/state\"\nsocket = \"{d}/custos.sock\"\n"),
        )
        .unwrap();
        Env { dir, config }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha1(i: u32) -> String {
    format!("{i:08X}{}", "AB".repeat(16))
}

#[test]
fn import_nsrl_summarises_lists_and_keeps_the_previous_set_on_error() {
    let env = Env::new();
    let mut legacy = "\"SHA-1\",\"MD5\",\"CRC32\",\"FileName\",\"FileSize\",\"ProductCode\",\
                      \"OpSystemCode\",\"SpecialCode\"\n"
        .to_owned();
    for i in 0..40 {
        legacy += &format!(
            "\"{}\",\"{:032X}\",\"00000000\",\"f{i}.dll\",10,1,\"362\",\"\"\n",
            sha1(i % 30),
            i
        );
    }
    legacy += "\"NOT-HEX\",\"00\",\"0\",\"x\",1,1,\"1\",\"\"\n";
    let txt = env.file("NSRLFile.txt", &legacy);
    let out = env.ok(&["db", "import-nsrl", s(&txt)]);
    for want in [
        "legacy NSRLFile.txt",
        "SHA-1 set",
        "rows read",
        "41",
        "unique",
        "30",
        "duplicates",
        "10",
        "line 42: wrong length",
        "agent is not running",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    let set = env.dir.path().join("state/nsrl/nsrl.set");
    assert_eq!(std::fs::metadata(&set).unwrap().len(), 40 + 30 * 20);

    let list = env.ok(&["db", "list"]);
    assert!(
        list.contains("nsrl") && list.contains("30 SHA-1 digests"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["db", "list", "--json"])).unwrap();
    assert_eq!(json["feeds"], serde_json::json!([]));
    assert_eq!(json["nsrl"]["unique"], 30);
    assert_eq!(json["nsrl"]["digest"], "sha1");
    assert_eq!(json["nsrl"]["rejected_by_reason"]["wrong_length"], 1);

    // Garbage: refused, naming the file; the previous set stays.
    let junk = env.file("junk.bin", "hello, world\n");
    let o = env.cli(&["db", "import-nsrl", s(&junk)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.bin") && err.contains("is not an NSRL") && err.contains("stays"),
        "{err}"
    );
    // A legacy file with the wrong columns, and a SHA-256 ask of a legacy file.
    let cols = env.file("cols.txt", "\"SHA-1\",\"MD5\"\n\"A\",\"B\"\n");
    let err = String::from_utf8(env.cli(&["db", "import-nsrl", s(&cols)]).stderr).unwrap();
    assert!(err.contains("does not match"), "{err}");
    let err = String::from_utf8(
        env.cli(&["db", "import-nsrl", s(&txt), "--digest", "sha256"])
            .stderr,
    )
    .unwrap();
    assert!(err.contains("has no SHA-256"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["db", "list", "--json"])).unwrap();
    assert_eq!(json["nsrl"]["unique"], 30);

    // A digest list (MD5 by length) with a small sort buffer replaces it.
    let mut md5s = String::new();
    for i in 0..1000 {
        md5s += &format!(
            "{:032x}  /bin/f{i}\n",
            u128::from(i % 700u32) * 0x1234_5678_9abc_def1
        );
    }
    let lst = env.file("md5.txt", &md5s);
    let out = env.ok(&["db", "import-nsrl", s(&lst), "--memory", "8"]);
    assert!(
        out.contains("digest list") && out.contains("MD5 set"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["db", "list", "--json"])).unwrap();
    assert_eq!(
        (&json["nsrl"]["unique"], &json["nsrl"]["duplicates"]),
        (&700.into(), &300.into())
    );
    // Only the set and its metadata are left in the store.
    let mut names: Vec<_> = std::fs::read_dir(env.dir.path().join("state/nsrl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["nsrl.json", "nsrl.set"]);
}

#[test]
fn help_names_the_formats_and_options() {
    let env = Env::new();
    let help = env.ok(&["db", "import-nsrl", "--help"]);
    for want in ["RDS v3", "NSRLFile.txt", "--digest", "--memory", "sha256"] {
        assert!(help.contains(want), "{want:?} not in:\n{help}");
    }
    let o = env.cli(&["db", "import-nsrl", "x", "--memory", "1"]);
    assert!(!o.status.success());
}
