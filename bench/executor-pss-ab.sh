#!/usr/bin/env bash
# Memory of two croupier-executor builds side by side, interleaved, under the agent stand-in:
#   bench/executor-pss-ab.sh A=<binary> B=<binary> [ROUNDS=9]
# Each round runs `croupier-local --executor <copy of the binary> --executor-env RUST_LOG=info
# -- sleep 3` for A and for B (which goes first alternates), reads the executor's
# /proc/<pid>/smaps_rollup 1.5 s after it started (it is then supervising `sleep`), and sums
# /proc/<pid>/smaps by mapping. Only one executor runs at a time, so its file pages are shared
# with no other executor (the headline case). Prints medians (KiB) per build: RSS, PSS, and the
# Rss of the executor's own text (r-xp) and read-only data (r--p) mappings.
# Needs croupier-local (cargo build -p croupier-testkit --bin croupier-local); CARGO_TARGET_DIR
# as for the other scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
A="" B="" ROUNDS="${ROUNDS:-9}"
for kv in "$@"; do
  case "$kv" in
    A=*) A="${kv#A=}" ;;
    B=*) B="${kv#B=}" ;;
    ROUNDS=*) ROUNDS="${kv#ROUNDS=}" ;;
    *) echo "usage: $0 A=<croupier-executor> B=<croupier-executor> [ROUNDS=n]" >&2; exit 2 ;;
  esac
done
[ -x "$A" ] && [ -x "$B" ] || { echo "$0: A=$A and B=$B must be executables" >&2; exit 2; }
target="${CARGO_TARGET_DIR:-target}"
local_bin="$target/debug/croupier-local"
[ -x "$local_bin" ] || cargo build -q -p croupier-testkit --bin croupier-local
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Copies in directories of their own: the stand-in uses the executor's directory as the
# launcher dir, and each build's file pages are then its own.
mkdir -p "$work/A" "$work/B"
cp "$A" "$work/A/croupier-executor"
cp "$B" "$work/B/croupier-executor"

# one <A|B>: runs one task, prints "rss pss text_rss rodata_rss" (KiB)
one() {
  local bin="$work/$1/croupier-executor" pid="" lp i
  "$local_bin" --executor "$bin" --executor-env RUST_LOG=info -- sleep 3 >/dev/null 2>&1 &
  lp=$!
  for i in $(seq 1 100); do
    for p in $(pgrep -P "$lp" 2>/dev/null); do
      [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$bin" ] && pid=$p
    done
    [ -n "$pid" ] && break
    sleep 0.02
  done
  [ -n "$pid" ] || { echo "$0: no executor process under croupier-local $lp" >&2; wait "$lp" || true; return 1; }
  sleep 1.5
  local roll maps
  roll=$(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} END{print r, p}' "/proc/$pid/smaps_rollup")
  maps=$(awk -v bin="$bin" '
    /^[0-9a-f]+-[0-9a-f]+ / {cur=""; if ($6 == bin) cur=$2}
    /^Rss:/ && cur=="r-xp" {t+=$2}
    /^Rss:/ && cur=="r--p" {d+=$2}
    END{print t+0, d+0}' "/proc/$pid/smaps")
  wait "$lp" || true
  echo "$roll $maps"
}

median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

: >"$work/A.txt"
: >"$work/B.txt"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for x in $order; do one "$x" >>"$work/$x.txt"; done
done
echo "| build | runs | RSS KiB | PSS KiB | own text Rss KiB | own r--p Rss KiB |"
echo "|---|---|---|---|---|---|"
for x in A B; do
  bin=$A; [ "$x" = B ] && bin=$B
  printf '| %s (`%s`) | %s | %s | %s | %s | %s |\n' "$x" "$bin" "$(wc -l <"$work/$x.txt")" \
    "$(cut -d' ' -f1 "$work/$x.txt" | median)" "$(cut -d' ' -f2 "$work/$x.txt" | median)" \
    "$(cut -d' ' -f3 "$work/$x.txt" | median)" "$(cut -d' ' -f4 "$work/$x.txt" | median)"
done
