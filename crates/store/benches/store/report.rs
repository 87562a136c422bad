//! The benchmark's tables: markdown for people, the JSON line for scripts.

use serde_json::{json, Value};

/// A number out of a result object (0 when absent).
pub fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// Prints the phase table, the store's details and the query table.
pub fn report(n: u64, gen: &Value, jl: &Value, st: &Value, rows: &Value, qs: &[Value]) {
    let mb = |v: &Value| num(v, "bytes") / 1048576.0;
    let per = |v: &Value| num(v, "bytes") / n as f64;
    println!("\nN = {n} events\n");
    println!("| phase | events/s | s | CPU s | CPUs busy | on disk | B/event | written B/event |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let line = |name: &str, v: &Value, disk: bool| {
        let (size, b, w) = if disk {
            let w = format!("{:.0}", num(v, "wchar") / n as f64);
            (format!("{:.0} MiB", mb(v)), format!("{:.0}", per(v)), w)
        } else {
            Default::default()
        };
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.2} | {size} | {b} | {w} |",
            num(v, "per_s"),
            num(v, "seconds"),
            num(v, "cpu_s"),
            num(v, "cpus_busy"),
        );
    };
    line("generate only (both below include it)", gen, false);
    line("JSON lines (BufWriter, no fsync)", jl, true);
    line("store (Writer, batch 4096, until close)", st, true);
    line("`Row::from_ecs` only, incl. generation", rows, false);
    let sent = num(st, "sent_s");
    let share = |k: &str| 100.0 * num(st, k) / sent;
    println!(
        "\nstore / JSON lines: rate {:.3}x, size {:.2}x.\n\
         Writer thread while the queue was full ({sent:.0} s): on CPU {:.0} %, waiting for a CPU \
         {:.0} %, blocked {:.0} %; close (drain, optimize, checkpoint) {:.1} s.\n\
         Feeding thread CPU {:.0} s ({} queue-full waits of 50 us).\n\
         Committed/s by tenth of the events: {}",
        num(st, "per_s") / num(jl, "per_s"),
        num(st, "bytes") / num(jl, "bytes"),
        share("writer_cpu_s"),
        share("writer_runqueue_s"),
        share("writer_blocked_s"),
        num(st, "close_s"),
        num(st, "feeder_cpu_s"),
        st["queue_full_waits"],
        st["committed_per_s_by_tenth"],
    );
    println!("\n| query | rows | runs | first ms | median ms | p95 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for q in qs {
        let name = q["query"].as_str().unwrap_or("");
        if q["skipped"] == json!(true) {
            let est = num(q, "estimate_s");
            println!("| {name} | | 0 | skipped: about {est:.0} s estimated | | |");
            continue;
        }
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
            q["rows"],
            q["runs"],
            num(q, "first_ms"),
            num(q, "median_ms"),
            num(q, "p95_ms"),
        );
    }
}
