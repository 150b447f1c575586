#!/usr/bin/env bash
# Oplog replay rate (entries/s) of `rbm oplog-replay` over one PITR chunk of 100k
# entries, beside the real PBM's `pbm oplog-replay` on the same chunk, the same server
# and the same empty target. A benchmark, not a test: it prints figures and checks only
# that each replay left the expected number of documents.
#
# The chunk is generated from documents, not sliced from the server's oplog (SecantusDB
# scans its oplog linearly, so a 100k-entry oplog would make the slicing, not the replay,
# the thing measured). Its entries have SecantusDB's shape (inserts with o2, updates as
# {$v:2, diff:{updatedFields}}, deletes, one explicit create): 60% inserts, 30% updates,
# 10% deletes, 1,000 entries per second of ts, ~200 B documents, stored uncompressed
# (`.oplog`, compression none) so the figure is the apply rate.
#
# Both tools run against SecantusDB started through the pbm-peer shims (PBM needs them,
# its replay goes through the `applyops` shim; rbm then uses applyOps too, the same path).
# A second rbm row runs on a plain SecantusDB, where rbm applies entries as ordinary
# commands (no applyOps there).
#
# Usage: bench/pitr_replay.sh     (RBM_BENCH_ENTRIES=100000, PBM_BIN=/tmp/pbm-bin,
#                                  RBM_BENCH_PROFILE=release|dev)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbm/target}"
entries="${RBM_BENCH_ENTRIES:-100000}"
pbm_bin="${PBM_BIN:-/tmp/pbm-bin}"
shims="${RBM_BENCH_SHIMS:-$PWD/../shared/tools/pbm-peer/secantusd_pbm_shims.py}"
[[ -f "$shims" ]] || shims=/work/shared/tools/pbm-peer/secantusd_pbm_shims.py

CLUSTER_WHO=bench-pitr
CLUSTER_DIR="$(mktemp -d /tmp/rbm-bench-pitr.XXXXXX)"
# shellcheck source=../scripts/lib/cluster.sh
source scripts/lib/cluster.sh
trap 'cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT

# RBM_BENCH_PROFILE=dev measures the (lightly optimised) dev build instead of release.
if [[ "${RBM_BENCH_PROFILE:-release}" == dev ]]; then
    cargo build --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/debug"
else
    cargo build --release --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/release"
fi
py="$RBM_CACHE/venv/bin/python"

# gen_chunk STORAGE: writes the chunk under STORAGE/pbmPitr/..., prints
# "fname start_t end_t end_i expected_docs size".
gen_chunk() {
    "$py" - "$1" "$entries" <<'PY'
import bson, datetime, os, random, sys
from bson import Timestamp
storage, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
t0 = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) - 7200
ns = "bench.r"
def ts(k):
    return Timestamp(t0 + k // 1000, k % 1000 + 1)
def wall(k):
    return datetime.datetime.fromtimestamp(t0 + k // 1000, datetime.timezone.utc)
out = bytearray()
live, next_id, oldest = [], 0, 0
out += bson.encode({"op": "c", "ns": "bench.$cmd", "o": {"create": "r"}, "ts": ts(0), "wall": wall(0)})
for k in range(1, n):
    r = k % 10
    if r < 6 or not live:
        d = {"_id": next_id, "name": "doc-%08d" % next_id, "n": next_id, "v": random.random(),
             "tags": ["a", "b", "c"], "pad": "x" * 120}
        out += bson.encode({"op": "i", "ns": ns, "o": d, "o2": {"_id": next_id}, "ts": ts(k), "wall": wall(k)})
        live.append(next_id)
        next_id += 1
    elif r < 9:
        i = random.choice(live)
        out += bson.encode({"op": "u", "ns": ns, "o": {"$v": 2, "diff": {"updatedFields": {"v": random.random(), "n": k}}},
                            "o2": {"_id": i}, "ts": ts(k), "wall": wall(k)})
    else:
        i = live.pop(0)
        out += bson.encode({"op": "d", "ns": ns, "o": {"_id": i}, "ts": ts(k), "wall": wall(k)})
# The slicer's end is the last write it saw: here a noop one second on.
end = Timestamp(t0 + (n - 1) // 1000 + 1, 1)
out += bson.encode({"op": "n", "ns": "", "o": {"msg": "periodic noop"}, "ts": end, "wall": wall(n + 1000)})
f = lambda t: datetime.datetime.fromtimestamp(t.time, datetime.timezone.utc).strftime("%Y%m%d%H%M%S") + "-%d" % t.inc
start = Timestamp(t0, 0)
day = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc).strftime("%Y%m%d")
fname = "pbmPitr/secantus/%s/%s.%s.oplog" % (day, f(start), f(end))
os.makedirs(os.path.join(storage, os.path.dirname(fname)), exist_ok=True)
with open(os.path.join(storage, fname), "wb") as fh:
    fh.write(out)
print(fname, t0, end.time, end.inc, len(live), len(out))
PY
}

# index_chunk URI FNAME START_T END_T END_I SIZE: the pbmPITRChunks entry, as PBM's slicer writes it.
index_chunk() {
    "$py" - "$@" <<'PY'
import sys, pymongo
from bson import Timestamp, Int64
uri, fname, st, et, ei, size = sys.argv[1:]
c = pymongo.MongoClient(uri)
c.admin.pbmPITRChunks.delete_many({})
c.admin.pbmPITRChunks.insert_one({"rs": "secantus", "fname": fname, "compression": "none",
    "start_ts": Timestamp(int(st), 0), "end_ts": Timestamp(int(et), int(ei)), "size": Int64(int(size))})
PY
}

count_docs() {
    "$py" -c 'import sys, pymongo; print(pymongo.MongoClient(sys.argv[1]).bench.r.count_documents({}))' "$1"
}
drop_bench() {
    "$py" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1]).drop_database("bench")' "$1"
}
fmt_time() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S; }

start_shimmed_mongo() {
    local port
    port="$(cluster_free_port)"
    mkdir -p "$CLUSTER_DIR/db-shims"
    PYTHONUNBUFFERED=1 "$py" "$shims" --host 127.0.0.1 --port "$port" \
        --storage-path "$CLUSTER_DIR/db-shims" --noop-heartbeat-seconds 10 --oplog-max-entries 20000 \
        >"$CLUSTER_DIR/mongod-shims.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    MONGO_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
    for _ in $(seq 1 120); do
        "$py" -c 'import sys, pymongo; sys.exit(0 if pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500).admin.command("hello").get("isWritablePrimary") else 1)' "$MONGO_URI" 2>/dev/null && return 0
        sleep 0.5
    done
    cluster_log "shimmed SecantusDB did not start; see $CLUSTER_DIR/mongod-shims.log"
    return 1
}

# replay_with LABEL CLI AGENT_PID: times `CLI oplog-replay --wait` and checks the result.
rows=()
replay_with() {
    local label="$1" cli="$2" pid="$3" c0 c1 t0 t1 got wall cpu hwm
    drop_bench "$MONGO_URI"
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    c0="$(proc_cpu "$pid")"
    t0="$(date +%s.%N)"
    if ! "$cli" oplog-replay --mongodb-uri "$MONGO_URI" --start="$(fmt_time "$start_t")" \
        --end="$(fmt_time "$end_t")" --wait >>"$CLUSTER_DIR/cli.log" 2>&1; then
        cluster_log "$label: oplog-replay failed"
        tail -5 "$CLUSTER_DIR/cli.log" >&2
        rows+=("| $label | failed (see log) | | | | |")
        return 0
    fi
    t1="$(date +%s.%N)"
    c1="$(proc_cpu "$pid")"
    hwm="$(proc_hwm "$pid")"
    got="$(count_docs "$MONGO_URI")"
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
    cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')"
    rows+=("| $label | $wall | $(awk -v n="$entries" -v w="$wall" 'BEGIN {printf "%.0f", n / w}') | $cpu | $hwm | $got/$expected |")
}

start_rbm_agent() {
    cluster_start_agent "$bin" "$MONGO_URI"
    "$bin/rbm" config --file "$CLUSTER_DIR/config.yaml" --mongodb-uri "$MONGO_URI" >/dev/null
    cluster_wait_agent "$bin/rbm" "$MONGO_URI"
}
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
}

mkdir -p "$CLUSTER_DIR/storage"
printf 'storage:\n  type: filesystem\n  filesystem:\n    path: %s\n' "$CLUSTER_DIR/storage" >"$CLUSTER_DIR/config.yaml"
cluster_log "generating a $entries-entry chunk..."
read -r fname start_t end_t end_i expected size < <(gen_chunk "$CLUSTER_DIR/storage")

# 1. Shimmed server: rbm, then PBM.
start_shimmed_mongo
start_rbm_agent
index_chunk "$MONGO_URI" "$fname" "$start_t" "$end_t" "$end_i" "$size"
cluster_log "rbm oplog-replay (shimmed server, applyOps)..."
replay_with "rbm (applyOps via shim)" "$bin/rbm" "$AGENT_PID"
stop_pid "$AGENT_PID"
if [[ -x "$pbm_bin/pbm-agent" && -x "$pbm_bin/pbm" ]]; then
    "$pbm_bin/pbm-agent" --mongodb-uri "$MONGO_URI" >"$CLUSTER_DIR/pbm-agent.log" 2>&1 &
    pbm_pid=$!
    CLUSTER_PIDS+=("$pbm_pid")
    sleep 5
    "$pbm_bin/pbm" config --file "$CLUSTER_DIR/config.yaml" --mongodb-uri "$MONGO_URI" >/dev/null 2>&1 || true
    sleep 5
    # A resync may have rebuilt the chunk index from storage (with PBM's own size).
    index_chunk "$MONGO_URI" "$fname" "$start_t" "$end_t" "$end_i" "$size"
    cluster_log "pbm oplog-replay (shimmed server)..."
    replay_with "PBM 2.15 (applyOps via shim)" "$pbm_bin/pbm" "$pbm_pid"
    stop_pid "$pbm_pid"
else
    rows+=("| PBM 2.15 | not measured: no $pbm_bin/pbm, pbm-agent | | | | |")
fi
cluster_stop

# 2. Plain server: rbm applies entries as commands.
cluster_start_mongo "$(cluster_free_port)"
start_rbm_agent
index_chunk "$MONGO_URI" "$fname" "$start_t" "$end_t" "$end_i" "$size"
cluster_log "rbm oplog-replay (plain server, commands)..."
replay_with "rbm (plain SecantusDB, commands)" "$bin/rbm" "$AGENT_PID"

echo
echo "Oplog replay of one uncompressed PITR chunk: $entries entries ($size B), $expected documents left; rbm build: ${RBM_BENCH_PROFILE:-release}"
echo "| tool | wall s | entries/s | agent CPU s | agent peak RSS MB | docs after |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "(The plain-server row is bound by SecantusDB: every replayed write there appends to its"
echo " capped oplog, which it maintains linearly; the shim's applyOps does not. Agent CPU shows"
echo " the agent's own share.)"
