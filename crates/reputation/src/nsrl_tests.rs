use super::*;
use crate::hashset::HEADER_LEN;
use rusqlite::Connection;
use std::fs::OpenOptions;

/// The digests of synthetic file `i`: SHA-256, SHA-1, MD5, uppercase hex as RDS v3 has them.
fn hexes(i: u64) -> (String, String, String) {
    let mut bytes = [0u8; 32];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
    for c in bytes.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        c.copy_from_slice(&x.to_be_bytes());
    }
    let h = hex::encode_upper(bytes);
    (h.clone(), h[..40].to_owned(), h[..32].to_owned())
}

/// An RDS v3 database per FORMATS.md: `FILE` (sha256, sha1, md5, crc32, file_name, file_size,
/// package_id) plus `PKG`. Each row gives the three digest cells (`None`: NULL).
type Cells = (Option<String>, Option<String>, Option<String>);

fn rds3(path: &Path, rows: &[Cells]) {
    let mut c = Connection::open(path).unwrap();
    let c = c.transaction().unwrap();
    c.execute_batch(
        "CREATE TABLE PKG (package_id INTEGER PRIMARY KEY, name TEXT, version TEXT);
         INSERT INTO PKG VALUES (1, 'coreutils', '9.1');
         CREATE TABLE FILE (sha256 TEXT, sha1 TEXT, md5 TEXT, crc32 TEXT, file_name TEXT,
                            file_size INTEGER, package_id INTEGER);",
    )
    .unwrap();
    let mut st = c
        .prepare("INSERT INTO FILE VALUES (?1, ?2, ?3, '0000ABCD', 'ls', 1234, 1)")
        .unwrap();
    for (a, b, m) in rows {
        st.execute((a, b, m)).unwrap();
    }
    drop(st);
    c.commit().unwrap();
}

fn good_rows(n: u64) -> Vec<Cells> {
    (0..n)
        .map(|i| {
            let (a, b, m) = hexes(i);
            (Some(a), Some(b), Some(m))
        })
        .collect()
}

fn import(state: &Path, file: &Path, digest: Option<DigestKind>) -> Result<NsrlInfo, NsrlError> {
    let opts = ImportOptions {
        digest,
        ..ImportOptions::default()
    };
    import_nsrl(state, file, &opts, &mut |_| true)
}

fn digest_of(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

/// Nothing but the set and its metadata in `STATE/nsrl` (no work dirs left behind).
fn assert_clean(state: &Path) {
    let mut names: Vec<String> = fs::read_dir(nsrl_dir(state))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.is_empty() || names == ["nsrl.json", "nsrl.set"],
        "{names:?}"
    );
}

#[test]
fn rds3_import_keeps_sha256_counts_duplicates_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("RDS_2024.03.1_modern_minimal.db");
    let mut rows = good_rows(100);
    rows.extend(good_rows(10)); // the same files in another package
    rows.push((None, None, None));
    rows.push((Some("zz".repeat(32)), None, None));
    rows.push((Some("ABCD".to_owned()), None, None));
    rows.push((Some(String::new()), None, None));
    rds3(&db, &rows);
    let state = dir.path().join("state");
    let mut phases = Vec::new();
    let info = import_nsrl(&state, &db, &ImportOptions::default(), &mut |p| {
        phases.push(p.phase);
        true
    })
    .unwrap();
    assert_eq!(info.format, NsrlFormat::Rds3);
    assert_eq!(info.table.as_deref(), Some("FILE"));
    assert_eq!(info.digest, DigestKind::Sha256);
    assert_eq!(info.rows, 114);
    assert_eq!(info.unique, 100);
    assert_eq!(info.duplicates, 10);
    assert_eq!(info.rejected, 4);
    assert_eq!(info.rejected_by_reason[&RejectReason::Empty], 2);
    assert_eq!(info.rejected_by_reason[&RejectReason::BadHex], 1);
    assert_eq!(info.rejected_by_reason[&RejectReason::WrongLength], 1);
    assert_eq!(info.rejected_examples[0].at, 111);
    assert_eq!(info.at(111), "row 111");
    assert_eq!(info.size, (HEADER_LEN + 100 * 32) as u64);
    assert!(phases.contains(&Phase::Reading) && phases.contains(&Phase::Verifying));
    assert_clean(&state);

    let nsrl = Nsrl::load(&state).unwrap().unwrap();
    assert_eq!(nsrl.kind(), DigestKind::Sha256);
    assert_eq!(nsrl.len(), 100);
    assert_eq!(nsrl.info(), &info);
    for i in [0, 42, 99] {
        assert!(nsrl.contains(&digest_of(&hexes(i).0)));
        // Another length is never a member.
        assert!(!nsrl.contains(&digest_of(&hexes(i).1)));
    }
    assert!(!nsrl.contains(&digest_of(&hexes(100).0)));
    assert_eq!(read_info(&state).unwrap().unwrap(), info);
}

#[test]
fn rds3_digest_option_picks_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rds.db");
    rds3(&db, &good_rows(50));
    let state = dir.path().join("state");
    let info = import(&state, &db, Some(DigestKind::Md5)).unwrap();
    assert_eq!((info.digest, info.unique), (DigestKind::Md5, 50));
    let nsrl = Nsrl::load(&state).unwrap().unwrap();
    assert!(nsrl.contains(&digest_of(&hexes(7).2)));
    assert_eq!(nsrl.set().counts(), [50, 0, 0]);
    let info = import(&state, &db, Some(DigestKind::Sha1)).unwrap();
    assert_eq!(info.digest, DigestKind::Sha1);
    assert!(Nsrl::load(&state)
        .unwrap()
        .unwrap()
        .contains(&digest_of(&hexes(7).1)));
}

#[test]
fn rds3_metadata_view_is_read_when_there_is_no_file_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rds.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE F (sha256 TEXT, sha1 TEXT, md5 TEXT, file_name TEXT, file_size INTEGER,
                         package_id INTEGER);
         CREATE VIEW METADATA AS SELECT * FROM F;",
    )
    .unwrap();
    let (a, b, m) = hexes(1);
    c.execute("INSERT INTO F VALUES (?1, ?2, ?3, 'x', 1, 1)", (&a, &b, &m))
        .unwrap();
    c.execute("INSERT INTO F VALUES (x'00', 1, 2.5, 'x', 1, 1)", ())
        .unwrap();
    drop(c);
    let state = dir.path().join("state");
    let info = import(&state, &db, None).unwrap();
    assert_eq!(info.table.as_deref(), Some("METADATA"));
    assert_eq!((info.rows, info.unique, info.rejected), (2, 1, 1));
    // With --digest sha1 the second row's SHA-1 is "1" (TEXT affinity).
    let info = import(&state, &db, Some(DigestKind::Sha1)).unwrap();
    assert_eq!(info.rejected_by_reason[&RejectReason::WrongLength], 1);
}

#[test]
fn raw_blob_digests_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rds.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE FILE (sha256 BLOB, sha1 BLOB, md5 BLOB);")
        .unwrap();
    let d = digest_of(&hexes(3).0);
    c.execute("INSERT INTO FILE VALUES (?1, NULL, NULL)", (&d,))
        .unwrap();
    // BLOB affinity keeps a number a number.
    c.execute("INSERT INTO FILE VALUES (42, NULL, NULL)", ())
        .unwrap();
    drop(c);
    let state = dir.path().join("state");
    let info = import(&state, &db, None).unwrap();
    assert_eq!(info.rejected_by_reason[&RejectReason::NotText], 1);
    assert_eq!(info.rejected_examples[0].detail, "a number, not hex");
    assert!(Nsrl::load(&state).unwrap().unwrap().contains(&d));
}

fn legacy_line(i: u64) -> String {
    let (_, sha1, md5) = hexes(i);
    format!("\"{sha1}\",\"{md5}\",\"0000ABCD\",\"file, {i}.exe\",1234,5,\"358\",\"\"\n")
}

const LEGACY_HEADER: &str =
    "\"SHA-1\",\"MD5\",\"CRC32\",\"FileName\",\"FileSize\",\"ProductCode\",\"OpSystemCode\",\"SpecialCode\"\n";

#[test]
fn legacy_csv_keeps_sha1_by_default_or_md5() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("NSRLFile.txt");
    let mut s = LEGACY_HEADER.to_owned();
    for i in 0..30 {
        s += &legacy_line(i);
    }
    s += &legacy_line(5);
    s += "\"ABC\",\"DEF\"\n";
    s += "\"XYZ4567890123456789012345678901234567890\",\"D41D8CD98F00B204E9800998ECF8427E\",\"0\",\"n\",0,1,\"1\",\"\"\n";
    fs::write(&txt, s).unwrap();
    let state = dir.path().join("state");
    let info = import(&state, &txt, None).unwrap();
    assert_eq!(info.format, NsrlFormat::Legacy);
    assert_eq!(info.digest, DigestKind::Sha1);
    assert_eq!((info.rows, info.unique, info.duplicates), (33, 30, 1));
    assert_eq!(info.rejected_by_reason[&RejectReason::WrongFields], 1);
    assert_eq!(info.rejected_by_reason[&RejectReason::BadHex], 1);
    assert_eq!(info.rejected_examples[0].at, 33);
    assert_eq!(info.at(33), "line 33");
    assert!(Nsrl::load(&state)
        .unwrap()
        .unwrap()
        .contains(&digest_of(&hexes(29).1)));

    let info = import(&state, &txt, Some(DigestKind::Md5)).unwrap();
    assert_eq!(
        (info.digest, info.unique, info.rejected),
        (DigestKind::Md5, 31, 1)
    );
    let err = import(&state, &txt, Some(DigestKind::Sha256)).unwrap_err();
    assert!(matches!(err, NsrlError::DigestNotInFormat { .. }), "{err}");
    assert!(err.to_string().contains("has no SHA-256"), "{err}");
    assert_eq!(Nsrl::load(&state).unwrap().unwrap().kind(), DigestKind::Md5);
}

#[test]
fn legacy_with_other_columns_is_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("NSRLFile.txt");
    fs::write(&txt, "\"SHA-1\",\"MD5\",\"Name\"\n\"A\",\"B\",\"C\"\n").unwrap();
    let err = import(&dir.path().join("s"), &txt, None).unwrap_err();
    assert!(matches!(err, NsrlError::LegacyHeader { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("NSRLFile.txt") && msg.contains("\"Name\""),
        "{msg}"
    );
}

#[test]
fn digest_list_like_sha256sum_output() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hashes");
    let mut s = "# synthetic\n\n".to_owned();
    for i in 0..20 {
        s += &format!("{}  /usr/bin/x{i}\n", hexes(i).0.to_lowercase());
    }
    s += &hexes(1).1; // a SHA-1 among SHA-256
    s += "\n";
    fs::write(&list, s).unwrap();
    let state = dir.path().join("state");
    let info = import(&state, &list, None).unwrap();
    assert_eq!(info.format, NsrlFormat::List);
    assert_eq!(
        (info.digest, info.unique, info.rejected),
        (DigestKind::Sha256, 20, 1)
    );
    assert_eq!(info.rejected_examples[0].at, 23);
    assert_eq!(info.rejected_examples[0].reason, RejectReason::WrongLength);
}

/// Reads the digests back from a set file.
fn set_digests(state: &Path) -> Vec<u8> {
    fs::read(set_path(state)).unwrap()[HEADER_LEN..].to_vec()
}

#[test]
fn tiny_memory_budget_gives_the_same_set_as_an_in_memory_sort() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hashes");
    let mut s = String::new();
    let mut expect: Vec<[u8; 32]> = Vec::new();
    for i in 0..3000u64 {
        let (h, _, _) = hexes(i % 2100);
        s += &h;
        s += "\n";
        let mut d = [0u8; 32];
        hex::decode_to_slice(&h, &mut d).unwrap();
        expect.push(d);
    }
    fs::write(&list, s).unwrap();
    expect.sort_unstable();
    expect.dedup();
    let state = dir.path().join("state");
    let opts = ImportOptions {
        digest: None,
        memory: 10 * 32, // 300 runs: more than one merge pass
    };
    let info = import_nsrl(&state, &list, &opts, &mut |_| true).unwrap();
    assert_eq!((info.unique, info.duplicates), (2100, 900));
    assert_eq!(set_digests(&state), expect.as_flattened());
    assert_clean(&state);
}

/// Imports a good set, then checks that `bad` fails with `check` and the good set still
/// loads and answers.
fn fails_and_keeps_previous(bad: &Path, digest: Option<DigestKind>) -> NsrlError {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    rds3(&good, &good_rows(10));
    let state = dir.path().join("state");
    let before = import(&state, &good, None).unwrap();
    let err = import(&state, bad, digest).unwrap_err();
    let nsrl = Nsrl::load(&state).unwrap().unwrap();
    assert_eq!(nsrl.info(), &before);
    assert!(nsrl.contains(&digest_of(&hexes(3).0)));
    assert_clean(&state);
    err
}

#[test]
fn truncated_sqlite_is_refused_and_the_previous_set_stays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cut.db");
    rds3(&db, &good_rows(2000));
    let len = fs::metadata(&db).unwrap().len();
    assert!(len > 8192, "{len}");
    let f = OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let err = fails_and_keeps_previous(&db, None);
    assert!(matches!(err, NsrlError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("cut.db is truncated"), "{err}");
    // A stub of the header is truncated too.
    fs::write(&db, b"SQLite format 3\0abc").unwrap();
    let err = fails_and_keeps_previous(&db, None);
    assert!(matches!(err, NsrlError::Truncated { .. }), "{err}");
}

#[test]
fn corrupt_sqlite_is_refused_and_the_previous_set_stays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.db");
    rds3(&db, &good_rows(2000));
    let mut bytes = fs::read(&db).unwrap();
    // Keep the header page, overwrite the rest: b-tree pages become garbage.
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 7 % 251) as u8;
    }
    fs::write(&db, &bytes).unwrap();
    let err = fails_and_keeps_previous(&db, None);
    assert!(
        matches!(err, NsrlError::Corrupt { .. } | NsrlError::NoTable { .. }),
        "{err}"
    );
    // The header page itself garbled: SQLite says "file is not a database".
    bytes[16..100].fill(0xee);
    fs::write(&db, &bytes).unwrap();
    let err = fails_and_keeps_previous(&db, None);
    assert!(matches!(err, NsrlError::Corrupt { .. }), "{err}");
    let chain = format!("{:#}", anyhow_like(&err));
    assert!(chain.contains("bad.db"), "{chain}");
}

/// The error and its sources, as `{:#}` of anyhow prints them.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

#[test]
fn garbage_and_empty_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    fs::write(&junk, b"\x7fELF\x02\x01\x01 not a hash database").unwrap();
    let err = fails_and_keeps_previous(&junk, None);
    assert!(matches!(err, NsrlError::NotRecognized { .. }), "{err}");
    assert!(err.to_string().contains("junk.bin"), "{err}");
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    assert!(matches!(
        fails_and_keeps_previous(&empty, None),
        NsrlError::NotRecognized { .. }
    ));
    let header_only = dir.path().join("NSRLFile.txt");
    fs::write(&header_only, LEGACY_HEADER).unwrap();
    assert!(matches!(
        fails_and_keeps_previous(&header_only, None),
        NsrlError::Empty { .. }
    ));
}

#[test]
fn all_rows_bad_hex_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hex.db");
    rds3(
        &db,
        &[(Some("G".repeat(64)), None, None), (None, None, None)],
    );
    let err = fails_and_keeps_previous(&db, None);
    assert!(
        matches!(err, NsrlError::AllRejected { rows: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("row 1") && msg.contains("Invalid character"),
        "{msg}"
    );
}

#[test]
fn wrong_tables_and_columns_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cols.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE FILE (md5 TEXT, name TEXT); INSERT INTO FILE VALUES ('a', 'b');")
        .unwrap();
    drop(c);
    let err = fails_and_keeps_previous(&db, None);
    match &err {
        NsrlError::MissingColumn {
            table,
            column,
            found,
            ..
        } => {
            assert_eq!((table.as_str(), *column), ("FILE", "sha256"));
            assert_eq!(found, &["md5", "name"]);
        }
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains("no sha256 column"), "{err}");

    let other = dir.path().join("other.db");
    let c = Connection::open(&other).unwrap();
    c.execute_batch("CREATE TABLE hashes (sha256 TEXT);")
        .unwrap();
    drop(c);
    let err = fails_and_keeps_previous(&other, None);
    assert!(matches!(err, NsrlError::NoTable { .. }), "{err}");
    assert!(err.to_string().contains("[\"hashes\"]"), "{err}");
}

#[test]
fn cancelled_import_keeps_the_previous_set_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = dir.path().join("first.db");
    rds3(&first, &good_rows(5));
    import(&state, &first, None).unwrap();
    let db = dir.path().join("big.db");
    rds3(&db, &good_rows(70_000));
    let opts = ImportOptions::default();
    let err = import_nsrl(&state, &db, &opts, &mut |p| p.phase != Phase::Reading).unwrap_err();
    assert!(matches!(err, NsrlError::Cancelled { .. }), "{err}");
    assert_eq!(Nsrl::load(&state).unwrap().unwrap().len(), 5);
    assert_clean(&state);
}

#[test]
fn no_import_loads_as_none_and_stale_work_dirs_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Nsrl::load(dir.path()).unwrap().is_none());
    assert!(read_info(dir.path()).unwrap().is_none());
    let stale = nsrl_dir(dir.path()).join(".import.4294967295.3");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("run.0"), [0u8; 64]).unwrap();
    let db = dir.path().join("rds.db");
    rds3(&db, &good_rows(3));
    import(dir.path(), &db, None).unwrap();
    assert!(!stale.exists());
}

#[test]
fn metadata_that_does_not_match_the_set_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rds.db");
    rds3(&db, &good_rows(3));
    import(dir.path(), &db, None).unwrap();
    let p = info_path(dir.path());
    let mut info: NsrlInfo = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    info.unique = 4;
    fs::write(&p, serde_json::to_string(&info).unwrap()).unwrap();
    let err = Nsrl::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("nsrl.json is corrupt"), "{err}");
    fs::write(&p, "{").unwrap();
    assert!(matches!(
        Nsrl::load(dir.path()).unwrap_err(),
        NsrlError::Metadata { .. }
    ));
}

#[test]
fn info_json_names_reasons_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rds.db");
    let mut rows = good_rows(2);
    rows.push((Some("xx".to_owned()), None, None));
    rds3(&db, &rows);
    import(dir.path(), &db, None).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(info_path(dir.path())).unwrap()).unwrap();
    assert_eq!(v["rejected_by_reason"]["wrong_length"], 1);
    assert_eq!(v["digest"], "sha256");
    assert_eq!(v["format"], "rds3");
    assert_eq!(v["rejected_examples"][0]["at"], 3);
}

#[test]
fn digest_kind_parses_and_reports() {
    assert_eq!("SHA-256".parse::<DigestKind>(), Ok(DigestKind::Sha256));
    assert_eq!("md5".parse::<DigestKind>(), Ok(DigestKind::Md5));
    assert!("crc32".parse::<DigestKind>().is_err());
    assert_eq!(DigestKind::from_hex_len(40), Some(DigestKind::Sha1));
    assert_eq!(DigestKind::Sha1.bytes(), 20);
}
