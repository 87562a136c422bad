#!/usr/bin/env bash
# File open/close storm: bare vs custos file events vs custos file access rules vs fapolicyd 1.1.7.
#
#   sudo bench/files.sh                                     # defaults below
#   sudo ROUNDS=3 PASSES=10 OUT_DIR=/tmp/fbench bench/files.sh   # shorter, keep raw results
#
# Environment:
#   N        files on the bench filesystem                             (default 10000)
#   PASSES   timed passes over the N files per storm; each storm first
#            makes one more "cold" pass, reported apart                 (default 20)
#   ROUNDS   interleaved rounds; results are medians                    (default 5)
#   FS_TYPE  the bench filesystem: ext2 (a loop-mounted image) or tmpfs  (default ext2, see below)
#   PHASES   the phases to run, a subset of the default "bare events rules_1pct rules_all fapolicyd"
#            (bare is needed for the ratios)
#   PIN=CPU  run the storm and the agent (all its threads) on this one CPU (taskset): the held
#            opener and the agent then hand over on one CPU instead of waking each other across
#            two (default: unpinned)
#   SKIP_FAPOLICYD=1   skip the fapolicyd phase
#   RESULTS_MD=FILE    also write the markdown result table to FILE
#   CUSTOS_BIN=FILE    benchmark this custos binary instead of building the workspace
#   OUT_DIR=DIR        keep the raw per-storm results (JSON lines), environment, logs and table
#   DRAIN_WAIT  after a storm that raised file events, wait at most this many seconds for the
#               agent to go idle                                        (default 60)
#   QUIET_BUSY  before each storm, wait until other load is below this many CPUs  (default 0.3)
#   QUIET_WAIT  ... but at most this many seconds per storm                       (default 120)
#   QUIET_BUDGET  and at most this many seconds of such waiting in total          (default 300)
#   NOISY_OTHER  a storm during which more than this many CPUs were busy with anything but the
#                storm and the agent is redone                          (default 0.5)
#   RETRIES     how many times a noisy storm is redone                  (default 2)
#
# The storm is bench/files/storm.c, compiled here with cc: openat(O_RDONLY) + close of each of
# the N files, one cold pass and then PASSES timed passes, timed with CLOCK_MONOTONIC. Each round
# runs these phases, in an order rotated per round to spread drift:
#   bare        no agent: the read storm, and a write storm (O_WRONLY + close, nothing written)
#   events      custos with file events on the bench filesystem ([files] events = true,
#               watch = [mount], rate = 0): the read storm (raises no event: file events are
#               create, close-write, delete, rename, attrib) and the write storm, which raises a
#               close-write event per open ("events_write"). A probe file created first must
#               raise an event, or the phase is skipped as "file events not available in this
#               build"; after the write storm the agent is left to drain, and the events it
#               emitted, the kernel queue overflows and the events dropped are counted.
#   rules_1pct  custos with one access rule protecting 1 % of the files (names ending in 00),
#               allow = [the storm program]: every open succeeds; only the protected ones leave
#               the kernel (FAN_OPEN_PERM inode marks). File events off.
#   rules_all   the same rule over all N files: every open is held and answered from user
#               space (the cold pass judges each file; the timed passes hit the decision cache)
#   fapolicyd   fapolicyd 1.1.7 with the single rule `allow perm=any all : all`, trust = file,
#               watch_fs = the bench filesystem type only: every open is held (mount mark)
# custos runs as bench/exec.sh runs it: monitor mode, its own socket and state dir, events to a
# file in the temp dir, [telemetry] process = false, [exec] watch = [the bench mount], plus
# [files] protect_self = false, so the only access rule in force is the bench's (self-protection
# would put its marks on the temp dir on /). Each phase is checked with `custos status --json`
# (or fapolicyd's shutdown report): the protected files counted, files.access.allowed grown by
# exactly the protected opens and nothing denied, file events emitted; a round whose check fails
# is reported as failed and left out of the medians. A storm during which other load kept more
# than NOISY_OTHER CPUs busy (total busy CPUs minus the storm's and the agent's own CPU time) is
# redone up to RETRIES times.
# The ratio is time per open divided by bare's, paired within a round, median over rounds (the
# write storm is compared with the bare write storm).
#
# Why ext2 by default: fapolicyd selects what to mark only by filesystem type (watch_fs), so
# watch_fs = tmpfs would also put fapolicyd in front of every other tmpfs on the host (/dev/shm,
# other people's test mounts), and / is ext4. A loop-mounted ext2 image is the only ext2 here,
# so fapolicyd sees exactly the bench filesystem (the kernel's ext4 driver mounts it, and it
# reports an fsid and file handles, as custos's file events need; ramfs does not). With
# FS_TYPE=tmpfs the fapolicyd phase is skipped.
#
# Nothing outside the bench mount is marked or denied: the agents watch and protect only files on
# it. The machine is left as found, also on Ctrl-C or error: agents and fapolicyd stopped,
# fapolicyd config/db/log restored, the bench filesystem unmounted and its loop device detached,
# the temp dir removed; a mount left behind is reported.
#
# Helpers shared with bench/exec.sh and bench/process.sh (logging, stopping processes, CPU time,
# package install, waiting for a quiet machine, the rotated rounds) are in bench/lib.sh; the
# fapolicyd setup, start and teardown in bench/fapolicyd.sh. This script sources both.
set -euo pipefail

N=${N:-10000}
PASSES=${PASSES:-20}
ROUNDS=${ROUNDS:-5}
FS_TYPE=${FS_TYPE:-ext2}
PHASES=${PHASES:-bare events rules_1pct rules_all fapolicyd}
PIN=${PIN:-}
SKIP_FAPOLICYD=${SKIP_FAPOLICYD:-0}
RESULTS_MD=${RESULTS_MD:-}
OUT_DIR=${OUT_DIR:-}
DRAIN_WAIT=${DRAIN_WAIT:-60}
QUIET_BUSY=${QUIET_BUSY:-0.3}
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_BUDGET=${QUIET_BUDGET:-300}
NOISY_OTHER=${NOISY_OTHER:-0.5}
RETRIES=${RETRIES:-2}
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=fapolicyd.sh
. "$(dirname "$0")/fapolicyd.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root (fanotify permission events, mount)"
[[ $FS_TYPE == ext2 || $FS_TYPE == tmpfs ]] || die "FS_TYPE must be ext2 or tmpfs"
positive_ints N PASSES ROUNDS DRAIN_WAIT QUIET_WAIT QUIET_BUDGET
[[ $RETRIES =~ ^[0-9]+$ ]] || die "RETRIES must be a number"
((N <= 1000000)) || die "N must be at most 1000000"
for p in $PHASES; do
    [[ " bare events rules_1pct rules_all fapolicyd " == *" $p "* ]] || die "unknown phase '$p' in PHASES"
done
if [[ -n $PIN ]]; then
    [[ $PIN =~ ^[0-9]+$ && $PIN -lt $(nproc) ]] || die "PIN must be a CPU number below $(nproc)"
    command -v taskset >/dev/null || die "PIN needs taskset (util-linux)"
fi
command -v cc >/dev/null || die "needs a C compiler (cc)"
command -v python3 >/dev/null || die "needs python3"

# ---------------------------------------------------------------- state for cleanup
TMP=""
MNT=""
IMG=""
CUSTOS_PID=""
POLICY_RC_CREATED=0     # the fapolicyd state is in bench/fapolicyd.sh

cleanup() {
    local rc=$?
    set +e
    [[ -n $CUSTOS_PID ]] && stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID=""
    fapolicyd_cleanup
    ((POLICY_RC_CREATED)) && rm -f /usr/sbin/policy-rc.d
    if [[ -n $MNT ]] && mountpoint -q "$MNT"; then
        umount "$MNT" || { sleep 1; umount "$MNT"; } || echo "warning: cannot unmount $MNT" >&2
    fi
    if [[ -n $IMG && -e $IMG ]]; then # mount -o loop detaches on umount; in case it did not
        local dev
        for dev in $(losetup -j "$IMG" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
    fi
    if [[ -n $TMP ]]; then
        grep -qF " $TMP/" /proc/mounts && echo "warning: still mounted: $(grep -F " $TMP/" /proc/mounts)" >&2
        grep -qF " $TMP/" /proc/mounts || rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
fapolicyd_refuse_running
if [[ $SKIP_FAPOLICYD != 1 && $FS_TYPE == ext2 ]] && ! command -v fapolicyd >/dev/null; then
    log "installing fapolicyd"
    # Debian's fapolicyd ships `deny_audit perm=execute all : all`; on a systemd host the package
    # would start it on install (apt_install keeps it from doing so).
    apt_install fapolicyd || echo "warning: apt-get install fapolicyd failed" >&2
    stop_started fapolicyd || die "cannot stop the fapolicyd the install started"
fi

custos_binary

TMP=$(mktemp -d /tmp/custos-fbench.XXXXXX)
# Our own copy, so a concurrent rebuild cannot swap the binary mid-run.
CUSTOS=$TMP/custos
cp "$CUSTOS_BIN" "$CUSTOS"
MNT=$TMP/mnt
mkdir -p "$MNT" "$TMP/state" "$TMP/status"
: >"$TMP/raw.jsonl"
cc -O2 -Wall -o "$TMP/storm" "$REPO/bench/files/storm.c"
STORM=$TMP/storm
RUN_STORM=("$STORM")
[[ -n $PIN ]] && RUN_STORM=(taskset -c "$PIN" "$STORM")

if [[ $FS_TYPE == ext2 ]]; then
    IMG=$TMP/bench.img
    # Empty files take an inode each and no blocks; room for the inode tables and some slack.
    truncate -s $((64 + N / 1000))M "$IMG"
    mke2fs -q -F -t ext2 -m 0 -N $((N + 4096)) "$IMG"
    mount -t ext2 -o loop "$IMG" "$MNT"
else
    mount -t tmpfs -o size=64m,nr_inodes=$((N + 4096)) tmpfs "$MNT"
fi
mkdir "$MNT/files" "$MNT/probe"
"$STORM" "$MNT/files" "$N" 0 c >/dev/null || die "cannot create the $N bench files"
# The agent's file events skip nothing here: the bench paths match no default exclude.

# ---------------------------------------------------------------- custos configs
write_config() { # file [files] lines...
    local file=$1
    shift
    {
        cat <<EOF
mode = "monitor"
socket = "$TMP/custos.sock"
state_dir = "$TMP/state"
events = "$TMP/events.json"
[telemetry]
process = false
[exec]
watch = ["$MNT"]
[files]
protect_self = false
EOF
        printf '%s\n' "$@"
    } >"$file"
}
CFG_EVENTS=$TMP/events.toml
write_config "$CFG_EVENTS" "events = true" "watch = [\"$MNT\"]" "rate = 0"
# Names are f0000000 .. : those ending in 00 are 1 % of them, spread over the directory.
PROT_1PCT=$(((N + 99) / 100))
CFG_1PCT=$TMP/rules-1pct.toml
write_config "$CFG_1PCT" "events = false" "[[files.rule]]" 'name = "bench 1 %"' \
    "paths = [\"$MNT/files/f*00\"]" "allow = [\"$STORM\"]"
CFG_ALL=$TMP/rules-all.toml
write_config "$CFG_ALL" "events = false" "[[files.rule]]" 'name = "bench all"' \
    "paths = [\"$MNT/files/*\"]" "allow = [\"$STORM\"]"

# ---------------------------------------------------------------- environment
CUSTOS_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
CUSTOS_DIRTY=$(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | wc -l)
FAPO_VER=$(dpkg-query -W -f='${Version}' fapolicyd 2>/dev/null || echo none)
log "environment"
{
    env_host
    echo "custos:      $CUSTOS_REV (+ uncommitted changes in $CUSTOS_DIRTY files under crates/ Cargo.*) at run time"
    echo "binary:      $CUSTOS_BIN (sha256 $(sha256sum "$CUSTOS" | cut -c1-12), built $(date -u -r "$CUSTOS_BIN" '+%Y-%m-%d %H:%M UTC'))"
    echo "fapolicyd:   $FAPO_VER"
    if [[ -n $PIN ]]; then echo "pinned:      storm and agent on CPU $PIN"; else echo "pinned:      no"; fi
    echo "filesystem:  $(awk -v m="$MNT" '$2 == m {print $3, $1, $4}' /proc/mounts) at $MNT"
    echo "runs:        N=$N PASSES=$PASSES ROUNDS=$ROUNDS (opens per storm: $N cold + $((N * PASSES)) timed)"
    echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
} | tee "$TMP/env.txt" >&2

# ---------------------------------------------------------------- one storm
AGENT_PIDS=""   # the agent running now (custos and its children, or fapolicyd); "" for bare
pin_agent() { # with PIN: every thread of AGENT_PIDS on that CPU
    [[ -n $PIN ]] || return 0
    local p
    for p in $AGENT_PIDS; do taskset -a -p -c "$PIN" "$p" >/dev/null; done
}
S_PID="" S_COLD="" S_TIMED="" S_CPU="" S_FAILED="" S_ERRNO="" S_WALL="" S_AGENT="" S_OTHER=""
S_ATTEMPTS=0
S_K0=0          # the agent's CPU ticks when the kept attempt started
storm() { # name round r|w [custos-config]: one storm under whatever runs now, redone while other
    #      load disturbed it. With a config, custos is restarted for a redo, and its status just
    #      before the kept attempt is in $TMP/status/NAME.rROUND.0.json (the caller takes the one
    #      after).
    local name=$1 r=$2 mode=$3 cfg=${4:-} out k0 t0 i0 w0 w1 rc
    for ((S_ATTEMPTS = 1; ; S_ATTEMPTS++)); do
        wait_quiet
        [[ -n $cfg ]] && "$CUSTOS" status --json --config "$cfg" >"$TMP/status/$name.r$r.0.json"
        # shellcheck disable=SC2086
        { ticks $AGENT_PIDS; k0=$TICKS S_K0=$TICKS; }
        cpu_sample
        t0=$CPU_T i0=$CPU_I w0=${EPOCHREALTIME/./}
        rc=0
        out=$("${RUN_STORM[@]}" "$MNT/files" "$N" "$PASSES" "$mode") || rc=$?
        w1=${EPOCHREALTIME/./}
        busy_since "$t0" "$i0"
        # shellcheck disable=SC2086
        ticks $AGENT_PIDS
        read -r S_PID S_COLD S_TIMED S_CPU S_FAILED S_ERRNO <<<"$out"
        [[ -n $S_ERRNO ]] || die "storm ($name, round $r) failed (exit $rc): $out"
        S_WALL=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.6f", (b - a) / 1e6 }')
        S_AGENT=$(awk -v k=$((TICKS - k0)) -v t="$CLK_TCK" 'BEGIN { printf "%.3f", k / t }')
        # CPUs busy with anything else: the storm's own CPU time (over the timed passes, scaled
        # to the whole storm) and the agent's are taken out.
        S_OTHER=$(awk -v b="$BUSY" -v c="$S_CPU" -v t="$S_TIMED" -v a="$S_AGENT" -v w="$S_WALL" \
            'BEGIN { o = b - c / t - a / w; printf "%.2f", o < 0 ? 0 : o }')
        less_than "$NOISY_OTHER" "$S_OTHER" || break
        ((S_ATTEMPTS <= RETRIES)) || {
            echo "warning: $name round $r noisy ($S_OTHER other CPUs busy); kept" >&2
            break
        }
        echo "$name round $r was disturbed ($S_OTHER other CPUs busy); redoing it" >&2
        # A fresh agent: no decisions cached by the discarded attempt, no events still queued.
        if [[ -n $cfg ]]; then
            custos_stop
            custos_start "$cfg" || die "custos did not restart ($name, round $r)"
        fi
    done
    echo "$(date -u +%T) $name round $r: $(awk -v n=$((N * PASSES)) -v t="$S_TIMED" \
        'BEGIN { printf "%.0f opens/s (%.2f µs/open)", n / t, t / n * 1e6 }'), cold pass ${S_COLD}s," \
        "failed opens $S_FAILED, agent CPU ${S_AGENT}s, $BUSY CPUs busy ($S_OTHER other)" >&2
}

record_storm() { # scenario round [key=value ...]: the storm just run, with extra fields
    local s=$1 r=$2
    shift 2
    record scenario="$s" round="$r" attempts="$S_ATTEMPTS" cold="$S_COLD" timed="$S_TIMED" \
        cpu="$S_CPU" wall="$S_WALL" failed="$S_FAILED" errno="$S_ERRNO" busy="$BUSY" \
        other="$S_OTHER" agent_cpu="$S_AGENT" pid="$S_PID" opens=$((N * PASSES)) cold_opens="$N" "$@"
}

# ---------------------------------------------------------------- custos
custos_start() { # config; false (agent stopped, log shown) if it does not answer in 20 s
    local cfg=$1 i
    rm -f "$TMP/events.json"
    "$CUSTOS" run --config "$cfg" 2>>"$TMP/custos.log" &
    CUSTOS_PID=$!
    for ((i = 0; i < 200; i++)); do
        kill -0 "$CUSTOS_PID" 2>/dev/null || break
        if "$CUSTOS" status --config "$cfg" >/dev/null 2>&1; then
            AGENT_PIDS="$CUSTOS_PID $(pgrep -P "$CUSTOS_PID" | tr '\n' ' ' || true)"
            pin_agent
            return 0
        fi
        sleep 0.1
    done
    tail -5 "$TMP/custos.log" >&2
    custos_stop
    return 1
}

custos_stop() {
    [[ -n $CUSTOS_PID ]] && stop_pid "$CUSTOS_PID" custos
    CUSTOS_PID="" AGENT_PIDS=""
}

status_now() { "$CUSTOS" status --json --config "$1" >"$2"; }

# Access rules: the protected files counted, every protected open allowed, nothing denied.
rules_phase() { # scenario config protected round
    local s=$1 cfg=$2 prot=$3 r=$4 st a0 a1 d0 d1 h0 h1 pf want why=""
    log "round $r: $s (custos, $prot of $N files protected)"
    custos_start "$cfg" || { record scenario="$s" round="$r" ok=0 why="custos did not start"; return 0; }
    storm "$s" "$r" r "$cfg"
    st=$TMP/status/$s.r$r
    status_now "$cfg" "$st.1.json"
    custos_stop
    read -r a0 d0 h0 < <(status_field "$st.0.json" files.access.allowed files.access.denied files.access.cache_hits)
    read -r a1 d1 h1 pf < <(status_field "$st.1.json" files.access.allowed files.access.denied \
        files.access.cache_hits files.access.protected_files)
    want=$((prot * (PASSES + 1)))
    if [[ $pf != "$prot" ]]; then
        why="files.access.protected_files is '$pf', expected $prot"
    elif ((a1 - a0 != want || d1 - d0 != 0)); then
        why="files.access.allowed +$((a1 - a0)) (expected +$want), denied +$((d1 - d0))"
    elif ((S_FAILED != 0)); then
        why="$S_FAILED opens failed (errno $S_ERRNO)"
    fi
    echo "custos counters ($s): protected_files $pf, allowed +$((a1 - a0)) of $want protected opens," \
        "denied +$((d1 - d0)), cache_hits +$((h1 - h0))${why:+ -- CHECK FAILED: $why}" >&2
    record_storm "$s" "$r" ok="$([[ -z $why ]] && echo 1 || echo 0)" why="$why" protected="$pf" \
        allowed=$((a1 - a0)) denied=$((d1 - d0)) cache_hits=$((h1 - h0)) expected="$want"
}
run_rules_1pct() { rules_phase rules_1pct "$CFG_1PCT" "$PROT_1PCT" "$1"; }
run_rules_all() { rules_phase rules_all "$CFG_ALL" "$N" "$1"; }

EVENTS_OK=1
EVENTS_WHY=""
events_probe() { # a file created on the bench fs must be reported (FAN_CREATE, FAN_CLOSE_WRITE)
    local r=$1 watched e0 e1 i
    local st=$TMP/status/probe.r$r
    status_now "$CFG_EVENTS" "$st.0.json"
    read -r watched e0 < <(status_field "$st.0.json" files.watched files.emitted)
    : >"$MNT/probe/p$r"
    for ((i = 0; i < 50; i++)); do
        nap 0.1
        status_now "$CFG_EVENTS" "$st.1.json"
        e1=$(status_field "$st.1.json" files.emitted)
        ((${e1:-0} > ${e0:-0})) && return 0
    done
    EVENTS_WHY="file events not available in this build (files.watched $watched, files.emitted stayed ${e0:-?} after a probe file was created)"
    return 1
}

run_events() { # round: the read storm (no events) and the write storm (a close-write per open)
    local r=$1 st e0 e1 o0 o1 l0 l1 d0 d1 x0 x1 want why
    ((EVENTS_OK)) || return 0
    log "round $r: events (custos, file events on the bench filesystem)"
    custos_start "$CFG_EVENTS" || {
        record scenario=events round="$r" ok=0 why="custos did not start"
        record scenario=events_write round="$r" ok=0 why="custos did not start"
        return 0
    }
    if ! events_probe "$r"; then
        echo "SKIPPED events, events_write: $EVENTS_WHY" >&2
        custos_stop
        EVENTS_OK=0
        return 0
    fi
    local s
    for s in events events_write; do
        local mode=r
        [[ $s == events_write ]] && mode=w
        storm "$s" "$r" "$mode" "$CFG_EVENTS"
        # shellcheck disable=SC2086
        wait_drain $AGENT_PIDS
        # shellcheck disable=SC2086
        ticks $AGENT_PIDS
        local agent_total
        agent_total=$(awk -v k=$((TICKS - S_K0)) -v t="$CLK_TCK" 'BEGIN { printf "%.3f", k / t }')
        st=$TMP/status/$s.r$r
        status_now "$CFG_EVENTS" "$st.1.json"
        read -r e0 o0 l0 d0 x0 < <(status_field "$st.0.json" files.emitted files.overflows \
            files.rate_limited events_dropped files.excluded)
        read -r e1 o1 l1 d1 x1 < <(status_field "$st.1.json" files.emitted files.overflows \
            files.rate_limited events_dropped files.excluded)
        # Each O_WRONLY open + close is one FAN_CLOSE_WRITE; reads raise nothing.
        want=0
        [[ $mode == w ]] && want=$((N * (PASSES + 1)))
        why=""
        if ((S_FAILED != 0)); then
            why="$S_FAILED opens failed (errno $S_ERRNO)"
        elif ((want > 0 && e1 - e0 == 0)); then
            why="no file events emitted for $want close-writes"
        fi
        echo "custos counters ($s): emitted +$((e1 - e0)) of $want expected, overflows +$((o1 - o0))," \
            "rate_limited +$((l1 - l0)), excluded +$((x1 - x0)), events_dropped +$((d1 - d0))," \
            "drained ${DRAIN}s after the storm, agent CPU ${agent_total}s with the drain${why:+ -- CHECK FAILED: $why}" >&2
        record_storm "$s" "$r" ok="$([[ -z $why ]] && echo 1 || echo 0)" why="$why" \
            emitted=$((e1 - e0)) expected="$want" overflows=$((o1 - o0)) \
            rate_limited=$((l1 - l0)) dropped=$((d1 - d0)) drain="$DRAIN" agent_cpu_total="$agent_total"
    done
    custos_stop
}

# ---------------------------------------------------------------- bare
run_bare() { # round
    local s mode
    log "round $1: bare"
    for s in bare bare_write; do
        mode=r
        [[ $s == bare_write ]] && mode=w
        storm "$s" "$1" "$mode"
        if ((S_FAILED == 0)); then
            record_storm "$s" "$1" ok=1
        else
            record_storm "$s" "$1" ok=0 why="$S_FAILED opens failed (errno $S_ERRNO)"
        fi
    done
}

# ---------------------------------------------------------------- fapolicyd (setup: bench/fapolicyd.sh)
run_fapolicyd() { # round
    local r=$1 want why=""
    ((FAPO_OK)) || return 0
    log "round $r: fapolicyd"
    if ! fapolicyd_start "$MNT"; then
        echo "FAPOLICYD FAILED: $FAPO_WHY" >&2
        FAPO_OK=0
        return 0
    fi
    AGENT_PIDS=$FAPO_PID
    pin_agent
    storm fapolicyd "$r" r
    AGENT_PIDS=""
    fapolicyd_stop
    # Its object cache (obj_cache_size 8191 in Debian's config) is smaller than the file set.
    local cache
    cache=$(awk -F': *' '/^Object (hits|misses|evictions)/ {split($2, a, " "); printf "%s ", a[1]}' \
        "$TMP/fapolicyd.log")
    local ohits omiss oevict
    read -r ohits omiss oevict <<<"$cache"
    echo "fapolicyd object cache: hits ${ohits:-?}, misses ${omiss:-?}, evictions ${oevict:-?}" >&2
    # It holds every open on the marked mount: at least the storm's opens, all allowed.
    want=$((S_ATTEMPTS * N * (PASSES + 1)))
    if [[ -z $FAPO_ALLOWED ]]; then
        why="no shutdown report from fapolicyd"
    elif ((FAPO_ALLOWED < want || ${FAPO_DENIED:-0} != 0)); then
        why="fapolicyd allowed $FAPO_ALLOWED (expected >= $want), denied ${FAPO_DENIED:-?}"
    elif ((S_FAILED != 0)); then
        why="$S_FAILED opens failed (errno $S_ERRNO)"
    fi
    echo "fapolicyd check: allowed $FAPO_ALLOWED of >= $want opens${why:+ -- CHECK FAILED: $why}" >&2
    record_storm fapolicyd "$r" ok="$([[ -z $why ]] && echo 1 || echo 0)" why="$why" \
        allowed="${FAPO_ALLOWED:-0}" expected="$want" obj_hits="${ohits:-}" obj_misses="${omiss:-}" \
        obj_evictions="${oevict:-}"
}

if [[ $SKIP_FAPOLICYD == 1 || " $PHASES " != *" fapolicyd "* ]]; then
    FAPO_WHY="skipped (SKIP_FAPOLICYD=1 or not in PHASES)"
elif [[ $FS_TYPE != ext2 ]]; then
    FAPO_WHY="skipped: with FS_TYPE=$FS_TYPE, watch_fs would mark every $FS_TYPE mount on the host"
elif ! command -v fapolicyd >/dev/null; then
    FAPO_WHY="fapolicyd is not installed"
elif awk -v m="$MNT" -v t="$FS_TYPE" '$3 == t && $2 != m { found = 1 } END { exit !found }' /proc/mounts; then
    FAPO_WHY="skipped: another $FS_TYPE mount is on the host, and watch_fs = $FS_TYPE would mark it too"
else
    fapolicyd_setup "$FS_TYPE" file
    FAPO_OK=1
fi

# ---------------------------------------------------------------- rounds
# shellcheck disable=SC2086 # a list of phase names
run_rounds $PHASES
fapolicyd_cleanup
((FAPO_OK)) || echo "FAPOLICYD PHASE NOT MEASURED: $FAPO_WHY" >&2
[[ " $PHASES " != *" events "* ]] && EVENTS_WHY="not in PHASES"
((EVENTS_OK)) || echo "EVENTS PHASES NOT MEASURED: $EVENTS_WHY" >&2
echo "loadavg:     $(cut -d' ' -f1-3 /proc/loadavg) (after); waited ${QUIET_WAITED}s for quiet" \
    | tee -a "$TMP/env.txt" >&2

# ---------------------------------------------------------------- report
log "results"
python3 - "$TMP/raw.jsonl" "$TMP/results.md" "$N" "$PASSES" "$ROUNDS" "$FAPO_WHY" "$EVENTS_WHY" \
    "$PROT_1PCT" <<'PY'
import json, statistics as st, sys

raw, out_md, n, passes, rounds, fapo_why, events_why, prot1 = sys.argv[1:9]
n, passes, rounds, prot1 = int(n), int(passes), int(rounds), int(prot1)
runs = [json.loads(l) for l in open(raw) if l.strip()]
by = {}
for x in runs:
    by.setdefault(x["scenario"], {})[x["round"]] = x

def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None

def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)

rows = [  # scenario, label, baseline
    ("bare", "bare, O_RDONLY", None),
    ("events", "custos, file events (reads raise none)", "bare"),
    ("rules_1pct", f"custos, access rule on 1 % ({prot1:,} files)", "bare"),
    ("rules_all", f"custos, access rule on all {n:,} files", "bare"),
    ("fapolicyd", "fapolicyd 1.1.7, `allow perm=any all : all`", "bare"),
    ("bare_write", "bare, O_WRONLY", None),
    ("events_write", "custos, file events (a close-write event per open)", "bare_write"),
]
skipped = {"events": events_why, "events_write": events_why, "fapolicyd": fapo_why}

def good(s):
    return {r: x for r, x in by.get(s, {}).items() if x.get("ok") == 1 and "timed" in x}

def ratios(s, base):
    g, b = good(s), good(base)
    return [g[r]["timed"] / b[r]["timed"] for r in sorted(g) if r in b]

print("per round: µs/open over the timed passes (ratio to bare of the same round) [other CPUs busy]")
for s, _, base in rows:
    cells = []
    for r, x in sorted(by.get(s, {}).items()):
        if "timed" not in x:
            cells.append(f"r{r}: FAILED ({x.get('why', '')})")
            continue
        us = x["timed"] / x["opens"] * 1e6
        b = good(base).get(r) if base else None
        rt = f" ({x['timed'] / b['timed']:.2f}x)" if b else ""
        bad = "" if x.get("ok") == 1 else " FAILED"
        cells.append(f"{us:.2f}{rt} [{x['other']:.2f}]{bad}")
    if cells:
        print(f"  {s:12s} " + "  ".join(cells))

lines = ["| phase | opens/s | µs/open | ratio to bare | cold pass opens/s | agent CPU µs/open "
         "| check | other CPUs busy (median / max) |",
         "|---|---:|---:|---:|---:|---:|---|---:|"]
summary = {}
for s, label, base in rows:
    allr, g = by.get(s, {}), good(s)
    if not allr:
        why = skipped.get(s) or "not run"
        lines.append(f"| {label} | — | — | — | — | — | {why} | — |")
        continue
    if not g:
        whys = sorted({x.get("why", "") for x in allr.values()})
        lines.append(f"| {label} | — | — | — | — | — | FAILED: {'; '.join(whys)} | — |")
        continue
    xs = [g[r] for r in sorted(g)]
    us = med([x["timed"] / x["opens"] * 1e6 for x in xs])
    ops = med([x["opens"] / x["timed"] for x in xs])
    cold = med([x["cold_opens"] / x["cold"] for x in xs])
    rt = med(ratios(s, base)) if base else None
    agent = med([x["agent_cpu"] / (x["opens"] + x["cold_opens"]) * 1e6 for x in xs]) \
        if s not in ("bare", "bare_write") else None
    other = [x["other"] for x in xs]
    checks = []
    if s.startswith("rules"):
        checks.append(f"allowed {med([x['allowed'] for x in xs]):,.0f} of {xs[0]['expected']:,} "
                      f"protected opens, denied 0, {med([x['cache_hits'] for x in xs]):,.0f} cache hits")
    elif s == "events_write":
        per_ev = med([x["agent_cpu_total"] / x["emitted"] * 1e6 for x in xs if x["emitted"]])
        ovf = med([x["overflows"] for x in xs])
        checks.append(f"events {med([x['emitted'] for x in xs]):,.0f} of {xs[0]['expected']:,} "
                      f"close-writes (the rest merged in the kernel queue"
                      f"{', or lost to overflows' if ovf else ''}), overflows {ovf:,.0f}, "
                      f"dropped {med([x['dropped'] for x in xs]):,.0f}; "
                      f"agent CPU {fmt(per_ev, '.1f')} µs per event, drain included")
    elif s == "events":
        checks.append(f"probe event seen, events {med([x['emitted'] for x in xs]):,.0f}")
    elif s == "fapolicyd":
        checks.append(f"fapolicyd allowed {med([x['allowed'] for x in xs]):,.0f} "
                      f"(>= {xs[0]['expected']:,} opens)")
    else:
        checks.append("all opens succeeded")
    bad = len(allr) - len(g)
    if bad:
        checks.append(f"{bad} of {len(allr)} rounds FAILED, left out")
    summary[s] = rt
    lines.append(f"| {label} | {fmt(ops, ',.0f')} | {fmt(us, '.2f')} | "
                 f"{'—' if base is None else fmt(rt, '.2f') + '×'} | {fmt(cold, ',.0f')} | "
                 f"{'—' if agent is None else fmt(agent, '.2f')} | {'; '.join(checks)} | "
                 f"{st.median(other):.2f} / {max(other):.2f} |")
table = "\n".join(lines)
print()
print(table)
print()
b = good("bare")
for s in ("rules_1pct", "rules_all", "fapolicyd", "events", "events_write"):
    if summary.get(s) is None:
        continue
    base = "bare_write" if s == "events_write" else "bare"
    bb = good(base)
    add = med([g["timed"] / g["opens"] * 1e6 - bb[r]["timed"] / bb[r]["opens"] * 1e6
               for r, g in good(s).items() if r in bb])
    print(f"{s}: {summary[s]:.2f}x bare, {fmt(add, '+.2f')} µs per open (paired per round)")
def overhead(s, base="bare"):
    g, bb = good(s), good(base)
    return med([g[r]["timed"] / g[r]["opens"] * 1e6 - bb[r]["timed"] / bb[r]["opens"] * 1e6
                for r in g if r in bb])
o1, oa = overhead("rules_1pct"), overhead("rules_all")
if o1 is not None and oa is not None:
    share = prot1 / n
    print(f"rules_1pct split: {share:.1%} of opens x {oa:.2f} µs round trip (rules_all) = "
          f"{share * oa:.2f} µs; the rest, {o1 - share * oa:+.2f} µs, is what the marks cost "
          f"the other {1 - share:.0%} of opens (noise included)")
if summary.get("rules_1pct") is not None:
    r = summary["rules_1pct"]
    print(f"aim: access rules on (1 % protected) <= 1.2x bare: {r:.2f}x, "
          f"{'meets' if r <= 1.2 else 'misses'} it")
with open(out_md, "w") as fh:
    fh.write(table + "\n")
PY
if [[ -n $RESULTS_MD ]]; then cp "$TMP/results.md" "$RESULTS_MD"; fi
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp -r "$TMP/raw.jsonl" "$TMP/env.txt" "$TMP/results.md" "$TMP/status" "$OUT_DIR/"
    [[ -e $TMP/custos.log ]] && cp "$TMP/custos.log" "$OUT_DIR/"
    [[ -e $TMP/fapolicyd.log ]] && cp "$TMP/fapolicyd.log" "$OUT_DIR/"
    echo "raw results in $OUT_DIR" >&2
fi
