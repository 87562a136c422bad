//! Root-only: known-bad feeds imported with `custos db import-feed` block what they list, by
//! SHA-256 or MD5, in a running agent; bad feeds are refused and the previous one stays.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use md5::Digest;
use std::path::Path;

/// A copy of /bin/true with `tag` appended: runs the same, hashes differently.
fn unique_true(sb: &Sandbox, tag: &str) -> std::path::PathBuf {
    let mut b = std::fs::read("/bin/true").unwrap();
    b.extend_from_slice(tag.as_bytes());
    sb.write_exec(tag, &b)
}

fn sha256_of(p: &Path) -> String {
    custos_verdict::sha256_hex(&mut std::fs::File::open(p).unwrap()).unwrap()
}

#[test]
fn a_feed_blocks_what_it_lists_and_a_bad_one_changes_nothing() {
    if !root_or_skip() {
        return;
    }
    let sb = Sandbox::started("monitor", "");
    let by_sha = unique_true(&sb, "listed-by-sha256");
    let by_md5 = unique_true(&sb, "listed-by-md5");
    let clean = unique_true(&sb, "not-listed");
    let md5 = hex::encode(md5::Md5::digest(std::fs::read(&by_md5).unwrap()));
    let feed = sb.dir.path().join("abuse.txt");
    std::fs::write(
        &feed,
        format!(
            "# test feed\n{}  # by sha256\n{md5}\nnot-a-hash\n",
            sha256_of(&by_sha)
        ),
    )
    .unwrap();
    settle();
    let out = sb.ok(&[
        "db",
        "import-feed",
        feed.to_str().unwrap(),
        "--name",
        "abuse",
    ]);
    assert!(
        out.contains("1 rejected") && out.contains("line 4"),
        "{out}"
    );
    assert!(out.contains("running agent now uses it"), "{out}");

    assert_denied(&by_sha);
    assert_denied(&by_md5);
    assert_runs(&clean);
    let status = sb.status();
    let feeds = status["reputation"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "feeds")
        .cloned()
        .unwrap();
    assert_eq!(
        (&feeds["state"], &feeds["active"]),
        (&"abuse".into(), &true.into())
    );
    let ev = sb.events_of(&by_md5, 1);
    assert_eq!(ev[0]["custos"]["reason"], "known_bad");
    assert_eq!(ev[0]["custos"]["source"]["name"], "feeds");
    assert_eq!(ev[0]["custos"]["source"]["detail"], "abuse");
    assert_eq!(ev[0]["rule"]["name"], "abuse");
    // fileinfo says which feed, and what each mode would do.
    let info: serde_json::Value =
        serde_json::from_str(&sb.ok(&["fileinfo", by_md5.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(info["deciding"], "feeds", "{info}");
    let answer = info["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "feeds")
        .unwrap();
    assert_eq!(
        (&answer["source"], &answer["opinion"], &answer["detail"]),
        (&"feeds".into(), &"bad".into(), &"abuse".into()),
        "{info}"
    );
    assert_eq!(info["now"]["decision"], "deny", "{info}");
    assert!(sb
        .ok(&["fileinfo", clean.to_str().unwrap()])
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["feeds", "unknown"]));

    // A file with nothing usable is refused; the feed in force stays.
    let junk = sb.dir.path().join("junk.txt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let o = sb.cli(&[
        "db",
        "import-feed",
        junk.to_str().unwrap(),
        "--name",
        "abuse",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("junk.txt"), "{err}");
    assert_denied(&by_sha);

    // A feed that lists the shell would stop every program: refused.
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let lockout = sb.dir.path().join("lockout.txt");
    std::fs::write(&lockout, format!("{}\n", sha256_of(&sh))).unwrap();
    let o = sb.cli(&[
        "db",
        "import-feed",
        lockout.to_str().unwrap(),
        "--name",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("every program start needs"));

    let list: serde_json::Value = serde_json::from_str(&sb.ok(&["db", "list", "--json"])).unwrap();
    let feeds = &list["feeds"];
    assert_eq!(feeds.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(feeds[0]["name"], "abuse");
    assert_eq!(feeds[0]["unique"], serde_json::json!([1, 0, 1]));
    assert!(list["nsrl"].is_null(), "{list}");
}
