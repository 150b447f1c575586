#!/usr/bin/env bash
# Logical backup and restore of the 215 MB data set of shared/tools/pbm-peer/pbm-peer-gendata.py
# on a private SecantusDB, measured exactly as shared/notes/perf-baseline.md measured the
# real PBM: wall time of the CLI command with --wait, agent CPU (utime+stime from
# /proc/<pid>/stat), agent peak RSS (VmHWM, reset through clear_refs before each run),
# bytes stored (du -sb of the backup's objects). The floor for a backup, a plain find of
# the same collections with the same Rust driver (agent/examples/raw_scan.rs), is taken
# in the same run. A benchmark, not a test: it prints figures and asserts only that the
# restored data verifies.
#
# Usage: bench/logical.sh            (RBM_BENCH_NDOCS=100000 docs x 3 collections)
#        RBM_BENCH_COMPRESSIONS="s2" bench/logical.sh
#        RBM_BENCH_KEEP=1 bench/logical.sh   (keep the scratch dir with the agent and server logs)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbm/target}"
ndocs="${RBM_BENCH_NDOCS:-100000}"
compressions="${RBM_BENCH_COMPRESSIONS:-none s2 zstd}"
gendata="${RBM_BENCH_GENDATA:-$PWD/../shared/tools/pbm-peer/pbm-peer-gendata.py}"
[[ -f "$gendata" ]] || { echo "bench: $gendata not found (set RBM_BENCH_GENDATA)" >&2; exit 2; }

CLUSTER_WHO=bench
CLUSTER_DIR="$(mktemp -d /tmp/rbm-bench-logical.XXXXXX)"
# shellcheck source=../scripts/lib/cluster.sh
source scripts/lib/cluster.sh
trap 'cluster_stop; [[ -n "${RBM_BENCH_KEEP:-}" ]] || rm -rf "$CLUSTER_DIR"' EXIT

scripts/test-services install mongodb >/dev/null
cargo build --release --quiet -p rbm-agent --bins --example raw_scan
bin="$CARGO_TARGET_DIR/release"
py="$RBM_CACHE/venv/bin/python"

cluster_start_mongo "$(cluster_free_port)"
cluster_log "generating 3 x $ndocs documents (pbm-peer-gendata.py)..."
"$py" "$gendata" "$MONGO_URI" bench 3 "$ndocs" >/dev/null

export PBM_MONGODB_URI="$MONGO_URI"
# The server's read speed varies from run to run by more than the effects measured
# here, so the floor is taken again right before each backup: the faster of reading the
# collections all at once and one after another (SecantusDB serves one at a time
# faster; mongod may not).
raw_scan() {
    local all one
    scan="$("$bin/examples/raw_scan" "$MONGO_URI" bench)"
    all="$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$scan")"
    one="$(RAW_SCAN_PARALLEL=1 "$bin/examples/raw_scan" "$MONGO_URI" bench | sed -E 's/.*seconds=([0-9.]+).*/\1/')"
    scan_s="$(awk -v a="$all" -v b="$one" 'BEGIN {print (a < b ? a : b)}')"
}

mkdir -p "$CLUSTER_DIR/storage"
printf 'storage:\n  type: filesystem\n  filesystem:\n    path: %s\n' "$CLUSTER_DIR/storage" >"$CLUSTER_DIR/config.yaml"
cluster_start_agent "$bin" "$MONGO_URI"
"$bin/rbm" config --file "$CLUSTER_DIR/config.yaml" --wait >/dev/null
cluster_wait_agent "$bin/rbm" "$MONGO_URI"
sleep 2

# measure LABEL CMD...: runs CMD, prints "wall cpu hwm" of it and the agent.
measure() {
    local c0 c1 t0 t1
    proc_reset_hwm "$AGENT_PID"
    c0="$(proc_cpu "$AGENT_PID")"
    t0="$(date +%s.%N)"
    "$@" >>"$CLUSTER_DIR/cli.log" 2>&1 || { cluster_log "failed: $*"; tail -20 "$CLUSTER_DIR/cli.log" >&2; exit 1; }
    t1="$(date +%s.%N)"
    c1="$(proc_cpu "$AGENT_PID")"
    awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v h="$(proc_hwm "$AGENT_PID")" \
        'BEGIN {printf "%.1f %.2f %d\n", t1 - t0, c1 - c0, h}'
}

# backup_phases NAME: where the agent's time went, from the backup's own pbmLog lines:
# nomination to the dump's start (the oplog's newest entry, users and roles), the dump,
# the last oplog slice, and the rest.
backup_phases() {
    "$py" - "$MONGO_URI" "$1" <<'PY'
import sys, pymongo
log = pymongo.MongoClient(sys.argv[1]).admin.pbmLog
at = {}
for e in log.find({"eobj": sys.argv[2]}).sort([("ts", 1), ("ns", 1)]):
    t = e["ts"] + e.get("ns", 0) / 1e9
    for key, prefix in (("start", "backup started"), ("dump", "dumping up to"),
                        ("dumped", "dump finished"), ("slice", "created chunk"),
                        ("end", "backup finished")):
        if e["msg"].startswith(prefix):
            at[key] = t
f = lambda a, b: "%.2f" % (at[b] - at[a]) if a in at and b in at else "?"
print(" | ".join([f("start", "dump"), f("dump", "dumped"), f("dumped", "slice"), f("slice", "end")]))
PY
}

declare -A pbm_backup=([none]="31.5 | 1.6-2.6 | 131-135 | 214,756,856" \
    [s2]="30.4-37.9 | 1.1-1.7 | 134-150 | 111,714,487" [zstd]="32.5-35.7 | 2.3-2.6 | 170-178 | 72,795,043")
declare -A pbm_restore=([none]="88.0 | 4.4 | 293" [s2]="73.1-88.1 | 3.5-3.6 | 286-300" [zstd]="98.0 | 4.5 | 268")
rows_b=() rows_r=() names=() phases=()
for c in $compressions; do
    raw_scan
    cluster_log "backup, compression $c (raw scan just before: $scan_s s)..."
    read -r wall cpu hwm < <(measure "$bin/rbm" backup --compression "$c" --wait)
    name="$("$bin/rbm" list -o json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][-1]["name"])')"
    bytes="$(cat "$CLUSTER_DIR/storage/$name.pbm.json" >/dev/null && du -sb "$CLUSTER_DIR/storage/$name" | cut -f1)"
    names+=("$name")
    ratio="$(awk -v w="$wall" -v s="$scan_s" 'BEGIN {printf "%.2f", w / s}')"
    rows_b+=("| $c | $wall | $scan_s | $ratio | $cpu | $hwm | $bytes | ${pbm_backup[$c]:-?} |")
    phases+=("| $c | $(backup_phases "$name") | $scan_s |")
done
for i in "${!names[@]}"; do
    c="$(cut -d' ' -f$((i + 1)) <<<"$compressions")"
    cluster_log "restore of ${names[$i]} ($c)..."
    read -r wall cpu hwm < <(measure "$bin/rbm" restore "${names[$i]}" --wait --yes)
    ok="$("$py" "$gendata" --verify "$MONGO_URI" bench 3 "$ndocs" | grep -c 'match=True' || true)"
    [[ "$ok" == 3 ]] || { cluster_log "restored data does not verify"; exit 1; }
    rows_r+=("| $c | $wall | $cpu | $hwm | ${pbm_restore[$c]:-?} |")
done

echo
echo "Logical backup, 3 x $ndocs docs ($(sed -E 's/.*bytes=([0-9]+).*/\1/' <<<"$scan") B raw BSON); raw scan = plain find of the 3 collections (faster of all at once / one at a time), same driver, right before each backup; target wall/scan <= 1.1"
echo "| compression | rbm wall s | raw scan s | wall/scan | rbm agent CPU s | rbm agent peak RSS MB | rbm bytes | PBM wall s | PBM CPU s | PBM peak RSS MB | PBM bytes |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows_b[@]}"
echo
echo "Where a backup's time goes (s, from its pbmLog lines): nomination to dump start = the oplog's newest entry (PBM's GetOplogStartTime) and users/roles; last slice = the oplog range read of the backup window"
echo "| compression | to dump start | dump | last oplog slice | finish | raw scan |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${phases[@]}"
echo
echo "Logical restore (data verified with pbm-peer-gendata.py --verify)"
echo "| backup | rbm wall s | rbm agent CPU s | rbm agent peak RSS MB | PBM wall s | PBM CPU s | PBM peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows_r[@]}"
echo "(PBM figures: shared/notes/perf-baseline.md, same machine kind and data set)"
