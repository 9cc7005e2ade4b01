#!/usr/bin/env bash
# RPC latency under fetch load (issue 16): registration RPCs (RegisterExecutor, and one in ten a
# RegisterDriver followed by a ShuffleServiceHeartbeat) from CONNS connections, one in flight
# on each, first with the server otherwise idle, then while 256 other connections fetch 1 MiB
# blocks (croupier-shuffle-bench run: one block per request, every byte verified). Servers:
#   ours-durable  croupier-shuffle-service, croupier.state.dir on this disk, default
#                 croupier.state.sync=background (answers once in the journal, before the fsync)
#   ours-fsync    the same with croupier.state.sync=always (answers wait for the fsync)
#   ours-memory   the same with croupier.state.dir=none
#   java          Spark 3.5.7's MesosExternalShuffleService (bin/spark-class, as bench/shuffle.sh)
# rounds interleaved, medians of the per-round p50/p99.
#
# Usage: bench/rpc-under-load.sh [RUNS=3] [SECONDS=5] [CONNS=4] [FETCHERS=256]
# Needs: the pyspark venv (CROUPIER_VENV), java, python3, ~300 MB scratch under the target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${1:-3}"
SECS="${2:-5}"
CONNS="${3:-4}"
FETCHERS="${4:-256}"
bench_spark_home java
cargo build --release -q -p croupier-shuffle-service -p croupier-testkit --bin croupier-shuffle-service --bin croupier-shuffle-bench >&2
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OURS="${OURS_BIN:-$TARGET/release/croupier-shuffle-service}"
BENCH="$TARGET/release/croupier-shuffle-bench"
SCRATCH="$(mktemp -d -p "$TARGET" bench-rpc-load.XXXXXX)"
SERVER_PID=""
LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

start_server() { # kind port
  case $1 in
    ours-durable) rm -rf "$SCRATCH/state"; mkdir -p "$SCRATCH/state"
      "$OURS" --host 127.0.0.1 --port "$2" --conf "croupier.state.dir=$SCRATCH/state" \
        --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" & ;;
    ours-fsync) rm -rf "$SCRATCH/state"; mkdir -p "$SCRATCH/state"
      "$OURS" --host 127.0.0.1 --port "$2" --conf "croupier.state.dir=$SCRATCH/state" \
        --conf croupier.state.sync=always \
        --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" & ;;
    ours-memory) "$OURS" --host 127.0.0.1 --port "$2" --conf croupier.state.dir=none \
        --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" & ;;
    java) SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$2" "$SPARK_HOME/bin/spark-class" "$JAVA_CLASS" \
        >>"$SCRATCH/java.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  wait_port "$2" "$SERVER_PID"
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

# 16 maps x 16 reduces of 1 MiB (256 MiB).
"$BENCH" gen --data-dir "$SCRATCH/data" --shuffle-id 3 --maps 16 --reduces 16 --block-size 1048576 >&2
echo "# RPCs from $CONNS connections for ${SECS}s idle, then under $FETCHERS fetching connections; $RUNS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$RUNS"); do
  for kind in ours-durable ours-fsync ours-memory java; do
    port=$(free_port)
    start_server "$kind" "$port"
    # Warm-up (JIT for the JVM, page cache for all): a short unmeasured burst of each.
    "$BENCH" register --port "$port" --label "$kind" --connections "$CONNS" --seconds 1 --with-driver >/dev/null
    "$BENCH" run --data-dir "$SCRATCH/data" --port "$port" --shuffle-id 3 --connections 16 \
      --blocks-per-fetch 1 --duration-s 1 --repeat 1 --label "$kind" >/dev/null 2>&1
    "$BENCH" register --port "$port" --label "$kind" --connections "$CONNS" --seconds "$SECS" --with-driver \
      | sed 's/^register /rpc phase=idle /' | tee -a "$SCRATCH/rpc.txt" >&2
    "$BENCH" run --data-dir "$SCRATCH/data" --port "$port" --shuffle-id 3 --connections "$FETCHERS" \
      --blocks-per-fetch 1 --duration-s "$((SECS + 4))" --repeat 1 --no-register --label "$kind" \
      --server-pid "$SERVER_PID" >"$SCRATCH/load.out" 2>>"$SCRATCH/load.err" &
    LOAD_PID=$!
    sleep 3 # every fetching connection open and busy
    "$BENCH" register --port "$port" --label "$kind" --connections "$CONNS" --seconds "$SECS" --with-driver \
      | sed 's/^register /rpc phase=loaded /' | tee -a "$SCRATCH/rpc.txt" >&2
    wait "$LOAD_PID"; LOAD_PID=""
    sed "s/^result /fetch /" "$SCRATCH/load.out" | tee -a "$SCRATCH/rpc.txt" >&2
    stop_server
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$SCRATCH/rpc.txt" "$FETCHERS" <<'PY'
import re, statistics, sys
rpc, fetch = {}, {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=([^\s]+)", line))
    if line.startswith("rpc "):
        rpc.setdefault((kv["server"], kv["phase"]), []).append(kv)
    elif line.startswith("fetch "):
        fetch.setdefault(kv["server"], []).append(kv)
med = lambda r, k: statistics.median(float(x[k]) for x in r) if r else float("nan")
print(f"| server | RPC p50 idle (ms) | RPC p99 idle (ms) | RPC p50 under load (ms) | RPC p99 under load (ms) | RPC max under load (ms) | RPCs/s under load | {sys.argv[2]}-conn fetch GB/s | fetch p99 (ms) | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for k in ("ours-durable", "ours-fsync", "ours-memory", "java"):
    i, l, f = rpc.get((k, "idle"), []), rpc.get((k, "loaded"), []), fetch.get(k, [])
    if not l:
        continue
    print(f"| {k} | {med(i, 'p50_ms'):.2f} | {med(i, 'p99_ms'):.2f} | {med(l, 'p50_ms'):.2f} | {med(l, 'p99_ms'):.2f} | "
          f"{med(l, 'max_ms'):.1f} | {med(l, 'rpcs_per_s'):.0f} | {med(f, 'gb_per_s'):.3f} | {med(f, 'p99_ms'):.1f} | {len(l)} |")
PY
