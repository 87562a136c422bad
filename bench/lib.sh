# shellcheck shell=bash
# Helpers shared by bench/exec.sh, bench/process.sh and bench/files.sh, sourced by each
# (`. "$(dirname "$0")/lib.sh"`). Not a script of its own. The caller has `set -euo pipefail` and
# defines what the helpers read: REPO, NCPU, ROUNDS, QUIET_BUSY, QUIET_WAIT, QUIET_BUDGET,
# POLICY_RC_CREATED (cleanup removes /usr/sbin/policy-rc.d while it is 1), DRAIN_WAIT (for
# wait_drain), TMP (record appends to $TMP/raw.jsonl) and one run_<phase> function per phase given
# to run_rounds.

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench/%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

positive_ints() { # var...: die unless each is a positive integer
    local v
    for v; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
    done
}

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

# shellcheck disable=SC2034 # DRAIN is read by the callers
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
    # shellcheck disable=SC2034
    DRAIN=$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))
}

record() { # key=value ...: one JSON line in $TMP/raw.jsonl (numbers stay numbers)
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

status_field() { # json-file dotted.path...: the values, space-separated ("" where missing)
    python3 -c 'import json, sys
doc = json.load(open(sys.argv[1]))
out = []
for path in sys.argv[2:]:
    v = doc
    for k in path.split("."):
        v = v.get(k, "") if isinstance(v, dict) else ""
    out.append(json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v))
print(" ".join(out))' "$@"
}

# ---------------------------------------------------------------- packages
apt_install() { # package...: apt-get install without letting the packages start their services;
    #              returns apt-get's status
    local rc=0
    # On a systemd host a package starts its daemon on install; policy-rc.d 101 tells
    # invoke-rc.d/deb-systemd-invoke not to.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } || rc=$?
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
    return "$rc"
}

stop_started() { # name: stop the daemon its package install started anyway; false if it still runs
    pgrep -x "$1" >/dev/null || return 0
    echo "$1 was started by its package install; stopping it" >&2
    if [[ -d /run/systemd/system ]]; then systemctl stop "$1" || true; fi
    # Not running before the install, so these pids are the daemon the install started.
    local pid
    for pid in $(pgrep -x "$1"); do stop_pid "$pid" "$1"; done
    ! pgrep -x "$1" >/dev/null
}

custos_binary() { # CUSTOS_BIN as given, else build the workspace's
    if [[ -n ${CUSTOS_BIN:-} ]]; then
        [[ -x $CUSTOS_BIN ]] || die "CUSTOS_BIN=$CUSTOS_BIN is not executable"
    else
        log "building custos (cargo build --release -p custos)"
        (cd "$REPO" && cargo build --release -p custos) >&2
        CUSTOS_BIN=$REPO/target/release/custos
    fi
}

env_host() { # the host lines of the environment report
    echo "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel:      $(uname -r)"
    echo "cpu:         $NCPU x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "hypervisor:  $(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p')"
}

# ---------------------------------------------------------------- quiet machine
# The benchmarks share a small VM with whatever else runs here (builds, tests): wait for a quiet
# machine before each run and measure how many CPUs were busy during it. Nothing here execs, so
# the waiting adds no events for an agent.
exec {SLEEP_FD}<> <(:)
nap() { read -rt "$1" -u "$SLEEP_FD" _ || true; } # a sleep that does not exec /bin/sleep

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
QUIET_WAITED=0 # seconds waited so far, all runs together
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

run_rounds() { # phase...: ROUNDS rounds of run_<phase> <round>, the order rotated per round
    local phases=("$@") r k
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((k = 0; k < ${#phases[@]}; k++)); do
            "run_${phases[$(((r - 1 + k) % ${#phases[@]}))]}" "$r"
        done
    done
}
