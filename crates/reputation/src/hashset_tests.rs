use super::*;

fn d16(b: u8) -> [u8; 16] {
    [b; 16]
}
fn d20(b: u8) -> [u8; 20] {
    [b; 20]
}
fn d32(b: u8) -> [u8; 32] {
    [b; 32]
}

fn sample() -> Digests {
    Digests {
        md5: vec![d16(5), d16(1), d16(9), d16(5)],
        sha1: vec![d20(7), d20(3)],
        sha256: vec![d32(0xff), d32(0), d32(0x80), d32(0), d32(0)],
    }
}

fn written(d: Digests) -> (tempfile::TempDir, PathBuf, WriteStats) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.set");
    let stats = write_atomic(&p, d).unwrap();
    (dir, p, stats)
}

#[test]
fn round_trip_counts_unique_and_duplicates() {
    let (_dir, p, stats) = written(sample());
    assert_eq!(stats.unique, [3, 2, 3]);
    assert_eq!(stats.duplicates, 3);
    let set = DigestSet::open(&p).unwrap();
    assert_eq!(set.counts(), [3, 2, 3]);
    assert_eq!(set.path(), p);
    let len = std::fs::metadata(&p).unwrap().len();
    assert_eq!(len, (HEADER_LEN + 3 * 16 + 2 * 20 + 3 * 32) as u64);
}

#[test]
fn header_layout_is_as_documented() {
    let (_dir, p, _) = written(sample());
    let b = std::fs::read(&p).unwrap();
    assert_eq!(&b[..8], b"CUSTOSHS");
    assert_eq!(&b[8..12], &1u32.to_le_bytes());
    assert_eq!(&b[12..16], &[0; 4]);
    assert_eq!(&b[16..24], &3u64.to_le_bytes());
    assert_eq!(&b[24..32], &2u64.to_le_bytes());
    assert_eq!(&b[32..40], &3u64.to_le_bytes());
    // First MD5 is the smallest.
    assert_eq!(&b[40..56], &d16(1));
}

#[test]
fn lookups_hit_at_both_ends_and_middle() {
    let (_dir, p, _) = written(sample());
    let set = DigestSet::open(&p).unwrap();
    for b in [1, 5, 9] {
        assert!(set.contains_md5(&d16(b)), "md5 {b}");
    }
    for b in [3, 7] {
        assert!(set.contains_sha1(&d20(b)), "sha1 {b}");
    }
    for b in [0, 0x80, 0xff] {
        assert!(set.contains_sha256(&d32(b)), "sha256 {b}");
    }
}

#[test]
fn lookups_miss_below_between_and_above() {
    let (_dir, p, _) = written(sample());
    let set = DigestSet::open(&p).unwrap();
    for b in [0, 2, 6, 10, 0xff] {
        assert!(!set.contains_md5(&d16(b)), "md5 {b}");
    }
    for b in [0, 4, 8] {
        assert!(!set.contains_sha1(&d20(b)), "sha1 {b}");
    }
    for b in [1, 0x7f, 0xfe] {
        assert!(!set.contains_sha256(&d32(b)), "sha256 {b}");
    }
}

#[test]
fn sections_do_not_leak_into_each_other() {
    // Each lookup searches only its own section, whatever the neighbouring bytes hold.
    let mut d = Digests::default();
    d.md5.push(d16(7));
    d.sha256.push(d32(7));
    let (_dir, p, _) = written(d);
    let set = DigestSet::open(&p).unwrap();
    assert!(!set.contains_sha1(&d20(7)));
    assert!(set.contains_md5(&d16(7)));
    assert!(set.contains_sha256(&d32(7)));
}

#[test]
fn empty_sections() {
    let d = Digests {
        sha256: vec![d32(1)],
        ..Digests::default()
    };
    let (_dir, p, stats) = written(d);
    assert_eq!(stats.unique, [0, 0, 1]);
    let set = DigestSet::open(&p).unwrap();
    assert!(!set.has_md5());
    assert!(!set.has_sha1());
    assert!(!set.contains_md5(&d16(1)));
    assert!(!set.contains_sha1(&d20(1)));
    assert!(set.contains_sha256(&d32(1)));
}

#[test]
fn entirely_empty_set() {
    let (_dir, p, stats) = written(Digests::default());
    assert_eq!(stats, WriteStats::default());
    let set = DigestSet::open(&p).unwrap();
    assert_eq!(set.counts(), [0, 0, 0]);
    assert!(!set.contains_sha256(&d32(0)));
}

#[test]
fn has_md5_and_sha1_follow_counts() {
    let (_dir, p, _) = written(sample());
    let set = DigestSet::open(&p).unwrap();
    assert!(set.has_md5());
    assert!(set.has_sha1());
}

#[test]
fn many_entries_all_found() {
    let sha256: Vec<[u8; 32]> = (0u32..2000)
        .map(|i| {
            let mut a = [0u8; 32];
            a[..4].copy_from_slice(&(i.wrapping_mul(2_654_435_761)).to_be_bytes());
            a
        })
        .collect();
    let (_dir, p, _) = written(Digests {
        sha256: sha256.clone(),
        ..Digests::default()
    });
    let set = DigestSet::open(&p).unwrap();
    assert!(sha256.iter().all(|d| set.contains_sha256(d)));
    let mut absent = sha256[0];
    absent[31] = 1;
    assert!(!set.contains_sha256(&absent));
}

#[test]
fn rewrite_replaces_and_old_mapping_survives() {
    let (_dir, p, _) = written(sample());
    let old = DigestSet::open(&p).unwrap();
    write_atomic(
        &p,
        Digests {
            sha256: vec![d32(0x42)],
            ..Digests::default()
        },
    )
    .unwrap();
    let new = DigestSet::open(&p).unwrap();
    assert!(new.contains_sha256(&d32(0x42)));
    assert!(!new.contains_sha256(&d32(0xff)));
    assert!(old.contains_sha256(&d32(0xff)));
}

fn corrupt(mutate: impl FnOnce(&mut Vec<u8>)) -> SetError {
    let (_dir, p, _) = written(sample());
    let mut b = std::fs::read(&p).unwrap();
    mutate(&mut b);
    std::fs::write(&p, &b).unwrap();
    let err = DigestSet::open(&p).unwrap_err();
    assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
    err
}

#[test]
fn bad_magic_is_rejected() {
    let err = corrupt(|b| b[0] = b'X');
    assert!(matches!(err, SetError::BadMagic { .. }), "{err}");
}

#[test]
fn bad_version_is_rejected() {
    let err = corrupt(|b| b[8] = 2);
    assert!(
        matches!(err, SetError::BadVersion { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn truncated_header_is_rejected() {
    let err = corrupt(|b| b.truncate(20));
    assert!(matches!(err, SetError::Truncated { len: 20, .. }), "{err}");
}

#[test]
fn empty_file_is_rejected() {
    let err = corrupt(|b| b.clear());
    assert!(matches!(err, SetError::Truncated { len: 0, .. }), "{err}");
}

#[test]
fn truncated_body_is_rejected() {
    let err = corrupt(|b| {
        b.pop();
    });
    assert!(matches!(err, SetError::WrongLength { .. }), "{err}");
}

#[test]
fn trailing_garbage_is_rejected() {
    let err = corrupt(|b| b.push(0));
    assert!(matches!(err, SetError::WrongLength { .. }), "{err}");
}

#[test]
fn overflowing_count_is_rejected() {
    let err = corrupt(|b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes()));
    assert!(
        matches!(err, SetError::WrongLength { expected: None, .. }),
        "{err}"
    );
}

#[test]
fn unsorted_section_is_rejected() {
    // sha1 section holds [3…, 7…]; swap them.
    let at = HEADER_LEN + 3 * 16;
    let err = corrupt(|b| {
        let (x, y) = (b[at..at + 20].to_vec(), b[at + 20..at + 40].to_vec());
        b[at..at + 20].copy_from_slice(&y);
        b[at + 20..at + 40].copy_from_slice(&x);
    });
    assert!(
        matches!(
            err,
            SetError::Unsorted {
                section: "sha1",
                index: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn duplicated_entry_is_rejected() {
    // Make the second sha256 equal to the first.
    let at = HEADER_LEN + 3 * 16 + 2 * 20;
    let err = corrupt(|b| {
        let first = b[at..at + 32].to_vec();
        b[at + 32..at + 64].copy_from_slice(&first);
    });
    assert!(
        matches!(
            err,
            SetError::Unsorted {
                section: "sha256",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.set");
    let err = DigestSet::open(&p).unwrap_err();
    assert!(matches!(
        err,
        SetError::Io {
            op: "cannot open",
            ..
        }
    ));
    assert!(err.to_string().contains("absent.set"));
}

#[test]
fn write_into_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("no/such/s.set");
    let err = write_atomic(&p, sample()).unwrap_err();
    assert!(matches!(err, SetError::Io { .. }), "{err}");
}

/// splitmix64: a deterministic stream of well-spread values.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn random32(i: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (j, c) in d.chunks_mut(8).enumerate() {
        c.copy_from_slice(&mix(i * 4 + j as u64).to_le_bytes());
    }
    d
}

/// Interpolation search agrees with bisection on every member and on non-members, for
/// uniform digests and for skewed sets (clustered prefixes, equal prefixes, extremes).
#[test]
fn interpolation_search_agrees_with_bisection() {
    let uniform: Vec<[u8; 32]> = (0..20_000).map(random32).collect();
    let clustered: Vec<[u8; 32]> = (0..20_000u64)
        .map(|i| {
            let mut d = random32(i);
            // Half the entries share one 8-byte prefix, the rest crowd near zero and the top.
            match i % 4 {
                0 | 1 => d[..8].copy_from_slice(&[0x42; 8]),
                2 => d[..7].copy_from_slice(&[0; 7]),
                _ => d[..7].copy_from_slice(&[0xff; 7]),
            }
            d
        })
        .collect();
    let extremes = vec![[0u8; 32], [0xff; 32], d32(1), d32(0xfe)];
    for mut v in [uniform, clustered, extremes] {
        v.sort_unstable();
        v.dedup();
        let section = v.as_flattened();
        for d in &v {
            assert!(search(section, d, &[]), "member {}", hex::encode(d));
        }
        for i in 0..5000u64 {
            let mut probe = random32(i + 1_000_000);
            if i % 3 == 0 {
                // Next to a member: same prefix, different tail.
                probe = v[(i as usize * 7) % v.len()];
                probe[31] ^= 1;
            }
            assert_eq!(search(section, &probe, &[]), bisect(section, &probe));
        }
    }
    assert!(!search::<32>(&[], &[0; 32], &[]));
}

fn big_set(n: u64) -> (tempfile::TempDir, PathBuf, Vec<[u8; 32]>) {
    let mut v: Vec<[u8; 32]> = (0..n).map(random32).collect();
    v.sort_unstable();
    let (dir, p, _) = written(Digests {
        sha256: v.clone(),
        ..Digests::default()
    });
    (dir, p, v)
}

#[test]
fn sampled_validation_opens_a_good_set_and_catches_disorder_at_the_ends() {
    let n = 20_000u64;
    let (_dir, p, v) = big_set(n);
    let set = DigestSet::open_with(&p, Validation::Sampled).unwrap();
    assert_eq!(set.counts(), [0, 0, n]);
    assert!(set.contains_sha256(&v[12_345]));
    let mut bytes = std::fs::read(&p).unwrap();
    let len = bytes.len();
    // Swap the last two entries.
    let (a, b) = (len - 64, len - 32);
    let last: Vec<u8> = bytes[b..].to_vec();
    bytes.copy_within(a..b, b);
    bytes[a..b].copy_from_slice(&last);
    std::fs::write(&p, &bytes).unwrap();
    match DigestSet::open_with(&p, Validation::Sampled).unwrap_err() {
        SetError::Unsorted { section, index, .. } => {
            assert_eq!((section, index), ("sha256", n - 1));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn sampled_validation_reads_small_sets_in_full() {
    let (_dir, p, _) = big_set(100);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = HEADER_LEN + 50 * 32;
    bytes[mid..mid + 32].copy_from_slice(&[0; 32]);
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(
        DigestSet::open_with(&p, Validation::Sampled),
        Err(SetError::Unsorted { index: 50, .. })
    ));
}

/// With the bucket index (big sections), lookups agree with bisection, for uniform and for
/// clustered sets (empty buckets, one crowded bucket, the first and last buckets).
#[test]
fn fenced_search_agrees_with_bisection() {
    let n = FENCE_MIN as u64 + 1000;
    let uniform: Vec<[u8; 32]> = (0..n).map(random32).collect();
    let clustered: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut d = random32(i);
            match i % 3 {
                0 => d[0] = 0x00,
                1 => d[..2].copy_from_slice(&[0x7f, 0xf0]),
                _ => d[0] = 0xff,
            }
            d
        })
        .collect();
    for mut v in [uniform, clustered] {
        v.sort_unstable();
        v.dedup();
        let section = v.as_flattened();
        let f = fences(section, 32);
        assert_eq!(f.len(), FENCES + 1);
        assert_eq!(f[FENCES], v.len());
        for (i, d) in v.iter().enumerate().step_by(7) {
            assert!(search(section, d, &f), "member {i}");
        }
        for i in 0..20_000u64 {
            let mut probe = random32(i + 5_000_000);
            if i % 2 == 0 {
                probe = v[(i as usize * 13) % v.len()];
                probe[31] ^= 1;
            }
            assert_eq!(
                search(section, &probe, &f),
                bisect(section, &probe),
                "probe {i}"
            );
        }
    }
    // Small sections get no index.
    assert!(fences(&[0u8; 64], 32).is_empty());
}

#[test]
fn a_big_set_opens_with_fences_and_answers() {
    let (_dir, p, v) = big_set(FENCE_MIN as u64 * 2);
    let set = DigestSet::open_with(&p, Validation::Sampled).unwrap();
    assert_eq!(set.fences[2].len(), FENCES + 1);
    assert!(set.fences[0].is_empty());
    assert!(v.iter().step_by(97).all(|d| set.contains_sha256(d)));
    assert!(!set.contains_sha256(&random32(u64::MAX / 8)));
}
