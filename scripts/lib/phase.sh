# Phase lines for long set-up steps, sourced by the build and test scripts:
#   phase "building release binaries" cargo build --release ...
# prints "== <what>" before and "== <what>: done in 2m05s" (or "FAILED after ...") after, on
# stderr, so a ten-minute step is never silence. Returns the command's status.
# The command runs in a context where `set -e` is ignored (bash's rule for `cmd || ...`): a
# shell function given to phase must chain its own steps with && or `|| return`.
phase() {
  local what="$1"; shift
  local t0=$SECONDS rc=0
  echo "== $what" >&2
  "$@" || rc=$?
  local s=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    printf '== %s: done in %dm%02ds\n' "$what" $((s / 60)) $((s % 60)) >&2
  else
    printf '== %s: FAILED (exit %d) after %dm%02ds\n' "$what" "$rc" $((s / 60)) $((s % 60)) >&2
  fi
  return "$rc"
}
