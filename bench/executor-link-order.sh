#!/usr/bin/env bash
# Writes the list of functions a croupier-executor build runs for one drop-in command task
# (start-up, SUBSCRIBE, launch, supervision, exit, updates, shutdown), one linker symbol a line,
# for lld's --symbol-ordering-file (executor/build.rs: CROUPIER_EXECUTOR_LINK_ORDER=<file>):
#   bench/executor-link-order.sh <croupier-executor> <out-file>
# The functions are recorded with `valgrind --tool=callgrind` under the agent stand-in
# (croupier-local --executor <wrapper> --executor-env RUST_LOG=info -- sleep 1). Linked first in
# the text, they sit together instead of spread over the 8 MB text, where every page a function
# touches brings its whole 64 KiB fault-around window into the process's RSS.
# Symbol names depend on the build (crate hashes, LTO's local suffixes): produce the list from
# a build of the same sources and profile as the one it is linked into; names that do not match
# are skipped by lld (--no-warn-symbol-ordering).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
out=$2
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
local_bin="$target/debug/croupier-local"
[ -x "$local_bin" ] || cargo build -q -p croupier-testkit --bin croupier-local
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/launcher"
cat >"$work/launcher/croupier-executor" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \\
  --callgrind-out-file="$work/cg.%p" "$bin" "\$@"
EOF
chmod +x "$work/launcher/croupier-executor"
"$local_bin" --executor "$work/launcher/croupier-executor" --executor-env RUST_LOG=info \
  -- sleep 1 >"$work/local.out" 2>&1 || { cat "$work/local.out" >&2; exit 1; }
# Functions of the executor's own object, in the order callgrind first lists them.
awk -v bin="$bin" '/^ob=/{ob=substr($0,4)} /^fn=/ && ob==bin && !seen[$0]++ {print substr($0,4)}' \
  "$work"/cg.* >"$out"
echo "$0: $(wc -l <"$out") functions of $bin in $out" >&2
