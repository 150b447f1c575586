#!/usr/bin/env bash
# Physical (cold) backup and restore of the dbPath holding the pbm-peer data set
# (3 x RBM_BENCH_NDOCS docs, ~215 MB of BSON at 100k) on a private SecantusDB that the
# agent stops and starts, next to a plain `tar` of the same stopped directory to the same
# (filesystem) storage, and next to rbm's logical backup of the same data. A benchmark,
# not a test: it prints figures and asserts only that the restored data verifies.
#
# MB/s is the dbPath size (du -sb) over the wall time of the CLI command with --wait; the
# physical figures include the node's stop and start (SecantusDB: ~3-6 s to stop).
#
# Usage: bench/physical.sh   (RBM_BENCH_NDOCS=100000, RBM_BENCH_COMPRESSIONS="none s2",
#        RBM_BENCH_PROFILE=release|dev)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbm/target}"
ndocs="${RBM_BENCH_NDOCS:-100000}"
compressions="${RBM_BENCH_COMPRESSIONS:-none s2}"
gendata="${RBM_BENCH_GENDATA:-$PWD/../shared/tools/pbm-peer/pbm-peer-gendata.py}"
[[ -f "$gendata" ]] || { echo "bench: $gendata not found (set RBM_BENCH_GENDATA)" >&2; exit 2; }

CLUSTER_WHO=bench
CLUSTER_DIR="$(mktemp -d /tmp/rbm-bench-physical.XXXXXX)"
# shellcheck source=../scripts/lib/cluster.sh
source scripts/lib/cluster.sh
trap 'sh "$CLUSTER_DIR/stop.sh" || true; cluster_stop; rm -rf "$CLUSTER_DIR"' EXIT

scripts/test-services install mongodb >/dev/null
# RBM_BENCH_PROFILE=dev reuses the dev build (this workspace's dev profile is optimized).
if [[ "${RBM_BENCH_PROFILE:-release}" == dev ]]; then
    cargo build --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/debug"
else
    cargo build --release --quiet -p rbm-agent --bins
    bin="$CARGO_TARGET_DIR/release"
fi
py="$RBM_CACHE/venv/bin/python"
port="$(cluster_free_port)"
db="$CLUSTER_DIR/db"
mkdir -p "$db" "$CLUSTER_DIR/storage"
: >"$CLUSTER_DIR/secantusd.toml"

# The node runs detached so the agent can stop and start it (cold mode).
cat >"$CLUSTER_DIR/start.sh" <<SH
#!/bin/sh
PYTHONUNBUFFERED=1 nohup "$RBM_CACHE/venv/bin/secantusd-py" --config "$CLUSTER_DIR/secantusd.toml" \
  --host 127.0.0.1 --port $port --storage-path "$db" --oplog-max-entries 20000 \
  --noop-heartbeat-seconds 10 >>"$CLUSTER_DIR/mongod.log" 2>&1 </dev/null &
echo \$! >"$CLUSTER_DIR/mongod.pid"
SH
cat >"$CLUSTER_DIR/stop.sh" <<SH
#!/bin/sh
pid=\$(cat "$CLUSTER_DIR/mongod.pid" 2>/dev/null) || exit 0
alive() { [ -e /proc/\$pid ] && ! grep -q ') Z' /proc/\$pid/stat 2>/dev/null; }
kill -TERM "\$pid" 2>/dev/null
while alive; do sleep 0.1; done
SH
MONGO_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
wait_up() {
    for _ in $(seq 1 120); do
        "$py" - "$MONGO_URI" <<'PY' 2>/dev/null && return 0
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500)
sys.exit(0 if c.admin.command("hello").get("isWritablePrimary") else 1)
PY
        sleep 0.5
    done
    cluster_log "SecantusDB did not come up; see $CLUSTER_DIR/mongod.log"; exit 1
}
sh "$CLUSTER_DIR/start.sh"; wait_up
cluster_log "generating 3 x $ndocs documents (pbm-peer-gendata.py)..."
"$py" "$gendata" "$MONGO_URI" bench 3 "$ndocs" >/dev/null

export PBM_MONGODB_URI="$MONGO_URI"
printf 'storage:\n  type: filesystem\n  filesystem:\n    path: %s\n' "$CLUSTER_DIR/storage" >"$CLUSTER_DIR/config.yaml"
LOG_LEVEL=I "$bin/rbm-agent" --mongodb-uri "$MONGO_URI" --dbpath "$db" \
    --mongod-start-cmd "sh '$CLUSTER_DIR/start.sh'" --mongod-stop-cmd "sh '$CLUSTER_DIR/stop.sh'" \
    >"$CLUSTER_DIR/agent.log" 2>&1 &
AGENT_PID=$!
CLUSTER_PIDS+=("$AGENT_PID")
"$bin/rbm" config --file "$CLUSTER_DIR/config.yaml" --wait >/dev/null
cluster_wait_agent "$bin/rbm" "$MONGO_URI"
sleep 2

wall() {  # wall CMD...: seconds
    local t0 t1
    t0="$(date +%s.%N)"
    "$@" >>"$CLUSTER_DIR/cli.log" 2>&1 || { cluster_log "failed: $*"; tail -20 "$CLUSTER_DIR/cli.log" >&2; tail -20 "$CLUSTER_DIR/agent.log" >&2; exit 1; }
    t1="$(date +%s.%N)"
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}'
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / 1e6 / s}'; }
last_name() { "$bin/rbm" list -o json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][-1]["name"])'; }

dbsize="$(du -sb "$db" | cut -f1)"
rows=() names=()
for c in $compressions; do
    cluster_log "physical (cold) backup, compression $c..."
    s="$(wall "$bin/rbm" backup --type physical --compression "$c" --wait)"
    name="$(last_name)"; names+=("$name")
    stored="$(du -sb "$CLUSTER_DIR/storage/$name" | cut -f1)"
    rows+=("| physical backup ($c) | $s | $(mbps "$dbsize" "$s") | $stored |")
done

cluster_log "plain tar of the stopped dbPath to the same storage..."
t0="$(date +%s.%N)"
sh "$CLUSTER_DIR/stop.sh"
tar -cf "$CLUSTER_DIR/storage/plain.tar" -C "$db" .
t_copy="$(date +%s.%N)"
sh "$CLUSTER_DIR/start.sh"; wait_up
t1="$(date +%s.%N)"
tar_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
tar_only="$(awk -v a="$t0" -v b="$t_copy" 'BEGIN {printf "%.1f", b - a}')"
rows+=("| tar (stop + tar + start) | $tar_s | $(mbps "$dbsize" "$tar_s") | $(stat -c %s "$CLUSTER_DIR/storage/plain.tar") |")
rows+=("| tar (stop + tar only) | $tar_only | $(mbps "$dbsize" "$tar_only") | |")
sleep 6   # the agent's driver finds the node again

cluster_log "logical backup (s2) of the same data..."
s="$(wall "$bin/rbm" backup --type logical --compression s2 --wait)"
lname="$(last_name)"
rows+=("| logical backup (s2) | $s | $(mbps "$dbsize" "$s") | $(du -sb "$CLUSTER_DIR/storage/$lname" | cut -f1) |")

# Incremental (hash mode, as cold mode has no WiredTiger block tracking): a base, then
# an increment after 1% more documents. The increment reads the whole dbPath again while
# the node is down; only the changed blocks are stored.
cluster_log "incremental base (s2), then 1% more documents and an increment..."
s="$(wall "$bin/rbm" backup --type incremental --base --compression s2 --wait)"
bname="$(last_name)"
rows+=("| incremental base (s2) | $s | $(mbps "$dbsize" "$s") | $(du -sb "$CLUSTER_DIR/storage/$bname" | cut -f1) |")
"$py" - "$MONGO_URI" "$ndocs" <<'PY'
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1])
n = int(sys.argv[2]) // 100
docs = list(c.bench.c0.find({}).limit(n))
for i, d in enumerate(docs):
    d["_id"] = f"extra-{i}"
c.bench.c0.insert_many(docs)
PY
s="$(wall "$bin/rbm" backup --type incremental --compression s2 --wait)"
iname="$(last_name)"
rows+=("| increment after +1% docs (s2) | $s | $(mbps "$dbsize" "$s") | $(du -sb "$CLUSTER_DIR/storage/$iname" | cut -f1) |")

for i in "${!names[@]}"; do
    c="$(cut -d' ' -f$((i + 1)) <<<"$compressions")"
    cluster_log "physical restore of ${names[$i]} ($c)..."
    s="$(wall "$bin/rbm" restore "${names[$i]}" --wait --yes)"
    ok="$("$py" "$gendata" --verify "$MONGO_URI" bench 3 "$ndocs" | grep -c 'match=True' || true)"
    [[ "$ok" == 3 ]] || { cluster_log "restored data does not verify"; exit 1; }
    rows+=("| physical restore ($c) | $s | $(mbps "$dbsize" "$s") | |")
done
cluster_log "untar of the plain tar into a stopped node..."
t0="$(date +%s.%N)"
sh "$CLUSTER_DIR/stop.sh"
mv "$db" "$db.old"; mkdir "$db"
tar -xf "$CLUSTER_DIR/storage/plain.tar" -C "$db"
sh "$CLUSTER_DIR/start.sh"; wait_up
t1="$(date +%s.%N)"
rm -rf "$db.old"
s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
rows+=("| tar restore (stop + untar + start) | $s | $(mbps "$dbsize" "$s") | |")

echo
echo "dbPath: $dbsize bytes ($(find "$db" -type f | wc -l) files), 3 x $ndocs docs; filesystem storage on the same disk"
echo "| operation | wall s | MB/s of dbPath | bytes stored |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
