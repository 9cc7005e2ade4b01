#!/usr/bin/env bash
# What SASL `auth` (qop auth: authenticated, not encrypted) costs in throughput, ours only:
# two croupier-shuffle-service processes (release build) on the same machine and the same files,
# one with spark.authenticate=true (SASL DIGEST-MD5; the client authenticates with qop auth),
# one without. After qop auth the channel is plain, so the service keeps its zero-copy sendfile
# path; the target is authenticated throughput within 5% of unauthenticated.
#
# The machine is shared and noisy, so the measure is many short runs, interleaved: each round
# runs both servers back to back (the order alternating between rounds), and the ratio is taken
# within the round. The table gives, per block size, the median GB/s of each and the median
# per-round ratio with its quartiles and extremes.
#
# Usage: bench/auth-overhead.sh [--rounds N] [--seconds S] [--data-dir DIR]
#   --rounds N    interleaved rounds per block size (default 30)
#   --seconds S   duration of each run (default 1)
# Needs: python3, ~600 MiB in DATA (removed at the end unless --data-dir was given).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=30
SECS=1
DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    --data-dir) DATA="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
KEEP_DATA=1
if [ -z "$DATA" ]; then
  DATA="$(mktemp -d "${TMPDIR:-/tmp}/croupier-auth-overhead.XXXXXX")"
  KEEP_DATA=0
fi

echo "== building release binaries" >&2
cargo build --release -q -p croupier-shuffle-service --bin croupier-shuffle-service >&2
cargo build --release -q -p croupier-testkit --bin croupier-shuffle-bench >&2
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OURS="$TARGET/release/croupier-shuffle-service"
BENCH="$TARGET/release/croupier-shuffle-bench"
SECRET="croupier-bench-secret-$RANDOM$RANDOM"
RESULTS="$DATA/auth-overhead.txt"
LOGS="$DATA/logs"
mkdir -p "$LOGS"
: >"$RESULTS"

declare -A PORT PID
cleanup() {
  for l in "${!PID[@]}"; do kill "${PID[$l]}" 2>/dev/null || true; done
  for l in "${!PID[@]}"; do wait "${PID[$l]}" 2>/dev/null || true; done
  [ "$KEEP_DATA" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT

# shuffle 2: 64 maps x 64 reduces of 32 KiB; shuffle 3: 16 x 16 of 1 MiB
for s in "2 64 64 32768" "3 16 16 1048576"; do
  read -r id maps red block <<<"$s"
  "$BENCH" gen --data-dir "$DATA" --shuffle-id "$id" --maps "$maps" --reduces "$red" --block-size "$block" >&2
done
for l in sasl none; do
  PORT[$l]=$(free_port)
  args=(--host 127.0.0.1 --port "${PORT[$l]}" --conf croupier.state.dir=none)
  [ $l = sasl ] && args+=(--conf spark.authenticate=true --conf "spark.authenticate.secret=$SECRET")
  "$OURS" "${args[@]}" 2>"$LOGS/$l.log" &
  PID[$l]=$!
  wait_port "${PORT[$l]}" "${PID[$l]}"
done
auth_args() { [ "$1" = sasl ] && echo "--auth sasl --secret $SECRET" || true; }
run() { # label shuffle-id blocks-per-fetch duration extra...
  local l=$1 id=$2 per=$3 dur=$4
  shift 4
  # shellcheck disable=SC2046
  "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id "$id" --connections 16 --blocks-per-fetch "$per" \
    --repeat 1 --duration-s "$dur" --label "$l" --no-register $(auth_args "$l") "$@"
}
for l in sasl none; do
  # shellcheck disable=SC2046
  "$BENCH" run --data-dir "$DATA" --port "${PORT[$l]}" --shuffle-id 2 --fetches 0 --repeat 1 --connections 1 $(auth_args "$l") >/dev/null
  run "$l" 2 32 1 >/dev/null 2>&1
  run "$l" 3 8 1 >/dev/null 2>&1
done
T0=$SECONDS
for s in "3 8" "2 32"; do
  read -r id per <<<"$s"
  for r in $(seq "$ROUNDS"); do
    order="sasl none"; [ $((r % 2)) = 0 ] && order="none sasl"
    for l in $order; do
      echo "round=$r $(run "$l" "$id" "$per" "$SECS" --server-pid "${PID[$l]}" 2>/dev/null | grep '^result')" >>"$RESULTS"
    done
  done
  echo "  shuffle $id: $ROUNDS rounds done ($((SECONDS - T0)) s)" >&2
done
# The service's own log says how the connections authenticated; strace shows which path served
# their blocks (sendfile: zero-copy; pread64 + sendto would be the encrypting path).
grep -c "authenticated (SASL DIGEST-MD5, qop auth)" "$LOGS/sasl.log" | sed 's/^/sasl connections authenticated with qop auth: /' >&2
SYSCALLS=""
if command -v strace >/dev/null; then
  strace -f -c -e trace=sendfile,pread64,sendto -o "$DATA/strace.txt" -p "${PID[sasl]}" &
  STRACE=$!
  sleep 1
  run sasl 3 8 2 >/dev/null 2>&1
  kill -INT "$STRACE" 2>/dev/null || true
  wait "$STRACE" 2>/dev/null || true
  SYSCALLS=$(awk '$NF ~ /^(sendfile|pread64|sendto)$/ {n[$NF]=$4} END {printf "sendfile=%d sendto=%d pread64=%d", n["sendfile"], n["sendto"], n["pread64"]}' "$DATA/strace.txt")
fi

echo "ours, SASL qop auth vs unauthenticated: $ROUNDS interleaved rounds of ${SECS}s per block size, 16 connections, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
    if "gb_per_s" in kv:
        rows.append(kv)
def q(v, p):
    v = sorted(v)
    i = (len(v) - 1) * p
    lo, hi = int(i), min(int(i) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (i - lo)
print()
print("| block | SASL auth GB/s (median) | unauthenticated GB/s (median) | auth/unauth per round: median | p25-p75 | min-max | rounds |")
print("|---|---|---|---|---|---|---|")
for block, name in (("1048576", "1 MiB"), ("32768", "32 KiB")):
    by = {}
    for r in rows:
        if r["block"] == block:
            by.setdefault(r["round"], {})[r["server"]] = float(r["gb_per_s"])
    pairs = [(d["sasl"], d["none"]) for d in by.values() if "sasl" in d and "none" in d and d["none"] > 0]
    if not pairs:
        print(f"| {name} | - | - | - | - | - | 0 |")
        continue
    ratios = [a / n for a, n in pairs]
    print(f"| {name} | {statistics.median(a for a, _ in pairs):.3f} | {statistics.median(n for _, n in pairs):.3f} | "
          f"{statistics.median(ratios):.3f} | {q(ratios, .25):.3f}-{q(ratios, .75):.3f} | {min(ratios):.3f}-{max(ratios):.3f} | {len(pairs)} |")
PY
[ -z "$SYSCALLS" ] || echo "
syscalls of the SASL-authenticated service during one extra 2 s run of 1 MiB blocks (strace -f -c): $SYSCALLS"
