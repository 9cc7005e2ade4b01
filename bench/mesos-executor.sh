#!/usr/bin/env bash
# croupier-executor vs Mesos 1.11's own mesos-executor as the command executor of ONE real
# mesos-agent (interleaved task by task), each task submitted by mesos-execute: executor RSS and
# PSS while supervising a task, submit -> TASK_RUNNING as the framework sees it, and where that
# time goes (agent log, launcher script and executor log timestamps).
# Prints the tables and writes them, with this command, to bench/results-mesos-executor.md
# (or to $OUT). TASKS=N per executor (default 30, at least 30).
# Needs: Apache Mesos 1.11 (MESOS_PREFIX; installed from ../shared/mesos/install.sh if unset and
# run as root). The executor under test is the release build, which links the functions one
# command task runs first in its text (executor/link-order.txt, executor/build.rs).
# LINK_ORDER=0 measures a release build linked without that list (CROUPIER_EXECUTOR_LINK_ORDER=none);
# EXECUTOR=<path> measures that binary instead of building one (e.g. the packaged build:
# EXECUTOR=target/pack-stage/x86_64-unknown-linux-gnu/release/croupier-executor after
# packaging/build.sh x86_64). The driver (croupier-mesos-bench) only reads timestamps and is
# built in the dev profile.
# FRAMEWORK_NODELAY=1 (a diagnostic, not the benchmark): mesos-execute runs with TCP_NODELAY on
# the sockets it connects (bench/nodelay.c, preloaded; the other processes are untouched), to
# show what Nagle on the framework's connection to the master costs; write it elsewhere (OUT=).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MESOS_PREFIX:-}" ]; then
  eval "$(bash ../shared/mesos/install.sh)" || { echo "no Mesos: set MESOS_PREFIX or run as root with ../shared/mesos beside the clone" >&2; exit 1; }
fi
export MESOS_PREFIX
target="${CARGO_TARGET_DIR:-target}"
cargo build -q -p croupier-testkit --bin croupier-mesos-bench --bin croupier-local
if [ -n "${EXECUTOR:-}" ]; then
  exe="$EXECUTOR"
  [ -x "$exe" ] || { echo "$0: EXECUTOR=$exe is not an executable file" >&2; exit 1; }
  # (the driver finds the executor's process by its name)
  [ "$(basename "$exe")" = croupier-executor ] || { echo "$0: EXECUTOR=$exe: the file must be named croupier-executor" >&2; exit 1; }
  build="$exe, as given (EXECUTOR=)"
elif [ "${LINK_ORDER:-1}" = 0 ]; then
  CROUPIER_EXECUTOR_LINK_ORDER=none cargo build --release -q -p croupier-executor --bin croupier-executor
  exe="$target/release/croupier-executor"
  build="release, linked without a link order list (LINK_ORDER=0)"
else
  CROUPIER_EXECUTOR_LINK_ORDER= cargo build --release -q -p croupier-executor --bin croupier-executor
  exe="$target/release/croupier-executor"
  build="release, linked with the functions of executor/link-order.txt ($(grep -vc '^#' executor/link-order.txt) names and patterns) first in the text"
fi
preload=()
if [ "${FRAMEWORK_NODELAY:-0}" = 1 ]; then
  cc -shared -fPIC -O2 -o "$target/nodelay.so" bench/nodelay.c -ldl
  preload=(env LD_PRELOAD="$(realpath "$target/nodelay.so")" NODELAY_ONLY=mesos-execute)
  build="$build; mesos-execute with TCP_NODELAY on its connections (FRAMEWORK_NODELAY=1, bench/nodelay.c)"
fi
table=$("${preload[@]}" "$target/debug/croupier-mesos-bench" --executor "$exe" --tasks "${TASKS:-30}")
echo "$table"
{
  echo "# Executor under a real Mesos 1.11 agent: croupier-executor vs mesos-executor"
  echo
  echo "Command: \`bench/mesos-executor.sh\` (TASKS=${TASKS:-30}), i.e. \`croupier-mesos-bench --executor $exe --tasks ${TASKS:-30}\`."
  echo "croupier-executor build: $build."
  echo "Mesos: $("$MESOS_PREFIX/sbin/mesos-agent" --version 2>&1 | head -n 1) at $MESOS_PREFIX. Machine: $(nproc) cores, $(uname -r). Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD)."
  echo
  echo "One \`mesos-master --registry=in_memory\` and one \`mesos-agent\` on 127.0.0.1 (\`--launcher=posix --isolation=posix/cpu,posix/mem --http_command_executor\`);"
  echo "the agent's \`--launcher_dir\` holds Mesos's own helpers and, as \`mesos-executor\`, a script that records when it ran and execs"
  echo "Mesos's \`mesos-executor\` for task ids \`ref-*\` and \`croupier-executor\` (the build above) otherwise, so both run under the same agent, alternating"
  echo "task by task (which goes first alternates each round; one warm-up each not counted). Each task is \`sleep 1\` submitted by its own \`mesos-execute --task=...\`."
  echo "RSS/PSS: \`/proc/<executor pid>/smaps_rollup\` 300 ms after \`mesos-execute\` printed TASK_RUNNING. Latency: from \`mesos-execute\` printing"
  echo "\"Submitted task\" (the ACCEPT was just sent) to it printing TASK_RUNNING, read line by line from its stdout."
  echo
  echo "$table"
  echo
  echo "${NOTES:-}"
} > "${OUT:-bench/results-mesos-executor.md}"
