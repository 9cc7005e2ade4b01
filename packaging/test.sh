#!/usr/bin/env bash
# Packaging test, for real: builds the .deb and .rpm, installs the .deb on this machine (CI runs
# as root on a throw-away machine), checks files, permissions, the user and the conffiles, runs
# the installed start/stop scripts against a live service with a protocol ping and a /metrics
# scrape, then removes and purges and checks nothing is left. Inspects the .rpm with rpm(8).
# Ends with the line "packaging: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
pass=0; fail=0
ok()   { pass=$((pass + 1)); echo "ok   - $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local what="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
finish() { echo "packaging: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

if [ "$(id -u)" -ne 0 ]; then
  echo "packaging/test.sh installs a .deb and must run as root (CI does)"; bad "running as root"; finish
fi
venv="${CROUPIER_VENV:?CROUPIER_VENV is not set: run scripts/test.sh}"
py="$venv/bin/python"

bash packaging/build.sh || { bad "packaging/build.sh"; finish; }
ver="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
deb="target/packages/croupier_${ver}_amd64.deb"
rpmf="target/packages/croupier-${ver}.x86_64.rpm"
check "deb built ($deb)" test -s "$deb"
check "rpm built ($rpmf)" test -s "$rpmf"

# --- .deb contents and metadata
contents="$(dpkg-deb -c "$deb")"
for f in ./usr/bin/croupier-executor ./usr/bin/croupier-shuffle-service \
         ./usr/bin/start-mesos-shuffle-service ./usr/bin/stop-mesos-shuffle-service \
         ./lib/systemd/system/croupier-shuffle-service.service ./etc/croupier/shuffle-service.conf \
         ./usr/share/croupier/marathon/croupier-shuffle-service.json; do
  if grep -q -- " $f\$" <<<"$contents"; then ok "deb ships $f"; else bad "deb ships $f"; fi
done
conff="$(dpkg-deb -I "$deb" conffiles 2>/dev/null)"
for f in /etc/croupier/shuffle-service.conf /etc/default/croupier-shuffle-service; do
  if grep -qx "$f" <<<"$conff"; then ok "conffile $f"; else bad "conffile $f"; fi
done

# --- Marathon app: AppDefinition constraints and what one-per-agent needs
if out="$("$py" packaging/validate_marathon.py packaging/marathon/croupier-shuffle-service.json 2>&1)"; then
  ok "Marathon app valid: $out"; else bad "Marathon app: $out"; fi

# --- systemd unit
unit_out="$(systemd-analyze verify systemd/croupier-shuffle-service.service 2>&1)"
if [ -z "$unit_out" ]; then ok "systemd-analyze verify (no warnings)"; else
  # Before install the ExecStart binary is missing; that is the only acceptable complaint.
  if grep -v -q "croupier-shuffle-service.*No such file\|is not executable" <<<"$unit_out"; then
    bad "systemd-analyze verify: $unit_out"; else ok "systemd-analyze verify (binary not installed yet)"; fi
fi

# --- install
dpkg --purge croupier >/dev/null 2>&1 || true
if dpkg -i "$deb" >/tmp/croupier-dpkg.log 2>&1; then ok "dpkg -i"; else bad "dpkg -i: $(tail -5 /tmp/croupier-dpkg.log)"; finish; fi
check "user croupier exists" getent passwd croupier
check "group croupier exists" getent group croupier
[ "$(stat -c %a /usr/bin/croupier-shuffle-service)" = 755 ] && ok "binary mode 755" || bad "binary mode 755"
[ "$(stat -c %a /var/cache/croupier/fetcher)" = 1777 ] && ok "fetcher cache dir 1777" || bad "fetcher cache dir mode"
[ "$(stat -c %U /var/lib/croupier)" = croupier ] && ok "/var/lib/croupier owned by croupier" || bad "/var/lib/croupier owner"
check "croupier-shuffle-service --help" /usr/bin/croupier-shuffle-service --help
check "croupier-executor --help" /usr/bin/croupier-executor --help
unit_out="$(systemd-analyze verify /lib/systemd/system/croupier-shuffle-service.service 2>&1)"
[ -z "$unit_out" ] && ok "systemd-analyze verify installed unit" || bad "systemd-analyze verify installed unit: $unit_out"

# --- start/stop scripts, protocol ping, metrics
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
aport="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
tmp="$(mktemp -d)"
export SPARK_PID_DIR="$tmp" SPARK_LOG_DIR="$tmp"
export SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$port -Dcroupier.admin.address=127.0.0.1:$aport"
if start-mesos-shuffle-service --host 127.0.0.1 >"$tmp/start.out" 2>&1; then ok "start-mesos-shuffle-service"; else bad "start-mesos-shuffle-service: $(cat "$tmp/start.out")"; fi
if start-mesos-shuffle-service --host 127.0.0.1 >"$tmp/start2.out" 2>&1; then bad "second start refused"
elif grep -q "Stop it first" "$tmp/start2.out"; then ok "second start refused: $(cat "$tmp/start2.out")"; else bad "second start message: $(cat "$tmp/start2.out")"; fi
if "$py" packaging/ping.py 127.0.0.1 "$port"; then ok "protocol ping (RegisterDriver -> RpcResponse)"; else bad "protocol ping"; fi
if "$py" packaging/scrape.py "http://127.0.0.1:$aport"; then ok "/healthz and /metrics parse"; else bad "/healthz and /metrics"; fi
if stop-mesos-shuffle-service >"$tmp/stop.out" 2>&1 && ! "$py" packaging/ping.py 127.0.0.1 "$port" 2>/dev/null; then ok "stop-mesos-shuffle-service"; else bad "stop-mesos-shuffle-service: $(cat "$tmp/stop.out")"; fi
unset SPARK_PID_DIR SPARK_LOG_DIR SPARK_SHUFFLE_OPTS
rm -rf "$tmp"

# --- remove keeps conffiles, purge leaves nothing
dpkg -r croupier >/dev/null 2>&1 && ok "dpkg -r" || bad "dpkg -r"
check "binaries removed" test ! -e /usr/bin/croupier-shuffle-service
check "conffile kept after remove" test -e /etc/croupier/shuffle-service.conf
dpkg --purge croupier >/dev/null 2>&1 && ok "dpkg --purge" || bad "dpkg --purge"
for p in /etc/croupier /var/lib/croupier /var/cache/croupier /var/log/croupier /usr/share/croupier /lib/systemd/system/croupier-shuffle-service.service; do
  check "purge removed $p" test ! -e "$p"
done
check "purge removed user croupier" bash -c '! getent passwd croupier'

# --- rpm
if command -v rpm >/dev/null 2>&1; then
  files="$(rpm -qlp "$rpmf" 2>/dev/null)"
  for f in /usr/bin/croupier-executor /usr/bin/croupier-shuffle-service /usr/lib/systemd/system/croupier-shuffle-service.service /etc/croupier/shuffle-service.conf; do
    grep -qx "$f" <<<"$files" && ok "rpm ships $f" || bad "rpm ships $f"
  done
  cfg="$(rpm -qcp "$rpmf" 2>/dev/null)"
  grep -qx /etc/croupier/shuffle-service.conf <<<"$cfg" && ok "rpm config file" || bad "rpm config file"
  scripts="$(rpm -qp --scripts "$rpmf" 2>/dev/null)"
  grep -q "useradd --system" <<<"$scripts" && ok "rpm preinstall creates the user" || bad "rpm scripts: $scripts"
  grep -q "postuninstall" <<<"$scripts" && ok "rpm postuninstall present" || bad "rpm postuninstall"
else
  bad "rpm(8) not installed (.ci/run installs Debian's rpm package)"
fi
finish
