#!/usr/bin/env bash
# NSRL-sized hash set benchmark: custos's memory-mapped sorted set against The Sleuth Kit's
# hfind (sorted text index), N synthetic digests each.
#
#   bench/nsrl.sh                                 # N=200M: ~42 GB free disk under WORK, ~15 min
#   N=20000000 OUT_DIR=/tmp/nsrl bench/nsrl.sh    # smaller, keep the raw results
#
# Environment:
#   N        digests in each set                                        (default 200000000)
#   Q        lookups per measurement                                    (default 1000000)
#   HIT_PERMILLE  share of queries that are members, per mille          (default 10 = 1 %)
#   MEMORY   custos import sort buffer, MiB (`--memory`)                (default 512)
#   WORK     scratch dir for inputs, sets and indexes; removed at exit  (default /work/bench-tmp/nsrl)
#   SKIP_HFIND=1       only custos
#   RESULTS_MD=FILE    also write the markdown result table to FILE
#   OUT_DIR=DIR        keep the raw results (JSON lines, environment, table) in DIR
#   CUSTOS_BIN=FILE    use this custos binary instead of building the workspace's
#   TOOLS_DIR=DIR      take nsrl_gen and nsrl_lookup (examples of custos-reputation) from DIR
#
# What runs, in this order (inputs are deleted as soon as they are consumed, to bound disk):
#   1. custos SHA-256: `nsrl_gen` writes N random SHA-256 digests as a digest list (one hex
#      digest per line; a 200M-row RDS v3 SQLite would be ~3x the bytes and only measure
#      SQLite's scan speed, which the import reads at a few M rows/s — see docs); `custos db
#      import-nsrl` imports it (timed; peak RSS from /usr/bin/time); `nsrl_lookup` opens the
#      set as the agent does and looks up Q queries, HIT_PERMILLE of them members.
#   2. The MD5 input: N random MD5 digests in md5sum format ("HEX  f"), which hfind indexes.
#      custos imports the very same file (an MD5 set) and runs the same lookups: this is the
#      like-for-like comparison.
#   3. hfind: `hfind -i md5sum` builds its index (it runs sort(1); LC_ALL=C and TMPDIR=WORK
#      are set for it), then `hfind -f QUERIES` looks the queries up, twice (the second run is
#      reported: warm page cache, as for custos). hfind prints one line per query; hits are the
#      lines without "Hash Not Found". Peak RSS from /usr/bin/time.
# Sizes are of what each needs at lookup time: custos the set file; hfind the index files plus
# the md5sum database it reads names from.
set -euo pipefail

N=${N:-200000000}
Q=${Q:-1000000}
HIT_PERMILLE=${HIT_PERMILLE:-10}
MEMORY=${MEMORY:-512}
WORK=${WORK:-/work/bench-tmp/nsrl}
SKIP_HFIND=${SKIP_HFIND:-0}
RESULTS_MD=${RESULTS_MD:-}
OUT_DIR=${OUT_DIR:-}
NCPU=$(nproc)
POLICY_RC_CREATED=0

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

positive_ints N Q MEMORY
[[ $HIT_PERMILLE =~ ^[0-9]+$ ]] && ((HIT_PERMILLE <= 1000)) || die "HIT_PERMILLE must be 0..1000"
[[ -x /usr/bin/time ]] || die "needs GNU time (/usr/bin/time, Debian package time)"

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; fi
    [[ -n ${WORK_MADE:-} ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -e $WORK ]] && die "WORK=$WORK exists; remove it or pick another"
mkdir -p "$WORK"
WORK_MADE=1
RAW=$WORK/raw.jsonl
: >"$RAW"

# Disk: SHA-256 list 65 B + sort runs 32 B + set 32 B at once; later md5sum db 36 B + hfind
# unsorted index 50 B + sorted index 50 B + sort(1) temp ~50 B per digest.
need_kib=$(( N * 210 / 1024 ))
avail_kib=$(df --output=avail -k "$WORK" | tail -1)
(( avail_kib > need_kib )) || die "needs about $((need_kib / 1048576)) GiB free under $WORK, has $((avail_kib / 1048576))"

if ((!SKIP_HFIND)) && ! command -v hfind >/dev/null; then
    log "installing sleuthkit (hfind)"
    apt_install sleuthkit || die "cannot install sleuthkit; SKIP_HFIND=1 to run without it"
fi

# ---------------------------------------------------------------- build
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ -z ${TOOLS_DIR:-} ]]; then
    log "building the generator and lookup driver (cargo build --release --examples -p custos-reputation)"
    (cd "$REPO" && cargo build --release -p custos-reputation --examples) >&2
    TOOLS_DIR=$TARGET/release/examples
fi
GEN=$TOOLS_DIR/nsrl_gen
LOOKUP=$TOOLS_DIR/nsrl_lookup
[[ -x $GEN && -x $LOOKUP ]] || die "no nsrl_gen / nsrl_lookup in $TOOLS_DIR"
if [[ -z ${CUSTOS_BIN:-} ]]; then
    log "building custos (cargo build --release -p custos)"
    (cd "$REPO" && cargo build --release -p custos) >&2
    CUSTOS_BIN=$TARGET/release/custos
fi
[[ -x $CUSTOS_BIN ]] || die "CUSTOS_BIN=$CUSTOS_BIN is not executable"

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
record() { echo "$1" >>"$RAW"; }
timed() { # out_file cmd...: run under GNU time; "wall_s max_rss_kib" into out_file
    local out=$1
    shift
    /usr/bin/time -f '%e %M' -o "$out" "$@"
}

custos_import() { # name input -> set size, import time, peak RSS; leaves state in WORK/state-NAME
    local name=$1 input=$2 st=$WORK/state-$1
    mkdir -p "$st"
    printf 'state_dir = "%s"\nsocket = "%s/custos.sock"\n' "$st" "$st" >"$st/custos.toml"
    log "custos: import-nsrl $name ($(du -h "$input" | cut -f1) input)"
    timed "$WORK/t" "$CUSTOS_BIN" --config "$st/custos.toml" db import-nsrl "$input" \
        --memory "$MEMORY" | tee "$WORK/import-$name.txt" >&2
    read -r IMPORT_S IMPORT_RSS <"$WORK/t"
    SET_BYTES=$(stat -c %s "$st/nsrl/nsrl.set")
    record "{\"tool\":\"custos\",\"set\":\"$name\",\"phase\":\"import\",\"seconds\":$IMPORT_S,\"max_rss_kib\":$IMPORT_RSS,\"bytes\":$SET_BYTES}"
}

custos_lookup() { # name queries
    local name=$1 q=$2
    log "custos: $Q lookups in the $name set"
    "$LOOKUP" "$WORK/state-$name" "$q" 3 >"$WORK/lookup-$name.json"
    LOOK=$(cat "$WORK/lookup-$name.json")
    record "{\"tool\":\"custos\",\"set\":\"$name\",\"phase\":\"lookup\",\"result\":$LOOK}"
    echo "$LOOK" >&2
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# ---------------------------------------------------------------- 1. custos, SHA-256
log "generating $N SHA-256 digests"
t0=$(now)
"$GEN" set sha256 "$N" 1 "$WORK/sha256.txt"
GEN256_S=$(secs "$t0" "$(now)")
"$GEN" queries sha256 "$N" 1 "$Q" "$HIT_PERMILLE" "$WORK/q256.txt"
custos_import sha256 "$WORK/sha256.txt"
C256_IMPORT_S=$IMPORT_S C256_IMPORT_RSS=$IMPORT_RSS C256_BYTES=$SET_BYTES
rm -f "$WORK/sha256.txt"
custos_lookup sha256 "$WORK/q256.txt"
C256_LOOK=$LOOK

# ---------------------------------------------------------------- 2. the MD5 input, custos MD5
log "generating $N MD5 digests (md5sum format)"
"$GEN" set md5 "$N" 2 "$WORK/md5.db" --name
"$GEN" queries md5 "$N" 2 "$Q" "$HIT_PERMILLE" "$WORK/q5.txt"
rm -rf "$WORK/state-sha256"
custos_import md5 "$WORK/md5.db"
C5_IMPORT_S=$IMPORT_S C5_IMPORT_RSS=$IMPORT_RSS C5_BYTES=$SET_BYTES
custos_lookup md5 "$WORK/q5.txt"
C5_LOOK=$LOOK

# ---------------------------------------------------------------- 3. hfind
if ((!SKIP_HFIND)); then
    rm -rf "$WORK/state-md5"
    log "hfind: -i md5sum (index build)"
    LC_ALL=C TMPDIR=$WORK timed "$WORK/t" hfind -i md5sum "$WORK/md5.db" >&2
    read -r H_IMPORT_S H_IMPORT_RSS <"$WORK/t"
    H_BYTES=$(cat "$WORK"/md5.db-md5.idx* "$WORK/md5.db" | wc -c)
    H_IDX_BYTES=$(cat "$WORK"/md5.db-md5.idx* | wc -c)
    record "{\"tool\":\"hfind\",\"set\":\"md5\",\"phase\":\"import\",\"seconds\":$H_IMPORT_S,\"max_rss_kib\":$H_IMPORT_RSS,\"bytes\":$H_BYTES,\"index_bytes\":$H_IDX_BYTES}"
    for pass in 1 2; do
        log "hfind: $Q lookups (-f), pass $pass"
        timed "$WORK/t" hfind -f "$WORK/q5.txt" "$WORK/md5.db" >"$WORK/hfind.out"
        read -r H_LOOK_S H_LOOK_RSS <"$WORK/t"
    done
    H_HITS=$(grep -vc 'Hash Not Found' "$WORK/hfind.out" || true)
    H_RATE=$(awk -v q="$Q" -v s="$H_LOOK_S" 'BEGIN { printf "%.0f", (s > 0 ? q / s : 0) }')
    record "{\"tool\":\"hfind\",\"set\":\"md5\",\"phase\":\"lookup\",\"seconds\":$H_LOOK_S,\"per_s\":$H_RATE,\"hits\":$H_HITS,\"max_rss_kib\":$H_LOOK_RSS}"
fi

# ---------------------------------------------------------------- report
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }
mib_k() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.1fx" : "n/a"), a / b }'; }
rate() { awk -v r="$1" 'BEGIN { printf "%.2fM/s", r / 1e6 }'; }
C256_RATE=$(jget "$C256_LOOK" warm_per_s) C5_RATE=$(jget "$C5_LOOK" warm_per_s)
table() {
    echo "| | custos SHA-256 | custos MD5 | hfind MD5 (md5sum index) | custos MD5 vs hfind |"
    echo "|---|---:|---:|---:|---:|"
    if ((!SKIP_HFIND)); then
        echo "| import / index build | $C256_IMPORT_S s | $C5_IMPORT_S s | $H_IMPORT_S s | hfind $(ratio "$H_IMPORT_S" "$C5_IMPORT_S") longer |"
        echo "| peak RSS, import | $(mib_k "$C256_IMPORT_RSS") | $(mib_k "$C5_IMPORT_RSS") | $(mib_k "$H_IMPORT_RSS") | |"
        echo "| on disk at lookup time | $(gib "$C256_BYTES") | $(gib "$C5_BYTES") | $(gib "$H_BYTES") (index $(gib "$H_IDX_BYTES")) | hfind $(ratio "$H_BYTES" "$C5_BYTES") larger |"
        echo "| lookups/s, warm, 1 process | $(rate "$C256_RATE") | $(rate "$C5_RATE") | $(rate "$H_RATE") | custos $(ratio "$C5_RATE" "$H_RATE") faster |"
        echo "| RSS during lookups (custos: of it file-backed, the mapped set) | $(mib_k "$(jget "$C256_LOOK" rss_kib)") ($(mib_k "$(jget "$C256_LOOK" rss_file_kib)")) | $(mib_k "$(jget "$C5_LOOK" rss_kib)") ($(mib_k "$(jget "$C5_LOOK" rss_file_kib)")) | $(mib_k "$H_LOOK_RSS") (peak) | |"
        echo "| hits / $Q queries | $(jget "$C256_LOOK" hits) | $(jget "$C5_LOOK" hits) | $H_HITS | |"
    else
        echo "| import | $C256_IMPORT_S s | $C5_IMPORT_S s | | |"
        echo "| on disk | $(gib "$C256_BYTES") | $(gib "$C5_BYTES") | | |"
        echo "| lookups/s, warm | $(rate "$C256_RATE") | $(rate "$C5_RATE") | | |"
    fi
}
{
    echo
    echo "N=$N digests per set, Q=$Q lookups, $HIT_PERMILLE per mille members, --memory $MEMORY MiB"
    env_host
    echo "generating the SHA-256 list took ${GEN256_S} s (not part of the import time)"
    echo "custos lookups, SHA-256: $C256_LOOK"
    echo "custos lookups, MD5:     $C5_LOOK"
    echo
    table
} | tee "$WORK/results.md"
[[ -n $RESULTS_MD ]] && cp "$WORK/results.md" "$RESULTS_MD"
if [[ -n $OUT_DIR ]]; then
    mkdir -p "$OUT_DIR"
    cp "$RAW" "$WORK/results.md" "$WORK"/import-*.txt "$OUT_DIR"/
fi
