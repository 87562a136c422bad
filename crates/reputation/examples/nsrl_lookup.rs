//! Lookup driver for `bench/nsrl.sh`: opens the NSRL set of a state dir as the agent does
//! (`Nsrl::load`), reads hex digests (one per line), looks each up, and prints one JSON line:
//! load time, lookups/s (first pass, and the best of the following passes), hits, and RSS.
//! For comparison it also times plain binary search over the same mapping.
//!
//! ```text
//! nsrl_lookup STATE_DIR QUERIES [PASSES]
//! ```

use custos_reputation::Nsrl;
use std::io::BufRead;
use std::time::Instant;

/// `VmRSS`, `RssAnon`, `RssFile`, `VmHWM` from /proc/self/status, in KiB.
fn rss() -> [u64; 4] {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    [
        get("VmRSS:"),
        get("RssAnon:"),
        get("RssFile:"),
        get("VmHWM:"),
    ]
}

/// Textbook binary search over the set's single section, for comparison.
fn bisect(section: &[u8], key: &[u8]) -> bool {
    let len = key.len();
    let (mut lo, mut hi) = (0, section.len() / len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match section[mid * len..(mid + 1) * len].cmp(key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: nsrl_lookup STATE_DIR QUERIES [PASSES]";
    let state = std::path::Path::new(a.first().ok_or(usage)?);
    let passes: usize = a.get(2).map_or(Ok(3), |p| p.parse())?;
    let mut queries = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(a.get(1).ok_or(usage)?)?).lines() {
        queries.push(hex::decode(line?.trim())?);
    }
    let before = rss();
    let t = Instant::now();
    let nsrl = Nsrl::load(state)?.ok_or("no NSRL set imported")?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let run = |f: &dyn Fn(&[u8]) -> bool| {
        let t = Instant::now();
        let hits = queries.iter().filter(|q| f(q)).count();
        (queries.len() as f64 / t.elapsed().as_secs_f64(), hits)
    };
    let lookup = |q: &[u8]| nsrl.contains(q);
    let (first, hits) = run(&lookup);
    let mut warm = 0f64;
    for _ in 1..passes.max(2) {
        warm = warm.max(run(&lookup).0);
    }
    let after = rss();
    // The same mapping, binary search: header 40 bytes, then one section.
    let file = std::fs::File::open(state.join("nsrl/nsrl.set"))?;
    // SAFETY: the set is only replaced by rename, never written in place.
    let mm = unsafe { memmap2::Mmap::map(&file)? };
    let section = &mm[custos_reputation::hashset::HEADER_LEN..];
    let mut bisect_warm = 0f64;
    let mut bisect_hits = 0;
    for _ in 0..passes.max(2) {
        let (r, h) = run(&|q: &[u8]| bisect(section, q));
        bisect_warm = bisect_warm.max(r);
        bisect_hits = h;
    }
    println!(
        "{{\"entries\":{},\"digest\":\"{}\",\"queries\":{},\"hits\":{hits},\"load_ms\":{load_ms:.1},\
         \"first_pass_per_s\":{first:.0},\"warm_per_s\":{warm:.0},\"ns_per_lookup\":{:.0},\
         \"bisect_warm_per_s\":{bisect_warm:.0},\"bisect_hits\":{bisect_hits},\
         \"rss_kib_before_load\":{},\"rss_kib\":{},\"rss_anon_kib\":{},\"rss_file_kib\":{},\"hwm_kib\":{}}}",
        nsrl.len(),
        nsrl.kind(),
        queries.len(),
        1e9 / warm,
        before[0],
        after[0],
        after[1],
        after[2],
        after[3]
    );
    Ok(())
}
