//! Per-scan cost of a fresh scanner vs a reused one, on a small buffer.
//!
//! `cargo run -p custos-yara --example scan_overhead [RULES_DIR]`; without a directory, rule
//! sets of 3 and 1000 generated rules are measured.

use custos_yara::{Rules, Scanner, YaraError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);
const ROUNDS: u32 = 2000;

fn per_scan(
    rounds: u32,
    mut f: impl FnMut() -> Result<(), YaraError>,
) -> Result<Duration, YaraError> {
    f()?; // warm-up
    let start = Instant::now();
    for _ in 0..rounds {
        f()?;
    }
    Ok(start.elapsed() / rounds)
}

fn measure(label: &str, dir: &Path) -> Result<(), YaraError> {
    let start = Instant::now();
    let rules = Arc::new(Rules::compile_dir(dir)?);
    let compiled = start.elapsed();
    let data = vec![b'x'; 4096];
    let fresh = per_scan(ROUNDS, || rules.scan(&data, TIMEOUT).map(drop))?;
    let mut scanner = Scanner::new(Arc::clone(&rules));
    let reused = per_scan(ROUNDS, || scanner.scan(&data, TIMEOUT).map(drop))?;
    let create = per_scan(ROUNDS, || {
        drop(Scanner::new(Arc::clone(&rules)));
        Ok(())
    })?;
    println!(
        "{label}: {} rules, compiled in {compiled:.2?}; 4 KiB scan: fresh scanner {fresh:.2?}, \
         reused {reused:.2?}; scanner creation alone {create:.2?}",
        rules.rule_count()
    );

    // Throughput on 16 MiB of noise, and what a held scanner costs in memory.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..16 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big = per_scan(5, || scanner.scan(&noise, TIMEOUT).map(drop))?;
    let mut marked = noise;
    marked.extend_from_slice(b"marker-000002");
    let hits = scanner.scan(&marked, TIMEOUT)?;
    assert!(
        hits.iter().any(|m| m.rule == "r2"),
        "marker at the end found"
    );
    let before = rss_kib();
    let mut held: Vec<Scanner> = (0..16).map(|_| Scanner::new(Arc::clone(&rules))).collect();
    for s in &mut held {
        s.scan(&data, TIMEOUT)?;
    }
    let per_scanner = (rss_kib() - before) / held.len() as i64;
    println!("  16 MiB scan {big:.2?}; resident memory per used scanner ~{per_scanner} KiB");
    Ok(())
}

/// Resident set size of this process, from `/proc/self/statm` (0 if unreadable).
fn rss_kib() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = std::env::args_os().nth(1) {
        measure("given", Path::new(&dir))?;
        return Ok(());
    }
    for n in [3usize, 1000] {
        let dir = tempfile::tempdir()?;
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "rule r{i} {{ strings: $a = \"marker-{i:06}\" $b = {{ 4D 5A {:02X} ?? 00 }} condition: $a or $b }}\n",
                i % 256
            ));
        }
        std::fs::write(dir.path().join("gen.yar"), text)?;
        measure(&format!("{n} generated"), dir.path())?;
    }
    Ok(())
}
