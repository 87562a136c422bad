//! Root-only: the NSRL set in a running agent under lockdown (in the sandbox's tmpfs only).
//! A synthetic RDS v3 SQLite (schema per FORMATS.md) and a legacy NSRLFile.txt are imported
//! with `custos db import-nsrl`; a listed file runs with `nsrl_trust`, an unlisted one is
//! denied, and a truncated database changes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sha1::Digest as _;
use std::path::{Path, PathBuf};

/// /bin/true with `tag` appended: runs the same, hashes differently.
fn true_with(tag: &str) -> Vec<u8> {
    let mut b = std::fs::read("/bin/true").unwrap();
    b.extend_from_slice(tag.as_bytes());
    b
}

/// Writes [`true_with`]`(tag)` to the tmpfs as `tag`.
fn unique_true(sb: &Sandbox, tag: &str) -> PathBuf {
    sb.write_exec(tag, &true_with(tag))
}

/// Upper-case hex SHA-256, SHA-1 and MD5, as the NSRL writes them, of the file
/// [`unique_true`] wrote at `p`: computed, not read back, as lockdown refuses a plain open of
/// an untrusted ELF image.
fn digests(p: &Path) -> (String, String, String) {
    let b = true_with(p.file_name().unwrap().to_str().unwrap());
    (
        hex::encode_upper(sha2::Sha256::digest(&b)),
        hex::encode_upper(sha1::Sha1::digest(&b)),
        hex::encode_upper(md5::Md5::digest(&b)),
    )
}

/// An RDS v3 database with a `FILE` table listing `listed` among 1000 filler rows.
fn rds_v3(path: &Path, listed: &[&Path]) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE FILE (sha256 TEXT, sha1 TEXT, md5 TEXT, crc32 TEXT, file_name TEXT, \
         file_size INTEGER, package_id INTEGER);",
    )
    .unwrap();
    let mut ins = db
        .prepare("INSERT INTO FILE VALUES (?1, ?2, ?3, '00000000', ?4, 1, 1)")
        .unwrap();
    for p in listed {
        let (s256, s1, m5) = digests(p);
        ins.execute((s256, s1, m5, p.display().to_string()))
            .unwrap();
    }
    for i in 0..1000u32 {
        let b = i.to_le_bytes();
        ins.execute((
            hex::encode_upper(sha2::Sha256::digest(b)),
            hex::encode_upper(sha1::Sha1::digest(b)),
            hex::encode_upper(md5::Md5::digest(b)),
            format!("filler{i}"),
        ))
        .unwrap();
    }
}

fn nsrl_state(sb: &Sandbox) -> String {
    sb.status()["reputation"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nsrl")
        .map(|s| s["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn nsrl_listed_files_run_under_lockdown_and_a_corrupt_import_changes_nothing() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("lockdown", "[reputation]\nnsrl_trust = true\n");
    let listed = unique_true(&sb, "in-the-nsrl");
    let legacy = unique_true(&sb, "in-the-legacy-nsrl");
    let unknown = unique_true(&sb, "nobody-knows-me");
    settle();
    assert_denied(&listed);

    // RDS v3: the listed file runs, the unknown one is still denied.
    let db = sb.dir.path().join("RDS_modern.db");
    rds_v3(&db, &[&listed]);
    let out = sb.ok(&["db", "import-nsrl", db.to_str().unwrap()]);
    assert!(out.contains("1,001"), "{out}");
    assert!(
        nsrl_state(&sb).contains("1001 Sha256"),
        "{}",
        nsrl_state(&sb)
    );
    assert_runs(&listed);
    assert_denied(&unknown);
    let ev = sb.events_of(&listed, 1);
    let last = ev.last().unwrap();
    assert_eq!(last["custos"]["reason"], "known_good", "{ev:?}");
    assert_eq!(last["custos"]["source"]["name"], "nsrl");

    // A truncated database is refused and the set in force stays.
    let cut = sb.dir.path().join("cut.db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let o = sb.cli(&["db", "import-nsrl", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cut.db"), "{err}");
    assert_runs(&listed);

    // The legacy CSV (SHA-1): replaces the set, so only its file is known now.
    let (_, s1, m5) = digests(&legacy);
    let csv = sb.dir.path().join("NSRLFile.txt");
    std::fs::write(
        &csv,
        format!(
            "\"SHA-1\",\"MD5\",\"CRC32\",\"FileName\",\"FileSize\",\"ProductCode\",\"OpSystemCode\",\"SpecialCode\"\n\
             \"{s1}\",\"{m5}\",\"00000000\",\"legacy\",\"1\",\"1\",\"1\",\"\"\n\
             \"nothex\",\"{m5}\",\"00000000\",\"bad\",\"1\",\"1\",\"1\",\"\"\n"
        ),
    )
    .unwrap();
    let out = sb.ok(&["db", "import-nsrl", csv.to_str().unwrap()]);
    assert!(out.contains("rejected"), "{out}");
    assert_runs(&legacy);
    assert_denied(&listed);
    let info = sb.ok(&["fileinfo", legacy.to_str().unwrap()]);
    assert!(info.contains("nsrl        TRUSTED"), "{info}");
}

#[test]
fn without_trust_the_nsrl_only_says_known() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("lockdown", "");
    let listed = unique_true(&sb, "known-not-trusted");
    let db = sb.dir.path().join("rds.db");
    rds_v3(&db, &[&listed]);
    sb.ok(&["db", "import-nsrl", db.to_str().unwrap()]);
    settle();
    assert_denied(&listed);
    let info = sb.ok(&["fileinfo", listed.to_str().unwrap()]);
    assert!(info.contains("nsrl        known"), "{info}");
}
