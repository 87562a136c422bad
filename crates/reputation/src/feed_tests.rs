use super::*;

const MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
const SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
const SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    decode(s).unwrap()
}

fn parse_text(text: &str) -> Result<(Digests, ParseSummary), FeedError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("feed.txt");
    std::fs::write(&p, text).unwrap();
    parse_feed(&p)
}

#[test]
fn plain_list_with_mixed_kinds_and_comments() {
    let text = format!(
        "# a feed\n\n{MD5}\n  {SHA1}  \n{}\t# trailing comment\n   # indented comment\n",
        SHA256.to_uppercase()
    );
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!(d.md5, [unhex::<16>(MD5)]);
    assert_eq!(d.sha1, [unhex::<20>(SHA1)]);
    assert_eq!(d.sha256, [unhex::<32>(SHA256)]);
    assert_eq!(
        s,
        ParseSummary {
            rows: 3,
            rejected: 0,
            reasons: vec![]
        }
    );
}

#[test]
fn plain_list_handles_crlf_and_no_final_newline() {
    let (d, s) = parse_text(&format!("{MD5}\r\n{SHA256}")).unwrap();
    assert_eq!((d.md5.len(), d.sha256.len()), (1, 1));
    assert_eq!(s.rows, 2);
}

#[test]
fn plain_list_rejects_bad_lines_with_line_numbers() {
    let bad_hex = format!("{}zz", &SHA256[..62]);
    let text = format!("# x\n{SHA256}\nabc\n{bad_hex}\n{MD5}#nospace\n{SHA1} trailing\n{SHA1}\n");
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!((d.md5.len(), d.sha1.len(), d.sha256.len()), (0, 1, 1));
    assert_eq!((s.rows, s.rejected), (6, 4));
    let lines: Vec<u64> = s.reasons.iter().map(|r| r.0).collect();
    assert_eq!(lines, [3, 4, 5, 6]);
    assert!(s.reasons[0].1.contains("wrong length"), "{:?}", s.reasons);
    assert!(s.reasons[1].1.contains("bad hex"), "{:?}", s.reasons);
    assert!(s.reasons[2].1.contains("bad hex"), "{:?}", s.reasons);
    assert!(
        s.reasons[3].1.contains("unexpected text"),
        "{:?}",
        s.reasons
    );
}

#[test]
fn duplicates_are_kept_for_the_set_writer_to_count() {
    let (d, _) = parse_text(&format!("{SHA256}\n{SHA256}\n")).unwrap();
    assert_eq!(d.sha256.len(), 2);
}

#[test]
fn reasons_are_capped_but_rejections_counted() {
    let mut text = format!("{SHA256}\n");
    for _ in 0..30 {
        text.push_str("nothex\n");
    }
    let (_, s) = parse_text(&text).unwrap();
    assert_eq!((s.rows, s.rejected), (31, 30));
    assert_eq!(s.reasons.len(), MAX_REASONS);
}

#[test]
fn all_rejected_is_an_error() {
    let err = parse_text("# header\nnot a hash\nneither\n").unwrap_err();
    match err {
        FeedError::AllRejected {
            rows, line, reason, ..
        } => {
            assert_eq!((rows, line), (2, 2));
            assert!(reason.contains("unexpected text"), "{reason}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn comments_only_is_an_error() {
    let err = parse_text("# nothing here\n\n").unwrap_err();
    assert!(matches!(err, FeedError::Empty { .. }), "{err}");
    let err = parse_text("").unwrap_err();
    assert!(matches!(err, FeedError::Empty { .. }), "{err}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = parse_feed(Path::new("/nonexistent/feed.txt")).unwrap_err();
    assert!(matches!(err, FeedError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/feed.txt"), "{err}");
}

#[test]
fn csv_without_sha256_column_is_an_error() {
    let text = format!("# \"first_seen_utc\",\"md5_hash\"\n\"2024-01-01\", \"{MD5}\"\n");
    let err = parse_text(&text).unwrap_err();
    assert!(
        matches!(err, FeedError::NoSha256Column { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no sha256_hash column"));
}

/// A realistic MalwareBazaar export: banner, `#` header, `", "` separators, a file name with a
/// comma, an `n/a` hash and a broken row.
fn bazaar_export() -> String {
    let h = |n: u8| format!("{n:02x}").repeat(32);
    [
        "################################################################".to_owned(),
        "# MalwareBazaar recent malware samples (CSV)                   #".to_owned(),
        "# Terms Of Use: https://bazaar.abuse.ch/faq/#tos               #".to_owned(),
        "################################################################".to_owned(),
        "#".to_owned(),
        "# \"first_seen_utc\",\"sha256_hash\",\"md5_hash\",\"sha1_hash\",\"reporter\",\"file_name\",\"file_type_guess\",\"mime_type\",\"signature\",\"clamav\",\"vtpercent\",\"imphash\",\"ssdeep\",\"tlsh\"".to_owned(),
        format!("\"2024-05-01 10:00:00\", \"{SHA256}\", \"{MD5}\", \"{SHA1}\", \"abuse_ch\", \"invoice, final.exe\", \"exe\", \"application/x-dosexec\", \"AgentTesla\", \"n/a\", \"n/a\", \"n/a\", \"3:a\", \"T1\""),
        format!("\"2024-05-01 10:01:00\", \"{}\", \"n/a\", \"\", \"anonymous\", \"x.sh\", \"sh\", \"text/x-shellscript\", \"Mirai\", \"n/a\", \"n/a\", \"n/a\", \"3:b\", \"T1\"", h(0xab)),
        "\"2024-05-01 10:02:00\", \"deadbeef\", \"n/a\", \"n/a\", \"x\", \"y\", \"z\", \"w\", \"n/a\", \"n/a\", \"n/a\", \"n/a\", \"n/a\", \"n/a\"".to_owned(),
        "# 3 rows".to_owned(),
        String::new(),
    ]
    .join("\n")
}

#[test]
fn malwarebazaar_export_is_parsed() {
    let (d, s) = parse_text(&bazaar_export()).unwrap();
    assert_eq!(
        d.sha256,
        [unhex::<32>(SHA256), [0xab; 32]],
        "comma in a quoted file name must not shift columns"
    );
    assert_eq!(d.md5, [unhex::<16>(MD5)]);
    assert_eq!(d.sha1, [unhex::<20>(SHA1)]);
    assert_eq!((s.rows, s.rejected), (3, 1));
    assert_eq!(s.reasons[0].0, 9);
    assert!(
        s.reasons[0].1.starts_with("sha256_hash: "),
        "{:?}",
        s.reasons
    );
}

#[test]
fn malwarebazaar_columns_found_by_name_not_position() {
    let text = format!(
        "# \"file_name\",\"sha1_hash\",\"sha256_hash\"\n\"a, b\",\"{SHA1}\",\"{SHA256}\"\n"
    );
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!((d.md5.len(), d.sha1.len(), d.sha256.len()), (0, 1, 1));
    assert_eq!(s.rows, 1);
}

#[test]
fn malwarebazaar_bad_optional_hash_rejects_the_row() {
    let text = format!(
        "# \"sha256_hash\",\"md5_hash\"\n\"{SHA256}\", \"{MD5}\"\n\"{}\", \"nothex\"\n",
        "11".repeat(32)
    );
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!(d.sha256, [unhex::<32>(SHA256)]);
    assert_eq!(
        s.reasons,
        [(
            3,
            "md5_hash: wrong length: 6 characters, expected 32".to_owned()
        )]
    );
}

#[test]
fn malwarebazaar_short_row_is_rejected() {
    let text = format!("# \"reporter\",\"sha256_hash\"\n\"x\", \"{SHA256}\"\n\"only-one-field\"\n");
    let (_, s) = parse_text(&text).unwrap();
    assert_eq!(s.reasons, [(3, "missing sha256_hash field".to_owned())]);
}

#[test]
fn malwarebazaar_all_rejected_is_an_error() {
    let text = "# \"sha256_hash\"\n\"n/a\"\n\"abc\"\n";
    let err = parse_text(text).unwrap_err();
    assert!(
        matches!(
            err,
            FeedError::AllRejected {
                rows: 2,
                line: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn uncommented_csv_header_is_accepted() {
    let text = format!("sha256_hash,md5_hash\n{SHA256},{MD5}\n");
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!((d.md5.len(), d.sha256.len()), (1, 1));
    assert_eq!((s.rows, s.rejected), (1, 0));
}

#[test]
fn malwarebazaar_quoted_newline_and_blank_lines_keep_line_numbers() {
    let text = format!(
        "# \"sha256_hash\",\"file_name\"\n\n\"{SHA256}\", \"two\nlines.exe\"\n\n# mid comment\n\"bad\", \"x\"\n"
    );
    let (d, s) = parse_text(&text).unwrap();
    assert_eq!(d.sha256, [unhex::<32>(SHA256)]);
    assert_eq!((s.rows, s.rejected), (2, 1));
    assert_eq!(s.reasons[0].0, 7);
}
