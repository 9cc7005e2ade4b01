#!/usr/bin/env bash
# Coverage-guided fuzzing of Croupier's decoders and parsers with libFuzzer on stable Rust
# (libfuzzer-sys, instrumented with LLVM's SanitizerCoverage through stable -C flags: no
# nightly toolchain, no extra cargo subcommand). See FUZZING.md.
#
#   scripts/fuzz.sh build                 build the instrumented binary (target/fuzz)
#   scripts/fuzz.sh run TARGET SECONDS    fuzz one target (after build), growing target/fuzz/corpus/TARGET
#   scripts/fuzz.sh all SECONDS           every target in turn, SECONDS each (nice)
#   scripts/fuzz.sh merge [TARGET...]     add to fuzz/corpus/TARGET/ (all targets by default) the
#                                         inputs of target/fuzz/corpus/TARGET/ that reach coverage
#                                         the tree's corpus does not (libFuzzer -merge=1)
#   scripts/fuzz.sh list                  the targets
# Crashes land in target/fuzz/artifacts/TARGET/; new inputs in target/fuzz/corpus/TARGET/
# (`merge` keeps the ones that add coverage in fuzz/corpus/TARGET/: the tree keeps a small corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/target/fuzz"
bin="$out/x86_64-unknown-linux-gnu/fuzz/croupier-fuzz"
targets=(recordio event_protobuf event_json task_command spark_frame block_transfer_message
  sasl_message auth_message ids extract uri durations properties)

build() {
  local host; host=$(rustc -vV | sed -n 's/^host: //p')
  bin="$out/$host/fuzz/croupier-fuzz"
  # The SanitizerCoverage flags cargo-fuzz passes for `--sanitizer none`, all stable -C options.
  RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    CARGO_TARGET_DIR="$out" nice cargo build -p croupier-fuzz --features engine --profile fuzz \
    --bin croupier-fuzz --target "$host"
}

run() {
  local t=$1 secs=$2
  [ -x "$bin" ] || { echo "no $bin: run scripts/fuzz.sh build first" >&2; exit 1; }
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  echo "== fuzzing $t for ${secs}s"
  CROUPIER_FUZZ_TARGET=$t nice "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" \
    "$out/corpus/$t" "$root/fuzz/corpus/$t"
}

merge() {
  local t=$1
  [ -x "$bin" ] || { echo "no $bin: run scripts/fuzz.sh build first" >&2; exit 1; }
  [ -d "$out/corpus/$t" ] || { echo "== $t: no $out/corpus/$t (run it first); skipped"; return; }
  local before; before=$(find "$root/fuzz/corpus/$t" -type f | wc -l)
  CROUPIER_FUZZ_TARGET=$t nice "$bin" -merge=1 -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
    "$root/fuzz/corpus/$t" "$out/corpus/$t" 2>"$out/merge-$t.log" ||
    { echo "== $t: merge failed, see $out/merge-$t.log" >&2; exit 1; }
  echo "== $t: $before -> $(find "$root/fuzz/corpus/$t" -type f | wc -l) inputs in fuzz/corpus/$t"
}

case "${1:-}" in
  build) build ;;
  list) printf '%s\n' "${targets[@]}" ;;
  run) run "$2" "$3" ;;
  all) build; for t in "${targets[@]}"; do run "$t" "$2"; done ;;
  merge)
    shift
    [ $# -gt 0 ] || set -- "${targets[@]}"
    for t in "$@"; do merge "$t"; done ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
