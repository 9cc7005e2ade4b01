#!/usr/bin/env bash
# The install half of the packaging test. packaging/test.sh runs it only inside the throwaway
# root of packaging/sandbox.sh (never on the real system): it installs the .deb, checks the
# files, the user, the directories and the installed systemd unit, runs the installed
# start/stop scripts against a live service with a protocol ping and a /metrics scrape, removes
# and purges and checks nothing is left; then does the same round with the .rpm through rpm(8),
# whose scriptlets create and remove the same user.
# Usage: test-install.sh DEB RPM VENV_PYTHON (RPM may be "": no rpm round). Prints "ok   - ..." / "FAIL - ..." lines.
set -uo pipefail
deb="$1"; rpmf="$2"; py="$3"
here="$(cd "$(dirname "$0")" && pwd)"
ok()  { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; }
check() { local what="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
echo "install: in the throwaway root"

# A croupier installed on the real system shows through the overlay: purge it here (only here).
dpkg --purge croupier-dbgsym croupier >/dev/null 2>&1 || true

# --- install
if dpkg -i "$deb" >/tmp/dpkg.log 2>&1; then ok "dpkg -i"; else bad "dpkg -i: $(tail -5 /tmp/dpkg.log)"; exit 0; fi
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
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"; aport="$(free_port)"
tmp="$(mktemp -d)"
export SPARK_PID_DIR="$tmp" SPARK_LOG_DIR="$tmp"
export SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$port -Dcroupier.admin.address=127.0.0.1:$aport"
if start-mesos-shuffle-service --host 127.0.0.1 >"$tmp/start.out" 2>&1; then ok "start-mesos-shuffle-service"; else bad "start-mesos-shuffle-service: $(cat "$tmp/start.out")"; fi
if start-mesos-shuffle-service --host 127.0.0.1 >"$tmp/start2.out" 2>&1; then bad "second start refused"
elif grep -q "Stop it first" "$tmp/start2.out"; then ok "second start refused: $(cat "$tmp/start2.out")"; else bad "second start message: $(cat "$tmp/start2.out")"; fi
if "$py" "$here/ping.py" 127.0.0.1 "$port"; then ok "protocol ping (RegisterDriver -> RpcResponse)"; else bad "protocol ping"; fi
if "$py" "$here/scrape.py" "http://127.0.0.1:$aport"; then ok "/healthz and /metrics parse"; else bad "/healthz and /metrics"; fi
if stop-mesos-shuffle-service >"$tmp/stop.out" 2>&1 && ! "$py" "$here/ping.py" 127.0.0.1 "$port" 2>/dev/null; then ok "stop-mesos-shuffle-service"; else bad "stop-mesos-shuffle-service: $(cat "$tmp/stop.out")"; fi
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

# --- the .rpm, installed by rpm(8) into the same throwaway root (its own database)
if [ -n "$rpmf" ] && command -v rpm >/dev/null 2>&1; then
  if rpm -i --nodeps "$rpmf" >/tmp/rpm.log 2>&1; then ok "rpm -i"; else bad "rpm -i: $(tail -5 /tmp/rpm.log)"; fi
  check "rpm: user croupier created by its scriptlet" getent passwd croupier
  check "rpm: /usr/bin/croupier-executor installed" test -x /usr/bin/croupier-executor
  check "rpm: croupier-shuffle-service --help" /usr/bin/croupier-shuffle-service --help
  unit_out="$(systemd-analyze verify /usr/lib/systemd/system/croupier-shuffle-service.service 2>&1)"
  [ -z "$unit_out" ] && ok "rpm: systemd-analyze verify installed unit" || bad "rpm: systemd-analyze verify: $unit_out"
  if rpm -e croupier >/tmp/rpm.log 2>&1; then ok "rpm -e"; else bad "rpm -e: $(tail -5 /tmp/rpm.log)"; fi
  check "rpm -e removed the binaries" test ! -e /usr/bin/croupier-executor
fi
echo "install: done"
