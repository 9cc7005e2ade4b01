#!/usr/bin/env bash
# Registration throughput with durability, and start-up with stored registrations.
#
# 1. RegisterExecutor RPCs/s and latency (p50/p99), CONNS connections each with one RPC in flight
#    for SECONDS, rounds interleaved, medians over RUNS rounds:
#      ours-durable  croupier-shuffle-service with croupier.state.dir on this disk (every answer
#                    waits for its record's fsync; concurrent registrations share one)
#      ours-memory   the same with croupier.state.dir=none (what the store costs)
#      spark-jvm     Spark 3.5.7's MesosExternalShuffleService (no store at all), the bare JVM
# 2. Start-up to accepting connections (READY) with 10 000 stored executor registrations vs an
#    empty store (croupier-shuffle-bench startup: fork/exec until a TCP connect succeeds, median
#    of RUNS; ours reads the store before it binds the port, so this includes the restore).
#
# Usage: bench/shuffle-registration.sh [RUNS=5] [SECONDS=5] [CONNS=8]
# Needs: CROUPIER_VENV (or the default venv of scripts/setup-venv.sh), java. Builds release
# binaries into $CARGO_TARGET_DIR (or target/); scratch goes to a temp dir under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${1:-5}"
SECONDS_PER="${2:-5}"
CONNS="${3:-8}"
bench_spark_home
cargo build --release -p croupier-shuffle-service -p croupier-testkit --bin croupier-shuffle-service --bin croupier-shuffle-bench >&2
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OURS="$TARGET/release/croupier-shuffle-service"
BENCH="$TARGET/release/croupier-shuffle-bench"
SCRATCH="$(mktemp -d -p "$TARGET" bench-registration.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT


start_server() { # kind port -> pid in SERVER_PID
  local kind=$1 port=$2
  case $kind in
    ours-durable)
      rm -rf "$SCRATCH/state"; mkdir -p "$SCRATCH/state"
      "$OURS" --host 127.0.0.1 --port "$port" --conf "croupier.state.dir=$SCRATCH/state" \
        --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" & ;;
    ours-memory)
      "$OURS" --host 127.0.0.1 --port "$port" --conf croupier.state.dir=none \
        --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" & ;;
    spark-jvm)
      java -cp "$SPARK_HOME/conf:$SPARK_HOME/jars/*" -Dspark.shuffle.service.port="$port" -Xmx1g \
        org.apache.spark.deploy.mesos.MesosExternalShuffleService >>"$SCRATCH/jvm.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$port"
}

stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

echo "# RegisterExecutor load: $CONNS connections x $SECONDS_PER s, $RUNS interleaved rounds" >&2
for round in $(seq 1 "$RUNS"); do
  for kind in ours-durable ours-memory spark-jvm; do
    port=$(free_port)
    start_server "$kind" "$port"
    # JIT warm-up for the JVM, page cache for ours: one short unmeasured burst.
    "$BENCH" register --port "$port" --label "$kind" --connections "$CONNS" --seconds 1 >/dev/null
    "$BENCH" register --port "$port" --label "$kind" --connections "$CONNS" --seconds "$SECONDS_PER" \
      | tee -a "$SCRATCH/register.txt" >&2
    stop_server "$SERVER_PID"
  done
done

echo "# start-up with stored registrations" >&2
port=$(free_port)
mkdir -p "$SCRATCH/full" "$SCRATCH/empty"
"$OURS" --host 127.0.0.1 --port "$port" --conf "croupier.state.dir=$SCRATCH/full" \
  --conf croupier.mesos.agent.address=none 2>>"$SCRATCH/ours.log" &
pid=$!; PIDS+=("$pid"); wait_port "$port"
"$BENCH" register --port "$port" --label preload --connections 8 --count 10000 >&2
stop_server "$pid"
for what in full empty; do
  "$BENCH" startup --port "$port" --label "ours-$what" --runs "$RUNS" -- \
    "$OURS" --host 127.0.0.1 --port "$port" --conf "croupier.state.dir=$SCRATCH/$what" \
    --conf croupier.mesos.agent.address=none | tee -a "$SCRATCH/startup.txt" >&2
done
"$OURS" --host 127.0.0.1 --port "$port" --conf "croupier.state.dir=$SCRATCH/full" \
  --conf croupier.mesos.agent.address=none 2>"$SCRATCH/restore.log" &
pid=$!; PIDS+=("$pid"); wait_port "$port"; stop_server "$pid"
grep -o 'restored [0-9]* executor.*' "$SCRATCH/restore.log" >&2
store_size=$(du -k "$SCRATCH/full"/registrations-*.redb | cut -f1)

python3 - "$SCRATCH/register.txt" "$SCRATCH/startup.txt" "$store_size" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=([^\s]+)", line))
    rows.setdefault(kv["server"], []).append(kv)
med = lambda xs: statistics.median(float(x) for x in xs)
print("| service | RegisterExecutor RPCs/s (median) | p50 ms | p99 ms | rounds |")
print("|---|---:|---:|---:|---:|")
for k in ("ours-durable", "ours-memory", "spark-jvm"):
    r = rows.get(k, [])
    if r:
        print(f"| {k} | {med(x['rpcs_per_s'] for x in r):.0f} | {med(x['p50_ms'] for x in r):.3f} | {med(x['p99_ms'] for x in r):.3f} | {len(r)} |")
print()
print(f"| start-up (fork/exec to accepting) | median ms | runs |  (store: {sys.argv[3]} KiB)")
print("|---|---:|---:|")
for line in open(sys.argv[2]):
    kv = dict(re.findall(r"(\w+)=([^\s]+)", line))
    print(f"| {kv.get('server')} | {kv.get('ms')} | {kv.get('runs', '')} |")
PY
