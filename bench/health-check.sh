#!/usr/bin/env bash
# Health-check overhead of the command executor under ONE real Mesos 1.11 agent: croupier-executor
# vs Mesos's own mesos-executor, side by side (a dispatch script in the agent's launcher dir runs
# mesos-executor for task ids ref-*, croupier-executor otherwise), each supervising a `sleep` task
# with an HTTP health check every second (DURATION seconds of measurement, default 300): executor
# CPU (itself, and with the probe processes it reaps) and RSS.
# Prints the table and writes it, with this command, to bench/results-health-check.md (or $OUT).
# Needs: Apache Mesos 1.11 (MESOS_PREFIX; installed from ../shared/mesos/install.sh if unset and
# run as root), curl (for mesos-executor's probes). The executor under test is a release build;
# the driver (croupier-health-bench) only samples /proc and is built in the dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MESOS_PREFIX:-}" ]; then
  eval "$(bash ../shared/mesos/install.sh)" || { echo "no Mesos: set MESOS_PREFIX or run as root with ../shared/mesos beside the clone" >&2; exit 1; }
fi
export MESOS_PREFIX
cargo build --release -q -p croupier-executor --bin croupier-executor
cargo build -q -p croupier-testkit --bin croupier-health-bench
target="${CARGO_TARGET_DIR:-target}"
table=$("$target/debug/croupier-health-bench" --executor "$target/release/croupier-executor" --duration "${DURATION:-300}" --sample "${SAMPLE:-10}")
echo "$table"
{
  echo "# Health-check overhead under a real Mesos 1.11 agent: croupier-executor vs mesos-executor"
  echo
  echo "Command: \`bench/health-check.sh\` (DURATION=${DURATION:-300}, SAMPLE=${SAMPLE:-10}), i.e. \`croupier-health-bench --executor target/release/croupier-executor --duration ${DURATION:-300} --sample ${SAMPLE:-10}\`."
  echo "Mesos: $("$MESOS_PREFIX/sbin/mesos-agent" --version 2>&1 | head -n 1) at $MESOS_PREFIX. Machine: $(nproc) cores, $(uname -r). Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD)."
  echo
  echo "One \`mesos-master\` and one \`mesos-agent\` on 127.0.0.1 (\`--launcher=posix --http_command_executor\`); its \`--launcher_dir\`"
  echo "\`mesos-executor\` is a script exec'ing Mesos's \`mesos-executor\` for task id \`ref-theirs\` and croupier-executor (release) for \`ours\`."
  echo "Both tasks (\`exec sleep 100000\`, submitted by their own \`mesos-execute --task=...\`) run at the same time with the same"
  echo "HTTP health check (interval 1 s, delay 0, timeout 5 s) against two in-process HTTP servers on 127.0.0.1 that count the probes."
  echo "Once both are healthy, \`/proc/<executor pid>/stat\` (utime+stime; cutime+cstime = the reaped probe processes: mesos-executor"
  echo "forks \`curl\` for each probe, croupier-executor probes natively) and \`VmRSS\` are sampled every ${SAMPLE:-10} s."
  echo
  echo "$table"
  echo
  echo "${NOTES:-}"
} > "${OUT:-bench/results-health-check.md}"
