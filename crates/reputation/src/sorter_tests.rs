use super::*;

/// A deterministic pseudo-random digest stream with repeats: `i % distinct` picks the value.
fn digest(i: u64, distinct: u64) -> [u8; 20] {
    let mut x = (i % distinct).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF;
    let mut d = [0u8; 20];
    for chunk in d.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    d
}

fn sorted(dir: &Path, memory: usize, input: &[[u8; 20]]) -> (Vec<[u8; 20]>, SortStats) {
    let mut s = Sorter::<20>::new(dir, memory);
    for d in input {
        s.push(*d).unwrap();
    }
    let mut out = Vec::new();
    let stats = s
        .finish::<IoFail>(
            |d| {
                out.push(*d);
                Ok(())
            },
            |_, _| Ok(()),
        )
        .unwrap();
    (out, stats)
}

fn in_memory(input: &[[u8; 20]]) -> Vec<[u8; 20]> {
    let mut v = input.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn fits_in_memory_without_run_files() {
    let work = tempfile::tempdir().unwrap();
    let input: Vec<_> = (0..1000).map(|i| digest(i, 700)).collect();
    let (out, stats) = sorted(work.path(), 1 << 20, &input);
    assert_eq!(out, in_memory(&input));
    assert_eq!(stats.runs, 0);
    assert_eq!(stats.pushed, 1000);
    assert_eq!(stats.unique, 700);
    assert_eq!(stats.duplicates, 300);
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn tiny_budget_many_runs_matches_in_memory_sort() {
    let work = tempfile::tempdir().unwrap();
    // 20 digests per run: 250 runs, more than MAX_FAN_IN, so groups are merged first.
    let input: Vec<_> = (0..5000).map(|i| digest(i, 3001)).collect();
    let (out, stats) = sorted(work.path(), 20 * 20, &input);
    assert!(stats.runs as usize > MAX_FAN_IN, "{stats:?}");
    assert_eq!(out, in_memory(&input));
    assert_eq!(stats.unique, 3001);
    assert_eq!(stats.duplicates, 5000 - 3001);
    assert_eq!(stats.pushed, 5000);
}

#[test]
fn budget_of_one_digest_still_sorts() {
    let work = tempfile::tempdir().unwrap();
    let input: Vec<_> = (0..150).map(|i| digest(i, 100)).collect();
    let (out, stats) = sorted(work.path(), 1, &input);
    assert_eq!(out, in_memory(&input));
    assert_eq!(stats.duplicates, 50);
}

#[test]
fn empty_input_gives_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (out, stats) = sorted(work.path(), 100, &[]);
    assert!(out.is_empty());
    assert_eq!(stats, SortStats::default());
}

#[test]
fn sink_error_stops_the_merge() {
    let work = tempfile::tempdir().unwrap();
    let mut s = Sorter::<20>::new(work.path(), 40);
    for i in 0..10 {
        s.push(digest(i, 10)).unwrap();
    }
    let mut n = 0;
    let err = s
        .finish::<IoFail>(
            |_| {
                n += 1;
                if n == 3 {
                    Err(fail("cannot write", Path::new("/sink"))(io::Error::other(
                        "full",
                    )))
                } else {
                    Ok(())
                }
            },
            |_, _| Ok(()),
        )
        .unwrap_err();
    assert_eq!(err.path, Path::new("/sink"));
    assert_eq!(n, 3);
}

#[test]
fn work_dir_is_removed_on_drop_and_stale_ones_swept() {
    let parent = tempfile::tempdir().unwrap();
    let w = WorkDir::create(parent.path(), "import").unwrap();
    std::fs::write(w.path().join("run.0"), b"x").unwrap();
    let p = w.path().to_owned();
    drop(w);
    assert!(!p.exists());
    // A dir named for a process that cannot exist is swept; ours and strangers' names stay.
    let stale = parent.path().join(".import.4294967295.0");
    let mine = parent
        .path()
        .join(format!(".import.{}.9", std::process::id()));
    let other = parent.path().join("keep");
    for d in [&stale, &mine, &other] {
        std::fs::create_dir(d).unwrap();
    }
    sweep_stale(parent.path(), "import");
    assert!(!stale.exists());
    assert!(mine.exists() && other.exists());
}
