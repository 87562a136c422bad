#!/usr/bin/env bash
# Process-sensor benchmark: an exec storm with no agent, with custos's eBPF process sensor, and
# with auditd logging every execve.
#
#   sudo bench/process.sh                                  # defaults below
#   sudo N=10000 ROUNDS=3 OUT_DIR=/tmp/pbench bench/process.sh   # smaller, keep raw results
#
# Environment:
#   N        fork + exec + wait of /bin/true per storm              (default 20000)
#   ROUNDS   interleaved rounds; results are medians                (default 5)
#   SKIP_AUDITD=1      skip the auditd scenario
#   RESULTS_MD=FILE    also write the markdown result table to FILE
#   CUSTOS_BIN=FILE    benchmark this custos binary instead of building the workspace
#   OUT_DIR=DIR        keep the raw per-run results (JSON lines), environment and table in DIR
#   DRAIN_WAIT  after a storm, wait at most this many seconds for the agent to go idle (default 120)
#   QUIET_BUSY  before each storm, wait until other load is below this many CPUs  (default 0.3)
#   QUIET_WAIT  ... but at most this many seconds per storm                       (default 120)
#   QUIET_BUDGET  and at most this many seconds of such waiting in total          (default 300)
#
# The storm is a small C driver compiled here with `cc`: N times fork(), execv("/bin/true") in
# the child, waitpid() in the parent, timed with CLOCK_MONOTONIC (a shell loop is too slow and
# too noisy). Each round runs, in an order rotated per round to spread drift:
#   bare    no agent
#   custos  `custos run` in monitor mode with [telemetry] process = true, images = true and
#           exec.unseen = "memfd"; [exec] watches only a private tmpfs this script mounts, and
#           /bin/true is not on it, so no fanotify verdict is part of the measurement: what is
#           measured is the eBPF sensor (fork/exec/exit/image-load records) and the agent
#           turning them into events in its event file.
#   auditd  auditd with the single rule `-a always,exit -F arch=b64 -S execve -k custosbench`.
#           If auditd is not running, the script starts its own (`auditd -n -c DIR`) with
#           Debian's auditd.conf except that the log goes to the temp dir (same filesystem as
#           custos's event file, no rotation), and with Debian's packaged rule-file settings
#           (-b 8192 -f 1 --backlog_wait_time 60000). A running auditd is used as it is.
#           auditd is installed with apt if `auditctl` is missing; if that fails the scenario
#           is skipped, as with SKIP_AUDITD=1.
# Per storm it records: the storm's wall time (from the driver); the agent's CPU time (utime +
# stime of all its threads, /proc/PID/stat fields 14 + 15; custos plus its guardian child;
# for auditd also the kauditd kernel thread, reported separately) from just before the storm
# until the agent has gone idle again (its backlog drained, DRAIN_WAIT at most); how many of
# the N execs reached the agent's output (custos: `custos.process` `exec` events whose parent
# is the driver; auditd: SYSCALL records with key "custosbench" whose ppid is the driver); and
# the agent's own loss counter (custos status `.telemetry.lost`, auditctl -s `lost`).
# The slowdown is the storm time divided by the bare storm of the same round; the median over
# rounds is reported. CPU work the agents cause inside the exec-ing tasks (eBPF programs, the
# kernel's audit record building) is not in the agent CPU columns; it shows in the storm time.
#
# The machine is left as found: agents stopped, the audit rule removed, the kernel audit
# settings (enabled, backlog limit, backlog wait time, failure mode) restored, the mount removed.
# An auditd installed by the script stays installed (as bench/exec.sh leaves fapolicyd).
#
# Helpers shared with bench/exec.sh (logging, stopping processes, package install, waiting for a
# quiet machine, the rotated rounds) are in bench/lib.sh; the auditd setup, start and teardown are
# in bench/auditd.sh. This script sources both.
set -euo pipefail

N=${N:-20000}
ROUNDS=${ROUNDS:-5}
SKIP_AUDITD=${SKIP_AUDITD:-0}
RESULTS_MD=${RESULTS_MD:-}
OUT_DIR=${OUT_DIR:-}
DRAIN_WAIT=${DRAIN_WAIT:-120}
QUIET_BUSY=${QUIET_BUSY:-0.3}
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_BUDGET=${QUIET_BUDGET:-300}
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
RULE=(always,exit -F arch=b64 -S execve -k custosbench)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=auditd.sh
. "$(dirname "$0")/auditd.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root (eBPF, audit, mount)"
positive_ints N ROUNDS DRAIN_WAIT QUIET_WAIT QUIET_BUDGET
command -v cc >/dev/null || die "needs a C compiler (cc)"
command -v python3 >/dev/null || die "needs python3"

# ---------------------------------------------------------------- state for cleanup
TMP=""
MNT=""
CUSTOS_PID=""
POLICY_RC_CREATED=0     # the audit state is in bench/auditd.sh

cleanup() {
    local rc=$?
    set +e
    [[ -n $CUSTOS_PID ]] && stop_pid "$CUSTOS_PID" custos
    audit_restore
    ((POLICY_RC_CREATED)) && rm -f /usr/sbin/policy-rc.d
    [[ -n $MNT ]] && mountpoint -q "$MNT" && umount "$MNT"
    [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
if [[ $SKIP_AUDITD == 1 ]]; then
    AUDIT_WHY="skipped (SKIP_AUDITD=1)"
elif ! command -v auditctl >/dev/null; then
    auditd_install
fi

custos_binary

TMP=$(mktemp -d /tmp/custos-pbench.XXXXXX)
# Our own copy, so a concurrent rebuild cannot swap the binary mid-run.
CUSTOS=$TMP/custos
cp "$CUSTOS_BIN" "$CUSTOS"
MNT=$TMP/mnt
mkdir -p "$MNT" "$TMP/state" "$TMP/audit"
mount -t tmpfs -o size=16m tmpfs "$MNT"
: >"$TMP/raw.jsonl"

# ---------------------------------------------------------------- the storm driver
cat >"$TMP/storm.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 0, failed = 0;
    char *const av[] = {"true", NULL};
    struct timespec a, b;
    if (n <= 0) return 2;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); return 1; }
        if (p == 0) { execv("/bin/true", av); _exit(127); }
        int st;
        if (waitpid(p, &st, 0) < 0) { perror("waitpid"); return 1; }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%d %.6f %ld\n", (int)getpid(),
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9, failed);
    return failed != 0;
}
C
cc -O2 -o "$TMP/storm" "$TMP/storm.c"

# ---------------------------------------------------------------- helpers (no exec inside a storm window)
STORM_PID="" STORM_WALL="" STORM_FAILED=""
storm() {
    local out
    out=$("$TMP/storm" "$N") || die "storm driver failed: $out"
    read -r STORM_PID STORM_WALL STORM_FAILED <<<"$out"
}

# ---------------------------------------------------------------- custos
CFG=$TMP/custos.toml
EVENTS=$TMP/events.json
cat >"$CFG" <<EOF
mode = "monitor"
socket = "$TMP/custos.sock"
state_dir = "$TMP/state"
events = "$EVENTS"
[telemetry]
process = true
images = true
[exec]
watch = ["$MNT"]
unseen = "memfd"
EOF

custos_start() {
    local i st=$TMP/status.json
    rm -f "$EVENTS"
    "$CUSTOS" run --config "$CFG" 2>>"$TMP/custos.log" &
    CUSTOS_PID=$!
    for ((i = 0; i < 200; i++)); do
        kill -0 "$CUSTOS_PID" 2>/dev/null || break
        if "$CUSTOS" status --json --config "$CFG" >"$st" 2>/dev/null \
            && [[ $(status_field "$st" telemetry.process) == running ]]; then
            return 0
        fi
        sleep 0.1
    done
    echo "custos process telemetry did not come up in 20 s: $(status_field "$st" telemetry.process 2>/dev/null)" >&2
    tail -5 "$TMP/custos.log" >&2
    die "custos did not start"
}

run_custos() { # round
    local r=$1 pids t0 i0 k0 k1 k2 off
    log "round $r: custos"
    custos_start
    # The agent and its guardian child (if any).
    pids="$CUSTOS_PID $(pgrep -P "$CUSTOS_PID" | tr '\n' ' ' || true)"
    wait_quiet
    "$CUSTOS" status --json --config "$CFG" >"$TMP/status.0.json"
    off=$(stat -c %s "$EVENTS" 2>/dev/null || echo 0)
    # shellcheck disable=SC2086
    { ticks $pids; k0=$TICKS; }
    cpu_sample
    t0=$CPU_T i0=$CPU_I
    storm
    # shellcheck disable=SC2086
    { ticks $pids; k1=$TICKS; }
    busy_since "$t0" "$i0"
    # shellcheck disable=SC2086
    wait_drain $pids
    # shellcheck disable=SC2086
    { ticks $pids; k2=$TICKS; }
    "$CUSTOS" status --json --config "$CFG" >"$TMP/status.1.json"
    stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID=""
    # What reached the event file: exec events of the driver's children, and everything else.
    local counts
    counts=$(python3 - "$EVENTS" "$off" "$STORM_PID" <<'PY'
import json, sys
path, off, dpid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
execs, kids, lines, other = 0, set(), 0, {}
rows = []
with open(path, "rb") as fh:
    fh.seek(off)
    for raw in fh:
        lines += 1
        e = json.loads(raw)
        ev, p = e.get("event", {}), e.get("process", {})
        if (ev.get("module") == "custos.process" and ev.get("action") == "exec"
                and p.get("parent", {}).get("pid") == dpid):
            execs += 1
            kids.add(p.get("pid"))
        rows.append((ev.get("action"), p.get("pid")))
# Events about the driver's children, by action (fork/exec/exit/image loads ...).
for a, pid in rows:
    if pid in kids:
        other[a] = other.get(a, 0) + 1
print(execs, lines, ",".join(f"{k}:{v}" for k, v in sorted(other.items())))
PY
)
    local delivered lines per_child lost0 lost1 rec0 rec1 drop0 drop1
    read -r delivered lines per_child <<<"$counts"
    lost0=$(status_field "$TMP/status.0.json" telemetry.lost)
    lost1=$(status_field "$TMP/status.1.json" telemetry.lost)
    rec0=$(status_field "$TMP/status.0.json" telemetry.records)
    rec1=$(status_field "$TMP/status.1.json" telemetry.records)
    drop0=$(status_field "$TMP/status.0.json" events_dropped)
    drop1=$(status_field "$TMP/status.1.json" events_dropped)
    record scenario=custos round="$r" pid="$STORM_PID" wall="$STORM_WALL" failed="$STORM_FAILED" \
        busy="$BUSY" cpu_storm=$((k1 - k0)) cpu=$((k2 - k0)) drain="$DRAIN" \
        delivered="$delivered" generated="$N" lost=$((${lost1:-0} - ${lost0:-0})) \
        records=$((${rec1:-0} - ${rec0:-0})) dropped=$((${drop1:-0} - ${drop0:-0})) \
        event_lines="$lines" child_events="${per_child:-}" clk_tck="$CLK_TCK"
    echo "$(date -u +%T) custos round $r: storm ${STORM_WALL}s, agent CPU $(((k2 - k0) * 1000 / CLK_TCK)) ms" \
        "($(((k1 - k0) * 1000 / CLK_TCK)) ms during the storm, drained ${DRAIN}s after it)," \
        "exec events $delivered/$N, lost $((${lost1:-0} - ${lost0:-0})), records $((${rec1:-0} - ${rec0:-0})), $lines event lines" \
        "[child events: ${per_child:-none}], $BUSY CPUs busy" >&2
}

# ---------------------------------------------------------------- auditd (setup: bench/auditd.sh)
KAUDITD_PID=$(pgrep -x kauditd | head -1 || true)

run_auditd() { # round
    local r=$1 dpid k0 k1 k2 kk0 kk2 t0 i0 off=0 lost0 lost1 start_d start_t apid
    ((AUDIT_OK)) || return 0
    log "round $r: auditd"
    AUDIT_SAVED="$(audit_status enabled) $(audit_status failure) $(audit_status backlog_limit) $(audit_status backlog_wait_time)"
    if ((AUDIT_OWN)); then
        rm -f "$AUDIT_LOG"
        if ! auditd_start; then
            echo "AUDITD FAILED: $AUDIT_WHY" >&2
            audit_restore
            AUDIT_OK=0
            return 0
        fi
        # What Debian's packaged rules file sets besides the rules (/etc/audit/rules.d/audit.rules).
        auditctl -b 8192 >/dev/null
        auditctl -f 1 >/dev/null
        auditctl --backlog_wait_time 60000 >/dev/null
        auditctl -e 1 >/dev/null
        apid=$AUDITD_PID
    else
        apid=$(audit_status pid)
    fi
    auditctl -a "${RULE[@]}" >/dev/null
    AUDIT_RULE_ADDED=1
    wait_quiet
    [[ -n $AUDIT_LOG ]] && off=$(stat -c %s "$AUDIT_LOG" 2>/dev/null || echo 0)
    start_d=$(LC_ALL=C date +%x) start_t=$(LC_ALL=C date +%T)
    lost0=$(audit_status lost)
    ticks "$apid"; k0=$TICKS
    ticks "$KAUDITD_PID"; kk0=$TICKS
    cpu_sample
    t0=$CPU_T i0=$CPU_I
    storm
    ticks "$apid"; k1=$TICKS
    busy_since "$t0" "$i0"
    wait_drain "$apid" "$KAUDITD_PID"
    ticks "$apid"; k2=$TICKS
    ticks "$KAUDITD_PID"; kk2=$TICKS
    lost1=$(audit_status lost)
    auditctl -d "${RULE[@]}" >/dev/null
    AUDIT_RULE_ADDED=0
    local delivered lines
    if [[ -n $AUDIT_LOG ]]; then
        read -r delivered lines < <(python3 - "$AUDIT_LOG" "$off" "$STORM_PID" <<'PY'
import re, sys
path, off, dpid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n = lines = 0
with open(path, "rb") as fh:
    fh.seek(off)
    for raw in fh:
        lines += 1
        if (raw.startswith(b"type=SYSCALL ") and b'key="custosbench"' in raw
                and re.search(rb" ppid=%s " % dpid.encode(), raw) and b' comm="true"' in raw):
            n += 1
print(n, lines)
PY
)
    else # someone else's auditd: ask ausearch (it also reads rotated logs)
        delivered=$(LC_ALL=C ausearch -k custosbench -pp "$STORM_PID" --start "$start_d" "$start_t" \
            --raw 2>/dev/null | grep -c '^type=SYSCALL' || true)
        lines="-"
    fi
    if ((AUDIT_OWN)); then
        audit_restore
    else
        AUDIT_SAVED=""
    fi
    record scenario=auditd round="$r" pid="$STORM_PID" wall="$STORM_WALL" failed="$STORM_FAILED" \
        busy="$BUSY" cpu_storm=$((k1 - k0)) cpu=$((k2 - k0)) kcpu=$((kk2 - kk0)) drain="$DRAIN" \
        delivered="$delivered" generated="$N" lost=$((${lost1:-0} - ${lost0:-0})) \
        event_lines="$lines" clk_tck="$CLK_TCK"
    echo "$(date -u +%T) auditd round $r: storm ${STORM_WALL}s, auditd CPU $(((k2 - k0) * 1000 / CLK_TCK)) ms" \
        "($(((k1 - k0) * 1000 / CLK_TCK)) ms during the storm, drained ${DRAIN}s after it)," \
        "kauditd CPU $(((kk2 - kk0) * 1000 / CLK_TCK)) ms, SYSCALL records $delivered/$N," \
        "lost $((${lost1:-0} - ${lost0:-0})), $lines log lines, $BUSY CPUs busy" >&2
}

run_bare() { # round
    local r=$1 t0 i0
    log "round $r: bare"
    wait_quiet
    cpu_sample
    t0=$CPU_T i0=$CPU_I
    storm
    busy_since "$t0" "$i0"
    record scenario=bare round="$r" pid="$STORM_PID" wall="$STORM_WALL" failed="$STORM_FAILED" \
        busy="$BUSY" generated="$N"
    echo "$(date -u +%T) bare round $r: storm ${STORM_WALL}s, $BUSY CPUs busy" >&2
}

if [[ -z $AUDIT_WHY ]]; then
    if audit_setup; then AUDIT_OK=1; fi
fi

# ---------------------------------------------------------------- environment
CUSTOS_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
CUSTOS_DIRTY=$(git -C "$REPO" status --porcelain -- crates bpf Cargo.toml Cargo.lock 2>/dev/null | wc -l)
log "environment"
{
    env_host
    echo "custos:      $CUSTOS_REV (+ uncommitted changes in $CUSTOS_DIRTY files under crates/ bpf/ Cargo.*)"
    echo "binary:      $CUSTOS_BIN (sha256 $(sha256sum "$CUSTOS" | cut -c1-12))"
    auditd_env
    echo "runs:        N=$N ROUNDS=$ROUNDS"
    echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
} | tee "$TMP/env.txt" >&2

# ---------------------------------------------------------------- rounds
run_rounds bare custos auditd
((AUDIT_OK)) || echo "AUDITD SCENARIO NOT MEASURED: $AUDIT_WHY" >&2
{
    echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (after); waited ${QUIET_WAITED}s for quiet"
    if command -v auditctl >/dev/null; then
        echo "audit after: $(auditctl -s | tr '\n' ' ')"
        echo "rules after: $(auditctl -l | tr '\n' ';')"
    fi
} | tee -a "$TMP/env.txt" >&2

# ---------------------------------------------------------------- report
log "results"
python3 - "$TMP/raw.jsonl" "$TMP/results.md" "$N" "$AUDIT_WHY" <<'PY'
import json, statistics as st, sys

raw, out_md, n, audit_why = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = [json.loads(l) for l in open(raw) if l.strip()]
by = {}
for x in runs:
    by.setdefault(x["scenario"], {})[x["round"]] = x
bare = by.get("bare", {})

def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None

def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)

def ratios(s):
    return [x["wall"] / bare[r]["wall"] for r, x in sorted(by.get(s, {}).items()) if r in bare]

summary = {}
for s in ("bare", "custos", "auditd"):
    rs = by.get(s)
    if not rs:
        continue
    xs = [rs[r] for r in sorted(rs)]
    tck = lambda x, k: x[k] / x["clk_tck"] if k in x else None
    summary[s] = {
        "wall": med([x["wall"] for x in xs]),
        "slowdown": med(ratios(s)) if s != "bare" else None,
        "cpu": med([tck(x, "cpu") for x in xs]),
        "cpu_storm": med([tck(x, "cpu_storm") for x in xs]),
        "kcpu": med([tck(x, "kcpu") for x in xs]),
        "drain": med([x.get("drain") for x in xs]),
        "delivered": med([x.get("delivered") for x in xs]),
        "delivered_min": min((x["delivered"] for x in xs if "delivered" in x), default=None),
        "lost": med([x.get("lost") for x in xs]),
        "busy": med([float(x["busy"]) for x in xs]),
        "rounds": len(xs),
    }

print("per round: storm seconds (slowdown vs bare of the same round)")
for s in ("bare", "custos", "auditd"):
    rs = by.get(s, {})
    cells = []
    for r, x in sorted(rs.items()):
        ratio = f" ({x['wall'] / bare[r]['wall']:.2f}x)" if s != "bare" and r in bare else ""
        cells.append(f"{x['wall']:.2f}{ratio}")
    if cells:
        print(f"  {s:7s} " + "  ".join(cells))

lines = [
    "| scenario | storm s | slowdown vs bare | agent CPU s | agent CPU ms / 1000 execs "
    "| kernel thread CPU s | exec records delivered / generated | agent's loss counter "
    "| drain s after storm | CPUs busy in storm |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
labels = {"bare": "bare (no agent)", "custos": "custos (eBPF process + image events)",
          "auditd": "auditd (execve rule)"}
for s in ("bare", "custos", "auditd"):
    m = summary.get(s)
    if not m:
        continue
    agent = s != "bare"
    cpu_k = m["cpu"] * 1e6 / n if agent and m["cpu"] is not None else None
    if agent and m["delivered"] is not None:
        d = f"{m['delivered']:.0f} / {n} ({100 * m['delivered'] / n:.1f} %)"
        if m["delivered_min"] is not None and m["delivered_min"] != m["delivered"]:
            d += f", min {m['delivered_min']}"
    else:
        d = "—"
    lines.append("| " + " | ".join([
        labels[s],
        fmt(m["wall"], ".2f"),
        "—" if not agent else fmt(m["slowdown"], ".2f") + "×",
        "—" if not agent else fmt(m["cpu"], ".2f"),
        "—" if not agent else fmt(cpu_k, ".1f"),
        fmt(m["kcpu"], ".2f") + " (kauditd)" if s == "auditd" else "—",
        d,
        "—" if not agent else fmt(m["lost"], ".0f"),
        "—" if not agent else fmt(m["drain"], ".1f"),
        fmt(m["busy"], ".2f"),
    ]) + " |")
table = "\n".join(lines)
print()
print(table)
print()
c, a = summary.get("custos"), summary.get("auditd")
if c and a and c["slowdown"] and a["slowdown"]:
    line = f"ratio custos slowdown / auditd slowdown: {c['slowdown'] / a['slowdown']:.2f}"
    ca, aa = c["slowdown"] - 1, a["slowdown"] - 1
    line += f" (added time: custos {ca * 100:+.1f} %, auditd {aa * 100:+.1f} %"
    line += f", ratio {ca / aa:.2f})" if aa > 0 else ")"
    print(line)
else:
    print(f"ratio custos slowdown / auditd slowdown: n/a ({audit_why or 'no data'})")
with open(out_md, "w") as fh:
    fh.write(table + "\n")
PY
if [[ -n $RESULTS_MD ]]; then cp "$TMP/results.md" "$RESULTS_MD"; fi
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$TMP/raw.jsonl" "$TMP/env.txt" "$TMP/results.md" "$OUT_DIR/"
    cp "$TMP/custos.log" "$OUT_DIR/" 2>/dev/null || true
    echo "raw results in $OUT_DIR" >&2
fi
