#!/usr/bin/env bash
# Runs a command as root in a throwaway copy of this system, so that installing and purging
# packages there never touches the real one. Call it inside fresh mount and pid namespaces:
#
#   unshare --mount --pid --fork --propagation private \
#     bash packaging/sandbox.sh DIR [--bind PATH]... -- COMMAND [ARG]...
#
# DIR (an empty directory) gets a tmpfs holding an overlay whose lower layer is the real root
# file system, read-only in effect: every write (dpkg's database, /etc/passwd, /usr/bin, ...)
# lands in the tmpfs. Each --bind PATH is mounted read-only at the same path inside, for what
# lives on other file systems (the clone, the venv, the target dir). COMMAND runs chrooted into
# the overlay with its own /proc, /tmp and /run. When the namespace's last process exits, the
# kernel drops every mount and kills what was left running: nothing of the copy survives.
set -euo pipefail
[ "$#" -ge 3 ] || { echo "usage: sandbox.sh DIR [--bind PATH]... -- COMMAND..." >&2; exit 2; }
base="$1"; shift
binds=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --bind) binds+=("$2"); shift 2 ;;
    *) echo "sandbox.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
shift # --
if [ "$$" -ne 1 ]; then
  echo "sandbox.sh: not in a fresh pid namespace (run it under unshare --mount --pid --fork)" >&2
  exit 2
fi
mount --make-rprivate / # belt and braces: nothing below propagates back to the real system
mount -t tmpfs -o mode=0755 croupier-sandbox "$base"
mkdir "$base/upper" "$base/work" "$base/root"
if ! mount -t overlay croupier-sandbox -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"; then
  echo "sandbox.sh: cannot mount an overlay of / on $base/root (overlayfs unavailable?)" >&2
  exit 3
fi
r="$base/root"
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
for p in "${binds[@]}"; do
  mkdir -p "$r$p"
  mount --bind "$p" "$r$p"
  mount -o remount,bind,ro "$r$p"
done
exec chroot "$r" "$@"
