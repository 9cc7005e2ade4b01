#!/usr/bin/env bash
# Shuffle benchmark, side by side, same machine, same files, same client, one run:
#   ours  = croupier-shuffle-service (release build)
#   java  = Spark 3.5.7's MesosExternalShuffleService via bin/spark-class from the pyspark venv
#           (default SPARK_DAEMON_MEMORY=1g, as operators run it)
#   raw   = `croupier-shuffle-bench raw-server`: indexes preloaded, files pre-opened, header with
#           MSG_MORE + one sendfile per chunk, thread per connection (the physical limit)
#
# Cold start-up of each (spawn -> first accepted TCP connection, median of runs); then all three
# run side by side: RegisterExecutor, idle RSS, warm-up, the matrix with every cell measured in
# interleaved rounds (ours, java, raw, ours, java, raw, ...), then peak RSS under load (VmHWM).
# Every cell: N connections, one request in flight each, all ChunkFetchRequests pipelined,
# every received byte compared with the data set; the table shows medians over the rounds.
# Then, with the same servers:
#   pinned rows (`fetch+pinned`): every server's threads on the last core, the client on core 0
#     (taskset), so the server's own cost shows; the unpinned rows above stay as they were.
#   cold rows (`fetch+cold`, 32 KiB and 1 MiB at 16 connections): the page cache is dropped
#     before every round of every server: `echo 3 > /proc/sys/vm/drop_caches` when that works
#     (root), else `croupier-shuffle-bench evict` (posix_fadvise DONTNEED on the data and index
#     files); the output says which (`# cold cache: ...`).
#   real-job row: bench/shuffle_job.py, a Spark 3.5.7 local-cluster[2,1,1024] job with
#     spark.shuffle.readHostLocalDisk=false against ours and against the JVM service
#     (interleaved); the reduce stage's wall time from Spark's event log, medians.
#
# Usage: bench/shuffle.sh [--quick] [--auth-only] [--no-job] [--cold fadvise|drop] [--data-dir DIR] [--results FILE]
#   --quick      reduced matrix (a few minutes once built); ends with the `summary:` line.
#   --auth-only  only the spark.authenticate rows (below).
#   --no-job     skip the real-job row (about a minute per Spark application).
#   --cold M     how to make the cache cold: `drop` (drop_caches; the default when it is
#                writable) or `fadvise` (only this benchmark's files; leaves other tenants'
#                cache alone).
# spark.authenticate rows (after the matrix): ours and java restarted with the same secret, once
# SASL-only and once with the auth engine (AES-CTR); 1 MiB and 32 KiB blocks at 16 connections,
# interleaved rounds, plus ours unauthenticated in the same rounds; then the cost of a new
# connection (connect, authenticate, one RegisterExecutor, close), sequential, medians; these
# tables are (re)written to bench/results-shuffle-auth.md (bench/assemble.sh puts it in BENCHMARKS.md),
# except by a --quick run.
# Needs: the pyspark venv (scripts/setup-venv.sh; CROUPIER_VENV), java, python3, ~1 GiB in DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CMDLINE="bench/shuffle.sh${*:+ $*}"
QUICK=0
AUTH_ONLY=0
DATA="${CROUPIER_BENCH_DATA:-${TMPDIR:-/tmp}/croupier-shuffle-bench}"
RESULTS=""
NO_JOB=0
COLD_REQ=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --auth-only) AUTH_ONLY=1 ;;
    --data-dir) DATA="$2"; shift ;;
    --results) RESULTS="$2"; shift ;;
    --no-job) NO_JOB=1 ;;
    --cold) COLD_REQ="$2"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

bench_spark_home java

echo "== building release binaries" >&2
cargo build --release -q -p croupier-shuffle-service --bin croupier-shuffle-service >&2
cargo build --release -q -p croupier-testkit --bin croupier-shuffle-bench >&2
OURS="$PWD/target/release/croupier-shuffle-service"
BENCH="$PWD/target/release/croupier-shuffle-bench"

mkdir -p "$DATA"
[ -n "$RESULTS" ] || RESULTS="$DATA/results-$(date +%Y%m%d-%H%M%S)$([ $QUICK = 1 ] && echo -quick || true).txt"
: > "$RESULTS"
LOGS="$DATA/logs"; mkdir -p "$LOGS"

# Data sets: shuffle id, maps, reduces, block size, chunks per request (Spark puts a reducer's
# blocks from one executor into one request of up to maxSizeInFlight/5 ~ 9.6 MB).
#            id maps red  block    per-request
SETS_FULL=("1 128 128 4096 64" "2 64 64 32768 32" "3 16 16 1048576 8" "4 8 8 8388608 1")
SETS_QUICK=("2 64 64 32768 32" "4 8 8 8388608 1")
if [ $QUICK = 1 ]; then
  SETS=("${SETS_QUICK[@]}")
  CONNS=(64)             # fetch mode at 32 KiB; 8 MiB runs at 16 only (the summary cells)
  EXTRA_MODES=()         # batch/open cells
  REPEAT=5; DUR=1; STARTUP_RUNS_OURS=5; STARTUP_RUNS_JAVA=1; JAVA_WARM=10; WARM=0.5
  PINNED_CELLS=("2 64 64 32768 32|64")
  COLD_CELLS=("2 64 64 32768 32|16")
  JOB_APPS=1; JOB_JOBS=3; JOB_ROWS=300000
else
  SETS=("${SETS_FULL[@]}")
  CONNS=(1 16 64 256)
  EXTRA_MODES=(batch open)
  REPEAT=5; DUR=1; STARTUP_RUNS_OURS=7; STARTUP_RUNS_JAVA=3; JAVA_WARM=8; WARM=1
  PINNED_CELLS=()
  for s in "${SETS_FULL[@]}"; do for c in 1 16 64 256; do PINNED_CELLS+=("$s|$c"); done; done
  COLD_CELLS=("2 64 64 32768 32|16" "3 16 16 1048576 8|16")
  JOB_APPS=2; JOB_JOBS=3; JOB_ROWS=300000
fi
NCPU=$(nproc)
JOB_PY="$PWD/bench/shuffle_job.py"
SERVER_CPU=$((NCPU - 1)); CLIENT_CPU=0

echo "== data sets in $DATA" >&2
[ $AUTH_ONLY = 1 ] && SETS=()
for s in "${SETS[@]}"; do
  read -r id maps red block per <<<"$s"
  "$BENCH" gen --data-dir "$DATA" --shuffle-id "$id" --maps "$maps" --reduces "$red" --block-size "$block" >&2
done

declare -A PORT PID
stop_servers() {
  for l in "${!PID[@]}"; do kill "${PID[$l]}" 2>/dev/null || true; done
  for l in "${!PID[@]}"; do wait "${PID[$l]}" 2>/dev/null || true; done
}
trap stop_servers EXIT

start_server() { # label port
  case "$1" in
    ours) "$OURS" --host 127.0.0.1 --port "$2" 2>"$LOGS/ours.log" & ;;
    java) SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$2" "$SPARK_HOME/bin/spark-class" "$JAVA_CLASS" >"$LOGS/java.log" 2>&1 & ;;
    raw) "$BENCH" raw-server --data-dir "$DATA" --port "$2" 2>"$LOGS/raw.log" & ;;
  esac
  PID[$1]=$!
  PORT[$1]=$2
  wait_port "$2" "${PID[$1]}"
}

startup_cmd() { # label port -> command words
  case "$1" in
    ours) echo "$OURS --host 127.0.0.1 --port $2" ;;
    java) echo "$SPARK_HOME/bin/spark-class $JAVA_CLASS" ;;
    raw) echo "$BENCH raw-server --data-dir $DATA --port $2" ;;
  esac
}

LABELS=(ours java raw)
T0=$SECONDS
echo "# machine: nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\" mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo) kernel=$(uname -r)" | tee -a "$RESULTS" >&2
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# loadavg at start: $(cat /proc/loadavg)" | tee -a "$RESULTS" >&2
if [ $AUTH_ONLY = 0 ]; then
echo "== cold start-up (spawn -> first accepted connection)" >&2
for label in "${LABELS[@]}"; do
  port=$(free_port)
  runs=$STARTUP_RUNS_OURS; [ $label = java ] && runs=$STARTUP_RUNS_JAVA
  # shellcheck disable=SC2046
  SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$port" \
    "$BENCH" startup --port "$port" --label "$label" --runs "$runs" -- $(startup_cmd $label "$port") | tee -a "$RESULTS"
done

echo "== servers up, RegisterExecutor, idle RSS, warm-up ($((SECONDS - T0)) s)" >&2
declare -A IDLE
for label in "${LABELS[@]}"; do
  start_server $label "$(free_port)"
  # RegisterExecutor only (zero fetches).
  "$BENCH" run --data-dir "$DATA" --port "${PORT[$label]}" --shuffle-id "${SETS[0]%% *}" --fetches 0 --repeat 1 --connections 1 >/dev/null
done
sleep 1
for label in "${LABELS[@]}"; do IDLE[$label]=$("$BENCH" mem --pid "${PID[$label]}"); done
for label in "${LABELS[@]}"; do
  warm=$WARM; [ $label = java ] && warm=$JAVA_WARM
  for s in "${SETS[@]}"; do
    read -r id maps red block per <<<"$s"
    "$BENCH" run --data-dir "$DATA" --port "${PORT[$label]}" --shuffle-id "$id" --connections 16 --blocks-per-fetch "$per" \
      --repeat 1 --duration-s "$warm" --no-register --label "$label-warmup" >/dev/null 2>&1
  done
done

# One cell: REPEAT rounds, each round every server in turn (interleaved, so drifting load from
# other tenants of this shared machine hits all servers alike); the report takes medians.
# TAG (pinned|cold|empty) marks the rows; CLIENT (a command prefix, e.g. taskset) runs the client.
TAG=""; CLIENT=()
cell() { # set conns mode
  read -r id maps red block per <<<"$1"
  local tag=(); [ -n "$TAG" ] && tag=(--tag "$TAG")
  for _ in $(seq "$REPEAT"); do
    for label in "${LABELS[@]}"; do
      [ "$TAG" = cold ] && make_cold "$id"
      "${CLIENT[@]}" "$BENCH" run --data-dir "$DATA" --port "${PORT[$label]}" --shuffle-id "$id" --connections "$2" --mode "$3" \
        --blocks-per-fetch "$per" --batch-reduces 4 --repeat 1 --duration-s "$DUR" \
        --server-pid "${PID[$label]}" --label "$label" --no-register "${tag[@]}" 2>/dev/null >>"$RESULTS"
    done
  done
  echo "  cell block=$block conns=$2 mode=$3${TAG:++$TAG} done ($((SECONDS - T0)) s)" >&2
}
COLD=""
make_cold() { # shuffle id
  if [ "$COLD" = drop_caches ]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  else
    "$BENCH" evict --data-dir "$DATA" --shuffle-id "$1" >/dev/null
  fi
}

echo "== matrix ($((SECONDS - T0)) s)" >&2
for s in "${SETS[@]}"; do
  read -r id maps red block per <<<"$s"
  conns=("${CONNS[@]}")
  if [ $QUICK = 1 ] && [ "$block" = 8388608 ]; then conns=(16); fi
  for c in "${conns[@]}"; do cell "$s" "$c" fetch; done
  for m in "${EXTRA_MODES[@]}"; do cell "$s" 16 "$m"; done
done

echo "== pinned: servers on cpu $SERVER_CPU, client on cpu $CLIENT_CPU ($((SECONDS - T0)) s)" >&2
echo "# pinned: every server thread on cpu $SERVER_CPU (taskset -a), the client on cpu $CLIENT_CPU" | tee -a "$RESULTS" >&2
for label in "${LABELS[@]}"; do taskset -apc "$SERVER_CPU" "${PID[$label]}" >/dev/null; done
TAG=pinned; CLIENT=(taskset -c "$CLIENT_CPU")
for pc in "${PINNED_CELLS[@]}"; do cell "${pc%%|*}" "${pc##*|}" fetch; done
TAG=""; CLIENT=()
for label in "${LABELS[@]}"; do taskset -apc "0-$((NCPU - 1))" "${PID[$label]}" >/dev/null; done

if [ "$COLD_REQ" = fadvise ]; then
  COLD=fadvise
elif [ -w /proc/sys/vm/drop_caches ] && sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
  COLD=drop_caches
elif [ "$COLD_REQ" = drop ]; then
  echo "--cold drop: cannot write /proc/sys/vm/drop_caches (needs root and a writable /proc/sys)" >&2; exit 1
else
  COLD=fadvise
fi
case $COLD in
  drop_caches) COLD_SAID="sync; echo 3 > /proc/sys/vm/drop_caches before every round of every server" ;;
  *) COLD_SAID="posix_fadvise(POSIX_FADV_DONTNEED) on the shuffle's data and index files (croupier-shuffle-bench evict) before every round of every server" ;;
esac
echo "== cold page cache: $COLD_SAID ($((SECONDS - T0)) s)" >&2
echo "# cold cache: $COLD_SAID" | tee -a "$RESULTS" >&2
TAG=cold
for cc in "${COLD_CELLS[@]}"; do
  read -r id maps red block per <<<"${cc%%|*}"
  "$BENCH" gen --data-dir "$DATA" --shuffle-id "$id" --maps "$maps" --reduces "$red" --block-size "$block" >&2
  cell "${cc%%|*}" "${cc##*|}" fetch
done
TAG=""

if [ $NO_JOB = 0 ]; then
  echo "== real Spark job: $JOB_APPS application(s) per server, $JOB_JOBS jobs each, $JOB_ROWS rows ($((SECONDS - T0)) s)" >&2
  echo "# real job: bench/shuffle_job.py PORT WORK $JOB_JOBS $JOB_ROWS, local-cluster[2,1,1024], readHostLocalDisk=false" | tee -a "$RESULTS" >&2
  for _ in $(seq "$JOB_APPS"); do
    for label in ours java; do
      work=$(mktemp -d "${TMPDIR:-/tmp}/croupier-shuffle-job.XXXXXX")
      mkdir -p "$work/spark-home" "$work/local"
      # local-cluster workers write logs under $SPARK_HOME/work: a private SPARK_HOME of links.
      for e in "$SPARK_HOME"/*; do [ "$(basename "$e")" = work ] || ln -s "$e" "$work/spark-home/"; done
      if ! (cd "$work" && SPARK_HOME="$work/spark-home" SPARK_LOCAL_IP=127.0.0.1 TMPDIR="$work" \
            PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python" SPARK_LOCAL_DIRS="$work/local" \
            "$VENV/bin/python" "$JOB_PY" "${PORT[$label]}" "$work" "$JOB_JOBS" "$JOB_ROWS" \
            >"$work/out" 2>"$LOGS/job-$label.log"); then
        cat "$work/out" >&2
        echo "the real-job run against $label failed; its log: $LOGS/job-$label.log" >&2
        rm -rf "$work"; exit 1
      fi
      sed -n "s/^job /job server=$label /p" "$work/out" | tee -a "$RESULTS" >&2
      rm -rf "$work"
    done
  done
fi

for label in "${LABELS[@]}"; do
  echo "rss server=$label idle_mb=${IDLE[$label]} load_mb=$("$BENCH" mem --pid "${PID[$label]}" --peak)" | tee -a "$RESULTS"
done
stop_servers
PID=(); PORT=()
fi

# ---- spark.authenticate rows ------------------------------------------------------------------
SECRET="croupier-bench-secret-$RANDOM$RANDOM"
AUTH_RESULTS="${RESULTS%.txt}-auth.txt"
: > "$AUTH_RESULTS"
for s in "2 64 64 32768 32" "3 16 16 1048576 8"; do
  read -r id maps red block per <<<"$s"
  "$BENCH" gen --data-dir "$DATA" --shuffle-id "$id" --maps "$maps" --reduces "$red" --block-size "$block" >&2
done
start_auth_server() { # label kind(sasl|engine|none) port
  local conf=()
  case "$2" in
    sasl) conf=(spark.authenticate=true "spark.authenticate.secret=$SECRET") ;;
    engine) conf=(spark.authenticate=true "spark.authenticate.secret=$SECRET" spark.network.crypto.enabled=true) ;;
  esac
  local opts="-Dspark.shuffle.service.port=$3" args=(--host 127.0.0.1 --port "$3")
  for c in "${conf[@]}"; do opts="$opts -D$c"; args+=(--conf "$c"); done
  case "$1" in
    ours*) "$OURS" "${args[@]}" 2>"$LOGS/$1.log" & ;;
    java*) SPARK_SHUFFLE_OPTS="$opts" "$SPARK_HOME/bin/spark-class" "$JAVA_CLASS" >"$LOGS/$1.log" 2>&1 & ;;
  esac
  PID[$1]=$!
  PORT[$1]=$3
  wait_port "$3" "${PID[$1]}"
}
for kind in sasl engine; do
  client_auth=$kind
  echo "== spark.authenticate: $kind ($((SECONDS - T0)) s)" >&2
  AL=("ours-$kind" "java-$kind" "ours-none")
  start_auth_server "ours-$kind" $kind "$(free_port)"
  start_auth_server "java-$kind" $kind "$(free_port)"
  start_auth_server ours-none none "$(free_port)"
  auth_args() { case "$1" in *-none) ;; *) echo "--auth $client_auth --secret $SECRET" ;; esac; }
  for l in "${AL[@]}"; do
    # shellcheck disable=SC2046
    "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id 2 --fetches 0 --repeat 1 --connections 1 $(auth_args "$l") >/dev/null
    for id in 2 3; do
      warm=$WARM; case "$l" in java*) warm=$JAVA_WARM ;; esac
      # shellcheck disable=SC2046
      "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id $id --connections 16 --blocks-per-fetch 8 \
        --repeat 1 --duration-s "$warm" --no-register --label "$l-warmup" $(auth_args "$l") >/dev/null 2>&1
    done
  done
  for s in "2 64 64 32768 32" "3 16 16 1048576 8"; do
    read -r id maps red block per <<<"$s"
    for _ in $(seq "$REPEAT"); do
      for l in "${AL[@]}"; do
        # shellcheck disable=SC2046
        "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id "$id" --connections 16 --blocks-per-fetch "$per" \
          --repeat 1 --duration-s "$DUR" --server-pid "${PID[$l]}" --label "$l" --no-register $(auth_args "$l") \
          2>/dev/null >>"$AUTH_RESULTS"
      done
    done
    echo "  auth cell $kind block=$block done ($((SECONDS - T0)) s)" >&2
  done
  for _ in $(seq "$REPEAT"); do
    for l in "${AL[@]}"; do
      # shellcheck disable=SC2046
      "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id 2 --handshakes 20 --label "$l" $(auth_args "$l") >>"$AUTH_RESULTS"
    done
  done
  stop_servers
  PID=(); PORT=()
done
echo "== spark.authenticate rows" >&2
AUTH_TABLES=$(python3 - "$AUTH_RESULTS" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in l.split()[1:]) | {"kind": l.split()[0]} for l in open(sys.argv[1]) if "=" in l]
def med(kind, server, key, block=None):
    v = [float(r[key]) for r in rows if r["kind"] == kind and r["server"] == server and (block is None or r.get("block") == block)]
    return statistics.median(v) if v else float("nan")
print("| auth | block | ours GB/s | java GB/s | ours/java | ours unauthenticated GB/s | ours auth/unauth |")
print("|---|---|---|---|---|---|---|")
for kind in ("sasl", "engine"):
    for block, name in (("1048576", "1 MiB"), ("32768", "32 KiB")):
        o, j, n = (med("result", s, "gb_per_s", block) for s in (f"ours-{kind}", f"java-{kind}", "ours-none"))
        print(f"| {kind} | {name} | {o:.3f} | {j:.3f} | {o / j:.2f}x | {n:.3f} | {o / n:.3f} |")
print()
print("| auth | new connection p50 ours (ms) | java (ms) | ours/java | ours unauthenticated (ms) |")
print("|---|---|---|---|---|")
for kind in ("sasl", "engine"):
    o, j, n = (med("handshake", s, "p50_ms") for s in (f"ours-{kind}", f"java-{kind}", "ours-none"))
    print(f"| {kind} | {o:.3f} | {j:.3f} | {o / j:.2f}x | {n:.3f} |")
PY
)
echo "$AUTH_TABLES" | tee -a "$RESULTS"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# loadavg at end: $(cat /proc/loadavg)" | tee -a "$RESULTS" >&2
# The spark.authenticate rows as a bench/results-*.md file (bench/assemble.sh copies it into BENCHMARKS.md);
# a --quick run (few, short rounds) leaves the recorded tables alone: its rows are in $RESULTS only.
AUTH_MD=bench/results-shuffle-auth.md
[ "$QUICK" = 1 ] && AUTH_MD=/dev/null
cat >"$AUTH_MD" <<EOF
# \`spark.authenticate\`: ours vs Spark's JVM shuffle service (bench/shuffle.sh)

Issue 13's targets: with the auth engine (\`spark.network.crypto.enabled=true\`, AES-CTR on the whole
channel) our encrypted GB/s at least 1.5x Spark's JVM Mesos shuffle service with the same settings,
and the cost of a new connection at most 0.5x Java's. The SASL \`auth\` rows (authenticated, not
encrypted) are shown beside them; their own target (within 5% of unauthenticated) is measured with
many more rounds by bench/auth-overhead.sh.

Release build of croupier-shuffle-service and Spark 3.5.7's MesosExternalShuffleService (spark-class,
default heap) started with the same secret and settings, plus ours unauthenticated, all three up at
once. Throughput: 16 connections, one request in flight each, ${DUR} s per run, $REPEAT interleaved
rounds (ours, java, ours unauthenticated, ...), every received byte compared with the data set; the
table gives medians. New connection: connect, authenticate, one RegisterExecutor, close; 20
sequential per run, p50, median over $REPEAT interleaved rounds. The machine is shared (load
average below), so single runs vary widely; only the medians are reported.

\`\`\`bash
$CMDLINE
\`\`\`

$(nproc) cores, load average at start $LOAD_START, at end $LOAD_END.

$AUTH_TABLES
EOF
[ "$AUTH_MD" = /dev/null ] || echo "wrote $AUTH_MD" >&2
echo "== done in $((SECONDS - T0)) s (after the build)" >&2

echo
echo "results: $RESULTS (spark.authenticate rows: $AUTH_RESULTS)"
echo
[ $AUTH_ONLY = 1 ] || "$BENCH" report "$RESULTS"
