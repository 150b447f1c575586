# Shared by scripts/run and bench/logical.sh: a throw-away local "cluster" of one
# SecantusDB replica set member and one rbm-agent, cleaned up by cluster_stop.
# Source it; it defines functions and uses these variables:
#   RBM_CACHE (~/.cache/rbm)  CARGO_TARGET_DIR  CLUSTER_DIR (scratch dir, required)
# Facts about SecantusDB: shared/notes/test-stack.md.

: "${RBM_CACHE:=$HOME/.cache/rbm}"
CLUSTER_PIDS=()

cluster_log() { printf '%s: %s\n' "${CLUSTER_WHO:-cluster}" "$*" >&2; }

# A free TCP port on 127.0.0.1.
cluster_free_port() {
    "$RBM_CACHE/venv/bin/python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# cluster_start_mongo PORT: SecantusDB as replica set "secantus" on PORT with its data
# in $CLUSTER_DIR/db; prints nothing, sets MONGO_URI.
cluster_start_mongo() {
    local port="$1"
    mkdir -p "$CLUSTER_DIR/db"
    : >"$CLUSTER_DIR/secantusd.toml"
    # A small oplog keeps its scans fast (they are linear in SecantusDB); the noop
    # heartbeat advances the oplog while idle, as mongod's does.
    PYTHONUNBUFFERED=1 "$RBM_CACHE/venv/bin/secantusd-py" --config "$CLUSTER_DIR/secantusd.toml" \
        --host 127.0.0.1 --port "$port" --storage-path "$CLUSTER_DIR/db" \
        --oplog-max-entries 20000 --noop-heartbeat-seconds 10 \
        >"$CLUSTER_DIR/mongod.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    MONGO_PID=$!
    MONGO_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
    local i
    for i in $(seq 1 120); do
        if "$RBM_CACHE/venv/bin/python" - "$MONGO_URI" <<'PY' 2>/dev/null; then return 0; fi
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500)
sys.exit(0 if c.admin.command("hello").get("isWritablePrimary") else 1)
PY
        kill -0 "$MONGO_PID" 2>/dev/null || { tail -20 "$CLUSTER_DIR/mongod.log" >&2; return 1; }
        sleep 0.5
    done
    cluster_log "SecantusDB did not become primary; see $CLUSTER_DIR/mongod.log"
    return 1
}

# cluster_start_agent BIN_DIR URI: rbm-agent in the background; sets AGENT_PID.
cluster_start_agent() {
    LOG_LEVEL="${LOG_LEVEL:-I}" "$1/rbm-agent" --mongodb-uri "$2" >"$CLUSTER_DIR/agent.log" 2>&1 &
    AGENT_PID=$!
    CLUSTER_PIDS+=("$AGENT_PID")
}

# cluster_wait_agent RBM URI: until `rbm status` lists a live agent.
cluster_wait_agent() {
    local i
    for i in $(seq 1 60); do
        if "$1" status -o json --mongodb-uri "$2" 2>/dev/null | grep -q '"ok": *true'; then return 0; fi
        sleep 1
    done
    cluster_log "the agent did not report in; see $CLUSTER_DIR/agent.log"
    return 1
}

# Stops what was started, newest first; SecantusDB takes a few seconds on SIGTERM.
cluster_stop() {
    local i pid
    for ((i = ${#CLUSTER_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${CLUSTER_PIDS[$i]}"
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
}

# proc_cpu PID: utime+stime in seconds. proc_hwm PID: VmHWM in MB. proc_reset_hwm PID.
proc_cpu() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    # shellcheck disable=SC2086
    set -- ${stat##*) }
    echo "$(( ${12} + ${13} )) $(getconf CLK_TCK)" | awk '{printf "%.2f", $1 / $2}'
}
proc_hwm() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
proc_reset_hwm() { echo 5 >"/proc/$1/clear_refs"; }
