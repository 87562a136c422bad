use super::*;

/// A digest of 32 times byte `b`, in hex.
fn h(b: u8) -> String {
    format!("{b:02x}").repeat(32)
}

fn answer(status: u16, body: &str) -> Result<Lookup, LookupError> {
    interpret("u", &h(1), status, body.as_bytes())
}

#[test]
fn known_malicious_shapes() {
    for (v, want) in [
        (r#""malshare.com""#, Some("malshare.com")),
        (r#"["a", "b"]"#, Some("a, b")),
        ("true", Some("true")),
        (r#""""#, None),
        ("[]", None),
        ("null", None),
        ("false", None),
        (r#"[null, ""]"#, None),
    ] {
        let got = answer(
            200,
            &format!(r#"{{"KnownMalicious": {v}, "hashlookup:trust": 90}}"#),
        );
        match (want, got) {
            (Some(w), Ok(Lookup::Malicious { detail })) => {
                assert!(
                    detail.starts_with(&format!("KnownMalicious={w};")),
                    "{v}: {detail}"
                )
            }
            (
                None,
                Ok(Lookup::Known {
                    trust: Some(90), ..
                }),
            ) => {}
            (w, got) => panic!("{v}: want {w:?}, got {got:?}"),
        }
    }
}

#[test]
fn trust_shapes() {
    for (v, want) in [
        ("100", Some(100)),
        ("0", Some(0)),
        ("\"61\"", Some(61)),
        ("49.6", Some(50)),
        ("101", None),
        ("-1", None),
        ("\"high\"", None),
        ("{}", None),
    ] {
        let got = answer(
            200,
            &format!(r#"{{"FileName": "f", "hashlookup:trust": {v}}}"#),
        );
        assert!(
            matches!(&got, Ok(Lookup::Known { trust, .. }) if *trust == want),
            "{v}: {got:?}"
        );
    }
}

#[test]
fn answers_that_are_not_hashlookup_records_fail() {
    let other = format!(r#"{{"SHA-256": "{}", "FileName": "f"}}"#, h(2));
    for body in [
        "[1, 2]",
        "\"text\"",
        "{}",
        r#"{"message": "ok"}"#,
        other.as_str(),
    ] {
        let got = answer(200, body);
        assert!(
            matches!(got, Err(LookupError::BadAnswer { .. })),
            "{body}: {got:?}"
        );
    }
    // The queried hash in either case is fine.
    let same = format!(r#"{{"SHA-256": "{}"}}"#, h(1).to_uppercase());
    assert!(matches!(
        answer(200, &same),
        Ok(Lookup::Known { trust: None, .. })
    ));
    assert_eq!(answer(404, "{}"), Ok(Lookup::Unknown));
    assert!(matches!(
        answer(404, ""),
        Err(LookupError::BadAnswer { .. })
    ));
    assert!(matches!(
        answer(400, "{}"),
        Err(LookupError::Status { status: 400, .. })
    ));
}

#[test]
fn details_are_printable_and_short() {
    let name = format!("evil\u{1b}[31m\n{}", "y".repeat(500));
    let body = serde_json::json!({ "FileName": name, "KnownMalicious": ["x\u{7}"] }).to_string();
    let Ok(Lookup::Malicious { detail }) = answer(200, &body) else {
        panic!();
    };
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    assert!(
        detail.chars().count() < 2 * FIELD_MAX + 40,
        "{}",
        detail.len()
    );
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b"{}[]\":,0123456789.-eE truefalsnul\\u\xff\x00KnownMalicious";
    for _ in 0..5000 {
        let len = (next() % 64) as usize;
        let body: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        for status in [200, 404, 500] {
            let _ = interpret("u", &h(1), status, &body);
        }
    }
    let deep = "[".repeat(100_000);
    assert!(answer(200, &deep).is_err());
}
