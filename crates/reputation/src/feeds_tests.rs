use super::*;

fn hex_of(b: u8, n: usize) -> String {
    format!("{b:02x}").repeat(n)
}

/// Writes `lines` as a feed file in `dir` and returns its path.
fn feed_file(dir: &Path, file: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(file);
    fs::write(&p, lines.join("\n")).unwrap();
    p
}

#[test]
fn name_validation() {
    for ok in ["a", "abuse_ch", "mb-2024.05", &"x".repeat(64)] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a b",
        "é",
        "a\0",
        &"x".repeat(65),
    ] {
        let err = validate_name(bad).unwrap_err();
        assert!(matches!(err, FeedError::BadName { .. }), "{bad:?}");
    }
}

#[test]
fn import_writes_set_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let src = feed_file(
        dir.path(),
        "bad.txt",
        &[hex_of(1, 32), hex_of(1, 32), hex_of(2, 16), "junk".into()],
    );
    let state = dir.path().join("state");
    let info = import_feed(&state, "bad", &src).unwrap();
    assert_eq!(info.name, "bad");
    assert_eq!((info.rows, info.rejected), (4, 1));
    assert_eq!(info.unique, [1, 0, 1]);
    assert_eq!(info.duplicates, 1);
    assert_eq!(info.source, src.to_string_lossy());
    assert!(humantime::parse_rfc3339(&info.imported_at).is_ok());
    assert_eq!(list(&state).unwrap(), [info]);
    let set = DigestSet::open(&state.join("feeds/bad.set")).unwrap();
    assert!(set.contains_sha256(&[1; 32]));
}

#[test]
fn bad_name_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = feed_file(dir.path(), "f", &[hex_of(1, 32)]);
    let err = import_feed(dir.path(), "../x", &src).unwrap_err();
    assert!(matches!(err, FeedError::BadName { .. }));
    assert!(!dir.path().join("feeds").exists());
}

#[test]
fn failed_import_leaves_previous_feed_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let good = feed_file(dir.path(), "good.txt", &[hex_of(7, 32)]);
    let bad = feed_file(dir.path(), "bad.txt", &["not".into(), "hashes".into()]);
    let before = import_feed(dir.path(), "f", &good).unwrap();
    let feeds = feeds_dir(dir.path());
    let set_bytes = fs::read(feeds.join("f.set")).unwrap();
    let meta_bytes = fs::read(feeds.join("f.json")).unwrap();

    let err = import_feed(dir.path(), "f", &bad).unwrap_err();
    assert!(matches!(err, FeedError::AllRejected { .. }), "{err}");
    let err = import_feed(dir.path(), "f", &dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, FeedError::Io { .. }), "{err}");

    assert_eq!(fs::read(feeds.join("f.set")).unwrap(), set_bytes);
    assert_eq!(fs::read(feeds.join("f.json")).unwrap(), meta_bytes);
    assert_eq!(list(dir.path()).unwrap(), [before]);
    assert_eq!(
        fs::read_dir(&feeds).unwrap().count(),
        2,
        "no temp files left"
    );
}

#[test]
fn reimport_replaces_feed() {
    let dir = tempfile::tempdir().unwrap();
    let a = feed_file(dir.path(), "a", &[hex_of(1, 32)]);
    let b = feed_file(dir.path(), "b", &[hex_of(2, 32)]);
    import_feed(dir.path(), "f", &a).unwrap();
    import_feed(dir.path(), "f", &b).unwrap();
    let feeds = Feeds::load(dir.path()).unwrap();
    assert_eq!(feeds.lookup(None, None, &[2; 32]), Some("f"));
    assert_eq!(feeds.lookup(None, None, &[1; 32]), None);
}

#[test]
fn missing_state_dir_lists_and_loads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("none");
    assert!(list(&state).unwrap().is_empty());
    let feeds = Feeds::load(&state).unwrap();
    assert!(feeds.is_empty());
    assert!(!feeds.wants_md5() && !feeds.wants_sha1());
    assert_eq!(feeds.lookup(None, None, &[0; 32]), None);
}

#[test]
fn list_is_sorted_and_ignores_strays() {
    let dir = tempfile::tempdir().unwrap();
    let src = feed_file(dir.path(), "s", &[hex_of(1, 32)]);
    for name in ["zeta", "alpha", "mid"] {
        import_feed(dir.path(), name, &src).unwrap();
    }
    let feeds = feeds_dir(dir.path());
    fs::write(feeds.join(".alpha.json.tmp.1.2"), "partial").unwrap();
    fs::write(feeds.join("README"), "x").unwrap();
    let names: Vec<String> = list(dir.path())
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    assert_eq!(
        Feeds::load(dir.path()).unwrap().names(),
        ["alpha", "mid", "zeta"]
    );
}

#[test]
fn corrupt_metadata_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = feed_file(dir.path(), "s", &[hex_of(1, 32)]);
    import_feed(dir.path(), "f", &src).unwrap();
    fs::write(feeds_dir(dir.path()).join("f.json"), "{").unwrap();
    let err = list(dir.path()).unwrap_err();
    assert!(matches!(err, FeedError::Metadata { .. }), "{err}");
    assert!(err.to_string().contains("f.json"), "{err}");
}

#[test]
fn corrupt_set_fails_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = feed_file(dir.path(), "s", &[hex_of(1, 32)]);
    import_feed(dir.path(), "good", &src).unwrap();
    fs::write(feeds_dir(dir.path()).join("broken.set"), b"CUSTOSHSxx").unwrap();
    let err = Feeds::load(dir.path()).unwrap_err();
    assert!(matches!(err, FeedError::Set(_)), "{err}");
    assert!(err.to_string().contains("broken.set"), "{err}");
}

#[test]
fn lookup_across_two_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let a = feed_file(
        dir.path(),
        "a",
        &[hex_of(0xaa, 32), hex_of(0xcc, 32), hex_of(0x11, 16)],
    );
    let b = feed_file(
        dir.path(),
        "b",
        &[hex_of(0xbb, 32), hex_of(0xcc, 32), hex_of(0x22, 20)],
    );
    // Imported out of name order: lookup order is by name.
    import_feed(dir.path(), "zz-b", &b).unwrap();
    import_feed(dir.path(), "aa-a", &a).unwrap();
    let feeds = Feeds::load(dir.path()).unwrap();
    assert_eq!(feeds.names(), ["aa-a", "zz-b"]);
    assert_eq!(feeds.lookup(None, None, &[0xaa; 32]), Some("aa-a"));
    assert_eq!(feeds.lookup(None, None, &[0xbb; 32]), Some("zz-b"));
    assert_eq!(feeds.lookup(None, None, &[0xcc; 32]), Some("aa-a"));
    assert_eq!(feeds.lookup(None, None, &[0xdd; 32]), None);
    assert_eq!(
        feeds.lookup(Some(&[0x11; 16]), None, &[0xdd; 32]),
        Some("aa-a")
    );
    assert_eq!(
        feeds.lookup(None, Some(&[0x22; 20]), &[0xdd; 32]),
        Some("zz-b")
    );
    assert_eq!(
        feeds.lookup(Some(&[0x22; 16]), Some(&[0x11; 20]), &[0xdd; 32]),
        None
    );
}

#[test]
fn wants_md5_only_with_a_nonempty_md5_section() {
    let dir = tempfile::tempdir().unwrap();
    let sha = feed_file(dir.path(), "s", &[hex_of(1, 32)]);
    import_feed(dir.path(), "sha-only", &sha).unwrap();
    let feeds = Feeds::load(dir.path()).unwrap();
    assert!(!feeds.wants_md5());
    assert!(!feeds.wants_sha1());
    assert!(!feeds.is_empty());

    let md5 = feed_file(dir.path(), "m", &[hex_of(2, 16)]);
    import_feed(dir.path(), "with-md5", &md5).unwrap();
    let feeds = Feeds::load(dir.path()).unwrap();
    assert!(feeds.wants_md5());
    assert!(!feeds.wants_sha1());

    let sha1 = feed_file(dir.path(), "h", &[hex_of(3, 20)]);
    import_feed(dir.path(), "with-sha1", &sha1).unwrap();
    assert!(Feeds::load(dir.path()).unwrap().wants_sha1());
}

#[test]
fn malwarebazaar_import_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sha = hex_of(0x5a, 32);
    let md5 = hex_of(0x6b, 16);
    let src = feed_file(
        dir.path(),
        "recent.csv",
        &[
            "# MalwareBazaar recent malware samples (CSV)".into(),
            "# \"first_seen_utc\",\"sha256_hash\",\"md5_hash\",\"sha1_hash\",\"file_name\"".into(),
            format!("\"2024-05-01 10:00:00\", \"{sha}\", \"{md5}\", \"n/a\", \"a, b.exe\""),
        ],
    );
    let info = import_feed(dir.path(), "malwarebazaar", &src).unwrap();
    assert_eq!(info.unique, [1, 0, 1]);
    let feeds = Feeds::load(dir.path()).unwrap();
    assert!(feeds.wants_md5());
    assert_eq!(
        feeds.lookup(Some(&[0x6b; 16]), None, &[0; 32]),
        Some("malwarebazaar")
    );
}
