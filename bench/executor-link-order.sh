#!/usr/bin/env bash
# Records the functions croupier-executor runs for one drop-in command task (start-up,
# SUBSCRIBE, launch, supervision, exit, updates, shutdown) and writes them as the link order
# list executor/build.rs links first in the text (see there):
#   bench/executor-link-order.sh <out-file> <croupier-executor>...
# e.g. to refresh the committed list from the packaged and the release builds:
#   bash packaging/build.sh x86_64 && cargo build --release -p croupier-executor &&
#   bench/executor-link-order.sh executor/link-order.txt \
#     target/x86_64-unknown-linux-gnu/dist/croupier-executor target/release/croupier-executor
# Each binary runs one task (`sleep 1`) under the agent stand-in (croupier-local) inside
# `valgrind --tool=callgrind`; its functions (callgrind's recursion marks `'N` dropped) are
# listed in the order callgrind first saw them, those of later binaries not already listed
# appended. The binaries must have symbols (not the
# stripped packaged ones). LTO's `.llvm.<digits>` suffixes are dropped (build.rs matches them).
# The exact names come first: they place exactly the functions that run in builds of the same
# version, profile, target and dependencies as a recorded one (the hashes in Rust's symbol names
# come from those, not from the source). Then every name again with its build hashes as `*`
# (legacy `17h<hash>E`, v0 crate disambiguators `Cs<hash>_`): in any other build (another
# target, a new version) those place the same functions first, each with all the instances of
# the same generic function, a longer and less dense start of the text.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
out=$1; shift
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
local_bin="$target/debug/croupier-local"
[ -x "$local_bin" ] || cargo build -q -p croupier-testkit --bin croupier-local
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
for b in "$@"; do
  bin=$(realpath "$b")
  [ -n "$(nm "$bin" 2>/dev/null | head -n 1)" ] ||
    { echo "$0: $b has no symbol table (a stripped binary?): record an unstripped build" >&2; exit 1; }
  n=$((n + 1)); mkdir -p "$work/$n/launcher"
  cat >"$work/$n/launcher/croupier-executor" <<WRAP
#!/bin/sh
exec env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \\
  --callgrind-out-file="$work/$n/cg.%p" "$bin" "\$@"
WRAP
  chmod +x "$work/$n/launcher/croupier-executor"
  "$local_bin" --executor "$work/$n/launcher/croupier-executor" --executor-env RUST_LOG=info \
    -- sleep 1 >"$work/$n/local.out" 2>&1 || { cat "$work/$n/local.out" >&2; exit 1; }
  # Functions of the executor's own object, in the order callgrind first lists them: their
  # exact names, and the same with the build hashes as `*`.
  awk -v bin="$bin" '/^ob=/{ob=substr($0,4)} /^fn=/ && ob==bin {print substr($0,4)}' "$work/$n"/cg.* |
    sed -e "s/'[0-9]\{1,\}\$//" -e 's/\.llvm\.[0-9]\{1,\}$//' |
    { grep -E '^[A-Za-z0-9_$.]+$' || true; } | { grep -v '^0x[0-9a-fA-F]*$' || true; } |
    awk '!seen[$0]++' >"$work/$n/exact" # (not "(below main)", nor addresses it could not name)
  [ -s "$work/$n/exact" ] || { echo "$0: callgrind saw no function of $bin: $(tail -n 3 "$work/$n/local.out")" >&2; exit 1; }
  # A pattern without a run of 12 characters free of `*` is refused by executor/build.rs
  # (it would match too much): such a name is kept exact only.
  sed -e 's/17h[0-9a-f]\{16\}E/17h*E/g' -e '/^_R/s/Cs[0-9A-Za-z]\{1,\}_/Cs*_/g' \
    "$work/$n/exact" | awk -F'*' '{ for (i = 1; i <= NF; i++) if (length($i) >= 12) { print; next } }' \
    >"$work/$n/glob"
  echo "$0: $b: $(wc -l <"$work/$n/exact") functions" >&2
done
{
  echo "# The functions one drop-in command task runs, linked first (executor/build.rs): their"
  echo "# exact names in the recorded builds, then with build hashes as * for any other build."
  echo "# Written by: bench/executor-link-order.sh $out $*"
  echo "# rustc $(rustc -V | cut -d' ' -f2), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  for i in $(seq 1 "$n"); do cat "$work/$i/exact"; done
  for i in $(seq 1 "$n"); do cat "$work/$i/glob"; done
} | awk '/^#/ || !seen[$0]++' >"$out.tmp"
mv "$out.tmp" "$out"
echo "$0: $(grep -vc '^#' "$out") names and patterns in $out" >&2
