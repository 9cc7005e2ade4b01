#!/usr/bin/env bash
# Fetcher benchmark (loopback only): 256 MiB cold vs curl, warm from the cache (copy, link),
# ~100 MiB .tgz extraction vs tar xzf, 8 processes launching one cached URI.
# Prints the table and writes it, with this command, to bench/results-fetcher.md (or to $OUT).
# Needs: curl, tar, gzip; run as root to measure link mode. RUNS=N (default 5) per case;
# BENCH_DIR=<dir> puts the cache, sandboxes and files on another file system (e.g. XFS, whose
# reflinks make a warm copy a clone): see bench/fetcher-xfs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p croupier-executor --example fetcher-bench
table=$(RUNS="${RUNS:-5}" cargo run --release -q -p croupier-executor --example fetcher-bench)
echo "$table"
{
  echo "# ${TITLE:-Fetcher benchmark}"
  echo
  echo "Command: \`${COMMAND:-bench/fetcher.sh}\` (RUNS=${RUNS:-5}), i.e. \`cargo run --release -p croupier-executor --example fetcher-bench\`."
  echo "Machine: $(nproc) cores, $(uname -r), file system of the work directory: $(df -T "${BENCH_DIR:-${TMPDIR:-/tmp}}" 2>/dev/null | awk 'NR==2{print $2}'). Date: $(date -u +%Y-%m-%d)."
  echo "Server: an in-process tokio server on 127.0.0.1 serving from memory (same server for curl and croupier)."
  echo
  echo "$table"
  if [ -n "${NOTES:-}" ]; then echo; echo "$NOTES"; fi
} > "${OUT:-bench/results-fetcher.md}"
