#!/usr/bin/env bash
# A bounded mixed soak of croupier-shuffle-service (release build), SECONDS long (default 600):
#  - real Spark 3.5.7 jobs in a loop (tests/interop/spark/soak_jobs.py: local-cluster[2,1,1024],
#    readHostLocalDisk=false so every remote block is fetched through the service; a new
#    application every 4 rounds of 3 jobs, so executors keep registering), results checked exactly;
#  - registration and heartbeat churn beside them (croupier-shuffle-bench churn: a new app with a
#    driver and 2 executors every 0.5 s, heartbeats of the live ones, each app silent after 10 s
#    for the heartbeat cleaner, whose interval is set to 5 s);
#  - the service restarted every RESTART_EVERY seconds (default 120: SIGTERM, then started again
#    on the same port and state dir; the executors registered before are restored from the store).
# Every minute: the service's RSS and its counters. At the end: fetches served (blocks, chunks,
# bytes, summed over the service's lives), failures (failed or wrong Spark jobs, tasks ended
# FetchFailed, RpcFailures of the churn client, the service's own error counters, service
# crashes): all must be 0. Writes bench/results-soak.md (or $OUT) with the command.
#
# Usage: bench/soak.sh [SECONDS=600] [RESTART_EVERY=120]
# Needs: CROUPIER_VENV (or the default venv of scripts/setup-venv.sh), java. Scratch: a temp dir
# under $CARGO_TARGET_DIR, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DURATION="${1:-600}"
RESTART_EVERY="${2:-120}"
bench_spark_home java
SPARK_HOME_REAL="$SPARK_HOME"
# SOAK_NO_BUILD=1: use the release binaries already in the target dir.
[ -n "${SOAK_NO_BUILD:-}" ] || cargo build --release -q -p croupier-shuffle-service -p croupier-testkit \
  --bin croupier-shuffle-service --bin croupier-shuffle-bench >&2
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OURS="$TARGET/release/croupier-shuffle-service"
BENCH="$TARGET/release/croupier-shuffle-bench"
SCRATCH="$(mktemp -d -p "$TARGET" soak.XXXXXX)"
SVC_PID=""
PY_PID=""
CHURN_PID=""
cleanup() {
  for p in "$PY_PID" "$CHURN_PID"; do
    # python runs in its own process group (its JVMs with it)
    [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null || true
  done
  [ -n "$SVC_PID" ] && kill "$SVC_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT


PORT=$(free_port)
ADMIN=$(free_port)
mkdir -p "$SCRATCH/state" "$SCRATCH/churn" "$SCRATCH/py/local" "$SCRATCH/spark-home"
# A private SPARK_HOME of links (Spark writes its work/ dir under it).
for e in "$SPARK_HOME_REAL"/*; do
  [ "$(basename "$e")" = work ] || ln -s "$e" "$SCRATCH/spark-home/"
done

LIVES=0
start_service() {
  LIVES=$((LIVES + 1))
  "$OURS" --host 127.0.0.1 --port "$PORT" --conf "croupier.state.dir=$SCRATCH/state" \
    --conf croupier.mesos.agent.address=none --conf spark.shuffle.cleaner.interval=5s \
    --conf "croupier.admin.address=127.0.0.1:$ADMIN" 2>>"$SCRATCH/service.log" &
  SVC_PID=$!
  wait_port "$PORT"
  wait_port "$ADMIN"
}
# The service's counters now, appended to metrics.txt as one block per sample.
sample_metrics() { # label
  { echo "== $1 life=$LIVES pid=$SVC_PID"; curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" || echo "# metrics unavailable"; } >>"$SCRATCH/metrics.txt"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_service
echo "# soak: ${DURATION}s, restart every ${RESTART_EVERY}s, service on 127.0.0.1:$PORT" >&2
ROOT="$PWD"
(
  cd "$SCRATCH/py"
  exec setsid env -u SPARK_CONF_DIR -u PYSPARK_SUBMIT_ARGS SPARK_HOME="$SCRATCH/spark-home" SPARK_LOCAL_IP=127.0.0.1 TMPDIR="$SCRATCH/py" \
    PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python" PYTHONUNBUFFERED=1 \
    SPARK_LOCAL_DIRS="$SCRATCH/py/local" \
    "$VENV/bin/python" "$ROOT/tests/interop/spark/soak_jobs.py" "$PORT" "$DURATION" "$SCRATCH/py/events"
) >"$SCRATCH/jobs.txt" 2>"$SCRATCH/jobs.err" &
PY_PID=$!
setsid "$BENCH" churn --port "$PORT" --seconds "$DURATION" --period-ms 500 --executors 2 --life 20 \
  --timeout-ms 5000 --work-dir "$SCRATCH/churn" >"$SCRATCH/churn.txt" 2>"$SCRATCH/churn.err" &
CHURN_PID=$!

T0=$(date +%s)
NEXT_RESTART=$((T0 + RESTART_EVERY))
NEXT_SAMPLE=$((T0 + 60))
CRASHES=0
RESTARTS=0
printf '%s\n' "| minute | service life | RSS (KiB) | Spark jobs ok so far | churn apps so far |" "|---:|---:|---:|---:|---:|" >"$SCRATCH/rss.md"
printf '| 0 | 1 | %s | 0 | 0 |\n' "$(rss_kb "$SVC_PID")" >>"$SCRATCH/rss.md"
while kill -0 "$PY_PID" 2>/dev/null || kill -0 "$CHURN_PID" 2>/dev/null; do
  sleep 1
  now=$(date +%s)
  if ! kill -0 "$SVC_PID" 2>/dev/null; then
    echo "the service (pid $SVC_PID) died" >&2
    CRASHES=$((CRASHES + 1))
    start_service
  fi
  if [ "$now" -ge "$NEXT_SAMPLE" ]; then
    min=$(( (now - T0 + 30) / 60 ))
    ok=$(grep -c ' ok$' "$SCRATCH/jobs.txt" || true)
    apps=$(grep -o ' apps=[0-9]*' "$SCRATCH/churn.txt" | tail -n 1 | cut -d= -f2)
    printf '| %s | %s | %s | %s | %s |\n' "$min" "$LIVES" "$(rss_kb "$SVC_PID")" "$ok" "${apps:-?}" | tee -a "$SCRATCH/rss.md" >&2
    NEXT_SAMPLE=$((NEXT_SAMPLE + 60))
  fi
  if [ "$now" -ge "$NEXT_RESTART" ] && [ "$now" -lt $((T0 + DURATION - 20)) ]; then
    sample_metrics "before restart $((RESTARTS + 1))"
    kill -TERM "$SVC_PID"
    wait "$SVC_PID" || { echo "the service exited non-zero at SIGTERM" >&2; CRASHES=$((CRASHES + 1)); }
    RESTARTS=$((RESTARTS + 1))
    start_service
    NEXT_RESTART=$((NEXT_RESTART + RESTART_EVERY))
  fi
done
wait "$PY_PID" && PY_RC=0 || PY_RC=$?
wait "$CHURN_PID" && CHURN_RC=0 || CHURN_RC=$?
PY_PID=""; CHURN_PID=""
sample_metrics "end"
printf '| %s (end) | %s | %s | %s | %s |\n' "$(( ($(date +%s) - T0 + 30) / 60 ))" "$LIVES" "$(rss_kb "$SVC_PID")" \
  "$(grep -c ' ok$' "$SCRATCH/jobs.txt" || true)" "$(grep -o ' apps=[0-9]*' "$SCRATCH/churn.txt" | tail -n 1 | cut -d= -f2)" >>"$SCRATCH/rss.md"
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$SVC_PID/status")
kill -TERM "$SVC_PID"; wait "$SVC_PID" || CRASHES=$((CRASHES + 1)); SVC_PID=""
PANICS=$(grep -c 'panicked' "$SCRATCH/service.log" || true)
# blockmgr dirs of churn apps not deleted (apps registered before a restart are kept: in
# heartbeat-only mode a restarted service does not restore drivers, as Spark's does not)
LEFT=$(find "$SCRATCH/churn" -mindepth 2 -maxdepth 2 -name 'blockmgr-*' | wc -l)

figures=$(python3 - "$SCRATCH/metrics.txt" "$SCRATCH/jobs.txt" "$SCRATCH/churn.txt" <<'PY'
import re, sys
lives, cur = [], None
for line in open(sys.argv[1]):
    if line.startswith("== "):
        cur = {}
        lives.append(cur)
        continue
    if line.startswith("#") or not line.strip() or cur is None:
        continue
    m = re.match(r"([a-zA-Z_:]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line.strip())
    if m:
        cur[m.group(1) + (m.group(2) or "")] = float(m.group(3))
def total(name):
    return int(sum(v for l in lives for k, v in l.items() if k == name or k == name + "_total"))
errors = {}
for l in lives:
    for k, v in l.items():
        if k.startswith("croupier_shuffle_errors"):
            errors[k] = errors.get(k, 0) + int(v)
summary = [l for l in open(sys.argv[2]) if l.startswith("SUMMARY")]
failed_jobs = [l.strip() for l in open(sys.argv[2]) if "FAILED" in l]
churn = [l.strip() for l in open(sys.argv[3]) if l.startswith("churn")]
print(f"blocks served {total('croupier_shuffle_blocks_served')}, chunks {total('croupier_shuffle_chunks_served')}, "
      f"bytes {total('croupier_shuffle_bytes_served')} (sum over {len(lives)} samples taken at the end of each service life)")
print(f"RegisterExecutor requests {total('croupier_shuffle_register_executor_requests')}")
print("service error counters: " + (", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"))
print("spark: " + (summary[-1].strip() if summary else "no SUMMARY line (the job loop did not finish)"))
for l in failed_jobs[:10]:
    print("  " + l)
print("churn: " + (churn[-1] if churn else "no churn line"))
PY
)
{
  echo "service restarts: $RESTARTS (SIGTERM + start on the same port and state dir), unexpected exits: $CRASHES, panics in the log: $PANICS"
  echo "$figures"
  echo "churn executor dirs still there at the end: $LEFT of $(find "$SCRATCH/churn" -mindepth 2 -maxdepth 2 | wc -l)"
  echo "peak RSS of the last service life (VmHWM): $HWM KiB"
  echo "python exit: $PY_RC, churn exit: $CHURN_RC"
} >"$SCRATCH/figures.txt"
cat "$SCRATCH/figures.txt" "$SCRATCH/rss.md"
{
  echo "# Soak: Spark jobs, registration churn and service restarts, ${DURATION} s"
  echo
  echo "Command: \`bench/soak.sh $DURATION $RESTART_EVERY\` (release build of croupier-shuffle-service)."
  echo "Machine: $(nproc) cores, $(uname -r), shared (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)). Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD)."
  echo
  echo "Real Spark 3.5.7 jobs (\`tests/interop/spark/soak_jobs.py\`: \`local-cluster[2,1,1024]\`, readHostLocalDisk=false,"
  echo "a new application every 4 rounds of 3 jobs, each result checked exactly) fetch through the service while"
  echo "\`croupier-shuffle-bench churn\` registers a new app (driver + 2 executors) every 0.5 s and heartbeats the live"
  echo "ones (each silent after 10 s, for the heartbeat cleaner at a 5 s interval), and the service is restarted"
  echo "every ${RESTART_EVERY} s. Spark's fetch retries are its defaults but retryWait 2 s (maxRetries 3)."
  echo
  echo '```'
  cat "$SCRATCH/figures.txt"
  echo '```'
  echo
  echo "RSS of the service (VmRSS), every minute (a restart starts a new life):"
  echo
  cat "$SCRATCH/rss.md"
  echo
  echo "${NOTES:-}"
} >"${OUT:-bench/results-soak.md}"
[ "$PY_RC" -eq 0 ] && [ "$CHURN_RC" -eq 0 ] && [ "$CRASHES" -eq 0 ] && [ "$PANICS" -eq 0 ]
