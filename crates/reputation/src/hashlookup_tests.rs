use super::test_server::*;
use super::*;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

#[test]
fn client_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Client>();
}

#[test]
fn known_malicious_answer_is_malicious_and_cached() {
    let s = Server::start();
    s.route(&path(&h(1)), Reply::Json(200, malicious_record(&h(1))));
    let c = client(&s);
    let Lookup::Malicious { detail } = c.lookup_sha256(&h(1)) else {
        panic!("not malicious");
    };
    assert!(detail.contains("KnownMalicious=malshare.com"), "{detail}");
    assert!(detail.contains("FileName=dropper.bin"), "{detail}");
    assert!(matches!(c.lookup_sha256(&h(1)), Lookup::Malicious { .. }));
    assert!(matches!(
        c.cached_only(&h(1)),
        Some(Lookup::Malicious { .. })
    ));
    assert_eq!(s.hits(&path(&h(1))), 1);
    let st = c.stats();
    assert_eq!((st.requests, st.cache_hits), (1, 2));
}

#[test]
fn known_answer_carries_trust_and_is_cached() {
    let s = Server::start();
    s.route(&path(&h(2)), Reply::Json(200, known_record(&h(2), 93)));
    let c = client(&s);
    let first = c.lookup_sha256(&h(2));
    let Lookup::Known { trust, detail } = &first else {
        panic!("{first:?}");
    };
    assert_eq!(*trust, Some(93));
    assert_eq!(
        detail,
        "FileName=./usr/bin/zsh, source=RDS_2024.12.1_modern.db, db=nsrl_modern, ProductName=zsh"
    );
    assert_eq!(c.lookup_sha256(&h(2)), first);
    assert_eq!(s.hits(&path(&h(2))), 1);
}

#[test]
fn not_found_is_unknown_and_cached() {
    let s = Server::start();
    s.route(&path(&h(3)), Reply::Json(404, not_found(&h(3))));
    let c = client(&s);
    assert_eq!(c.lookup_sha256(&h(3)), Lookup::Unknown);
    assert_eq!(c.lookup_sha256(&h(3)), Lookup::Unknown);
    assert_eq!(c.cached_only(&h(3)), Some(Lookup::Unknown));
    assert_eq!(s.hits(&path(&h(3))), 1);
}

#[test]
fn uppercase_hash_is_sent_lowercase_and_shares_the_cache_entry() {
    let s = Server::start();
    s.route(
        &path(&h(0xab)),
        Reply::Json(200, known_record(&h(0xab), 50)),
    );
    let c = client(&s);
    let upper = h(0xab).to_uppercase();
    assert!(matches!(c.lookup_sha256(&upper), Lookup::Known { .. }));
    assert!(matches!(
        c.cached_only(&h(0xab)),
        Some(Lookup::Known { .. })
    ));
    assert_eq!(s.total(), 1);
}

#[test]
fn answers_expire_after_their_ttl() {
    let s = Server::start();
    s.route(&path(&h(4)), Reply::Json(200, known_record(&h(4), 70)));
    s.route(&path(&h(5)), Reply::Json(404, not_found(&h(5))));
    let c = Client::new(Config {
        ttl_known: Duration::from_millis(1000),
        ttl_unknown: Duration::from_millis(100),
        ..config(&s)
    })
    .unwrap();
    c.lookup_sha256(&h(4));
    c.lookup_sha256(&h(5));
    thread::sleep(Duration::from_millis(200));
    // The negative answer is gone, the positive one is not.
    assert_eq!(c.cached_only(&h(5)), None);
    assert!(c.cached_only(&h(4)).is_some());
    assert_eq!(c.lookup_sha256(&h(5)), Lookup::Unknown);
    assert_eq!(s.hits(&path(&h(5))), 2);
    thread::sleep(Duration::from_millis(900));
    assert_eq!(c.cached_only(&h(4)), None);
    assert!(matches!(c.lookup_sha256(&h(4)), Lookup::Known { .. }));
    assert_eq!(s.hits(&path(&h(4))), 2);
}

#[test]
fn silent_server_fails_within_the_deadline() {
    let s = Server::start();
    s.route(&path(&h(6)), Reply::Hang);
    let c = Client::new(Config {
        timeout: Duration::from_millis(300),
        ..config(&s)
    })
    .unwrap();
    let start = Instant::now();
    let got = c.lookup_sha256(&h(6));
    let took = start.elapsed();
    // A bound that only fails on a hang, not a performance assertion.
    assert!(took < Duration::from_millis(1300), "took {took:?}");
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Timeout { .. }
            }
        ),
        "{got:?}"
    );
    assert_eq!(c.cached_only(&h(6)), None);
    assert_eq!(c.stats().failures, 1);
}

#[test]
fn body_that_stalls_fails_within_the_deadline() {
    let s = Server::start();
    let mut raw = response(200, &known_record(&h(18), 80));
    raw.truncate(raw.len() - 20);
    s.route(&path(&h(18)), Reply::Stall(raw));
    let c = Client::new(Config {
        timeout: Duration::from_millis(300),
        ..config(&s)
    })
    .unwrap();
    let start = Instant::now();
    let got = c.lookup_sha256(&h(18));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1300), "took {took:?}");
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Timeout { .. }
            }
        ),
        "{got:?}"
    );
}

#[test]
fn closed_port_fails_quickly() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(Config {
        base_url: format!("http://127.0.0.1:{port}"),
        timeout: Duration::from_secs(5),
        ..Config::default()
    })
    .unwrap();
    let start = Instant::now();
    let got = c.lookup_sha256(&h(7));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Transport { .. }
            }
        ),
        "{got:?}"
    );
}

#[test]
fn bad_json_fails_and_is_not_cached() {
    let s = Server::start();
    s.route(&path(&h(8)), Reply::Json(200, "{\"FileName\": ".to_owned()));
    let c = client(&s);
    for _ in 0..2 {
        let got = c.lookup_sha256(&h(8));
        assert!(
            matches!(
                got,
                Lookup::Failed {
                    error: LookupError::BadJson { .. }
                }
            ),
            "{got:?}"
        );
    }
    assert_eq!(s.hits(&path(&h(8))), 2);
}

/// With a 1 KiB body limit, looking `hash` up fails as too large.
fn assert_too_large(s: &Server, hash: &str) {
    let c = Client::new(Config {
        max_body: 1024,
        ..config(s)
    })
    .unwrap();
    let got = c.lookup_sha256(hash);
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::TooLarge { limit: 1024, .. }
            }
        ),
        "{got:?}"
    );
}

#[test]
fn oversized_body_fails() {
    let s = Server::start();
    let big = format!(r#"{{"FileName": "{}"}}"#, "x".repeat(4096));
    s.route(&path(&h(9)), Reply::Json(200, big));
    assert_too_large(&s, &h(9));
}

#[test]
fn oversized_body_without_length_fails() {
    let s = Server::start();
    let mut raw =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend(format!(r#"{{"FileName": "{}"}}"#, "x".repeat(4096)).bytes());
    s.route(&path(&h(19)), Reply::Raw(raw));
    assert_too_large(&s, &h(19));
}

#[test]
fn redirect_is_reported_not_followed() {
    let s = Server::start();
    let target = path(&h(26));
    let raw = format!(
        "HTTP/1.1 301 Moved\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.route(&path(&h(25)), Reply::Raw(raw.into_bytes()));
    s.route(&target, Reply::Json(200, known_record(&h(25), 99)));
    let got = client(&s).lookup_sha256(&h(25));
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Status { status: 301, .. }
            }
        ),
        "{got:?}"
    );
    assert_eq!(s.hits(&target), 0);
}

#[test]
fn truncated_body_fails() {
    let s = Server::start();
    let mut raw = response(200, &known_record(&h(10), 80));
    raw.truncate(raw.len() - 20);
    s.route(&path(&h(10)), Reply::Raw(raw));
    let got = client(&s).lookup_sha256(&h(10));
    assert!(got.is_failed(), "{got:?}");
}

#[test]
fn error_status_and_html_404_fail_instead_of_answering() {
    let s = Server::start();
    s.route(&path(&h(11)), Reply::Json(503, "{}".to_owned()));
    let html404 = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\
                    Connection: close\r\n\r\n<h1>x</h1"
        .to_vec();
    s.route(&path(&h(12)), Reply::Raw(html404));
    let c = client(&s);
    let got = c.lookup_sha256(&h(11));
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Status { status: 503, .. }
            }
        ),
        "{got:?}"
    );
    let got = c.lookup_sha256(&h(12));
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::BadAnswer { .. }
            }
        ),
        "{got:?}"
    );
    assert_eq!(c.cache_len(), 0);
}

#[test]
fn invalid_hash_is_an_error_without_a_request() {
    let s = Server::start();
    let c = client(&s);
    for bad in [
        "",
        "abc",
        &"g".repeat(64),
        &"a".repeat(63),
        &"a".repeat(65),
        &"é".repeat(32),
    ] {
        let got = c.lookup_sha256(bad);
        assert!(
            matches!(
                got,
                Lookup::Failed {
                    error: LookupError::InvalidHash { .. }
                }
            ),
            "{bad:?}: {got:?}"
        );
        assert_eq!(c.cached_only(bad), None);
    }
    assert_eq!(s.total(), 0);
    assert_eq!(c.stats(), Stats::default());
}

#[test]
fn breaker_skips_the_service_after_a_failure_then_probes() {
    let s = Server::start();
    s.route(&path(&h(13)), Reply::Json(500, "{}".to_owned()));
    s.route(&path(&h(14)), Reply::Json(200, known_record(&h(14), 60)));
    let c = Client::new(Config {
        backoff: Duration::from_millis(300),
        ..config(&s)
    })
    .unwrap();
    assert!(c.lookup_sha256(&h(13)).is_failed());
    // Open: another hash is not even requested.
    let got = c.lookup_sha256(&h(14));
    let Lookup::Failed {
        error: LookupError::Unavailable {
            retry_after,
            last_error,
        },
    } = &got
    else {
        panic!("{got:?}");
    };
    assert!(*retry_after <= Duration::from_millis(300));
    assert!(last_error.contains("500"), "{last_error}");
    assert_eq!(s.hits(&path(&h(14))), 0);
    assert_eq!(c.stats().skipped, 1);
    // After the window one probe goes out; it succeeds and closes the breaker.
    thread::sleep(Duration::from_millis(350));
    assert!(matches!(c.lookup_sha256(&h(14)), Lookup::Known { .. }));
    assert_eq!(s.hits(&path(&h(14))), 1);
    assert!(c.lookup_sha256(&h(13)).is_failed());
    assert_eq!(s.hits(&path(&h(13))), 2);
}

#[test]
fn failed_probe_reopens_the_breaker() {
    let s = Server::start();
    s.route(&path(&h(15)), Reply::Json(500, "{}".to_owned()));
    let c = Client::new(Config {
        backoff: Duration::from_millis(200),
        ..config(&s)
    })
    .unwrap();
    c.lookup_sha256(&h(15));
    thread::sleep(Duration::from_millis(250));
    c.lookup_sha256(&h(15));
    let got = c.lookup_sha256(&h(15));
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Unavailable { .. }
            }
        ),
        "{got:?}"
    );
    assert_eq!(s.hits(&path(&h(15))), 2);
}

#[test]
fn only_one_probe_goes_out_after_the_window() {
    let s = Server::start();
    s.route(&path(&h(27)), Reply::Json(500, "{}".to_owned()));
    s.route(&path(&h(28)), Reply::Hang);
    s.route(&path(&h(29)), Reply::Json(200, known_record(&h(29), 60)));
    let c = Arc::new(
        Client::new(Config {
            timeout: Duration::from_millis(800),
            backoff: Duration::from_millis(100),
            ..config(&s)
        })
        .unwrap(),
    );
    assert!(c.lookup_sha256(&h(27)).is_failed());
    thread::sleep(Duration::from_millis(150));
    let probe = {
        let c = c.clone();
        thread::spawn(move || c.lookup_sha256(&h(28)))
    };
    while s.hits(&path(&h(28))) == 0 {
        thread::sleep(Duration::from_millis(5));
    }
    // The probe is in flight: others are skipped, not sent.
    let got = c.lookup_sha256(&h(29));
    assert!(
        matches!(
            got,
            Lookup::Failed {
                error: LookupError::Unavailable { .. }
            }
        ),
        "{got:?}"
    );
    assert_eq!(s.hits(&path(&h(29))), 0);
    assert!(probe.join().unwrap().is_failed());
}

#[test]
fn cached_answers_are_served_while_the_breaker_is_open() {
    let s = Server::start();
    s.route(&path(&h(16)), Reply::Json(200, malicious_record(&h(16))));
    s.route(&path(&h(17)), Reply::Json(500, "{}".to_owned()));
    let c = Client::new(Config {
        backoff: Duration::from_secs(60),
        ..config(&s)
    })
    .unwrap();
    c.lookup_sha256(&h(16));
    c.lookup_sha256(&h(17));
    assert!(matches!(c.lookup_sha256(&h(16)), Lookup::Malicious { .. }));
}

#[test]
fn concurrent_lookups_from_many_threads() {
    let s = Server::start();
    for b in 30..38 {
        s.route(&path(&h(b)), Reply::Json(200, known_record(&h(b), 50)));
    }
    let c = Arc::new(client(&s));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            thread::spawn(move || {
                for b in 30..38 {
                    let got = c.lookup_sha256(&h(b));
                    assert!(matches!(got, Lookup::Known { .. }), "{i}: {got:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Racing threads may both ask; each hash is asked at most once per thread.
    assert!((8..=64).contains(&s.total()), "{}", s.total());
    assert_eq!(c.cache_len(), 8);
}

#[test]
fn config_is_checked() {
    let bad = |c: Config| Client::new(c).unwrap_err();
    for url in [
        "ftp://x",
        "hashlookup.circl.lu",
        "http://",
        "http:///x",
        "http://a b",
        "http://h?q=1",
    ] {
        let err = bad(Config {
            base_url: url.to_owned(),
            ..Config::default()
        });
        assert!(
            matches!(
                err,
                ClientError::BadConfig {
                    field: "base_url",
                    ..
                }
            ),
            "{url}: {err}"
        );
    }
    let err = bad(Config {
        base_url: "http://h".to_owned(),
        timeout: Duration::ZERO,
        ..Config::default()
    });
    assert!(
        matches!(
            err,
            ClientError::BadConfig {
                field: "timeout",
                ..
            }
        ),
        "{err}"
    );
    let https = Client::new(Config::default());
    assert_eq!(https.is_ok(), cfg!(feature = "https"), "{https:?}");
    // Trailing slashes do not double up.
    let c = Client::new(Config {
        base_url: "http://h:1/api//".to_owned(),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(c.prefix, "http://h:1/api/lookup/sha256/");
}
