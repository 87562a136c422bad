use super::super::test_server::*;
use super::*;
use crate::hashlookup::{ClientError, Config};
use std::thread;

#[test]
fn full_cache_evicts_the_entry_closest_to_expiry() {
    let s = Server::start();
    for b in 20..23 {
        s.route(&path(&h(b)), Reply::Json(200, known_record(&h(b), 50)));
    }
    s.route(&path(&h(23)), Reply::Json(404, not_found(&h(23))));
    let c = Client::new(Config {
        max_entries: 3,
        ttl_unknown: Duration::from_secs(10),
        ..config(&s)
    })
    .unwrap();
    c.lookup_sha256(&h(20));
    c.lookup_sha256(&h(23)); // shortest TTL
    c.lookup_sha256(&h(21));
    c.lookup_sha256(&h(22));
    assert_eq!(c.cache_len(), 3);
    assert_eq!(c.cached_only(&h(23)), None);
    for b in 20..23 {
        assert!(c.cached_only(&h(b)).is_some(), "{b}");
    }
}

#[test]
fn zero_max_entries_caches_nothing() {
    let s = Server::start();
    s.route(&path(&h(24)), Reply::Json(404, not_found(&h(24))));
    let c = Client::new(Config {
        max_entries: 0,
        ..config(&s)
    })
    .unwrap();
    c.lookup_sha256(&h(24));
    c.lookup_sha256(&h(24));
    assert_eq!(s.hits(&path(&h(24))), 2);
}

#[test]
fn cache_file_round_trips_for_the_same_service_only() {
    let s = Server::start();
    s.route(&path(&h(40)), Reply::Json(200, malicious_record(&h(40))));
    s.route(&path(&h(41)), Reply::Json(200, known_record(&h(41), 77)));
    s.route(&path(&h(42)), Reply::Json(404, not_found(&h(42))));
    s.route(&path(&h(43)), Reply::Json(500, "{}".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hashlookup.jsonl");
    let c = client(&s);
    for b in 40..44 {
        c.lookup_sha256(&h(b));
    }
    assert_eq!(c.save_cache(&file).unwrap(), 3);

    let again = client(&s);
    let loaded = again.load_cache(&file).unwrap();
    assert_eq!(
        loaded,
        LoadSummary {
            loaded: 3,
            expired: 0,
            rejected: 0
        }
    );
    for b in 40..43 {
        assert_eq!(again.cached_only(&h(b)), c.cached_only(&h(b)), "{b}");
    }
    assert_eq!(again.cached_only(&h(43)), None);
    assert_eq!(s.total(), 4);

    // Another service: nothing is taken.
    let other = Client::new(Config {
        base_url: "http://127.0.0.1:1".to_owned(),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(other.load_cache(&file).unwrap(), LoadSummary::default());
    // Missing file: nothing, no error.
    let missing = other.load_cache(&dir.path().join("none")).unwrap();
    assert_eq!(missing, LoadSummary::default());
}

#[test]
fn cache_file_drops_expired_and_bad_lines_and_caps_ttl() {
    let s = Server::start();
    let c = Client::new(Config {
        ttl_unknown: Duration::from_millis(500),
        ..config(&s)
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache");
    let now = unix_ms(SystemTime::now());
    let prefix = format!("{}/lookup/sha256/", s.base());
    let text = [
        format!(r#"{{"format":"{CACHE_FORMAT}","service":"{prefix}"}}"#),
        format!(
            r#"{{"sha256":"{}","expires_ms":{},"answer":"unknown"}}"#,
            h(1),
            now - 1
        ),
        // A year ahead, capped to the 500 ms unknown TTL.
        format!(
            r#"{{"sha256":"{}","expires_ms":{},"answer":"unknown"}}"#,
            h(2),
            now + 365 * 86_400_000
        ),
        format!(
            r#"{{"sha256":"zz","expires_ms":{},"answer":"unknown"}}"#,
            now + 9999
        ),
        "not json".to_owned(),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let got = c.load_cache(&file).unwrap();
    assert_eq!(
        got,
        LoadSummary {
            loaded: 1,
            expired: 1,
            rejected: 2
        }
    );
    assert_eq!(c.cached_only(&h(2)), Some(Lookup::Unknown));
    thread::sleep(Duration::from_millis(600));
    assert_eq!(c.cached_only(&h(2)), None);

    std::fs::write(&file, "{\"something\": 1}\n").unwrap();
    let err = c.load_cache(&file).unwrap_err();
    assert!(matches!(err, ClientError::CacheFormat { .. }), "{err}");
}
