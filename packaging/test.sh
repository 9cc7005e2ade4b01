#!/usr/bin/env bash
# Packaging test. Builds the x86_64 .deb/.rpm packages (packaging/build.sh x86_64: cargo reuses
# the dist build when it is current) and checks, without installing anything on this system:
#  - contents, conffiles, architectures of the packages;
#  - the shipped binaries: the highest GLIBC_ symbol version each needs (<= 2.17), the machine
#    in the ELF header, each is stripped and <= 10 MB, `--version` names glibc 2.17, and its
#    build-id names the .debug file of the -dbgsym .deb and the -debuginfo .rpm, which holds
#    its debug info; gdb symbolises an address of the stripped binary through that build-id;
#  - the x86_64 executor's link order: at least 90% of the functions it runs for a command task
#    (recorded now, bench/executor-link-order.sh) lie together at the start of its .text;
#  - the Marathon app and the systemd unit.
# The aarch64 packages are checked the same way when they were built from this revision
# (`packaging/build.sh aarch64`, or `packaging/build.sh` for both: the release command, too
# long for CI); otherwise a NOT RUN line says so, and nothing is counted for them.
# Then installs, starts, stops, removes and purges the x86_64 .deb and .rpm (user creation,
# maintainer scripts, installed unit, start/stop scripts, protocol ping, /metrics) inside a
# throwaway root (packaging/sandbox.sh: an overlay of / in private mount and pid namespaces),
# and checks afterwards that the real system was not changed. Needs root for the namespaces.
# Ends with the line "packaging: N passed, M failed" (NOT RUN lines before it).
# Usage: packaging/test.sh [--no-build]   (--no-build: test the packages already built)
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/lib/phase.sh
pass=0; fail=0
ok()   { pass=$((pass + 1)); echo "ok   - $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local what="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
notrun=()
finish() {
  for n in "${notrun[@]+"${notrun[@]}"}"; do echo "$n"; done
  echo "packaging: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?
}

if [ "$(id -u)" -ne 0 ]; then
  echo "packaging/test.sh needs root: it installs the packages in a throwaway root made with mount and pid namespaces (CI runs as root)"
  bad "running as root"; finish
fi
venv="${CROUPIER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/croupier/venv}"
py="$venv/bin/python"
[ -x "$py" ] || { bad "no venv python at $py: run scripts/setup-venv.sh (or scripts/test.sh)"; finish; }

# --no-build: test the packages already in the target dir (e.g. right after the release
# command, or while another build holds cargo's lock); they must exist.
if [ "${1:-}" = --no-build ]; then
  echo "== packaging build skipped (--no-build): testing the packages already built"
else
  phase "packaging build (packaging/build.sh x86_64)" bash packaging/build.sh x86_64 || { bad "packaging/build.sh x86_64"; finish; }
fi
tdir="${CARGO_TARGET_DIR:-$root/target}"
case "$tdir" in /*) ;; *) tdir="$root/$tdir" ;; esac
out="$tdir/packages"
ver="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
glibc=2.17 # what packaging/build.sh links against
scratch="$(mktemp -d /tmp/croupier-packaging.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT

# --- each architecture: package metadata, binaries, debug info
max_glibc() { # highest GLIBC_x.y among the versions the binary needs (readelf reads any ELF)
  readelf --version-info --wide "$1" | grep -o 'Name: GLIBC_[0-9.]*' | sed 's/Name: GLIBC_//' | sort -V | tail -n 1
}
elf_type() { readelf -h "$1" 2>/dev/null | sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p'; }
# executor/build.rs links the executor without PIE (EXEC); the shuffle service stays a PIE (DYN).
want_elf_type() { case "$1" in croupier-executor) echo EXEC ;; *) echo DYN ;; esac; }
build_id() { readelf -n "$1" 2>/dev/null | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p' | head -n 1; }
# The aarch64 packages count only when built from this revision's sources: build.sh records
# the commit it built from; no build input (the crates, the manifests, the packaging files)
# may differ between that commit and HEAD. Uncommitted changes are not seen.
arches=(x86_64)
inputs=(Cargo.toml Cargo.lock proto ops executor shuffle-service packaging systemd
  ':(exclude)packaging/test.sh' ':(exclude)packaging/test-install.sh' ':(exclude)packaging/tests')
declare -A rev
for a in x86_64 aarch64; do
  r="$(cat "$out/built-from-$a" 2>/dev/null)"
  rev[$a]="$(git rev-parse --short=10 "$r" 2>/dev/null || echo unknown)"
done
if [ ! -f "$out/croupier_${ver}_arm64.deb" ] || [ ! -f "$out/built-from-aarch64" ]; then
  notrun+=("NOT RUN: aarch64 package checks (no aarch64 packages in $out: build them with \`packaging/build.sh aarch64\`, or \`packaging/build.sh\` for both)")
elif [ "${rev[aarch64]}" = unknown ] || ! git diff --quiet "${rev[aarch64]}" HEAD -- "${inputs[@]}"; then
  notrun+=("NOT RUN: aarch64 package checks (the aarch64 packages in $out were built from ${rev[aarch64]}, whose sources differ from HEAD's: rebuild them with \`packaging/build.sh aarch64\`)")
else
  arches+=(aarch64)
fi
for a in "${arches[@]}"; do
  case "$a" in x86_64) da=amd64 machine="Advanced Micro Devices X86-64" ;; aarch64) da=arm64 machine=AArch64 ;; esac
  deb="$out/croupier_${ver}_${da}.deb"; dbgdeb="$out/croupier-dbgsym_${ver}_${da}.deb"
  rpmf="$out/croupier-${ver}-1.$a.rpm"; dbgrpm="$out/croupier-debuginfo-${ver}-1.$a.rpm"
  for f in "$deb" "$dbgdeb" "$rpmf" "$dbgrpm"; do check "built $(basename "$f")" test -s "$f"; done
  [ "$(dpkg-deb -f "$deb" Architecture 2>/dev/null)" = "$da" ] && ok "$da .deb Architecture: $da" || bad "$(basename "$deb") Architecture: $(dpkg-deb -f "$deb" Architecture 2>&1)"
  [ "$(rpm -qp --qf '%{ARCH}' "$rpmf" 2>/dev/null)" = "$a" ] && ok "$a .rpm arch $a" || bad "$(basename "$rpmf") arch: $(rpm -qp --qf '%{ARCH}' "$rpmf" 2>&1)"
  # What the package managers of the oldest supported OS demand: libc6 >= 2.17 at most, and an
  # rpm payload that CentOS 7's rpm 4.11 can read (gzip or xz, not zstd).
  dep="$(dpkg-deb -f "$deb" Depends 2>/dev/null)"
  dl="$(grep -o 'libc6 (>= [0-9.]*)' <<<"$dep" | sed 's/^libc6 (>= \(.*\))$/\1/' | sort -V | tail -n 1)"
  [ -n "$dl" ] && [ "$(printf '%s\n%s\n' "$dl" "$glibc" | sort -V | tail -n 1)" = "$glibc" ] &&
    ok "$da .deb Depends libc6 (>= $dl) (<= $glibc)" || bad "$da .deb Depends: $dep (want libc6 >= at most $glibc)"
  req="$(rpm -qp --requires "$rpmf" 2>/dev/null)"
  rl="$(grep -o 'GLIBC_[0-9.]*' <<<"$req" | sed 's/GLIBC_//' | sort -V | tail -n 1)"
  [ -n "$rl" ] && [ "$(printf '%s\n%s\n' "$rl" "$glibc" | sort -V | tail -n 1)" = "$glibc" ] &&
    ok "$a .rpm requires at most GLIBC_$rl" || bad "$a .rpm requires GLIBC_$rl (want <= $glibc)"
  for f in "$rpmf" "$dbgrpm"; do
    grep -q PayloadIsZstd <<<"$(rpm -qp --requires "$f" 2>/dev/null)" &&
      bad "$(basename "$f"): zstd payload (CentOS 7's rpm 4.11 cannot read it)" ||
      ok "$(basename "$f"): payload $(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$f" 2>/dev/null), readable by rpm 4.11"
  done
  contents="$(dpkg-deb -c "$deb")"
  for f in ./usr/bin/croupier-executor ./usr/bin/croupier-shuffle-service \
           ./usr/bin/start-mesos-shuffle-service ./usr/bin/stop-mesos-shuffle-service \
           ./lib/systemd/system/croupier-shuffle-service.service ./etc/croupier/shuffle-service.conf \
           ./usr/share/croupier/marathon/croupier-shuffle-service.json \
           ./usr/share/croupier/observability/metrics.md ./usr/share/croupier/observability/alerts.yml \
           ./usr/share/croupier/observability/grafana-dashboard.json; do
    # (cargo-deb writes the paths with or without a leading ./)
    grep -qE -- " (\./)?${f#./}\$" <<<"$contents" && ok "$da deb ships $f" || bad "$da deb ships $f"
  done
  conff="$(dpkg-deb -I "$deb" conffiles 2>/dev/null)"
  for f in /etc/croupier/shuffle-service.conf /etc/default/croupier-shuffle-service; do
    grep -qx "$f" <<<"$conff" && ok "$da conffile $f" || bad "$da conffile $f"
  done
  files="$(rpm -qlp "$rpmf" 2>/dev/null)"
  for f in /usr/bin/croupier-executor /usr/bin/croupier-shuffle-service /usr/lib/systemd/system/croupier-shuffle-service.service /etc/croupier/shuffle-service.conf /usr/share/croupier/observability/alerts.yml; do
    grep -qx "$f" <<<"$files" && ok "$a rpm ships $f" || bad "$a rpm ships $f"
  done
  grep -qx /etc/croupier/shuffle-service.conf <<<"$(rpm -qcp "$rpmf" 2>/dev/null)" && ok "$a rpm config file" || bad "$a rpm config file"
  scripts="$(rpm -qp --scripts "$rpmf" 2>/dev/null)"
  grep -q "useradd --system" <<<"$scripts" && ok "$a rpm preinstall creates the user" || bad "$a rpm scripts: $scripts"
  grep -q "postuninstall" <<<"$scripts" && ok "$a rpm postuninstall present" || bad "$a rpm postuninstall missing"
  rpm -qp --requires "$dbgrpm" 2>/dev/null | grep -qx "croupier = $ver-1" && ok "$a debuginfo rpm requires croupier = $ver-1" || bad "$a debuginfo rpm requires: $(rpm -qp --requires "$dbgrpm" 2>&1)"

  # The shipped files, as the packages lay them out.
  x="$scratch/$a"; mkdir -p "$x/deb" "$x/dbg" "$x/rpmdbg"
  dpkg-deb -x "$deb" "$x/deb"; dpkg-deb -x "$dbgdeb" "$x/dbg"
  (cd "$x/rpmdbg" && rpm2cpio "$dbgrpm" | cpio -idm --quiet 2>/dev/null)
  for b in croupier-executor croupier-shuffle-service; do
    f="$x/deb/usr/bin/$b"
    m="$(readelf -h "$f" 2>/dev/null | sed -n 's/^ *Machine: *//p')"
    [ "$m" = "$machine" ] && ok "$a $b is $m ELF" || bad "$a $b machine: '$m' (want $machine)"
    g="$(max_glibc "$f")"
    if [ -n "$g" ] && [ "$(printf '%s\n%s\n' "$g" "$glibc" | sort -V | tail -n 1)" = "$glibc" ]; then
      ok "$a $b needs at most GLIBC_$g (<= $glibc)"
    else bad "$a $b needs GLIBC_$g (want <= $glibc)"; fi
    t="$(elf_type "$f")" wt="$(want_elf_type "$b")"
    [ "$t" = "$wt" ] && ok "$a $b is ELF type $t" ||
      bad "$a $b is ELF type '$t' (want $wt: the executor without PIE per executor/build.rs, the shuffle service a PIE)"
    # --version names the target and the glibc of the build: run it natively, or the
    # aarch64 binary under qemu-aarch64 with Debian's aarch64 glibc (libc6-arm64-cross).
    runner=()
    if [ "$a" = aarch64 ]; then
      if command -v qemu-aarch64 >/dev/null 2>&1 && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
        runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
      else
        runner=(none)
        notrun+=("NOT RUN: running the aarch64 $b (needs qemu-aarch64 and an aarch64 glibc: apt-get install qemu-user libc6-arm64-cross)")
      fi
    fi
    if [ "${runner[0]-}" != none ]; then
      v="$("${runner[@]}" "$f" --version 2>&1)"
      grep -q "target $a-unknown-linux-gnu, glibc $glibc at build" <<<"$v" && grep -qF "git ${rev[$a]}" <<<"$v" &&
        ok "$a $b --version${runner[0]:+ (under ${runner[0]})}: $v" || bad "$a $b --version: $v"
    fi
    size="$(stat -c %s "$f")"
    [ "$size" -le $((10 * 1024 * 1024)) ] && ok "$a $b is $((size / 1024)) KiB (<= 10 MB)" || bad "$a $b is $size bytes (want <= 10 MB)"
    readelf -S --wide "$f" | grep -q -e ' .debug_info' -e ' .symtab' && bad "$a $b not stripped" || ok "$a $b stripped (no .symtab/.debug_info)"
    id="$(build_id "$f")"
    rel="usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
    if [ "${#id}" -ge 8 ] && [ -f "$x/dbg/$rel" ]; then
      [ "$(build_id "$x/dbg/$rel")" = "$id" ] && ok "$a $b build-id $id matches /$rel in the dbgsym deb" || bad "$a $b: /$rel has build-id $(build_id "$x/dbg/$rel")"
      readelf -S --wide "$x/dbg/$rel" 2>/dev/null | grep -q ' .debug_info' && ok "$a $b: .debug file has .debug_info" || bad "$a $b: /$rel has no .debug_info"
      cmp -s "$x/dbg/$rel" "$x/rpmdbg/$rel" && ok "$a $b: the debuginfo rpm ships the same /$rel" || bad "$a $b: debuginfo rpm lacks /$rel"
    else
      bad "$a $b: build-id '$id' has no /$rel in $(basename "$dbgdeb")"
    fi
  done
  grep -qw "$(build_id "$x/deb/usr/bin/croupier-executor")" <<<"$(dpkg-deb -f "$dbgdeb" Build-Ids)" && ok "$da dbgsym Build-Ids field" || bad "$da dbgsym Build-Ids: $(dpkg-deb -f "$dbgdeb" Build-Ids)"
done

# --- the executor's link order (executor/build.rs, executor/link-order.txt): the functions the
# packaged x86_64 executor runs for a command task, recorded now from its unstripped build,
# must lie together at the start of its .text: within twice their own size of its start.
unstripped="$tdir/x86_64-unknown-linux-gnu/dist/croupier-executor"
if [ "$(build_id "$unstripped")" != "$(build_id "$scratch/x86_64/deb/usr/bin/croupier-executor")" ]; then
  bad "the executor's link order: $unstripped is not the build in the package (build-ids differ): run packaging/build.sh x86_64"
elif ! command -v valgrind >/dev/null 2>&1; then
  notrun+=("NOT RUN: the executor's link order (recording what it runs for a command task needs valgrind: apt-get install valgrind)")
elif ! bash bench/executor-link-order.sh "$scratch/ran.txt" "$unstripped" >"$scratch/record.log" 2>&1; then
  bad "recording the functions $unstripped runs for a command task: $(tail -n 5 "$scratch/record.log")"
elif o="$("$py" - "$scratch/ran.txt" <(nm -S --defined-only "$unstripped") \
  <(readelf -SW "$unstripped") <<'PY' 2>&1
import re, sys
ran = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#") and "*" not in l]
text = next(l.split() for l in open(sys.argv[3]) if " .text " in l)
start = int(text[text.index(".text") + 2], 16)
sym = {}
for l in open(sys.argv[2]):
    p = l.split()
    if len(p) == 4 and p[2] in "tTW":
        sym.setdefault(re.sub(r"\.llvm\.[0-9]+$", "", p[3]), (int(p[0], 16), int(p[1], 16)))
found = [sym[n] for n in ran if n in sym]
size = sum(s for _, s in found)
limit = 2 * size + 65536
near = [a for a, s in found if a >= start and a + s - start <= limit]
print(f"{len(near)} of the {len(ran)} functions it runs for a command task ({size // 1024} KiB) "
      f"lie in the first {limit // 1024} KiB of its .text")
sys.exit(0 if len(ran) >= 20 and len(near) * 10 >= len(ran) * 9 else 1)
PY
)"; then
  ok "x86_64 croupier-executor is linked command-task-first: $o"
else
  bad "x86_64 croupier-executor is not linked command-task-first: $o: refresh executor/link-order.txt (bench/executor-link-order.sh says how)"
fi

# A crash in a stripped binary can still be symbolised: take the address of
# croupier_shuffle_service::main (the .debug file's symbol table knows it; the stripped binary
# has none), and ask gdb, given the stripped binary and only the dbgsym tree as its
# debug-file-directory, for the function and source line there. gdb finds the .debug file
# through the binary's build-id; without that directory it must not know the function.
x="$scratch/x86_64"
bin="$x/deb/usr/bin/croupier-shuffle-service"
dbg="$x/dbg/usr/lib/debug/.build-id/$(build_id "$bin" | sed 's|^\(..\)|\1/|').debug"
addr="$(nm --demangle "$dbg" 2>/dev/null | awk '$2 ~ /^[Tt]$/ && $3 ~ /^croupier_shuffle_service::main(::h[0-9a-f]+)?$/ { print "0x" $1; exit }')"
if [ -z "$addr" ]; then
  bad "no croupier_shuffle_service::main in the symbol table of $dbg"
else
  sym="$(gdb -batch -nx -iex "set debug-file-directory $x/dbg/usr/lib/debug" -ex "info symbol $addr" -ex "info line *$addr" "$bin" 2>&1)"
  if grep -q "croupier_shuffle_service::main" <<<"$sym" && grep -q 'shuffle-service/src/main.rs' <<<"$sym"; then
    ok "gdb symbolises $addr of the stripped shuffle service via its build-id: $(grep -m1 '^Line' <<<"$sym")"
  else
    bad "gdb symbolisation of $addr: $sym"
  fi
  bare="$(gdb -batch -nx -iex "set debug-file-directory $scratch/none" -ex "info symbol $addr" "$bin" 2>&1)"
  grep -q "croupier_shuffle_service::main" <<<"$bare" && bad "gdb knows $addr without the debug file: is the binary stripped? $bare" ||
    ok "without the debug file gdb cannot name $addr (the binary itself is stripped)"
fi

# --- Marathon app: AppDefinition constraints and what one-per-agent needs
if o="$("$py" packaging/validate_marathon.py packaging/marathon/croupier-shuffle-service.json 2>&1)"; then
  ok "Marathon app valid: $o"; else bad "Marathon app: $o"; fi

# --- systemd unit (before install the ExecStart binary is missing: the only acceptable complaint)
unit_out="$(systemd-analyze verify systemd/croupier-shuffle-service.service 2>&1)"
if [ -z "$unit_out" ]; then ok "systemd-analyze verify (no warnings)"
elif grep -v -q "croupier-shuffle-service.*No such file\|is not executable" <<<"$unit_out"; then bad "systemd-analyze verify: $unit_out"
else ok "systemd-analyze verify (binary not installed yet)"; fi

# --- install, start, stop, purge: only in the throwaway root
host_state() { # what an install on the real system would change
  dpkg-query -W -f '${db:Status-Status} ${Version}\n' croupier croupier-dbgsym 2>/dev/null
  getent passwd croupier; getent group croupier
  ls -ld /usr/bin/croupier-* /etc/croupier /var/lib/croupier /var/cache/croupier /lib/systemd/system/croupier-shuffle-service.service 2>/dev/null
  rpm -qa 2>/dev/null | grep '^croupier' || true
}
before="$(host_state)"
sb="$scratch/sandbox"; mkdir -p "$sb"
binds=(--bind "$root" --bind "$venv" --bind "$out")
inner="$(phase "install tests in a throwaway root" \
  unshare --mount --pid --fork --propagation private bash packaging/sandbox.sh "$sb" "${binds[@]}" -- \
  bash "$root/packaging/test-install.sh" "$out/croupier_${ver}_amd64.deb" "$out/croupier-${ver}-1.x86_64.rpm" "$py" 2>&1)"
echo "$inner"
if ! grep -q '^install: done' <<<"$inner"; then
  bad "the install tests did not complete in a throwaway root (they need root, unshare(1) and overlayfs; they never run on the real system)"
fi
pass=$((pass + $(grep -c '^ok   - ' <<<"$inner")))
fail=$((fail + $(grep -c '^FAIL - ' <<<"$inner")))
after="$(host_state)"
[ "$before" = "$after" ] && ok "the real system is unchanged (packages, user, files)" || bad "the real system changed: before [$before] after [$after]"
finish
