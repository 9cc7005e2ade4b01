#!/usr/bin/env bash
# Auth engine primitives, ours beside Spark 3.5.7's own classes, same machine, one run:
#   ours  = shuffle-service/examples/auth_engine_bench.rs (release build)
#   java  = AuthEngineCrossCheck bench (shuffle-service/tests/auth_java/), i.e. Spark's
#           AuthEngine and CtrTransportCipher from the pyspark venv's jars, after a JIT warm-up
# Rows:
#   handshake_us   the server's work per new connection: decode the client's challenge, answer
#                  it (X25519 + HKDF + AES-GCM), derive v1 session keys, build the channel cipher
#   ctr 1 MiB / ctr 32 KiB   AES-CTR encryption of messages of that size, MiB/s (ours in place;
#                  Spark's through its Netty encryption handler, as its ESS sends chunk bodies)
# Processes alternate (ours, java, ours, java, ...); the table shows medians over the rounds.
#
# Usage: bench/auth-engine.sh [--rounds N] [--seconds S]   (defaults: 5 rounds, 2 s per row)
# Needs: the pyspark venv (scripts/setup-venv.sh; CROUPIER_VENV), a JDK 17 (javac, java).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=5
SECS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

VENV="${CROUPIER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/croupier/venv}"
JARS="$(ls -d "$VENV"/lib/python3*/site-packages/pyspark/jars 2>/dev/null | head -n 1)"
if [ ! -f "$JARS/spark-network-common_2.12-3.5.7.jar" ]; then
  echo "no spark-network-common_2.12-3.5.7.jar under $VENV: run scripts/setup-venv.sh first" >&2
  exit 1
fi
command -v javac >/dev/null || { echo "javac not found: a JDK 17 is required" >&2; exit 1; }

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== building the release example and compiling the Java side" >&2
cargo build --release -q -p croupier-shuffle-service --example auth_engine_bench >&2
OURS="$TARGET/release/examples/auth_engine_bench"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
javac -cp "$JARS/*" -d "$WORK/classes" shuffle-service/tests/auth_java/AuthEngineCrossCheck.java
JAVA=(java -cp "$WORK/classes:$JARS/*" org.apache.spark.network.crypto.AuthEngineCrossCheck bench "$SECS")

for round in $(seq "$ROUNDS"); do
  echo "== round $round/$ROUNDS" >&2
  "$OURS" "$SECS" | sed 's/^/ours /' >> "$WORK/results"
  "${JAVA[@]}" 2>/dev/null | sed 's/^/java /' >> "$WORK/results"
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
row() { # label key size (size "" for none)
  local ours java
  ours=$(awk -v k="$2" -v s="${3:-}" '$1=="ours" && $2==k && (s=="" || $3==s) {print $NF}' "$WORK/results" | median)
  java=$(awk -v k="$2" -v s="${3:-}" '$1=="java" && $2==k && (s=="" || $3==s) {print $NF}' "$WORK/results" | median)
  printf '| %-22s | %10s | %10s | %8s |\n' "$1" "$ours" "$java" "$(awk -v a="$ours" -v b="$java" 'BEGIN {printf "%.2f", a/b}')"
}
echo
echo "auth engine primitives, median of $ROUNDS interleaved rounds, ${SECS}s per row, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-22s | %10s | %10s | %8s |\n' "" "ours" "java" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------" "------------" "------------" "----------"
row "handshake us" handshake_us ""
row "ctr 1 MiB, MiB/s" ctr_MiB_s 1048576
row "ctr 32 KiB, MiB/s" ctr_MiB_s 32768
echo "ratio = ours/java (issue 13's end-to-end targets: handshake <= 0.5, encrypted GB/s >= 1.5)"
