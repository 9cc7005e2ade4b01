#!/usr/bin/env bash
# Many concurrent connections (issue 16): the shuffle service's resident memory with 0, 1k, 5k
# and 10k open connections, then after every connection was answered once (a ChunkFetchRequest
# for a stream that does not exist: a ChunkFetchFailure back on each, so every one is held and
# served). Ours beside Spark 3.5.7's MesosExternalShuffleService (started as bench/shuffle.sh
# starts it, through the pyspark venv's bin/spark-class), rounds interleaved, medians.
#
# Each server runs with `ulimit -n` above the largest step; croupier-shuffle-bench raises its
# own limit. RSS is VmRSS once it has settled (two readings 100 ms apart within 1%).
#
# Usage: bench/connections.sh [RUNS=3] [STEPS=1000,5000,10000]
# Needs: the pyspark venv (scripts/setup-venv.sh; CROUPIER_VENV), java, python3; root or a hard
# open-file limit above STEPS' largest + 1024. Builds release binaries into $CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${1:-3}"
STEPS="${2:-1000,5000,10000}"
MOST="${STEPS##*,}"
NOFILE=$((MOST + 1024))
bench_spark_home java
cargo build --release -q -p croupier-shuffle-service -p croupier-testkit --bin croupier-shuffle-service --bin croupier-shuffle-bench >&2
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
# OURS_BIN: another build of ours to measure (e.g. an older commit's, for before/after).
OURS="${OURS_BIN:-$TARGET/release/croupier-shuffle-service}"
BENCH="$TARGET/release/croupier-shuffle-bench"
SCRATCH="$(mktemp -d -p "$TARGET" bench-connections.XXXXXX)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT


start_server() { # kind port
  case $1 in
    ours) (ulimit -n "$NOFILE" && exec "$OURS" --host 127.0.0.1 --port "$2" --conf croupier.state.dir=none \
            --conf croupier.mesos.agent.address=none) 2>>"$SCRATCH/ours.log" & ;;
    java) (ulimit -n "$NOFILE" && SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$2" \
            exec "$SPARK_HOME/bin/spark-class" "$JAVA_CLASS") >>"$SCRATCH/java.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  wait_port "$2" "$SERVER_PID"
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

echo "# connections: steps $STEPS, $RUNS interleaved rounds, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$RUNS"); do
  for kind in ours java; do
    port=$(free_port)
    start_server "$kind" "$port"
    # Let the JVM finish starting up (its RSS still moves for a few seconds).
    [ "$kind" = java ] && sleep 5
    "$BENCH" conns --port "$port" --server-pid "$SERVER_PID" --label "$kind" --steps "$STEPS" \
      | tee -a "$SCRATCH/conns.txt" >&2
    stop_server
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$SCRATCH/conns.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=([^\s]+)", line))
    rows.setdefault((kv["server"], int(kv["connections"]), kv["phase"]), []).append(kv)
med = lambda r, k: statistics.median(float(x[k]) for x in r)
keys = sorted({(c, p) for (_, c, p) in rows}, key=lambda k: (k[1] != "idle", k[0]))
mb = lambda r: "—" if not r else f"{med(r, 'rss_kib') / 1024:.1f}"
per = lambda r: "—" if not r else f"{med(r, 'kib_per_conn'):.2f}"
print("| connections | state | ours RSS MB | ours KiB/conn | Spark JVM RSS MB | JVM KiB/conn | rounds |")
print("|---:|---|---:|---:|---:|---:|---:|")
for c, p in keys:
    o, j = rows.get(("ours", c, p), []), rows.get(("java", c, p), [])
    print(f"| {c} | {p} | {mb(o)} | {per(o)} | {mb(j)} | {per(j)} | {max(len(o), len(j))} |")
PY
