#!/usr/bin/env bash
# Fetcher benchmark (loopback only): 256 MiB cold vs curl, warm from the cache (copy, link),
# ~100 MiB .tgz extraction vs tar xzf, 8 processes launching one cached URI.
# Prints the table and writes it, with this command, to bench/results-fetcher.md.
# Needs: curl, tar, gzip; run as root to measure link mode. RUNS=N (default 5) per case.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p croupier-executor --example fetcher-bench
table=$(RUNS="${RUNS:-5}" cargo run --release -q -p croupier-executor --example fetcher-bench)
echo "$table"
{
  echo "# Fetcher benchmark"
  echo
  echo "Command: \`bench/fetcher.sh\` (RUNS=${RUNS:-5}), i.e. \`cargo run --release -p croupier-executor --example fetcher-bench\`."
  echo "Machine: $(nproc) cores, $(uname -r), file system of \$TMPDIR: $(stat -f -c %T /tmp). Date: $(date -u +%Y-%m-%d)."
  echo "Server: an in-process tokio server on 127.0.0.1 serving from memory (same server for curl and croupier)."
  echo
  echo "$table"
} > bench/results-fetcher.md
