#!/usr/bin/env bash
# The whole Croupier test suite: lints, unit tests, integration and interop tests against
# real Spark 3.5.7, pymesos 0.3.15, moto and the official Mesos protobuf classes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(bash scripts/setup-venv.sh | tail -n 1)"
export CROUPIER_VENV="$VENV"
echo "== venv: $CROUPIER_VENV"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace -- --test-threads=2
echo "== packaging (build .deb/.rpm, install, start/stop, purge)"
if [ "$(id -u)" -ne 0 ] && [ "${CROUPIER_SKIP_PACKAGING:-}" = 1 ]; then
  echo "NOT RUN: packaging test (needs root to dpkg -i; CROUPIER_SKIP_PACKAGING=1 was set)"
else
  bash packaging/test.sh
fi
