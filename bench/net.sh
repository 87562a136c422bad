#!/usr/bin/env bash
# Loopback connection rate: bare vs custos network monitoring vs custos network policy.
#
#   sudo bench/net.sh                      # defaults below
#   sudo ROUNDS=3 N=5000 bench/net.sh      # shorter
#
# Environment:
#   N          connections per run                                    (default 20000)
#   ROUNDS     interleaved rounds; results are medians                (default 5)
#   RULES      network rules in the policy phase (none matches)       (default 64)
#   PHASES     phases to run                            (default "bare monitor policy nostore")
#   CUSTOS_BIN benchmark this custos binary instead of building the workspace (release)
#   RESULTS_MD also write the markdown result table to this file
#
# bench/net/connloop.c (compiled here with cc) makes N short-lived TCP connections to a server
# thread of its own on 127.0.0.1: socket, connect, close (with SO_LINGER 0, so no TIME_WAIT);
# the server accepts and closes. Each round runs, in an order rotated per round:
#   bare     no agent
#   monitor  custos (monitor mode, [net] enabled, the process sensor on so short-lived
#            processes are named): every connection raises a connect, an accept and two
#            close events, written to the event file and the store
#   policy   the same plus RULES network rules in the kernel table, none matching (each
#            connect and bind walks the whole table)
#   nostore  monitor without the event store ([store] enabled = false): what the SQLite
#            store costs of the monitor phase
# The ratio is time per connection divided by bare's in the same round; medians over rounds.
# Events emitted, lost in the kernel (ring buffer full) and dropped by the output are reported
# from `custos status --json` after each run, and the agent's CPU time (user + system, all
# threads) per connection, from /proc, over the run plus the 1 s it is given to drain. The agent watches only a tmpfs of its own and
# its rules name a program there, so nothing else on the host is judged.
set -euo pipefail

N=${N:-20000}
ROUNDS=${ROUNDS:-5}
RULES=${RULES:-64}
REPO=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "bench/net.sh: needs root" >&2; exit 1; }

TMP=$(mktemp -d /tmp/custos-netbench-XXXXXX)
AGENT=""
cleanup() {
    if [[ -n $AGENT ]] && kill -0 "$AGENT" 2>/dev/null; then
        kill -TERM "$AGENT"; wait "$AGENT" 2>/dev/null || true
    fi
    mountpoint -q "$TMP/mnt" && umount "$TMP/mnt"
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if [[ -n ${CUSTOS_BIN:-} ]]; then
    BIN=$CUSTOS_BIN
else
    (cd "$REPO" && cargo build --release -q -p custos)
    BIN=$REPO/target/release/custos
fi
cc -O2 -pthread -o "$TMP/connloop" "$REPO/bench/net/connloop.c"
mkdir "$TMP/mnt"
mount -t tmpfs -o size=64m tmpfs "$TMP/mnt"
cp "$TMP/connloop" "$TMP/mnt/named"

config() { # phase -> $TMP/<phase>.toml
    local f=$TMP/$1.toml i
    cat > "$f" <<CONF
mode = "monitor"
socket = "$TMP/custos.sock"
state_dir = "$TMP/state-$1"
events = "$TMP/events-$1.json"
[net]
enabled = true
[exec]
watch = ["$TMP/mnt"]
CONF
    if [[ $1 == nostore ]]; then
        printf '[store]\nenabled = false\n' >> "$f"
    fi
    if [[ $1 == policy ]]; then
        for ((i = 1; i <= RULES; i++)); do
            printf '[[net.rule]]\naction = "deny"\nports = "%d"\nprogram = "%s"\n' \
                "$((40000 + i))" "$TMP/mnt/named" >> "$f"
        done
    fi
    echo "$f"
}

start_agent() { # phase
    rm -rf "$TMP/state-$1" "$TMP/events-$1.json"
    "$BIN" run --config "$(config "$1")" 2> "$TMP/agent-$1.log" &
    AGENT=$!
    for _ in $(seq 100); do
        "$BIN" status --config "$TMP/$1.toml" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$TMP/agent-$1.log" >&2
    echo "bench/net.sh: the agent did not start" >&2
    exit 1
}

stop_agent() { # phase: status to $TMP/status-<phase>.json, agent CPU ticks to CPU[round,phase]
    "$BIN" status --json --config "$TMP/$1.toml" > "$TMP/status-$1.json"
    local t
    t=$(awk '{ print $14 + $15 }' "/proc/$AGENT/stat")
    CPU[$2,$1]=$(( t - CPU0 ))
    kill -TERM "$AGENT"; wait "$AGENT" 2>/dev/null || true
    AGENT=""
}

declare -A SECS CPU
HZ=$(getconf CLK_TCK)
run() { # round phase
    local r=$1 p=$2 out
    if [[ $p != bare ]]; then
        start_agent "$p"
        CPU0=$(awk '{ print $14 + $15 }' "/proc/$AGENT/stat")
    fi
    out=$("$TMP/connloop" "$N")
    SECS[$r,$p]=${out#* }
    if [[ $p != bare ]]; then
        sleep 1 # let the agent drain what it read
        stop_agent "$p" "$r"
        python3 - "$TMP/status-$p.json" "$p" "$r" <<'PY' >&2
import json, sys
s = json.load(open(sys.argv[1]))
n = s.get("net", {})
print(f"  round {sys.argv[3]} {sys.argv[2]}: events {n.get('events')} lost {n.get('lost')} "
      f"output dropped {s.get('events_dropped')} rules {n.get('rules')}")
PY
    fi
    printf '  round %s %-8s %s s for %s connections\n' "$r" "$p" "${SECS[$r,$p]}" "$N" >&2
}

read -ra PHASES <<< "${PHASES:-bare monitor policy nostore}"
[[ " ${PHASES[*]} " == *" bare "* ]] || { echo "bench/net.sh: PHASES needs bare" >&2; exit 1; }
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#PHASES[@]}; k++)); do
        run "$r" "${PHASES[$(((k + r) % ${#PHASES[@]}))]}"
    done
done

python3 - "$N" "$ROUNDS" "${RESULTS_MD:-}" "$HZ" "${PHASES[@]}" <<PY
import statistics, sys
n, rounds, md, hz = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
secs = {$(for k in "${!SECS[@]}"; do printf '"%s": %s, ' "$k" "${SECS[$k]}"; done)}
cpu = {$(for k in "${!CPU[@]}"; do printf '"%s": %s, ' "$k" "${CPU[$k]}"; done)}
rows = ["| phase | connections/s (median) | µs per connection | × bare (paired median) | agent CPU µs per connection |",
        "|---|---|---|---|---|"]
for p in sys.argv[5:]:
    t = [secs[f"{r},{p}"] for r in range(1, rounds + 1)]
    ratio = statistics.median(secs[f"{r},{p}"] / secs[f"{r},bare"] for r in range(1, rounds + 1))
    med = statistics.median(t)
    c = "–" if p == "bare" else "%.1f" % statistics.median(
        cpu[f"{r},{p}"] / hz / n * 1e6 for r in range(1, rounds + 1))
    rows.append(f"| {p} | {n / med:,.0f} | {med / n * 1e6:.1f} | {ratio:.2f}× | {c} |")
table = "\n".join(rows)
print(table)
if md:
    open(md, "w").write(table + "\n")
PY
