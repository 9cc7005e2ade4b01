#!/usr/bin/env bash
# Packaging test, for real: builds the .deb and .rpm; installs the .deb in a throwaway root
# (packaging/test-install.sh inside packaging/sandbox.sh, never on this system: a Croupier
# installed here is left alone), checks files, permissions, the user and the conffiles, runs
# the installed start/stop scripts against a live service with a protocol ping and a /metrics
# scrape, then removes and purges and checks nothing is left; then checks this system did not
# change. Inspects the .rpm with rpm(8).
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
         ./usr/share/croupier/marathon/croupier-shuffle-service.json \
         ./usr/share/croupier/observability/alerts.yml ./usr/share/croupier/observability/metrics.md \
         ./usr/share/croupier/observability/grafana-dashboard.json; do
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

# --- install, start, stop, remove, purge: only in a throwaway root (packaging/sandbox.sh: an
# overlay of / in private mount and pid namespaces), never on this system
host_state() { # what an install on the real system would change
  dpkg-query -W -f '${db:Status-Status} ${Version}\n' croupier 2>/dev/null
  getent passwd croupier; getent group croupier
  ls -ld /usr/bin/croupier-* /etc/croupier /var/lib/croupier /var/cache/croupier /lib/systemd/system/croupier-shuffle-service.service 2>/dev/null
  true
}
before="$(host_state)"
sb="$(mktemp -d /tmp/croupier-sandbox.XXXXXX)"
inner="$(unshare --mount --pid --fork --propagation private bash packaging/sandbox.sh "$sb" \
  --bind "$root" --bind "$venv" -- bash "$root/packaging/test-install.sh" "$root/$deb" "" "$py" 2>&1)"
rmdir "$sb" 2>/dev/null || true
echo "$inner"
grep -q '^install: done' <<<"$inner" || bad "the install tests did not complete in a throwaway root (they need root, unshare(1) and overlayfs; they never run on the real system)"
pass=$((pass + $(grep -c '^ok   - ' <<<"$inner")))
fail=$((fail + $(grep -c '^FAIL - ' <<<"$inner")))
after="$(host_state)"
[ "$before" = "$after" ] && ok "the real system is unchanged (package, user, files)" || bad "the real system changed: before [$before] after [$after]"

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
