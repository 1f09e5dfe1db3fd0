#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ with libFuzzer on the stable toolchain and runs each from its
# seed corpus (fuzz/corpus/<target>/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 600 s each, every target; CI runs 60
#                                             (0: build, then run each seed corpus once)
#
# The flags are those cargo-fuzz passes (SanitizerCoverage: edge counters, PC table, compare
# tracing; --cfg fuzzing), without -Zsanitizer=address, which needs nightly: panics, aborts,
# stack overflows, timeouts (-timeout) and memory blow-ups (-rss_limit_mb, -malloc_limit_mb) are
# caught, not silent heap corruption in C code (openh264). A crash leaves its input in
# $OUTPOST_FUZZ_ARTIFACTS (default target dir/fuzz-artifacts/<target>/) and fails the script;
# keep the input in fuzz/regressions/<target>/ (replayed here before each target fuzzes) and
# write a unit test of the fix next to the code.
# New coverage-increasing inputs go to a scratch corpus, not to the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls fuzz/fuzz_targets | sed 's/\.rs$//'))
target_dir=${CARGO_TARGET_DIR:-$PWD/target}-fuzz
artifacts=${OUTPOST_FUZZ_ARTIFACTS:-$target_dir/fuzz-artifacts}

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# An explicit --target, as cargo-fuzz does: RUSTFLAGS then reach only the target's code, not the
# build scripts and proc-macros (which cannot link the coverage callbacks).
host=$(rustc -vV | sed -n 's/^host: //p')
echo "fuzz: building ${#targets[@]} target(s) into $target_dir"
CARGO_TARGET_DIR=$target_dir cargo build --locked --quiet --release --manifest-path fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")

if [ "$seconds" -eq 0 ]; then limit=(-runs=0); else limit=(-max_total_time="$seconds"); fi
failed=()
for t in "${targets[@]}"; do
  corpus=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-fuzz-$t.XXXXXX")
  mkdir -p "$artifacts/$t" "fuzz/corpus/$t"
  log="$corpus.log"
  echo "fuzz: $t for ${seconds}s (seeds: $(ls "fuzz/corpus/$t" | wc -l))"
  set +e
  rc=0
  if [ -n "$(ls -A "fuzz/regressions/$t" 2>/dev/null)" ]; then
    # Inputs that once crashed or hung it, each run once.
    "$target_dir/$host/release/$t" -timeout=20 -rss_limit_mb=2048 "fuzz/regressions/$t"/* > "$log" 2>&1 || rc=$?
  fi
  [ "$rc" -ne 0 ] || "$target_dir/$host/release/$t" "$corpus" "fuzz/corpus/$t" "${limit[@]}" -timeout=20 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=1048576 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t/" > "$log" 2>&1 || rc=$?
  set -e
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE' "$log" | tr '\n' ' ' | sed 's/^/fuzz:   /'; echo
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); the input is in $artifacts/$t/:"
    grep -E -A25 'panicked|ERROR: libFuzzer|==[0-9]+==' "$log" | head -40
    failed+=("$t")
  fi
  rm -rf "$corpus" "$log"
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: FAILED: ${failed[*]}"; exit 1; fi
echo "fuzz: ${#targets[@]} target(s), ${seconds}s each, no crash"
