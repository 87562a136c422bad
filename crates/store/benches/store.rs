//! Event store benchmark, run by `bench/store.sh`: the sustained insert rate of
//! [`custos_store::Writer`] with the agent's batching, next to plain JSON-lines writing of the
//! same events, and the latency of the common `custos events` queries at N stored events.
//!
//! ```text
//! cargo bench -p custos-store --bench store -- [--events N] [--dir DIR]
//! ```
//!
//! Phases, all on the same N events from [`host::Host`] (same seed):
//! 1. generation only: building the ECS values, which both writers below also pay;
//! 2. JSON lines: each value serialised plus a newline into a 64 KiB `BufWriter` on a file,
//!    as the agent's stream thread does (no fsync; the file is synced and deleted afterwards,
//!    untimed);
//! 3. the store: one thread sends into a `Writer` with the default options and no
//!    retention, as fast as it accepts. It never lets `send` fail: a failed `send` counts as
//!    a drop and puts an `events_dropped` marker into the store. Instead it reads the queue's
//!    fill from `status()` and waits 50 µs while it is full (single producer: the queue only
//!    shrinks between the check and the send). The time runs until `close()` returns;
//! 4. `Row::from_ecs` alone on up to 1M events (the writer's share that is not SQLite);
//! 5. queries through `Reader`, as `custos events` makes them, each run 20 times.
//!
//! Prints a markdown table and, as the last line, one JSON object with every number.

#[path = "store/host.rs"]
mod host;
#[path = "store/pools.rs"]
mod pools;
#[path = "store/report.rs"]
mod report;

use custos_store::{Filter, Outcome, Reader, Retention, Row, StoreError, TreeKey, Writer};
use custos_store::{Tree, WriterOptions};
use host::{Host, Stats, FIRST_PID};
use pools::{Pools, CORE_EXES};
use report::{num, report};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const RUNS: usize = 20;
/// A query is run again only while its runs so far took less than this.
const BUDGET: Duration = Duration::from_secs(60);
/// A tree is not loaded when the time per node of the first tree promises more than this.
const TREE_LIMIT_S: f64 = 300.0;

struct Args {
    events: u64,
    dir: PathBuf,
}

fn args() -> Res<Args> {
    let mut a = Args {
        events: 10_000_000,
        dir: PathBuf::from("/work/bench-tmp/store"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => a.events = it.next().ok_or("--events N")?.parse()?,
            "--dir" => a.dir = it.next().ok_or("--dir DIR")?.into(),
            "--bench" => {} // cargo's
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if a.events == 0 {
        return Err("--events must be positive".into());
    }
    Ok(a)
}

/// CPU seconds (user + system) of the process, or of the calling thread.
fn cpu(thread: bool) -> f64 {
    let who = if thread {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `who` is a valid target.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// Total and idle jiffies over all CPUs, from /proc/stat.
fn jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (f.iter().sum(), idle)
}

/// `wchar` (bytes given to write calls) and `write_bytes` (bytes this process caused to be
/// written to storage) from /proc/self/io.
fn io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("wchar:"), get("write_bytes:"))
}

/// The writer thread's time on a CPU and waiting for one, in seconds (its schedstat).
fn writer_sched() -> Option<(f64, f64)> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "custos-store" {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let mut f = s
                .split_whitespace()
                .map(|x| x.parse::<f64>().unwrap_or(0.0) / 1e9);
            return Some((f.next()?, f.next()?));
        }
    }
    None
}

/// Measures a phase: wall seconds, process CPU seconds, CPUs busy machine-wide, bytes written.
struct Meter {
    t: Instant,
    cpu: f64,
    jiffies: (u64, u64),
    io: (u64, u64),
}

impl Meter {
    fn start() -> Meter {
        Meter {
            t: Instant::now(),
            cpu: cpu(false),
            jiffies: jiffies(),
            io: io(),
        }
    }
    fn stop(&self, n: u64) -> Value {
        let secs = self.t.elapsed().as_secs_f64();
        let (t, i) = jiffies();
        let (dt, di) = (t - self.jiffies.0, i - self.jiffies.1);
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = if dt > 0 {
            (dt - di) as f64 / dt as f64 * ncpu
        } else {
            0.0
        };
        let (wchar, write_bytes) = io();
        json!({
            "seconds": secs,
            "per_s": n as f64 / secs,
            "cpu_s": cpu(false) - self.cpu,
            "cpus_busy": busy,
            "wchar": wchar - self.io.0,
            "write_bytes": write_bytes - self.io.1,
        })
    }
}

fn generate_only(pools: &Pools, n: u64, end_us: u64) -> Value {
    let mut host = Host::new(pools, n, end_us);
    let m = Meter::start();
    for _ in 0..n {
        std::hint::black_box(Arc::new(host.next_event()));
    }
    m.stop(n)
}

fn json_lines(pools: &Pools, n: u64, end_us: u64, path: &Path) -> Res<Value> {
    let mut host = Host::new(pools, n, end_us);
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(path)?);
    let m = Meter::start();
    for _ in 0..n {
        let ev = Arc::new(host.next_event());
        let line = ev.to_string();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let mut r = m.stop(n);
    out.into_inner()?.sync_all()?;
    r["bytes"] = json!(std::fs::metadata(path)?.len());
    std::fs::remove_file(path)?;
    Ok(r)
}

fn store(pools: &Pools, n: u64, end_us: u64, db: &Path) -> Res<(Value, Stats)> {
    let mut host = Host::new(pools, n, end_us);
    let opts = WriterOptions::new(db.to_owned(), Retention::default());
    let (queue, batch) = (opts.queue, opts.batch);
    let w = Writer::start(opts)?;
    let m = Meter::start();
    let main_cpu = cpu(true);
    let sched0 = writer_sched().unwrap_or_default();
    let (mut room, mut waits) = (0usize, 0u64);
    let mut marks = vec![(0.0, 0u64)];
    let decile = (n / 10).max(1);
    for i in 1..=n {
        let ev = Arc::new(host.next_event());
        while room == 0 {
            room = queue.saturating_sub(w.status().queued as usize);
            if room == 0 {
                waits += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        if !w.send(ev) {
            return Err("the writer refused an event with room in its queue".into());
        }
        room -= 1;
        if i % decile == 0 {
            let (t, c) = (m.t.elapsed().as_secs_f64(), w.status().written);
            marks.push((t, c));
            eprintln!("store: {i} sent, {c} committed, {t:.0} s");
        }
    }
    let sent_s = m.t.elapsed().as_secs_f64();
    let feeder_cpu = cpu(true) - main_cpu;
    // Until here: the writer is busy all along (the queue is full), before the final drain.
    let sched = writer_sched().unwrap_or_default();
    let (w_cpu, w_wait) = (sched.0 - sched0.0, sched.1 - sched0.1);
    if !w.close(Duration::from_secs(3600)) {
        return Err("the writer did not finish within an hour".into());
    }
    let mut r = m.stop(n);
    let st = w.status();
    if st.dropped != 0 || st.written != n {
        return Err(format!("written {} dropped {} of {n}", st.written, st.dropped).into());
    }
    // Committed per second between tenths of the events sent.
    let rates: Vec<f64> = marks
        .windows(2)
        .map(|w| ((w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0).max(1e-9)).round())
        .collect();
    r["bytes"] = json!(std::fs::metadata(db)?.len());
    r["queue"] = json!(queue);
    r["batch"] = json!(batch);
    r["sent_s"] = json!(sent_s);
    r["close_s"] = json!(num(&r, "seconds") - sent_s);
    r["queue_full_waits"] = json!(waits);
    r["feeder_cpu_s"] = json!(feeder_cpu);
    r["writer_cpu_s"] = json!(w_cpu);
    r["writer_runqueue_s"] = json!(w_wait);
    r["writer_blocked_s"] = json!(sent_s - w_cpu - w_wait);
    r["committed_per_s_by_tenth"] = json!(rates);
    Ok((r, host.stats))
}

/// `Row::from_ecs` on up to 1M events, minus nothing: compare with generation only.
fn rows_only(pools: &Pools, n: u64, end_us: u64) -> Value {
    let n = n.min(1_000_000);
    let mut host = Host::new(pools, n, end_us);
    let m = Meter::start();
    for _ in 0..n {
        std::hint::black_box(Row::from_ecs(&host.next_event()));
    }
    let mut r = m.stop(n);
    r["events"] = json!(n);
    r
}

/// Runs `f` RUNS times, or fewer once `BUDGET` has passed (at least once): rows it
/// returned, runs, first, median and p95 (nearest rank) in ms.
fn timed(name: &str, mut f: impl FnMut() -> Result<usize, StoreError>) -> Res<Value> {
    let mut ms = Vec::with_capacity(RUNS);
    let mut rows = 0;
    let t0 = Instant::now();
    while ms.len() < RUNS && (ms.is_empty() || t0.elapsed() < BUDGET) {
        let t = Instant::now();
        rows = f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let first = ms[0];
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let q = json!({
        "query": name,
        "rows": rows,
        "runs": n,
        "first_ms": first,
        "median_ms": (ms[(n - 1) / 2] + ms[n / 2]) / 2.0,
        "p95_ms": ms[(n * 95).div_ceil(100) - 1],
    });
    eprintln!("query: {q}");
    Ok(q)
}

fn closest(counts: &[u32], from: usize, want: u32) -> usize {
    (from..counts.len())
        .min_by_key(|i| counts[*i].abs_diff(want))
        .unwrap_or(from)
}

fn since_1h() -> i64 {
    let t = SystemTime::now() - Duration::from_secs(3600);
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn nodes(t: &Option<Tree>) -> usize {
    fn count(n: &custos_store::ProcessNode) -> usize {
        1 + n.children.iter().map(count).sum::<usize>()
    }
    t.as_ref().map_or(0, |t| t.ancestors.len() + count(&t.node))
}

fn queries(db: &Path, pools: &Pools, s: &Stats) -> Res<Vec<Value>> {
    let pid = closest(&s.per_pid, FIRST_PID as usize, 400) as i64;
    let exe = closest(&s.per_sha, CORE_EXES, 400);
    let lib = closest(&s.per_lib, 1, 2000);
    let exact = pools.libs[lib].clone();
    let (tree_pid, shell_pid) = s.tree_pids();
    let r = Reader::open(db)?;
    let last = r.last_id()?;
    let latest = |f: Filter, limit: Option<u64>| {
        let r = &r;
        move || r.latest(&f, limit).map(|(rows, _)| rows.len())
    };
    let kinds = |k: &str| vec![k.to_owned()];
    let mut out = vec![timed("Reader::open", || Reader::open(db).map(|_| 0))?];
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so";
    // The most common program: one in eight decisions.
    let top = (CORE_EXES..s.per_sha.len())
        .max_by_key(|i| s.per_sha[*i])
        .unwrap_or(CORE_EXES);
    let q = |name: String, limit: u64, set: &dyn Fn(&mut Filter)| {
        let mut f = Filter::default();
        set(&mut f);
        (name, f, limit)
    };
    let (n_exe, n_top) = (s.per_sha[exe], s.per_sha[top]);
    let simple = vec![
        q("newest 100".into(), 100, &|_| {}),
        q("--kind exec, newest 100".into(), 100, &|f| {
            f.kinds = kinds("exec")
        }),
        q("--outcome deny, newest 100".into(), 100, &|f| {
            f.outcome = Some(Outcome::Deny)
        }),
        q(
            format!("--pid {pid} ({} events)", s.per_pid[pid as usize]),
            1000,
            &|f| f.pid = Some(pid),
        ),
        q(
            format!("--sha256, a program ({n_exe} events)"),
            1000,
            &|f| f.sha256 = Some(pools.exes[exe].sha.clone()),
        ),
        q(
            format!("--sha256, the most common program ({n_top} events)"),
            1000,
            &|f| f.sha256 = Some(pools.exes[top].sha.clone()),
        ),
        q(
            format!("--path 'libc.so*' ({} events), newest 100", s.per_lib[0]),
            100,
            &|f| f.path_glob = Some(format!("{libc}*")),
        ),
        q(format!("--path {libc}.6 (exact), newest 100"), 100, &|f| {
            f.path_glob = Some(format!("{libc}.6"))
        }),
        q(
            format!("--path a library (exact, {} events)", s.per_lib[lib]),
            1000,
            &|f| f.path_glob = Some(exact.clone()),
        ),
    ];
    for (name, f, limit) in simple {
        let name = if limit == 1000 {
            format!("{name}, limit 1000")
        } else {
            name
        };
        out.push(timed(&name, latest(f, Some(limit)))?);
    }
    out.push(timed("--since 1h, newest 100", || {
        let f = Filter {
            since_us: Some(since_1h()),
            ..Filter::default()
        };
        r.latest(&f, Some(100)).map(|(rows, _)| rows.len())
    })?);
    out.push(timed("--kind process --since 1h, all", || {
        let f = Filter {
            since_us: Some(since_1h()),
            kinds: kinds("process"),
            ..Filter::default()
        };
        r.latest(&f, None).map(|(rows, _)| rows.len())
    })?);
    out.push(timed("after(last_id - 1000) (--follow)", || {
        r.after(&Filter::default(), last - 1000, 1000)
            .map(|v| v.len())
    })?);
    let name = format!(
        "tree {tree_pid} ({} children)",
        s.children[tree_pid as usize]
    );
    out.push(timed(&name, || {
        r.tree(&TreeKey::Pid(tree_pid.into())).map(|t| nodes(&t))
    })?);
    // Loading a tree costs about the same per node: estimate the shell's before loading it.
    let small = &out[out.len() - 1];
    let per_node = num(small, "median_ms") / 1e3 / num(small, "rows").max(1.0);
    let shell_children = s.children[shell_pid as usize];
    let est = per_node * (f64::from(shell_children.min(2000)) + 4.0);
    let name = format!("tree {shell_pid} (shell, {shell_children} children)");
    if est < TREE_LIMIT_S {
        out.push(timed(&name, || {
            r.tree(&TreeKey::Pid(shell_pid.into())).map(|t| nodes(&t))
        })?);
    } else {
        eprintln!("query: {name}: skipped, about {est:.0} s at {per_node:.2} s per node");
        out.push(json!({"query": name, "skipped": true, "estimate_s": est}));
    }
    out.push(timed("count()", || r.count().map(|c| c as usize))?);
    Ok(out)
}

fn main() -> Res<()> {
    let a = args()?;
    std::fs::create_dir_all(&a.dir)?;
    let db = a.dir.join("events.db");
    if db.exists() {
        return Err(format!("{} exists; remove it or pick another --dir", db.display()).into());
    }
    let n = a.events;
    let pools = Pools::new();
    let end_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
    eprintln!("generating {n} events (not stored)");
    let gen = generate_only(&pools, n, end_us);
    eprintln!("generate only: {gen}\nJSON lines");
    let jl = json_lines(&pools, n, end_us, &a.dir.join("events.jsonl"))?;
    eprintln!("JSON lines: {jl}\nstore");
    let (st, stats) = store(&pools, n, end_us, &db)?;
    eprintln!("store: {st}\nRow::from_ecs");
    let rows = rows_only(&pools, n, end_us);
    let qs = queries(&db, &pools, &stats)?;
    report(n, &gen, &jl, &st, &rows, &qs);
    let s = &stats;
    let all = json!({
        "events": n,
        "mix": {"image": s.kinds[0], "process": s.kinds[1], "exec": s.kinds[2],
                "injection": s.kinds[3], "deny": s.denies},
        "generate": gen, "json_lines": jl, "store": st, "row_from_ecs": rows, "queries": qs,
    });
    println!("\n{all}");
    Ok(())
}
