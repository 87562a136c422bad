//! Synthetic NSRL-sized inputs for `bench/nsrl.sh`: N pseudo-random digests as a digest list,
//! and a query file with a chosen share of members. Deterministic in (kind, seed), so queries
//! are made without reading the set back.
//!
//! ```text
//! nsrl_gen set     sha256|md5 N SEED OUT [--name]   one lowercase hex digest per line
//!                                                   (--name: "HEX  f", md5sum style, for hfind)
//! nsrl_gen queries sha256|md5 N SEED Q HIT_PERMILLE OUT
//! ```

use std::io::{BufWriter, Write};

/// splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Digest `i` of the set made with `seed`, `len` bytes, as lowercase hex into `out`.
fn digest_hex(seed: u64, i: u64, len: usize, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let base = mix(seed ^ mix(i));
    for w in 0..len.div_ceil(8) {
        let v = mix(base.wrapping_add(w as u64)).to_be_bytes();
        for (j, b) in v.iter().enumerate().take(len - w * 8) {
            let at = 2 * (w * 8 + j);
            out[at] = HEX[usize::from(b >> 4)];
            out[at + 1] = HEX[usize::from(b & 15)];
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: nsrl_gen set KIND N SEED OUT [--name] | queries KIND N SEED Q HIT_PERMILLE OUT";
    let len = match a.get(1).map(String::as_str) {
        Some("sha256") => 32,
        Some("md5") => 16,
        _ => return Err(usage.into()),
    };
    let num = |i: usize| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(a.get(i).ok_or(usage)?.parse::<u64>()?)
    };
    let (n, seed) = (num(2)?, num(3)?);
    let mut line = vec![0u8; 2 * len];
    match a[0].as_str() {
        "set" => {
            let out = a.get(4).ok_or(usage)?;
            let tail: &[u8] = if a.get(5).is_some_and(|f| f == "--name") {
                b"  f\n"
            } else {
                b"\n"
            };
            let mut w = BufWriter::with_capacity(1 << 22, std::fs::File::create(out)?);
            for i in 0..n {
                digest_hex(seed, i, len, &mut line);
                w.write_all(&line)?;
                w.write_all(tail)?;
            }
            w.flush()?;
        }
        "queries" => {
            let (q, permille) = (num(4)?, num(5)?);
            let out = a.get(6).ok_or(usage)?;
            let mut w = BufWriter::new(std::fs::File::create(out)?);
            for k in 0..q {
                let r = mix(seed ^ 0xABCD ^ mix(k));
                if r % 1000 < permille {
                    digest_hex(seed, (r >> 10) % n, len, &mut line);
                } else {
                    // Another seed: a member only by a 2^-128 accident.
                    digest_hex(!seed, k, len, &mut line);
                }
                w.write_all(&line)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
