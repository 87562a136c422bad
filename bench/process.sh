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
log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench/process.sh: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (eBPF, audit, mount)"
for v in N ROUNDS DRAIN_WAIT QUIET_WAIT QUIET_BUDGET; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
command -v cc >/dev/null || die "needs a C compiler (cc)"
command -v python3 >/dev/null || die "needs python3"

# ---------------------------------------------------------------- state for cleanup
TMP=""
MNT=""
CUSTOS_PID=""
AUDITD_PID=""           # an auditd this script started
AUDIT_RULE_ADDED=0
AUDIT_SAVED=""          # "enabled failure backlog_limit backlog_wait_time" before we changed them
POLICY_RC_CREATED=0

stop_pid() { # pid name: TERM, wait up to 10 s, then KILL
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "warning: $name (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

audit_status() { # field -> value from `auditctl -s`
    auditctl -s 2>/dev/null | awk -v k="$1" '$1 == k { print $2; exit }'
}

audit_restore() { # rule off, our auditd stopped, kernel settings back
    if ((AUDIT_RULE_ADDED)); then
        auditctl -d "${RULE[@]}" >/dev/null 2>&1 || echo "warning: could not remove the audit rule" >&2
        AUDIT_RULE_ADDED=0
    fi
    if [[ -n $AUDITD_PID ]]; then
        stop_pid "$AUDITD_PID" auditd
        AUDITD_PID=""
    fi
    if [[ -n $AUDIT_SAVED ]]; then
        local e f b w
        read -r e f b w <<<"$AUDIT_SAVED"
        { auditctl -f "$f" && auditctl -b "$b" && auditctl --backlog_wait_time "$w"; } >/dev/null 2>&1 \
            || echo "warning: could not restore audit failure/backlog settings" >&2
        auditctl -e "$e" >/dev/null 2>&1 || echo "warning: could not restore audit enabled=$e" >&2
        AUDIT_SAVED=""
    fi
}

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
AUDIT_WHY=""
if [[ $SKIP_AUDITD == 1 ]]; then
    AUDIT_WHY="skipped (SKIP_AUDITD=1)"
elif ! command -v auditctl >/dev/null; then
    log "installing auditd"
    # On a systemd host the package would start auditd on install; policy-rc.d 101 tells
    # invoke-rc.d/deb-systemd-invoke not to. The script starts its own when it needs one.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq auditd >/dev/null; then
        if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
        if pgrep -x auditd >/dev/null; then
            echo "auditd was started by its package install; stopping it" >&2
            if [[ -d /run/systemd/system ]]; then systemctl stop auditd || true; fi
            for pid in $(pgrep -x auditd); do stop_pid "$pid" auditd; done
        fi
    else
        AUDIT_WHY="apt-get install auditd failed"
    fi
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
    command -v auditctl >/dev/null || AUDIT_WHY=${AUDIT_WHY:-"auditctl still missing after install"}
fi

if [[ -n ${CUSTOS_BIN:-} ]]; then
    [[ -x $CUSTOS_BIN ]] || die "CUSTOS_BIN=$CUSTOS_BIN is not executable"
else
    log "building custos (cargo build --release -p custos)"
    (cd "$REPO" && cargo build --release -p custos) >&2
    CUSTOS_BIN=$REPO/target/release/custos
fi

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
# A sleep that does not exec /bin/sleep: every exec would be one more event for the agents.
exec {SLEEP_FD}<> <(:)
nap() { read -rt "$1" -u "$SLEEP_FD" _ || true; }

TICKS=0
ticks() { # pid... -> TICKS = utime + stime clock ticks summed over the pids (all threads)
    local p line f
    TICKS=0
    for p; do
        [[ -n $p ]] || continue
        line=""
        { read -r line <"/proc/$p/stat"; } 2>/dev/null || true
        [[ -n $line ]] || continue
        line=${line##*) } # comm may contain spaces; field 3 (state) follows ") "
        read -ra f <<<"$line"
        TICKS=$((TICKS + f[11] + f[12])) # fields 14 and 15
    done
}

CPU_T=0 CPU_I=0
cpu_sample() { # CPU_T CPU_I = total and idle jiffies over all CPUs (user..steal; idle incl. iowait)
    local _c u n s i w q sq st
    read -r _c u n s i w q sq st _ </proc/stat
    CPU_T=$((u + n + s + i + w + q + sq + st))
    CPU_I=$((i + w))
}
BUSY=0
busy_since() { # t0 i0 -> BUSY = CPUs busy on average since then (0 .. NCPU), as "x.yy"
    local t0=$1 i0=$2 dt di
    cpu_sample
    dt=$((CPU_T - t0))
    di=$((CPU_I - i0))
    if ((dt > 0)); then
        local c=$(((dt - di) * NCPU * 100 / dt))
        BUSY=$(printf '%d.%02d' $((c / 100)) $((c % 100)))
    else
        BUSY=0.00
    fi
}
less_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
QUIET_WAITED=0
wait_quiet() {
    local waited=0
    while :; do
        cpu_sample
        local t0=$CPU_T i0=$CPU_I
        nap 1
        busy_since "$t0" "$i0"
        less_than "$BUSY" "$QUIET_BUSY" && return 0
        ((waited == 0)) && echo "waiting for a quiet machine ($BUSY CPUs busy) ..." >&2
        ((++waited, ++QUIET_WAITED))
        if ((waited >= QUIET_WAIT || QUIET_WAITED >= QUIET_BUDGET)); then
            echo "warning: still $BUSY CPUs busy after ${waited}s (${QUIET_WAITED}s in total); measuring anyway" >&2
            return 0
        fi
    done
}

DRAIN=0
wait_drain() { # pid...: wait until their CPU time stops growing (<= 1 tick in 0.5 s, twice);
    #             DRAIN = seconds from the call until the last busy interval ended
    local start=${EPOCHREALTIME/./} prev quiet=0 now
    ticks "$@"
    prev=$TICKS
    while :; do
        nap 0.5
        ticks "$@"
        if ((TICKS - prev <= 1)); then ((++quiet)); else quiet=0; fi
        prev=$TICKS
        now=${EPOCHREALTIME/./}
        ((quiet >= 2)) && break
        if (((now - start) / 1000000 >= DRAIN_WAIT)); then
            echo "warning: agent still busy ${DRAIN_WAIT}s after the storm; measuring anyway" >&2
            quiet=0
            break
        fi
    done
    local us=$((now - start - quiet * 500000))
    ((us < 0)) && us=0
    DRAIN=$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))
}

STORM_PID="" STORM_WALL="" STORM_FAILED=""
storm() {
    local out
    out=$("$TMP/storm" "$N") || die "storm driver failed: $out"
    read -r STORM_PID STORM_WALL STORM_FAILED <<<"$out"
}

record() { # key=value ...: one JSON line in raw.jsonl (numbers stay numbers)
    python3 - "$TMP/raw.jsonl" "$@" <<'PY'
import json, sys
rec = {}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        rec[k] = int(v)
    except ValueError:
        try:
            rec[k] = float(v)
        except ValueError:
            rec[k] = v
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps(rec) + "\n")
PY
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

status_field() { # json-file dotted.path -> value
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k, "") if isinstance(v, dict) else ""
print(v)' "$1" "$2"
}

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

# ---------------------------------------------------------------- auditd
AUDIT_OK=0
AUDIT_OWN=0            # 1: we start our own auditd per round; 0: a running one is used
KAUDITD_PID=$(pgrep -x kauditd | head -1 || true)

audit_setup() {
    local enabled pid
    enabled=$(audit_status enabled)
    [[ -n $enabled ]] || { AUDIT_WHY="auditctl -s failed (no kernel audit support?)"; return 1; }
    [[ $enabled == 2 ]] && { AUDIT_WHY="audit configuration is locked (enabled 2)"; return 1; }
    if auditctl -l 2>/dev/null | grep -q 'key=custosbench'; then
        AUDIT_WHY="an audit rule with key custosbench already exists"
        return 1
    fi
    pid=$(audit_status pid)
    if [[ ${pid:-0} != 0 ]] && kill -0 "$pid" 2>/dev/null; then
        AUDIT_OWN=0
        AUDIT_LOG=""
        echo "auditd is running (pid $pid); using it as it is" >&2
    elif pgrep -x auditd >/dev/null; then
        AUDIT_WHY="an auditd is running but not registered with the kernel"
        return 1
    else
        AUDIT_OWN=1
        # Debian's auditd.conf with the log in our temp dir and no rotation.
        local conf=$TMP/audit/auditd.conf
        AUDIT_LOG=$TMP/audit/audit.log
        if [[ -r /etc/audit/auditd.conf ]]; then
            grep -vE '^[[:space:]]*(log_file|max_log_file_action)[[:space:]]*=' \
                /etc/audit/auditd.conf >"$conf"
        else
            : >"$conf"
        fi
        printf 'log_file = %s\nmax_log_file_action = IGNORE\n' "$AUDIT_LOG" >>"$conf"
        chmod 0640 "$conf"
    fi
}

auditd_start() {
    : >"$TMP/auditd.log"
    auditd -n -c "$TMP/audit" >>"$TMP/auditd.log" 2>&1 &
    AUDITD_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$AUDITD_PID" 2>/dev/null; then
            wait "$AUDITD_PID" 2>/dev/null || true
            AUDITD_PID=""
            AUDIT_WHY="auditd exited at start: $(tail -3 "$TMP/auditd.log" | tr '\n' ' ')(-n logs to syslog; \`auditd -f -c DIR\` shows why)"
            return 1
        fi
        [[ $(audit_status pid) == "$AUDITD_PID" ]] && return 0
        sleep 0.1
    done
    AUDIT_WHY="auditd did not register with the kernel in 10 s"
    return 1
}

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
    echo "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel:      $(uname -r)"
    echo "cpu:         $NCPU x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "hypervisor:  $(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p')"
    echo "custos:      $CUSTOS_REV (+ uncommitted changes in $CUSTOS_DIRTY files under crates/ bpf/ Cargo.*)"
    echo "binary:      $CUSTOS_BIN (sha256 $(sha256sum "$CUSTOS" | cut -c1-12))"
    if ((!AUDIT_OK)); then
        how="($AUDIT_WHY)"
    elif ((AUDIT_OWN)); then
        how="(own instance, log $AUDIT_LOG)"
    else
        how="(the running instance)"
    fi
    echo "auditd:      $(dpkg-query -W -f='${Version}' auditd 2>/dev/null || echo none) $how"
    if ((AUDIT_OK)); then
        echo "audit:       $(auditctl -s | tr '\n' ' ')"
        echo "audit rules: $(auditctl -l | tr '\n' ';')"
    fi
    echo "runs:        N=$N ROUNDS=$ROUNDS"
    echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
} | tee "$TMP/env.txt" >&2

# ---------------------------------------------------------------- rounds
phases=(bare custos auditd)
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#phases[@]}; k++)); do
        p=${phases[$(((r - 1 + k) % ${#phases[@]}))]}
        "run_$p" "$r"
    done
done
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
