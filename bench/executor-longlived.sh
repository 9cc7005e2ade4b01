#!/usr/bin/env bash
# One long-lived custom-mode croupier-executor (release build) under the agent stand-in runs
# TASKS short tasks (default 5000, in batches of 10) with RESTARTS agent restarts among them
# (default 100; before each, the stand-in withholds its acknowledgements, so the updates of that
# batch are re-sent in the re-SUBSCRIBE): RSS after the first 100 tasks and at the end (the
# drift), open descriptors, terminal updates lost / duplicated, processes and task directories
# left. It is the test executor/tests/executor_longlived.rs at full size (CI runs it with 300
# tasks and 5 restarts); the test fails if any of its properties does not hold.
# Prints the figures and writes them, with this command, to bench/results-executor-longlived.md
# (or to $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${TASKS:-5000}
restarts=${RESTARTS:-100}
cargo build --release -q -p croupier-executor --bin croupier-executor
target="${CARGO_TARGET_DIR:-target}"
exe="$(cd "$target/release" && pwd)/croupier-executor"
out=$(CROUPIER_LONGLIVED_TASKS=$tasks CROUPIER_LONGLIVED_RESTARTS=$restarts \
  CROUPIER_LONGLIVED_EXECUTOR=$exe \
  cargo test -q -p croupier-executor --test executor_longlived -- --nocapture 2>&1) || {
  echo "$out" >&2
  exit 1
}
figures=$(echo "$out" | sed -n '/^long-lived executor:/,/terminal updates:/p')
echo "$figures"
{
  echo "# Long-lived custom-mode executor: $tasks tasks, $restarts agent restarts"
  echo
  echo "Command: \`bench/executor-longlived.sh\` (TASKS=$tasks RESTARTS=$restarts), i.e. the test"
  echo "\`executor_longlived\` with \`CROUPIER_LONGLIVED_TASKS=$tasks CROUPIER_LONGLIVED_RESTARTS=$restarts\`"
  echo "and \`CROUPIER_LONGLIVED_EXECUTOR=target/release/croupier-executor\`."
  echo "Machine: $(nproc) cores, $(uname -r). Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD)."
  echo
  echo "Tasks run 10 at a time (\`sh -c 'exit 0'\`; every 50th \`exit 3\`; every 10th leaves a background \`sleep 600\`"
  echo "that must die with its task). Before each restart the stand-in withholds its acknowledgements; the"
  echo "restart drops every connection and answers 503 for 100 ms. RSS is \`VmRSS\` of the executor after"
  echo "every batch's terminal updates were acknowledged."
  echo
  echo '```'
  echo "$figures"
  echo '```'
  echo
  echo "${NOTES:-}"
} > "${OUT:-bench/results-executor-longlived.md}"
