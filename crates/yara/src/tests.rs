//! Tests against the real yara-x compiler and scanner, each in its own temp directory.

use crate::{dir_fingerprint, FileScan, Match, Rules, Scanner, YaraError, MAX_RULE_FILE_BYTES};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

fn rules_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    dir
}

fn compile(files: &[(&str, &str)]) -> Rules {
    let dir = rules_dir(files);
    Rules::compile_dir(dir.path()).unwrap()
}

fn names(matches: &[Match]) -> Vec<String> {
    matches.iter().map(Match::to_string).collect()
}

/// The compile error's one issue, checked to be the only one.
fn single_issue(err: YaraError) -> crate::CompileIssue {
    match err {
        YaraError::Compile { issues, total, .. } => {
            assert_eq!(total, 1, "{issues:?}");
            issues.into_iter().next().unwrap()
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

const BASIC: &str = r#"
rule text_marker : marker {
    strings: $a = "evil-string"
    condition: $a
}
rule hex_marker {
    strings: $h = { DE AD ?? EF }
    condition: $h
}
rule tiny_file {
    condition: filesize < 4
}
"#;

#[test]
fn string_hex_and_filesize_rules_match_bytes() {
    let rules = compile(&[("basic.yar", BASIC)]);
    assert_eq!(rules.rule_count(), 3);
    let m = rules.scan(b"some evil-string here", T).unwrap();
    assert_eq!(names(&m), ["basic:text_marker"]);
    assert_eq!(m[0].tags, ["marker"]);
    let m = rules.scan(b"xx\xde\xad\x00\xefyy", T).unwrap();
    assert_eq!(names(&m), ["basic:hex_marker"]);
    assert_eq!(names(&rules.scan(b"ab", T).unwrap()), ["basic:tiny_file"]);
    assert!(rules.scan(b"harmless text", T).unwrap().is_empty());
}

#[test]
fn regexps_accept_libyara_syntax() {
    // `\R` is an error in strict yara-x, a literal `R` in libyara.
    let rules = compile(&[(
        "re.yar",
        r"rule re { strings: $r = /ab\Rc{}/ condition: $r }",
    )]);
    assert_eq!(names(&rules.scan(b"xxabRc{}yy", T).unwrap()), ["re:re"]);
}

#[test]
fn namespaces_keep_same_named_rules_apart() {
    let rule = |s: &str| format!("rule dup {{ strings: $a = \"{s}\" condition: $a }}");
    let rules = compile(&[("one.yar", &rule("first")), ("two.yara", &rule("second"))]);
    assert_eq!(rules.rule_count(), 2);
    assert_eq!(names(&rules.scan(b"second", T).unwrap()), ["two:dup"]);
    assert_eq!(
        names(&rules.scan(b"first second", T).unwrap()),
        ["one:dup", "two:dup"]
    );
    // Inside one file a duplicate is still an error.
    let dir = rules_dir(&[("one.yar", &format!("{}\n{}", rule("a"), rule("b")))]);
    let issue = single_issue(Rules::compile_dir(dir.path()).unwrap_err());
    assert_eq!((issue.line, issue.code), (2, "E012"), "{issue}");
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let dir = rules_dir(&[(
        "bad.yar",
        "rule ok { condition: true }\nrule broken {\n  condition: (\n}\n",
    )]);
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    let text = err.to_string();
    let issue = single_issue(err);
    assert_eq!(issue.file, dir.path().join("bad.yar"));
    assert_eq!((issue.line, issue.column, issue.code), (4, 1, "E001"));
    assert!(issue.message.starts_with("syntax error"), "{issue}");
    assert!(
        text.contains(&format!(
            "{}:4:1: syntax error",
            dir.path().join("bad.yar").display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("-->"),
        "yara-x's multi-line excerpt left out: {text}"
    );
}

#[test]
fn undefined_identifier_is_reported() {
    let dir = rules_dir(&[(
        "ident.yar",
        "rule r {\n  condition:\n    no_such_thing > 1\n}\n",
    )]);
    let issue = single_issue(Rules::compile_dir(dir.path()).unwrap_err());
    assert_eq!((issue.line, issue.column, issue.code), (3, 5, "E009"));
    assert!(issue.message.contains("`no_such_thing`"), "{issue}");
}

#[test]
fn module_not_built_in_is_reported() {
    let dir = rules_dir(&[("pe.yar", "import \"pe\"\nrule r { condition: pe.is_pe }\n")]);
    // The unknown module, then its unknown identifier.
    let YaraError::Compile { issues, .. } = Rules::compile_dir(dir.path()).unwrap_err() else {
        panic!("expected a compile error");
    };
    let first = &issues[0];
    assert_eq!((first.line, first.code), (1, "E010"), "{first}");
    assert!(first.message.contains("unknown module `pe`"), "{first}");
    assert!(
        first.message.contains("built with: console, elf"),
        "{first}"
    );
}

#[test]
fn one_bad_file_fails_the_whole_directory() {
    let dir = rules_dir(&[
        ("a_good.yar", "rule good { condition: true }"),
        ("b_bad.yar", "rule bad { condition: nope }"),
        ("c_good.yar", "rule also_good { condition: true }"),
    ]);
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    let issue = single_issue(err);
    assert_eq!(issue.file, dir.path().join("b_bad.yar"));
}

#[test]
fn all_errors_are_collected_across_files() {
    let dir = rules_dir(&[
        ("a.yar", "rule a { condition: x }"),
        ("b.yar", "rule b { condition: y }"),
    ]);
    match Rules::compile_dir(dir.path()).unwrap_err() {
        YaraError::Compile { issues, total, .. } => {
            assert_eq!(total, 2);
            let files: Vec<_> = issues.iter().map(|i| i.file.clone()).collect();
            assert_eq!(files, [dir.path().join("a.yar"), dir.path().join("b.yar")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_dir_is_an_empty_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let rules = Rules::compile_dir(dir.path()).unwrap();
    assert!(rules.is_empty());
    assert!(rules.sources().is_empty());
    assert!(rules.scan(b"anything", T).unwrap().is_empty());
}

#[test]
fn missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nope");
    assert!(matches!(
        Rules::compile_dir(&gone),
        Err(YaraError::NoDir { dir }) if dir == gone
    ));
}

#[test]
fn other_files_hidden_files_and_subdirs_are_ignored() {
    let dir = rules_dir(&[
        ("README.md", "not yara {"),
        ("rules.yar.bak", "not yara {"),
        (".hidden.yar", "not yara {"),
        ("real.yar", "rule real { condition: true }"),
    ]);
    fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "deep.yar", "not yara {");
    let rules = Rules::compile_dir(dir.path()).unwrap();
    assert_eq!(rules.sources(), [dir.path().join("real.yar")]);
    assert_eq!(rules.rule_count(), 1);
}

#[test]
fn unreadable_inputs_are_rejected_clearly() {
    let dir = rules_dir(&[("ok.yar", "rule ok { condition: true }")]);
    let p = dir.path().join("latin1.yar");
    fs::write(&p, b"rule r {\n condition: true } // caf\xe9\n").unwrap();
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, YaraError::NotUtf8 { path, line: 2, offset: 34 } if *path == p),
        "{err:?}"
    );
    fs::remove_file(&p).unwrap();

    let big = dir.path().join("huge.yar");
    fs::File::create(&big)
        .unwrap()
        .set_len(MAX_RULE_FILE_BYTES + 1)
        .unwrap();
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, YaraError::TooLarge { path, .. } if *path == big),
        "{err:?}"
    );
    assert!(err.to_string().contains("too large"), "{err}");
    fs::remove_file(&big).unwrap();

    fs::create_dir(dir.path().join("dir.yar")).unwrap();
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    assert!(matches!(err, YaraError::NotAFile { .. }), "{err:?}");
    fs::remove_dir(dir.path().join("dir.yar")).unwrap();

    std::os::unix::fs::symlink("/nonexistent/x.yar", dir.path().join("dangling.yar")).unwrap();
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, YaraError::Io { op, .. } if op.starts_with("cannot stat")),
        "{err:?}"
    );
}

#[test]
fn same_stem_twice_is_rejected() {
    let dir = rules_dir(&[
        ("x.yar", "rule a { condition: true }"),
        ("x.yara", "rule b { condition: true }"),
    ]);
    let err = Rules::compile_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, YaraError::DuplicateNamespace { namespace, .. } if namespace == "x"),
        "{err:?}"
    );
}

#[test]
fn includes_are_refused() {
    let dir = rules_dir(&[
        (
            "main.yar",
            "include \"other.inc\"\nrule r { condition: true }",
        ),
        ("other.inc", "rule o { condition: true }"),
    ]);
    let issue = single_issue(Rules::compile_dir(dir.path()).unwrap_err());
    assert_eq!(issue.line, 1);
    assert!(issue.message.contains("include"), "{issue}");
}

#[test]
fn fingerprint_follows_rule_file_changes() {
    let dir = rules_dir(&[("a.yar", "rule a { condition: true }")]);
    let first = Rules::compile_dir(dir.path()).unwrap();
    assert_eq!(first.fingerprint(), dir_fingerprint(dir.path()).unwrap());
    assert_eq!(first.fingerprint_hex().len(), 64);
    // Unrelated files do not count.
    write(dir.path(), "notes.txt", "hello");
    assert_eq!(first.fingerprint(), dir_fingerprint(dir.path()).unwrap());

    write(dir.path(), "a.yar", "rule a { condition: false }");
    let changed = Rules::compile_dir(dir.path()).unwrap();
    assert_ne!(first.fingerprint(), changed.fingerprint());

    // Same contents under another name is a different rule set (another namespace).
    fs::rename(dir.path().join("a.yar"), dir.path().join("b.yar")).unwrap();
    assert_ne!(changed.fingerprint(), dir_fingerprint(dir.path()).unwrap());
}

#[test]
fn warnings_are_kept_and_located() {
    let rules = compile(&[(
        "w.yar",
        "import \"elf\"\nimport \"elf\"\nrule w { condition: elf.type == elf.ET_EXEC }\n",
    )]);
    let w = rules.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].line, w[0].code), (2, "duplicate_import"), "{}", w[0]);
}

#[test]
fn scan_file_refuses_files_over_the_limit() {
    let rules = compile(&[("basic.yar", BASIC)]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sample");
    fs::write(&p, b"0123456789 evil-string").unwrap();
    assert_eq!(
        rules.scan_file(&p, 10, T).unwrap(),
        FileScan::TooBig {
            size: 22,
            limit: 10
        }
    );
    match rules.scan_file(&p, 22, T).unwrap() {
        FileScan::Scanned(m) => assert_eq!(names(&m), ["basic:text_marker"]),
        other => panic!("{other:?}"),
    }
    let err = rules
        .scan_file(&dir.path().join("gone"), 10, T)
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot open file to scan"),
        "{err}"
    );
}

#[test]
fn scan_open_reads_from_the_start_whatever_the_position() {
    use std::io::{Read, Seek};
    let rules = compile(&[("basic.yar", BASIC)]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sample");
    // Bigger than one read so the loop runs more than once.
    let mut data = vec![b'x'; 200_000];
    data.extend_from_slice(b"evil-string");
    fs::write(&p, &data).unwrap();
    let mut f = fs::File::open(&p).unwrap();
    let mut skip = [0u8; 1000];
    f.read_exact(&mut skip).unwrap();
    let mut scanner = Scanner::new(Arc::new(rules));
    match scanner.scan_open(&f, &p, 1 << 20, T).unwrap() {
        FileScan::Scanned(m) => assert_eq!(names(&m), ["basic:text_marker"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.stream_position().unwrap(), 1000);
}

#[test]
fn elf_example_rule_matches_a_marked_elf_only() {
    let rule = include_str!("../rules/example_elf_marker.yar");
    let rules = compile(&[("example_elf_marker.yar", rule)]);
    assert!(rules.warnings().is_empty(), "{:?}", rules.warnings());
    let mut elf = fs::read("/bin/true").unwrap();
    let mut scanner = Scanner::new(Arc::new(rules));
    assert!(scanner.scan(&elf, T).unwrap().is_empty(), "unmarked ELF");
    elf.extend_from_slice(b"CUSTOS-YARA-TEST-MARKER");
    let m = scanner.scan(&elf, T).unwrap();
    assert_eq!(names(&m), ["example_elf_marker:elf_with_custos_marker"]);
    assert_eq!(m[0].tags, ["test", "elf"]);
    let text = b"just text with CUSTOS-YARA-TEST-MARKER".to_vec();
    assert!(
        scanner.scan(&text, T).unwrap().is_empty(),
        "marker without ELF"
    );
}

#[test]
fn a_slow_rule_times_out_and_the_scanner_recovers() {
    // 10^10 iterations (minutes of work) when the data starts with 'S'; instant otherwise.
    let rules = compile(&[(
        "slow.yar",
        "rule slow { condition: uint8(0) == 0x53 and\n\
           for all i in (0..10000000000) : (uint8(i % filesize) != 0xAA) }\n\
         rule quick { strings: $a = \"ok\" condition: $a }",
    )]);
    let mut scanner = Scanner::new(Arc::new(rules));
    let start = Instant::now();
    let err = scanner
        .scan(b"S ok, slow data", Duration::ZERO)
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, YaraError::Timeout { .. }), "{err:?}");
    // Asked for zero: aborted at the next heartbeat (< 1 s), with slack for a loaded machine.
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    // The same scanner serves the next file.
    assert_eq!(names(&scanner.scan(b"ok", T).unwrap()), ["slow:quick"]);
}

#[test]
fn rules_are_shared_across_threads() {
    fn send_sync<X: Send + Sync>() {}
    send_sync::<Rules>();
    let rules = Arc::new(compile(&[("basic.yar", BASIC)]));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rules = Arc::clone(&rules);
            std::thread::spawn(move || {
                let mut scanner = Scanner::new(rules);
                (0..50)
                    .map(|_| scanner.scan(b"evil-string", T).unwrap().len())
                    .sum::<usize>()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 50);
    }
}

#[test]
fn a_scanner_keeps_its_rules_alive_across_a_reload() {
    let dir = rules_dir(&[("a.yar", "rule old { strings: $a = \"x\" condition: $a }")]);
    let mut current = Arc::new(Rules::compile_dir(dir.path()).unwrap());
    let mut scanner = Scanner::new(Arc::clone(&current));
    write(
        dir.path(),
        "a.yar",
        "rule new { strings: $a = \"x\" condition: $a }",
    );
    // The reload drops the caller's last other reference to the old rules.
    current = Arc::new(Rules::compile_dir(dir.path()).unwrap());
    assert!(!Arc::ptr_eq(scanner.rules(), &current));
    assert_eq!(names(&scanner.scan(b"x", T).unwrap()), ["a:old"]);
    scanner = Scanner::new(Arc::clone(&current));
    assert_eq!(names(&scanner.scan(b"x", T).unwrap()), ["a:new"]);
}
