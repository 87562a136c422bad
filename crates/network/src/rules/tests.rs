use super::*;
use std::io;

fn rule(action: Action) -> NewNetRule {
    NewNetRule {
        action,
        cidr: None,
        ports: None,
        transport: Transport::Any,
        direction: Direction::Out,
        program: None,
        audit: false,
        comment: None,
    }
}

fn curl() -> NewNetRule {
    NewNetRule {
        cidr: Some("10.0.0.0/8".parse().expect("cidr")),
        ports: Some("80-90".parse().expect("ports")),
        transport: Transport::Tcp,
        program: Some("/usr/bin/curl".into()),
        audit: true,
        ..rule(Action::Deny)
    }
}

fn fake_stat(p: &Path) -> io::Result<(u64, u64)> {
    match p.to_str() {
        Some("/usr/bin/curl") => Ok((8, 42)),
        _ => Err(io::Error::from(io::ErrorKind::NotFound)),
    }
}

#[test]
fn validate() {
    rule(Action::Allow)
        .validate()
        .expect("no criteria matches all");
    curl().validate().expect("valid");
    let bind = NewNetRule {
        direction: Direction::Bind,
        cidr: Some("127.0.0.1".parse().expect("cidr")),
        ..rule(Action::Allow)
    };
    bind.validate().expect("bind to a local address");
    let rel = NewNetRule {
        program: Some("bin/curl".into()),
        ..curl()
    };
    let e = rel.validate().expect_err("relative").to_string();
    assert!(
        e.contains("program \"bin/curl\"") && e.contains("absolute"),
        "{e}"
    );
    let long = NewNetRule {
        comment: Some("x".repeat(MAX_COMMENT + 1)),
        ..curl()
    };
    assert!(long.validate().is_err());
    let ok = NewNetRule {
        comment: Some("é".repeat(MAX_COMMENT)),
        ..curl()
    };
    ok.validate().expect("200 characters, more bytes");
    let hosty = NewNetRule {
        cidr: Some(Cidr {
            addr: "10.1.2.3".parse().expect("ip"),
            prefix: 8,
        }),
        ..curl()
    };
    assert!(hosty.validate().is_err());
    let backwards = NewNetRule {
        ports: Some(PortRange { lo: 90, hi: 80 }),
        ..curl()
    };
    assert!(backwards.validate().is_err());
}

#[test]
fn describe_and_name() {
    assert_eq!(
        describe(&curl()),
        "deny tcp out to 10.0.0.0/8 port 80-90 by /usr/bin/curl (audit)"
    );
    assert_eq!(describe(&rule(Action::Deny)), "deny all out");
    let sshd = NewNetRule {
        direction: Direction::Bind,
        ports: Some(PortRange { lo: 22, hi: 22 }),
        program: Some("/usr/sbin/sshd".into()),
        ..rule(Action::Allow)
    };
    assert_eq!(sshd.to_string(), "allow bind port 22 by /usr/sbin/sshd");
    let both = NewNetRule {
        direction: Direction::Any,
        transport: Transport::Udp,
        cidr: Some("fd00::/8".parse().expect("cidr")),
        ..rule(Action::Deny)
    };
    assert_eq!(both.to_string(), "deny udp out and bind at fd00::/8");
    assert_eq!(both.name(), both.to_string());
    let named = NewNetRule {
        comment: Some("no curl to the LAN".into()),
        ..curl()
    };
    assert_eq!(named.name(), "no curl to the LAN");
}

#[test]
fn compile_fills_kernel_rules() {
    let rules = [
        NetRule {
            id: 3,
            rule: curl(),
        },
        NetRule {
            id: 1,
            rule: NewNetRule {
                direction: Direction::Any,
                transport: Transport::Udp,
                cidr: Some("fd00::/8".parse().expect("cidr")),
                ..rule(Action::Allow)
            },
        },
        NetRule {
            id: 2,
            rule: NewNetRule {
                direction: Direction::Bind,
                ..rule(Action::Deny)
            },
        },
        NetRule {
            id: 4,
            rule: NewNetRule {
                cidr: Some("::ffff:192.168.0.0/112".parse().expect("cidr")),
                ..rule(Action::Deny)
            },
        },
    ];
    let k = compile_with(&rules, 8, fake_stat).expect("compiles");
    assert_eq!(k.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 1, 2, 4]);
    let mut addr = [0; 16];
    addr[..4].copy_from_slice(&[10, 0, 0, 0]);
    assert_eq!(
        k[0],
        KernelRule {
            id: 3,
            family: 4,
            addr,
            prefix: 8,
            port_lo: 80,
            port_hi: 90,
            protocol: 6,
            hooks: HOOK_OUT,
            program: Some((8, 42)),
            deny: true,
            audit: true,
        }
    );
    assert_eq!((k[1].family, k[1].addr[0], k[1].prefix), (6, 0xfd, 8));
    assert_eq!((k[1].protocol, k[1].hooks), (17, HOOK_OUT | HOOK_BIND));
    assert!(!k[1].deny && k[1].program.is_none());
    assert_eq!((k[1].port_lo, k[1].port_hi), (0, 65535));
    assert_eq!((k[2].family, k[2].prefix, k[2].hooks), (0, 0, HOOK_BIND));
    assert_eq!(k[2].addr, [0; 16]);
    // A mapped network is matched as IPv4, as the kernel sees mapped peers.
    assert_eq!((k[3].family, k[3].prefix), (4, 16));
    assert_eq!(k[3].addr[..4], [192, 168, 0, 0]);
}

#[test]
fn compile_errors_name_the_rule() {
    let missing = NetRule {
        id: 7,
        rule: NewNetRule {
            program: Some("/nonexistent/x".into()),
            ..rule(Action::Deny)
        },
    };
    match compile_with(std::slice::from_ref(&missing), 8, fake_stat) {
        Err(NetError::Program { id: 7, path, .. }) => assert_eq!(path, Path::new("/nonexistent/x")),
        other => panic!("{other:?}"),
    }
    let bad = NetRule {
        id: 9,
        rule: NewNetRule {
            program: Some("curl".into()),
            ..rule(Action::Deny)
        },
    };
    let e = compile_with(&[bad], 8, fake_stat).expect_err("relative");
    assert!(matches!(e, NetError::Rule { id: 9, .. }), "{e:?}");
    let many: Vec<NetRule> = (1..=3)
        .map(|id| NetRule {
            id,
            rule: rule(Action::Allow),
        })
        .collect();
    let e = compile_with(&many, 2, fake_stat).expect_err("too many");
    assert!(matches!(e, NetError::TooMany { count: 3, max: 2 }), "{e:?}");
    compile_with(&many, 3, fake_stat).expect("exactly max");
}

#[test]
fn compile_stats_real_files() {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().expect("temp file");
    let m = f.as_file().metadata().expect("metadata");
    let r = NetRule {
        id: 1,
        rule: NewNetRule {
            program: Some(f.path().to_owned()),
            ..rule(Action::Deny)
        },
    };
    let k = compile(&[r], 1).expect("compiles");
    assert_eq!(k[0].program, Some((m.dev(), m.ino())));
}

#[test]
fn rule_serde() {
    let json = r#"{"id":5,"action":"deny","cidr":"10.0.0.0/8","ports":"443","transport":"tcp",
        "direction":"bind","program":"/usr/bin/nc","audit":true,"comment":"c"}"#;
    let r: NetRule = serde_json::from_str(json).expect("parses");
    assert_eq!(r.id, 5);
    assert_eq!(r.rule.ports, Some(PortRange { lo: 443, hi: 443 }));
    assert_eq!(r.rule.direction, Direction::Bind);
    let back: NetRule =
        serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("round trip");
    assert_eq!(back, r);
    let min: NetRule = serde_json::from_str(r#"{"id":1,"action":"allow"}"#).expect("minimal");
    assert_eq!(min.rule, rule(Action::Allow));
    let text = serde_json::to_string(&min).expect("json");
    assert!(
        !text.contains("cidr") && !text.contains("program"),
        "{text}"
    );
}

mod store {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn add_load_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = NetRuleStore::new(&dir.path().join("state"));
        assert!(s.load().expect("missing file").is_empty());
        let a = s.add(curl()).expect("add");
        let b = s.add(rule(Action::Allow)).expect("add");
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(s.load().expect("load"), [a.clone(), b.clone()]);
        let mode = std::fs::metadata(s.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(s.remove(2).expect("remove"), b);
        // Ids are not reused, even the highest.
        assert_eq!(s.add(rule(Action::Deny)).expect("add").id, 3);
        assert!(matches!(s.remove(2), Err(NetError::NotFound(2))));
        assert_eq!(s.load().expect("load").len(), 2);
    }

    #[test]
    fn checks_can_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = NetRuleStore::new(dir.path());
        s.add(curl()).expect("add");
        let refuse = |rules: &[NetRule]| -> Result<(), NetError> {
            assert_eq!(rules.len(), 2);
            Err(NetError::Refused {
                reason: "no".into(),
            })
        };
        let e = s.add_with(rule(Action::Deny), refuse).expect_err("refused");
        assert_eq!(e.to_string(), "no");
        let e = s
            .remove_with(1, |rules| {
                assert!(rules.is_empty());
                Err(NetError::Refused {
                    reason: "kept".into(),
                })
            })
            .expect_err("refused");
        assert!(matches!(e, NetError::Refused { .. }));
        assert_eq!(s.load().expect("load").len(), 1);
        // The refused add used no id.
        assert_eq!(s.add(rule(Action::Deny)).expect("add").id, 2);
        let bad = NewNetRule {
            program: Some("rel".into()),
            ..curl()
        };
        assert!(s.add(bad).is_err());
        assert_eq!(s.load().expect("load").len(), 2);
    }

    #[test]
    fn corrupt_and_bare_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = NetRuleStore::new(dir.path());
        std::fs::write(s.path(), "{not json").expect("write");
        assert!(matches!(s.load(), Err(NetError::Corrupt { .. })));
        assert!(matches!(s.add(curl()), Err(NetError::Corrupt { .. })));
        assert_eq!(
            std::fs::read_to_string(s.path()).expect("read"),
            "{not json"
        );
        std::fs::write(s.path(), r#"[{"id":4,"action":"allow"}]"#).expect("write");
        assert_eq!(s.load().expect("bare array")[0].id, 4);
        assert_eq!(s.add(curl()).expect("add").id, 5);
        let text = std::fs::read_to_string(s.path()).expect("read");
        assert!(text.contains("\"next_id\": 6"), "{text}");
        std::fs::write(s.path(), r#"[{"id":1,"action":"maybe"}]"#).expect("write");
        let e = s.load().expect_err("bad action");
        assert!(matches!(e, NetError::Corrupt { .. }), "{e:?}");
    }
}
