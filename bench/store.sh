#!/usr/bin/env bash
# Event store benchmark: the sustained insert rate of custos's event store (custos-store's
# Writer, the agent's batching) next to plain JSON-lines writing of the same events, and the
# latency of the common `custos events` queries at N stored events. No root needed.
#
#   bench/store.sh                                   # N=10M: ~12 GB free under WORK, ~13 min
#   N=200000 OUT_DIR=/tmp/store bench/store.sh       # seconds; keep the raw results
#
# Environment:
#   N        events                                                     (default 10000000)
#   WORK     scratch dir (the JSON-lines file, then the database); removed at exit
#                                                                 (default /work/bench-tmp/store)
#   KEEP=1             keep WORK (the database) for inspection
#   RESULTS_MD=FILE    also write the markdown result tables to FILE
#   OUT_DIR=DIR        keep the raw results (JSON line, log, tables) in DIR
#
# What runs: the `store` bench of custos-store (crates/store/benches/store.rs; see its header
# for the phases). It simulates a host's day of events with the custos-event structs (~62 %
# image loads, ~25 % process fork/exec/exit, ~10 % exec decisions, ~3 % injection), and on the
# same N events measures: building them; writing them as JSON lines (64 KiB BufWriter, no
# fsync); storing them with `Writer` (queue 65,536, batch 4,096, no retention) until `close()`
# returns; then `Reader` queries on the N stored events, each run 20 times (fewer if they take
# over a minute), warm page cache.
set -euo pipefail

N=${N:-10000000}
WORK=${WORK:-/work/bench-tmp/store}
KEEP=${KEEP:-0}
RESULTS_MD=${RESULTS_MD:-}
OUT_DIR=${OUT_DIR:-}
NCPU=$(nproc)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

positive_ints N
WORK=$(realpath -m "$WORK")

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    if [[ -n ${WORK_MADE:-} ]] && ((!KEEP)); then rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -e $WORK ]] && die "WORK=$WORK exists; remove it or pick another"
mkdir -p "$WORK"
WORK_MADE=1

# Disk: the JSON-lines file (549 B/event) is deleted before the store is written; the
# database takes ~940 B/event (936 at 10M events: doc + indexed columns + 8 indexes) plus a
# WAL of up to 64 MiB. Ask for 1,300 B/event.
need_kib=$((N * 1300 / 1024 + 131072))
avail_kib=$(df --output=avail -k "$WORK" | tail -1)
((avail_kib > need_kib)) || die "needs about $((need_kib / 1048576 + 1)) GiB free under $WORK, has $((avail_kib / 1048576))"

# ---------------------------------------------------------------- build
log "building the store bench (cargo bench -p custos-store --bench store --no-run)"
(cd "$REPO" && cargo bench -p custos-store --bench store --no-run) >&2

# ---------------------------------------------------------------- run
log "running it on $N events in $WORK"
(cd "$REPO" && cargo bench -q -p custos-store --bench store -- --events "$N" --dir "$WORK/run") \
    >"$WORK/out.txt" 2> >(tee "$WORK/log.txt" >&2)
RESULT=$(tail -1 "$WORK/out.txt")
[[ $RESULT == "{"* ]] || die "no result line; see the output above"

# ---------------------------------------------------------------- report
{
    echo
    env_host
    echo "memory:      $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "filesystem:  $(df --output=fstype "$WORK" | tail -1) on $(df --output=source "$WORK" | tail -1)"
    sed '$d' "$WORK/out.txt"
} | tee "$WORK/results.md"
[[ -n $RESULTS_MD ]] && cp "$WORK/results.md" "$RESULTS_MD"
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$WORK/results.md" "$WORK/log.txt" "$OUT_DIR"/
    echo "$RESULT" >"$OUT_DIR/result.json"
fi
echo "$RESULT"
