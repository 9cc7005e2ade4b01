#!/usr/bin/env bash
# Builds target/packages/croupier_<ver>_amd64.deb and croupier-<ver>.x86_64.rpm, one package
# holding both binaries (every agent runs both; one install, one version to track).
# Needs cargo-deb and cargo-generate-rpm; installs them with `cargo install` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
ver="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
out="$root/target/packages"
mkdir -p "$out"

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "== installing $tool"
    cargo install --locked "$tool"
  fi
done

echo "== building release binaries"
cargo build --release -p croupier-executor -p croupier-shuffle-service

echo "== maintainer scripts"
common="$(cat packaging/common-setup.sh)"
gen() { # template -> output, with the shared shell functions inlined
  awk -v common="$common" '{ if ($0 == "@COMMON@") print common; else print }' "$1" >"$2"
  chmod 755 "$2"
}
for s in postinst prerm postrm; do gen "packaging/debian/$s.in" "packaging/debian/$s"; done
for s in pre_install post_install pre_uninstall post_uninstall; do
  gen "packaging/rpm/$s.sh.in" "packaging/rpm/$s.sh"
done

echo "== .deb"
cargo deb -p croupier --no-build --no-strip --output "$out/croupier_${ver}_amd64.deb"
echo "== .rpm"
cargo generate-rpm -p packaging --output "$out/croupier-${ver}.x86_64.rpm"
ls -l "$out"
