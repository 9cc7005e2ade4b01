#!/usr/bin/env bash
# Rebuilds BENCHMARKS.md: bench/summary.md (the targets, hand-kept from the latest runs)
# followed by every per-area results file that the benchmark scripts write.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat bench/summary.md
  for f in results-executor results-mesos-executor results-executor-longlived results-health-check results-fetcher results-fetcher-xfs results-shuffle-startup results-shuffle-registration results-shuffle results-soak results-auth-engine results-shuffle-auth results-auth-overhead results-connections results-rpc-under-load; do
    # a results file not produced yet (its benchmark never ran here) is left out
    [ -f "bench/$f.md" ] || continue
    echo
    echo "---"
    echo
    echo "<!-- copied from bench/$f.md by bench/assemble.sh -->"
    # demote the file's headings one level under this document's title
    sed -e 's/^#/##/' "bench/$f.md"
  done
} > BENCHMARKS.md
echo "BENCHMARKS.md: $(wc -l < BENCHMARKS.md) lines"
