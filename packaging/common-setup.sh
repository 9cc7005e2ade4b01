# Shared by the .deb and .rpm maintainer scripts (inlined at build time by build.sh):
# the system user and the directories Croupier needs.
croupier_setup() {
  if ! getent group croupier >/dev/null; then
    groupadd --system croupier
  fi
  if ! getent passwd croupier >/dev/null; then
    useradd --system --gid croupier --home-dir /var/lib/croupier --no-create-home \
      --shell /usr/sbin/nologin --comment "Croupier shuffle service" croupier
  fi
  install -d -o croupier -g croupier -m 0750 /var/lib/croupier
  install -d -o croupier -g croupier -m 0750 /var/log/croupier
  # The fetcher cache is shared by executors running as different framework users: each
  # user's entries live in a 0700 subdirectory it creates; the root is sticky like /tmp.
  install -d -o root -g root -m 0755 /var/cache/croupier
  install -d -o root -g root -m 1777 /var/cache/croupier/fetcher
}
croupier_purge() {
  rm -rf /var/lib/croupier /var/log/croupier /var/cache/croupier
  if getent passwd croupier >/dev/null; then userdel croupier >/dev/null 2>&1 || true; fi
  if getent group croupier >/dev/null; then groupdel croupier >/dev/null 2>&1 || true; fi
}
croupier_systemd_running() { [ -d /run/systemd/system ]; }
