#!/usr/bin/env bash
# The whole Croupier test suite: lints, unit tests, integration and interop tests against
# real Spark 3.5.7, pymesos 0.3.15, moto, the official Mesos protobuf classes, the real-Mesos
# tier (a real Mesos 1.11 master and agent: test files named mesos_*.rs) and the packaging test.
#
# It runs as root (tests switch users and use TCP_REPAIR; the packaging test installs the .deb).
# Before running anything it checks what the suite needs from the machine and installs what is
# missing (Debian's libfaketime for the clock-jump tests; rpm, systemd and curl for the
# packaging test; Apache Mesos 1.11 from ../shared/mesos/install.sh beside the clone); what it
# cannot install it lists, with how to get it, and stops. Opt-outs, each reported as NOT RUN at
# the start and at the end:
#   CROUPIER_SKIP_PACKAGING=1  leave out the packaging test
#   CROUPIER_SKIP_MESOS=1      leave out the real-Mesos tier (no Mesos on this machine)
set -euo pipefail
cd "$(dirname "$0")/.."
is_root=0; [ "$(id -u)" -eq 0 ] && is_root=1
problems=(); notrun=()

# --- tests that need root: switching a task's user (executor_user), TCP_REPAIR to make a
# client vanish without FIN/RST (shuffle_load: CAP_NET_ADMIN), installing packages; and
# thousands of descriptors (shuffle_load raises its soft limit up to the hard one)
if [ "$is_root" -ne 1 ]; then
  problems+=("the suite runs as root (executor_user switches users, shuffle_load needs CAP_NET_ADMIN for TCP_REPAIR, the packaging test installs the .deb): run it as root, e.g. in a container or VM")
fi
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 4096 ]; then
  problems+=("the open-file hard limit is $(ulimit -Hn); shuffle_load holds 2,000 connections: raise it to at least 4096 (ulimit -Hn, or LimitNOFILE= / limits.conf)")
fi

# --- the clock-jump tests (shuffle-service/tests/faults.rs, executor/tests/executor_agent.rs)
# move a process's wall clock with libfaketime
faketime_lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/faketime/libfaketime.so.1
if [ ! -f "$faketime_lib" ]; then
  if [ "$is_root" -eq 1 ]; then
    echo "== apt-get install libfaketime (for the clock-jump tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null
    [ -f "$faketime_lib" ] || problems+=("apt-get install libfaketime did not provide $faketime_lib")
  else
    problems+=("the clock-jump tests need $faketime_lib: apt-get install libfaketime (as root)")
  fi
fi

# --- packaging test: root, rpm, systemd-analyze, curl
packaging=1
if [ "${CROUPIER_SKIP_PACKAGING:-}" = 1 ]; then
  packaging=0
  notrun+=("NOT RUN: packaging test (CROUPIER_SKIP_PACKAGING=1 was set)")
elif [ "$is_root" -eq 1 ]; then
  need=()
  command -v rpm >/dev/null 2>&1 || need+=(rpm)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  # aarch64 stripping, .rpm extraction, symbolisation; promtool for the alert rules
  command -v aarch64-linux-gnu-objcopy >/dev/null 2>&1 || need+=(binutils-aarch64-linux-gnu)
  command -v cpio >/dev/null 2>&1 || need+=(cpio)
  command -v gdb >/dev/null 2>&1 || need+=(gdb)
  # recording what one command task runs, to check the executor's link order
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  # the container-image test's root filesystem (a static busybox)
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "== apt-get install ${need[*]} (for the packaging test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# --- real-Mesos tier: MESOS_PREFIX with the binaries, else install ../shared/mesos
mesos_ok() { [ -n "${MESOS_PREFIX:-}" ] && [ -x "$MESOS_PREFIX/sbin/mesos-agent" ] \
  && [ -x "$MESOS_PREFIX/sbin/mesos-master" ] && [ -x "$MESOS_PREFIX/bin/mesos-execute" ]; }
mesos_tier=1
if [ "${CROUPIER_SKIP_MESOS:-}" = 1 ]; then
  mesos_tier=0
  notrun+=("NOT RUN: real-Mesos tier (CROUPIER_SKIP_MESOS=1 was set)")
elif ! mesos_ok; then
  installer=../shared/mesos/install.sh
  # a MESOS_PREFIX set by hand but wrong is reported, not installed over
  if [ -z "${MESOS_PREFIX:-}" ] && [ -f "$installer" ]; then
    # as root: apt-get the runtime packages and extract; otherwise only an existing install
    if [ "$is_root" -eq 1 ]; then out=$(bash "$installer") || out=
    else out=$(SKIP_APT=1 bash "$installer" 2>/dev/null) || out=; fi
    [ -n "$out" ] && eval "$out"
  fi
  if ! mesos_ok; then
    if [ -z "${MESOS_PREFIX:-}" ]; then why="MESOS_PREFIX is not set"; else why="MESOS_PREFIX=$MESOS_PREFIX lacks sbin/mesos-{master,agent} or bin/mesos-execute"; fi
    if [ ! -f "$installer" ]; then why="$why, and there is no $installer"
    elif [ "$is_root" -ne 1 ]; then why="$why, and installing $installer needs root"; fi
    problems+=("NOT RUN: real-Mesos tier ($why; run this script as root with ../shared/mesos beside the clone, or eval \"\$(sudo bash ../shared/mesos/install.sh)\" first); set CROUPIER_SKIP_MESOS=1 to run the rest without it")
  fi
fi

if [ "${#problems[@]}" -gt 0 ]; then
  echo "scripts/test.sh cannot run the whole suite on this machine:" >&2
  for p in "${problems[@]}"; do echo "  - $p" >&2; done
  exit 1
fi
for n in "${notrun[@]+"${notrun[@]}"}"; do echo "$n"; done
# ... and again at the end, whether the rest passed or failed, so the last lines of a run
# never read as a complete pass when a part of the suite did not run.
report_notrun() {
  local rc=$?
  if [ "${#notrun[@]}" -gt 0 ]; then
    for n in "${notrun[@]}"; do echo "$n"; done
    if [ "$rc" -eq 0 ]; then echo "== the suite passed WITHOUT the parts marked NOT RUN above"; fi
  fi
  exit "$rc"
}
trap report_notrun EXIT
if [ "$mesos_tier" -eq 1 ]; then
  echo "== real-Mesos tier: MESOS_PREFIX=$MESOS_PREFIX"
  export MESOS_PREFIX MESOS_NATIVE_JAVA_LIBRARY="${MESOS_NATIVE_JAVA_LIBRARY:-$MESOS_PREFIX/lib/libmesos-jni.so}"
fi

VENV="$(bash scripts/setup-venv.sh | tail -n 1)"
export CROUPIER_VENV="$VENV"
echo "== venv: $CROUPIER_VENV"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
if [ "$mesos_tier" -eq 1 ]; then
  cargo test --workspace -- --test-threads=2
else
  # every test target except the tier's (tests/mesos_*.rs), then the doctests
  targets=()
  for f in */tests/*.rs; do
    name=$(basename "$f" .rs)
    case "$name" in mesos_*) ;; *) targets+=(--test "$name") ;; esac
  done
  cargo test --workspace --lib --bins "${targets[@]}" -- --test-threads=2
  cargo test --workspace --doc
fi
if [ "$packaging" -eq 1 ]; then
  echo "== packaging (build .deb/.rpm, install, start/stop, purge)"
  bash packaging/test.sh
fi
