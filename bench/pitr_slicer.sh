#!/usr/bin/env bash
# PITR slicer cost under a steady write load: one SecantusDB member, a load generator
# inserting RBM_BENCH_RATE documents/s (one oplog entry each), and one agent slicing
# with oplogOnly (no base backup needed, the same for both) and s2 compression. Once
# the first chunk is indexed the agent is measured for RBM_BENCH_MINUTES: CPU seconds
# (utime+stime from /proc/<pid>/stat) and peak RSS (VmHWM, reset through clear_refs at
# the start of the window), plus the chunks and entries it stored. The same is then
# done for PBM's agent (/tmp/pbm-bin/pbm-agent, or RBM_BENCH_PBM_BIN) on a fresh server
# started through shared/tools/pbm-peer/secantusd_pbm_shims.py (PBM needs the shims on
# SecantusDB); rbm runs on the same shimmed server so the two see the same load.
# A benchmark, not a test: it prints figures.
# Measured 2026-11-26 (RBM_BENCH_MINUTES=2, release build, machine shared with builds):
#   rbm 0.22 CPU s (0.18 %), 25 MB peak RSS, 6 chunks, 1,904,235 B;
#   PBM 0.37 CPU s (0.31 %), 54 MB peak RSS, 7 chunks, 1,933,035 B (995-1000 inserts/s).
#
# Usage: bench/pitr_slicer.sh                 (5 minutes at 1,000 entries/s)
#        RBM_BENCH_MINUTES=2 bench/pitr_slicer.sh
# Knobs: RBM_BENCH_RATE (1000), RBM_BENCH_SPAN_MIN (0.25: chunk span, minutes),
#        RBM_BENCH_OPLOG_ENTRIES (60000: the server's oplog cap; a chunk must fit in it,
#        and SecantusDB scans the whole oplog per query, so keep it small),
#        RBM_BENCH_PROFILE (release | dev: which cargo profile's binaries to measure),
#        RBM_BENCH_SKIP_PBM=1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbm/target}"
minutes="${RBM_BENCH_MINUTES:-5}"
window="$(awk -v m="$minutes" 'BEGIN {printf "%d", m * 60}')"
rate="${RBM_BENCH_RATE:-1000}"
span="${RBM_BENCH_SPAN_MIN:-0.25}"
oplog_entries="${RBM_BENCH_OPLOG_ENTRIES:-60000}"
profile="${RBM_BENCH_PROFILE:-release}"
pbm_bin="${RBM_BENCH_PBM_BIN:-/tmp/pbm-bin}"
shims="${RBM_BENCH_SHIMS:-$PWD/../shared/tools/pbm-peer/secantusd_pbm_shims.py}"
[[ -f "$shims" ]] || shims="/work/shared/tools/pbm-peer/secantusd_pbm_shims.py"

CLUSTER_WHO=bench
CLUSTER_DIR="$(mktemp -d /tmp/rbm-bench-pitr.XXXXXX)"
# shellcheck source=../scripts/lib/cluster.sh
source scripts/lib/cluster.sh
LOAD_PID=""
trap '[[ -n "$LOAD_PID" ]] && kill "$LOAD_PID" 2>/dev/null; cluster_stop; [[ -n "${RBM_BENCH_KEEP:-}" ]] || rm -rf "$CLUSTER_DIR"' EXIT

scripts/test-services install mongodb >/dev/null
if [[ "$profile" == release ]]; then
    cargo build --release --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/release"
else
    cargo build --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/debug"
fi
py="$RBM_CACHE/venv/bin/python"

# start_server DIR: SecantusDB through the PBM shims with a larger oplog; sets MONGO_URI.
start_server() {
    local dir="$1" port
    port="$(cluster_free_port)"
    mkdir -p "$dir/db"
    : >"$dir/secantusd.toml"
    PYTHONUNBUFFERED=1 "$py" "$shims" --config "$dir/secantusd.toml" \
        --host 127.0.0.1 --port "$port" --storage-path "$dir/db" \
        --oplog-max-entries "$oplog_entries" --noop-heartbeat-seconds 10 \
        >"$dir/mongod.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    MONGO_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
    "$py" - "$MONGO_URI" <<'PY'
import sys, time, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500)
for _ in range(240):
    try:
        if c.admin.command("hello").get("isWritablePrimary"):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit("SecantusDB did not become primary")
PY
}

# start_load URI: RATE inserts/s in 10 batches a second, on an absolute schedule.
start_load() {
    "$py" - "$1" "$rate" "$CLUSTER_DIR/load.count" <<'PY' >"$CLUSTER_DIR/load.log" 2>&1 &
import sys, time, pymongo
c = pymongo.MongoClient(sys.argv[1])
coll, rate = c.bench.events, int(sys.argv[2])
batch, n, t = max(rate // 10, 1), 0, time.monotonic()
while True:
    coll.insert_many([{"n": n + i, "pad": "x" * 64} for i in range(batch)], ordered=False)
    n += batch
    with open(sys.argv[3], "w") as f:
        f.write(str(n))
    t += batch / rate
    time.sleep(max(0.0, t - time.monotonic()))
PY
    LOAD_PID=$!
}

# chunk_stats URI STORAGE: "chunks seconds_covered stored_bytes" of the indexed chunks
# (stored bytes from the files: PBM's `size` field holds the uncompressed oplog bytes).
chunk_stats() {
    "$py" - "$1" "$2" <<'PY'
import os, sys, pymongo
c = pymongo.MongoClient(sys.argv[1])
ch = list(c.admin.pbmPITRChunks.find({}, sort=[("start_ts", 1)]))
span = ch[-1]["end_ts"].time - ch[0]["start_ts"].time if ch else 0
print(len(ch), span, sum(os.path.getsize(os.path.join(sys.argv[2], x["fname"])) for x in ch))
PY
}

# measure LABEL AGENT_PID URI STORAGE: waits for the first chunk, then measures the window.
measure() {
    local label="$1" pid="$2" uri="$3" stg="$4" i c0 c1 hwm n0 n1 b0 b1 s0 s1 l0 l1
    for i in $(seq 1 240); do
        read -r n0 s0 b0 < <(chunk_stats "$uri" "$stg")
        [[ "$n0" -gt 0 ]] && break
        kill -0 "$pid" 2>/dev/null || { cluster_log "$label agent exited"; return 1; }
        sleep 1
    done
    [[ "$n0" -gt 0 ]] || { cluster_log "$label: no chunk after 4 minutes"; return 1; }
    cluster_log "$label slices; measuring for $minutes min..."
    proc_reset_hwm "$pid"
    c0="$(proc_cpu "$pid")"
    l0="$(cat "$CLUSTER_DIR/load.count")"
    sleep "$window"
    c1="$(proc_cpu "$pid")"
    l1="$(cat "$CLUSTER_DIR/load.count")"
    hwm="$(proc_hwm "$pid")"
    read -r n1 s1 b1 < <(chunk_stats "$uri" "$stg")
    awk -v l="$label" -v c0="$c0" -v c1="$c1" -v w="$window" -v h="$hwm" \
        -v n="$((n1 - n0))" -v s="$((s1 - s0))" -v b="$((b1 - b0))" -v r="$((l1 - l0))" \
        'BEGIN {printf "| %s | %d | %.0f | %.2f | %.2f | %d | %d | %d | %d |\n", l, w, r / w, c1 - c0, 100 * (c1 - c0) / w, h, n, s, b}'
}

config_yaml() {
    printf 'storage:\n  type: filesystem\n  filesystem:\n    path: %s\npitr:\n  enabled: true\n  oplogOnly: true\n  oplogSpanMin: %s\n  compression: s2\n' "$1" "$span"
}

rows=()
cluster_log "rbm: server, load of $rate entries/s, agent..."
run="$CLUSTER_DIR/rbm"
mkdir -p "$run/storage"
start_server "$run"
start_load "$MONGO_URI"
config_yaml "$run/storage" >"$run/config.yaml"
LOG_LEVEL=I "$bin/rbm-agent" --mongodb-uri "$MONGO_URI" >"$run/agent.log" 2>&1 &
agent=$!
CLUSTER_PIDS+=("$agent")
"$bin/rbm" config --file "$run/config.yaml" --mongodb-uri "$MONGO_URI" >/dev/null
rows+=("$(measure rbm "$agent" "$MONGO_URI" "$run/storage")")
kill "$LOAD_PID" 2>/dev/null || true
LOAD_PID=""
cluster_stop

pbm_note=""
if [[ -n "${RBM_BENCH_SKIP_PBM:-}" ]]; then
    pbm_note="not measured (RBM_BENCH_SKIP_PBM set)"
elif [[ ! -x "$pbm_bin/pbm-agent" || ! -x "$pbm_bin/pbm" ]]; then
    pbm_note="not measured ($pbm_bin/pbm-agent or pbm missing: build it with shared/tools/pbm-peer/pbm-peer.sh)"
else
    cluster_log "PBM: server, load of $rate entries/s, agent..."
    run="$CLUSTER_DIR/pbm"
    mkdir -p "$run/storage"
    start_server "$run"
    start_load "$MONGO_URI"
    config_yaml "$run/storage" >"$run/config.yaml"
    "$pbm_bin/pbm-agent" --mongodb-uri "$MONGO_URI" >"$run/agent.log" 2>&1 &
    agent=$!
    CLUSTER_PIDS+=("$agent")
    sleep 3
    "$pbm_bin/pbm" config --file "$run/config.yaml" --mongodb-uri "$MONGO_URI" >/dev/null
    if row="$(measure PBM "$agent" "$MONGO_URI" "$run/storage")"; then
        rows+=("$row")
    else
        pbm_note="not measured (no chunk from PBM; agent log: $(tail -3 "$run/agent.log" | tr '\n' ' '))"
    fi
    kill "$LOAD_PID" 2>/dev/null || true
    LOAD_PID=""
    cluster_stop
fi

echo
echo "PITR slicing, oplogOnly, s2, span $span min, load $rate inserts/s, window $minutes min (rbm: $profile build)"
echo "| agent | window s | load inserts/s | CPU s | CPU % | peak RSS MB | chunks | seconds covered | bytes stored |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
[[ -z "$pbm_note" ]] || echo "| PBM | $pbm_note |"
