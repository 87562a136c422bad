#!/usr/bin/env bash
# Exec latency benchmark: bare vs custos (warm cache, cache misses) vs fapolicyd 1.1.7.
#
#   sudo bench/exec.sh                      # defaults below
#   sudo N=5000 ROUNDS=9 OUT_DIR=/tmp/bench bench/exec.sh   # override, keep raw results
#
# Environment:
#   N        execs per run for the same-file scenarios      (default 2000)
#   N_MISS   execs per run for the fresh-copy scenarios     (default 500)
#   ROUNDS   interleaved rounds; results are medians        (default 7)
#   WARMUP   hyperfine warmup execs per run                 (default 50)
#   FS_TYPE  filesystem the test program lives on: ramfs or tmpfs (default ramfs, see below)
#   SKIP_FAPOLICYD=1   skip the fapolicyd scenarios
#   RESULTS_MD=FILE    also write the markdown result table to FILE
#   CUSTOS_BIN=FILE    benchmark this custos binary instead of building the workspace
#   OUT_DIR=DIR        keep the raw hyperfine JSON, environment and table in DIR
#   QUIET_BUSY  before each run, wait until other load is below this many CPUs  (default 0.3)
#   QUIET_WAIT  ... but at most this many seconds per run                       (default 120)
#   QUIET_BUDGET  and at most this many seconds of such waiting in total        (default 300)
#   NOISY_BUSY  a run during which more than this many CPUs were busy is redone (default 1.35;
#               the benchmark itself keeps ~1.0 CPU busy)
#   RETRIES     how many times a noisy run is redone                            (default 2)
#
# Each round runs, in an order rotated per round to spread drift:
#   (custos runs with the eBPF sensor off: this script measures the fanotify loop)
#   bare      no agent: exec the same file N times, then N_MISS fresh copies
#   custos    custos run (monitor, watching only the bench mount): same file ("warm": custos
#             places a kernel ignore mark after the first allow) and fresh copies ("miss": a new
#             inode each exec, so every exec is held, hashed and answered from user space)
#   custos_ucache  the same file with `kernel_cache = false`: no ignore marks, every exec is
#             held and answered from custos's user-space cache
#   fapolicyd fapolicyd with the single rule `allow perm=any all : all`, same two workloads
# In the bare and custos phases a paired A/B also runs: execs alternate between the bench file
# and a copy on a second, unwatched mount, which resolves the few-µs cost of the warm path.
# Overheads are paired per round (scenario mean - bare mean of the same round), then the median
# over rounds is reported, with ratio = custos overhead / fapolicyd overhead on the same workload.
# The same is done with hyperfine's per-run median, which a few long stalls of a shared VM move
# less. The warm-cache cost is below what separate hyperfine runs can resolve on a small VM, so
# the last line also divides the paired A/B cost by fapolicyd's overhead.
#
# Why ramfs by default: fapolicyd selects what to watch only by filesystem type (watch_fs), so
# watch_fs=tmpfs would also put fapolicyd in front of every other tmpfs on the host (/dev/shm,
# other people's test mounts). The bench mount is the only ramfs, so fapolicyd sees exactly what
# custos sees. Both are in-memory page-cache filesystems; FS_TYPE=tmpfs is supported.
#
# The machine is left as found: agents stopped, mounts removed, fapolicyd config/db/log restored.
#
# Helpers shared with bench/process.sh and bench/files.sh (logging, stopping processes, package
# install, waiting for a quiet machine, the rotated rounds) are in bench/lib.sh; the fapolicyd
# setup, start and teardown (shared with bench/files.sh) in bench/fapolicyd.sh. This script
# sources both.
set -euo pipefail

N=${N:-2000}
N_MISS=${N_MISS:-500}
ROUNDS=${ROUNDS:-7}
WARMUP=${WARMUP:-50}
FS_TYPE=${FS_TYPE:-ramfs}
SKIP_FAPOLICYD=${SKIP_FAPOLICYD:-0}
RESULTS_MD=${RESULTS_MD:-}
OUT_DIR=${OUT_DIR:-}
QUIET_BUSY=${QUIET_BUSY:-0.3}
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_BUDGET=${QUIET_BUDGET:-300}
NOISY_BUSY=${NOISY_BUSY:-1.35}
RETRIES=${RETRIES:-2}
NCPU=$(nproc)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=fapolicyd.sh
. "$(dirname "$0")/fapolicyd.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root (fanotify permission events, mount)"
[[ $FS_TYPE == ramfs || $FS_TYPE == tmpfs ]] || die "FS_TYPE must be ramfs or tmpfs"
positive_ints N N_MISS ROUNDS WARMUP QUIET_WAIT QUIET_BUDGET

# ---------------------------------------------------------------- state for cleanup
TMP=""
MNT=""
TWIN=""
CUSTOS_PID=""
POLICY_RC_CREATED=0     # the fapolicyd state is in bench/fapolicyd.sh

cleanup() {
    local rc=$?
    set +e
    [[ -n $CUSTOS_PID ]] && stop_pid "$CUSTOS_PID" custos
    fapolicyd_cleanup
    ((POLICY_RC_CREATED)) && rm -f /usr/sbin/policy-rc.d
    [[ -n $MNT ]] && mountpoint -q "$MNT" && umount "$MNT"
    [[ -n $TWIN ]] && mountpoint -q "$TWIN" && umount "$TWIN"
    [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
# A running fapolicyd (not started by us) would distort every scenario, and its config is not ours.
fapolicyd_refuse_running

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v python3 >/dev/null || need+=(python3)
if [[ $SKIP_FAPOLICYD != 1 ]] && ! dpkg -s fapolicyd >/dev/null 2>&1; then need+=(fapolicyd); fi
if ((${#need[@]})); then
    log "installing ${need[*]}"
    # Debian's fapolicyd ships `deny_audit perm=execute all : all`; on a systemd host the package
    # would start it on install (apt_install keeps it from doing so).
    apt_install "${need[@]}"
    # If it started anyway (it was not running before we installed it), stop it.
    stop_started fapolicyd || die "cannot stop the fapolicyd the install started"
fi

custos_binary

TMP=$(mktemp -d /tmp/custos-bench.XXXXXX)
# Our own copy, so a concurrent rebuild cannot swap the binary mid-run.
CUSTOS=$TMP/custos
cp "$CUSTOS_BIN" "$CUSTOS"
MNT=$TMP/mnt
TWIN=$TMP/twin # a second mount of the same type that custos does not watch (paired A/B)
mkdir -p "$MNT" "$TWIN" "$TMP/json" "$TMP/state"
for m in "$MNT" "$TWIN"; do
    if [[ $FS_TYPE == tmpfs ]]; then
        mount -t tmpfs -o size=512m tmpfs "$m"
    else
        mount -t ramfs ramfs "$m"
    fi
done
# The test program: a small dynamically linked ELF. Its interpreter and libc stay on / (not
# watched by either agent), so each exec raises exactly one exec permission event here.
cp /bin/true "$MNT/true"
cp /bin/true "$TWIN/true"
cp /bin/true "$TMP/true.src"
cp /bin/true "$MNT/fresh"
# custos does not cache or mark an allow for a file whose ctime is under 2 s old (racy
# timestamps), so let the warm-scenario files age before anything is timed.
sleep 2.1
# "Fresh copy": a new inode under the same name before each timed exec (cp + rename).
PREPARE="sh -c 'cp $TMP/true.src $MNT/fresh.tmp && mv -f $MNT/fresh.tmp $MNT/fresh'"

# ---------------------------------------------------------------- environment
CUSTOS_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
CUSTOS_DIRTY=$(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | wc -l)
FAPO_VER=$(dpkg-query -W -f='${Version}' fapolicyd 2>/dev/null || echo none)
log "environment"
{
    env_host
    echo "custos:      $CUSTOS_REV (+ uncommitted changes in $CUSTOS_DIRTY files under crates/ Cargo.*)"
    echo "hyperfine:   $(hyperfine --version | awk '{print $2}')"
    echo "fapolicyd:   $FAPO_VER"
    echo "filesystem:  $FS_TYPE at $MNT"
    echo "runs:        N=$N N_MISS=$N_MISS WARMUP=$WARMUP ROUNDS=$ROUNDS"
    echo "binary:      $CUSTOS_BIN (sha256 $(sha256sum "$CUSTOS" | cut -c1-12))"
    echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
} | tee "$TMP/env.txt" >&2

# ---------------------------------------------------------------- measurement helpers
# Two vCPUs shared with whatever else runs here (builds, tests): wait for a quiet machine before
# each run (wait_quiet), measure how many CPUs were busy during it (cpu_sample, busy_since; all in
# bench/lib.sh), and redo runs that were disturbed.
hf() { # name round runs [extra hyperfine args...] command
    local name=$1 round=$2 runs=$3 attempt t0 i0
    shift 3
    for ((attempt = 0; ; attempt++)); do
        wait_quiet
        cpu_sample
        t0=$CPU_T i0=$CPU_I
        hyperfine -N --style basic --warmup "$WARMUP" --runs "$runs" \
            --export-json "$TMP/json/$name.r$round.json" "$@" >&2
        busy_since "$t0" "$i0"
        echo "$BUSY" >"$TMP/json/$name.r$round.busy"
        less_than "$NOISY_BUSY" "$BUSY" || break
        ((attempt < RETRIES)) || { echo "warning: $name round $round noisy ($BUSY CPUs busy); kept" >&2; break; }
        echo "$name round $round was disturbed ($BUSY CPUs busy); redoing it" >&2
    done
    echo "$(date -u +%T) $name round $round: $BUSY CPUs busy during the run" >&2
}
same_file() { hf "$1" "$2" "$N" "$MNT/true"; }
fresh_copy() { hf "$1" "$2" "$N_MISS" --prepare "$PREPARE" "$MNT/fresh"; }

# Paired A/B, alternating exec by exec: the bench file vs the same program on the unwatched twin
# mount. Drift cancels pair by pair, so a cost of a few µs (the warm path) can be resolved; the
# bare round gives the difference between the two mounts with no agent at all.
pair_ab() { # name round
    wait_quiet
    python3 - "$MNT/true" "$TWIN/true" "$N" "$WARMUP" >"$TMP/json/$1.r$2.pair" <<'PY'
import json, os, statistics as st, sys, time
a, b, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def run(p):
    t0 = time.perf_counter_ns()
    os.waitpid(os.posix_spawn(p, [p], {}), 0)
    return time.perf_counter_ns() - t0
for _ in range(warm):
    run(a), run(b)
d = []
for i in range(n):
    if i % 2:
        tb, ta = run(b), run(a)
    else:
        ta, tb = run(a), run(b)
    d.append((ta - tb) / 1000)
d.sort()
k = len(d) // 20  # 5 % trimmed at each end: stalls of a shared VM are not the agent's
print(json.dumps({"median": round(st.median(d), 2), "trimmed_mean": round(st.mean(d[k:len(d) - k]), 2), "n": n}))
PY
    echo "$(date -u +%T) $1 round $2: watched - unwatched, per exec: $(cat "$TMP/json/$1.r$2.pair")" >&2
}

# ---------------------------------------------------------------- custos
# Monitor mode, no rules: every exec is allowed, so what is measured is holding + deciding.
# The fanotify verdict loop alone: the eBPF sensor is off, so execs from the A/B's unwatched
# mount are not held (bench/process.sh measures the sensor).
write_config() { # file [extra [exec] lines]
    cat >"$1" <<EOF
mode = "monitor"
socket = "$TMP/custos.sock"
state_dir = "$TMP/state"
events = "$TMP/events.json"
[telemetry]
process = false
[exec]
watch = ["$MNT"]
$2
EOF
}
CFG=$TMP/custos.toml
write_config "$CFG" ""
# Same, without kernel ignore marks: every exec reaches user space and is answered from custos's
# own cache (the kernel_cache = false setting, see docs/exec-control.md).
CFG_UCACHE=$TMP/custos-ucache.toml
write_config "$CFG_UCACHE" "kernel_cache = false"
UCACHE_OK=1

custos_counters() { "$CUSTOS" status --json --config "$1" >"$2"; }

custos_delta() { # label before.json after.json: what reached user space during one scenario
    python3 - "$@" <<'PY'
import json, sys
label, a, b = sys.argv[1], json.load(open(sys.argv[2]))["exec"], json.load(open(sys.argv[3]))["exec"]
keys = ["allowed", "denied", "cache_hits", "cache_misses", "hashed", "ignore_marks",
        "deadline_fallbacks", "errors"]
print(f"custos counters ({label}): " + ", ".join(f"{k} +{b.get(k, 0) - a.get(k, 0)}" for k in keys),
      file=sys.stderr)
PY
}

custos_start() { # config; returns 1 (agent stopped, log shown) if it does not come up in 10 s
    local cfg=$1 i
    "$CUSTOS" run --config "$cfg" 2>>"$TMP/custos.log" &
    CUSTOS_PID=$!
    for ((i = 0; i < 100; i++)); do
        kill -0 "$CUSTOS_PID" 2>/dev/null || break
        if "$CUSTOS" status --config "$cfg" >/dev/null 2>&1; then
            "$CUSTOS" status --config "$cfg" | sed -n '/^watched:/,/^decisions:/p' | sed '$d' >&2
            return 0
        fi
        sleep 0.1
    done
    tail -5 "$TMP/custos.log" >&2
    stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID=""
    return 1
}

run_custos() { # round
    local r=$1 c=$TMP/counters
    log "round $r: custos"
    custos_start "$CFG" || die "custos did not start"
    custos_counters "$CFG" "$c.0"
    same_file custos_warm "$r"
    pair_ab custos_ab "$r"
    custos_counters "$CFG" "$c.1"
    custos_delta "warm + paired A/B, $((2 * WARMUP + 2 * N)) execs of the watched file" "$c.0" "$c.1"
    fresh_copy custos_miss "$r"
    custos_counters "$CFG" "$c.2"
    custos_delta "miss, $((WARMUP + N_MISS)) execs" "$c.1" "$c.2"
    stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID=""
}

run_custos_ucache() { # round
    local r=$1 c=$TMP/counters
    ((UCACHE_OK)) || return 0
    log "round $r: custos, kernel_cache = false"
    if ! custos_start "$CFG_UCACHE"; then
        echo "custos did not start with kernel_cache = false (older binary?); scenario skipped" >&2
        UCACHE_OK=0
        return 0
    fi
    custos_counters "$CFG_UCACHE" "$c.3"
    same_file custos_ucache "$r"
    custos_counters "$CFG_UCACHE" "$c.4"
    custos_delta "user-space cache, $((WARMUP + N)) execs" "$c.3" "$c.4"
    stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID=""
}

# ---------------------------------------------------------------- fapolicyd (setup: bench/fapolicyd.sh)
fapolicyd_up() { # started, it marked the bench mount, and the test program runs under it
    fapolicyd_start "$MNT" || return 1
    "$MNT/true" || { FAPO_WHY="exec of $MNT/true failed under fapolicyd"; return 1; }
}

run_fapolicyd() { # round
    local r=$1
    ((FAPO_OK)) || return 0
    log "round $r: fapolicyd"
    if ! fapolicyd_up; then
        echo "FAPOLICYD FAILED: $FAPO_WHY" >&2
        fapolicyd_stop
        FAPO_OK=0
        return 0
    fi
    same_file fapolicyd "$r"
    fresh_copy fapolicyd_fresh "$r"
    fapolicyd_stop
    # Expected: two permission events per exec (the kernel raises OPEN_EXEC_PERM and OPEN_PERM
    # for an exec open; fapolicyd marks both), one per prepare copy (cp opens the new file).
    # Redone runs add to it.
    echo "fapolicyd expected >= $((2 * (2 * WARMUP + N + N_MISS + 1) + WARMUP + N_MISS)) decisions this round" >&2
}

run_bare() {
    log "round $1: bare"
    same_file bare "$1"
    pair_ab bare_ab "$1"
    fresh_copy bare_fresh "$1"
}

if [[ $SKIP_FAPOLICYD == 1 ]]; then
    FAPO_WHY="skipped (SKIP_FAPOLICYD=1)"
elif ! command -v fapolicyd >/dev/null; then
    FAPO_WHY="fapolicyd is not installed"
else
    fapolicyd_setup "$FS_TYPE"
    FAPO_OK=1
fi

# ---------------------------------------------------------------- rounds
run_rounds bare custos custos_ucache fapolicyd
restore_fapolicyd
((FAPO_OK)) || echo "FAPOLICYD SCENARIOS NOT MEASURED: $FAPO_WHY" >&2
echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (after); waited ${QUIET_WAITED}s for quiet" | tee -a "$TMP/env.txt" >&2

# ---------------------------------------------------------------- report
log "results"
python3 - "$TMP/json" "$ROUNDS" "$TMP/results.md" "$FAPO_WHY" <<'PY'
import json, os, statistics as st, sys

jdir, rounds, out_md, fapo_why = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def per_round(name, field):
    """Per-round hyperfine statistic in µs (None where the round has no data)."""
    v = []
    for r in range(1, rounds + 1):
        p = os.path.join(jdir, f"{name}.r{r}.json")
        v.append(json.load(open(p))["results"][0][field] * 1e6 if os.path.exists(p) else None)
    return v

def busy(name):
    out = []
    for r in range(1, rounds + 1):
        p = os.path.join(jdir, f"{name}.r{r}.busy")
        out.append(open(p).read().strip() if os.path.exists(p) else "-")
    return out

rows = [  # label, result name, baseline, fapolicyd counterpart
    ("bare (same file)", "bare", None, None),
    ("custos, warm cache (same file)", "custos_warm", "bare", "fapolicyd"),
    ("custos, user-space cache hit (kernel_cache = false)", "custos_ucache", "bare", "fapolicyd"),
    ("fapolicyd (same file)", "fapolicyd", "bare", None),
    ("bare (fresh copy each exec)", "bare_fresh", None, None),
    ("custos, cache miss (fresh copy)", "custos_miss", "bare_fresh", "fapolicyd_fresh"),
    ("fapolicyd (fresh copy)", "fapolicyd_fresh", "bare_fresh", None),
]
stat = {s: {f: per_round(f, s) for _, f, _, _ in rows} for s in ("mean", "median")}

def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None

# Overhead is paired within a round (same minutes, same machine state), then the median over
# rounds is taken. Done for hyperfine's mean (the headline) and, as a check against the long
# tail of a shared VM, for hyperfine's median.
def overheads(s, f, base):
    return [a - b if a is not None and b is not None else None
            for a, b in zip(stat[s][f], stat[s][base])]

ov = {s: {f: med(overheads(s, f, b)) for _, f, b, _ in rows if b} for s in stat}

def ratio(s, f, fap):
    a, b = ov[s].get(f), ov[s].get(fap)
    return a / b if a is not None and b is not None and b > 0 else None

def fmt(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)

print("per round: mean µs/exec [CPUs busy during the run]")
for _, f, _, _ in rows:
    cells = [f"{fmt(m, '7.1f')} [{b}]" for m, b in zip(stat["mean"][f], busy(f))]
    print(f"  {f:16s} " + "  ".join(cells))
print("per round: median µs/exec")
for _, f, _, _ in rows:
    print(f"  {f:16s} " + "  ".join(fmt(m, "7.1f") for m in stat["median"][f]))
print("per round: overhead µs vs bare of the same round (means)")
for _, f, base, _ in rows:
    if base:
        print(f"  {f:16s} " + "  ".join(fmt(x, "+7.1f") for x in overheads("mean", f, base)))

lines = ["| scenario | mean µs/exec | overhead µs vs bare | ratio custos/fapolicyd "
         "| median µs/exec | overhead (medians) | ratio (medians) |",
         "|---|---:|---:|---:|---:|---:|---:|"]
for label, f, base, fap in rows:
    cells = [label]
    for s in ("mean", "median"):
        cells.append(fmt(med(stat[s][f])))
        cells.append("—" if base is None else fmt(ov[s].get(f), "+.1f"))
        cells.append("—" if fap is None else fmt(ratio(s, f, fap), ".2f"))
    lines.append("| " + " | ".join(cells) + " |")
table = "\n".join(lines)
print()
print(table)
print()
for s in ("mean", "median"):
    r = ratio(s, "custos_warm", "fapolicyd")
    if r is None:
        why = fapo_why or "fapolicyd overhead not positive"
        print(f"ratio custos warm overhead / fapolicyd overhead ({s}s): n/a ({why})")
        continue
    verdict = "meets" if r <= 0.2 else "misses"
    note = "; custos's overhead is below the noise floor" if r <= 0 else ""
    print(f"ratio custos warm overhead / fapolicyd overhead ({s}s): {r:.2f} "
          f"({verdict} the <= 0.20 aim{note})")

def pairs(name, field):
    v = []
    for r in range(1, rounds + 1):
        p = os.path.join(jdir, f"{name}.r{r}.pair")
        v.append(json.load(open(p))[field] if os.path.exists(p) else None)
    return v

print()
print("paired A/B, alternating per exec (watched bench file - same file on an unwatched mount):")
ab = {}
for field in ("median", "trimmed_mean"):
    c, b = pairs("custos_ab", field), pairs("bare_ab", field)
    net = [x - y if x is not None and y is not None else None for x, y in zip(c, b)]
    ab[field] = med(net)
    print(f"  {field:12s} custos running {fmt(med(c), '+.1f')} µs, no agent {fmt(med(b), '+.1f')} µs, "
          f"custos warm cost {fmt(ab[field], '+.1f')} µs  (per round: "
          + " ".join(fmt(x, "+.1f") for x in net) + ")")
fap = ov["mean"].get("fapolicyd")
if ab["median"] is not None and fap is not None and fap > 0:
    verdict = "meets" if ab["median"] / fap <= 0.2 else "misses"
    print(f"ratio custos warm cost (paired A/B median) / fapolicyd overhead (means): "
          f"{ab['median'] / fap:.3f} ({verdict} the <= 0.20 aim)")
with open(out_md, "w") as fh:
    fh.write(table + "\n")
PY
if [[ -n $RESULTS_MD ]]; then cp "$TMP/results.md" "$RESULTS_MD"; fi
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp -r "$TMP/json" "$TMP/env.txt" "$TMP/results.md" "$OUT_DIR/"
    echo "raw results in $OUT_DIR" >&2
fi
