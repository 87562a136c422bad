use super::*;

/// A name in wire form, uncompressed.
fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in n.split('.').filter(|l| !l.is_empty()) {
        v.push(u8::try_from(label.len()).expect("label"));
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

/// A pointer to `offset`.
fn ptr(offset: u16) -> Vec<u8> {
    (0xc000 | offset).to_be_bytes().to_vec()
}

/// Header: flags word, one question of `q`, `an` answers.
fn message(id: u16, flags: u16, q: &[u8], an: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [id, flags, 1, an, 0, 0] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(q);
    v.extend_from_slice(&[0, 1, 0, 1]);
    v
}

fn record(v: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    v.extend_from_slice(owner);
    v.extend_from_slice(&rtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&u16::try_from(rdata.len()).expect("rdlen").to_be_bytes());
    v.extend_from_slice(rdata);
}

const RESPONSE: u16 = 0x8180;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// `www.Example.com` → CNAME `edge.cdn.net` (pointer to the question) → CNAME
/// `e1.cdn.net` (compressed) → A and AAAA, plus noise.
fn chain() -> Vec<u8> {
    let mut m = message(0x1234, RESPONSE, &name("www.Example.com"), 6);
    let edge_at = u16::try_from(m.len() + 12).expect("offset");
    record(&mut m, &ptr(12), TYPE_CNAME, 300, &name("edge.cdn.net"));
    // e1.<cdn.net at edge_at + 5>
    let mut e1 = vec![2, b'e', b'1'];
    e1.extend(ptr(edge_at + 5));
    let e1_at = u16::try_from(m.len()).expect("offset");
    record(&mut m, &ptr(edge_at), TYPE_CNAME, 300, &e1);
    record(&mut m, &ptr(e1_at + 12), TYPE_A, 60, &[93, 184, 216, 34]);
    let v6: Ipv6Addr = "2606:2800:220:1::1".parse().expect("v6");
    record(&mut m, &ptr(e1_at + 12), TYPE_AAAA, 120, &v6.octets());
    // Another name's address, and a TXT record for the question: ignored.
    record(&mut m, &name("other.org"), TYPE_A, 60, &[1, 2, 3, 4]);
    record(&mut m, &ptr(12), 16, 60, b"\x03txt");
    m
}

#[test]
fn a_record() {
    let mut m = message(7, RESPONSE, &name("example.com"), 1);
    record(&mut m, &ptr(12), TYPE_A, 3600, &[10, 0, 0, 1]);
    let a = parse_response(&m).expect("parses");
    assert_eq!(a.id, 7);
    assert_eq!(a.rcode, 0);
    assert_eq!(a.question, "example.com");
    assert_eq!(a.addresses, [(ip("10.0.0.1"), 3600)]);
    assert!(a.cnames.is_empty() && !a.truncated);
}

#[test]
fn aaaa_record() {
    let mut m = message(8, RESPONSE, &name("v6.example"), 1);
    record(
        &mut m,
        &name("V6.EXAMPLE"),
        TYPE_AAAA,
        30,
        &ip_octets("fd00::5"),
    );
    let a = parse_response(&m).expect("parses");
    assert_eq!(a.addresses, [(ip("fd00::5"), 30)]);
}

fn ip_octets(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("v6").octets()
}

#[test]
fn cname_chain_and_compression() {
    let a = parse_response(&chain()).expect("parses");
    assert_eq!(a.question, "www.example.com");
    assert_eq!(a.cnames, ["edge.cdn.net", "e1.cdn.net"]);
    assert_eq!(
        a.addresses,
        [(ip("93.184.216.34"), 60), (ip("2606:2800:220:1::1"), 120)]
    );
    assert!(!a.truncated);
}

#[test]
fn pointer_loops_are_refused() {
    // The question is a pointer to itself.
    let m = message(1, RESPONSE, &ptr(12), 0);
    assert_eq!(parse_response(&m), Err(DnsError::BadName { offset: 12 }));
    // An answer owner whose pointers bounce between two places.
    let mut m = message(1, RESPONSE, &name("a.b"), 1);
    let at = u16::try_from(m.len()).expect("offset");
    m.extend(ptr(at + 2));
    m.extend(ptr(at));
    assert!(matches!(parse_response(&m), Err(DnsError::BadName { .. })));
}

#[test]
fn long_names_and_reserved_labels_are_refused() {
    let long: String = (0..5).map(|_| format!("{}.", "x".repeat(60))).collect();
    let m = message(1, RESPONSE, &name(&long), 0);
    assert_eq!(parse_response(&m), Err(DnsError::BadName { offset: 12 }));
    let m = message(1, RESPONSE, &[0x40, 0], 0);
    assert_eq!(parse_response(&m), Err(DnsError::BadName { offset: 12 }));
}

#[test]
fn odd_labels_are_escaped() {
    let m = message(1, RESPONSE, b"\x03a.b\x02\\\x01\x01c\x00", 0);
    assert_eq!(
        parse_response(&m).expect("parses").question,
        "a\\.b.\\\\\\001.c"
    );
    let root = message(1, RESPONSE, &[0], 0);
    assert_eq!(parse_response(&root).expect("root").question, "");
}

#[test]
fn nxdomain() {
    let m = message(9, 0x8183, &name("nope.example"), 0);
    let a = parse_response(&m).expect("parses");
    assert_eq!((a.rcode, a.addresses.len()), (3, 0));
}

#[test]
fn queries_and_question_counts_are_refused() {
    let q = message(1, 0x0100, &name("example.com"), 0);
    assert_eq!(parse_response(&q), Err(DnsError::NotAResponse));
    let mut none = message(1, RESPONSE, &name("example.com"), 0);
    none[5] = 0;
    assert_eq!(parse_response(&none), Err(DnsError::NoQuestion));
    none[5] = 2;
    assert_eq!(
        parse_response(&none),
        Err(DnsError::ManyQuestions { count: 2 })
    );
    assert_eq!(parse_response(&[]), Err(DnsError::Short { len: 0 }));
}

#[test]
fn cut_buffers_keep_complete_records() {
    let full = chain();
    let full_answer = parse_response(&full).expect("parses");
    let question_end = 12 + name("www.example.com").len() + 4;
    for len in 0..full.len() {
        let r = parse_response(&full[..len]);
        if len < question_end {
            assert_eq!(r, Err(DnsError::Short { len }), "{len}");
            continue;
        }
        let a = r.unwrap_or_else(|e| panic!("{len}: {e}"));
        assert!(a.truncated, "{len}");
        assert_eq!(a.question, "www.example.com");
        // What a cut buffer gives is a prefix of the full answer.
        assert!(full_answer.addresses.starts_with(&a.addresses), "{len}");
        assert!(full_answer.cnames.starts_with(&a.cnames), "{len}");
    }
    // The server's TC bit also marks it.
    let mut tc = full;
    tc[2] |= 0x02;
    assert!(parse_response(&tc).expect("parses").truncated);
}

#[test]
fn never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = chain();
    for round in 0..600 {
        let mut m = base.clone();
        let flips = 1 + next() % 8;
        for _ in 0..flips {
            let i = usize::try_from(next() % m.len() as u64).expect("index");
            m[i] = next().to_le_bytes()[0];
        }
        // Some rounds also cut, or make pointer-heavy junk.
        if round % 3 == 0 {
            let keep = usize::try_from(next() % (m.len() as u64 + 1)).expect("len");
            m.truncate(keep);
        }
        if round % 5 == 0 {
            for b in m.iter_mut().skip(12) {
                if next() % 4 == 0 {
                    *b |= 0xc0;
                }
            }
        }
        let _ = parse_response(&m);
    }
    for len in 0..300 {
        let junk: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        let _ = parse_response(&junk);
    }
}
