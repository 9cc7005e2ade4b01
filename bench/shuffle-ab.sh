#!/usr/bin/env bash
# A/B of two builds of croupier-shuffle-service on the same data, client and machine: both
# servers run side by side and every cell alternates rounds (A, B, A, B, ...), so drifting load
# from other tenants hits both alike. Prints each round's `result` line, then per cell the
# median blocks/s and CPU µs/block of A and B and B/A.
#
# Usage: bench/shuffle-ab.sh A_BIN B_BIN [ROUNDS] [DURATION_S]
#   A_BIN, B_BIN   two croupier-shuffle-service binaries (e.g. a release build of the parent
#                  commit and of this one)
# Env: BENCH (croupier-shuffle-bench binary; default target/release/), DATA (data set root;
#      default a temp dir, deleted), CELLS ("id maps reduces block per conns" lines),
#      PIN=1 (server threads on the last core, the client on core 0, as shuffle.sh's pinned rows),
#      RAW=1 (also the raw sendfile server, label R, in the same rounds),
#      COLD=1 (the page cache is dropped before every round of every server: drop_caches when
#      writable, else posix_fadvise(DONTNEED) on the cell's files via `croupier-shuffle-bench evict`).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
A_BIN="$1"; B_BIN="$2"; ROUNDS="${3:-7}"; DUR="${4:-1}"
TARGET="${CARGO_TARGET_DIR:-target}"
BENCH="${BENCH:-$TARGET/release/croupier-shuffle-bench}"
OWN_DATA=0
if [ -z "${DATA:-}" ]; then DATA="$(mktemp -d)"; OWN_DATA=1; fi
CELLS="${CELLS:-"1 128 128 4096 64 64
2 64 64 32768 32 64"}"
PIN="${PIN:-0}"
LABELS=(A B)
[ "${RAW:-0}" = 1 ] && LABELS+=(R)
declare -A PID PORT
cleanup() {
  for l in "${!PID[@]}"; do kill "${PID[$l]}" 2>/dev/null || true; done
  for l in "${!PID[@]}"; do wait "${PID[$l]}" 2>/dev/null || true; done
  [ $OWN_DATA = 1 ] && rm -rf "$DATA"
}
trap cleanup EXIT
CLIENT=()
[ "$PIN" = 1 ] && CLIENT=(taskset -c 0)
while read -r id maps red block per conns; do
  "$BENCH" gen --data-dir "$DATA" --shuffle-id "$id" --maps "$maps" --reduces "$red" --block-size "$block" >&2
done <<<"$CELLS"
for l in "${LABELS[@]}"; do
  PORT[$l]=$(free_port)
  case $l in
    A) "$A_BIN" --host 127.0.0.1 --port "${PORT[$l]}" 2>/dev/null & ;;
    B) "$B_BIN" --host 127.0.0.1 --port "${PORT[$l]}" 2>/dev/null & ;;
    R) "$BENCH" raw-server --data-dir "$DATA" --port "${PORT[$l]}" 2>/dev/null & ;;
  esac
  PID[$l]=$!
  wait_port "${PORT[$l]}" "${PID[$l]}"
  [ "$PIN" = 1 ] && taskset -apc "$(( $(nproc) - 1 ))" "${PID[$l]}" >/dev/null
  first=$(head -n1 <<<"$CELLS" | cut -d' ' -f1)
  "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id "$first" --fetches 0 --repeat 1 --connections 1 >/dev/null
done
echo "# loadavg at start: $(cat /proc/loadavg)"
while read -r id maps red block per conns; do
  for l in "${LABELS[@]}"; do # warm-up
    "${CLIENT[@]}" "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id "$id" --connections "$conns" \
      --blocks-per-fetch "$per" --repeat 1 --duration-s 1 --no-register >/dev/null 2>&1
  done
  for _ in $(seq "$ROUNDS"); do
    for l in "${LABELS[@]}"; do
      if [ "${COLD:-0}" = 1 ]; then
        if [ -w /proc/sys/vm/drop_caches ]; then sync; echo 3 >/proc/sys/vm/drop_caches
        else "$BENCH" evict --data-dir "$DATA" --shuffle-id "$id" >/dev/null; fi
      fi
      "${CLIENT[@]}" "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id "$id" --connections "$conns" \
        --blocks-per-fetch "$per" --repeat 1 --duration-s "$DUR" --server-pid "${PID[$l]}" --label "$l" \
        --no-register 2>/dev/null
    done
  done
done <<<"$CELLS"
echo "# loadavg at end: $(cat /proc/loadavg)"
