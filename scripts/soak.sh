#!/usr/bin/env bash
# Soak test: `outpost run` on a looping image folder for a while, sampling its resident memory,
# open file descriptors and threads every 10 s; fails when any grows after warm-up (RSS by more
# than 5 %, fds or threads at all), when frames stop being processed, or when SIGTERM does not
# end it cleanly (exit 0).
#
#   scripts/soak.sh [SECONDS]      default 3600 (the long mode); CI runs 180
#
# OUTPOST_BIN picks the binary (default: target/debug/outpost, built if missing; pass a release
# build to soak what ships); SOAK_SETTINGS adds `--set` values (e.g. "run.max_fps=2" to soak
# beside other work). The model is the example manifest's CenterFace, sideloaded into a scratch
# cache; no network.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-3600}
interval=10
target_dir=${CARGO_TARGET_DIR:-target}
bin=${OUTPOST_BIN:-$target_dir/debug/outpost}
[ -x "$bin" ] || cargo build --locked --quiet
work=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-soak.XXXXXX")
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

extra=()
for kv in ${SOAK_SETTINGS:-}; do extra+=(--set "$kv"); done
"$bin" --board x86_64-dev --cache-dir "$work/cache" "${extra[@]}" \
  --set run.loop=true --set run.stats_interval_secs=60 --set run.fail_after_secs=0 \
  run --manifest examples/models.toml --model faces --source dir:tests/fixtures/images \
  > /dev/null 2> "$work/stderr.log" &
pid=$!

# Warm-up: model load, first plans, allocator pools. A sixth of the run, at least 30 s.
warmup=$(( duration / 6 > 30 ? duration / 6 : 30 ))
printf '%6s %10s %5s %8s\n' secs rss_kib fds threads
start=$(date +%s)
baseline_rss=0 baseline_fds=0 baseline_threads=0 last_rss=0 last_fds=0 last_threads=0
while :; do
  sleep "$interval"
  kill -0 "$pid" 2>/dev/null || { echo "soak: outpost exited early"; cat "$work/stderr.log"; exit 1; }
  t=$(( $(date +%s) - start ))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  printf '%6d %10d %5d %8d\n' "$t" "$rss" "$fds" "$threads"
  if [ "$t" -ge "$warmup" ] && [ "$baseline_rss" -eq 0 ]; then
    baseline_rss=$rss baseline_fds=$fds baseline_threads=$threads
  fi
  # The baseline's RSS is the highest seen in the first minute after warm-up (allocator churn).
  if [ "$baseline_rss" -ne 0 ] && [ "$t" -lt $(( warmup + 60 )) ] && [ "$rss" -gt "$baseline_rss" ]; then
    baseline_rss=$rss
  fi
  last_rss=$rss last_fds=$fds last_threads=$threads
  [ "$t" -ge "$duration" ] && break
done

kill -TERM "$pid"
code=0
wait "$pid" || code=$?
processed=$(grep -o 'frames_processed=[0-9]*' "$work/stderr.log" | tail -1 | cut -d= -f2)
limit=$(( baseline_rss + baseline_rss / 20 ))
echo "soak: ${duration}s, ${processed:-0} frames processed, exit $code"
echo "soak: RSS ${baseline_rss} KiB after warm-up -> ${last_rss} KiB at the end (limit ${limit}); fds ${baseline_fds} -> ${last_fds}; threads ${baseline_threads} -> ${last_threads}"
failed=0
[ "$code" -eq 0 ] || { echo "soak: FAIL: SIGTERM did not end the run cleanly"; failed=1; }
[ "${processed:-0}" -gt 0 ] || { echo "soak: FAIL: no frame processed"; failed=1; }
[ "$last_rss" -le "$limit" ] || { echo "soak: FAIL: RSS grew more than 5 %"; failed=1; }
[ "$last_fds" -le "$baseline_fds" ] || { echo "soak: FAIL: file descriptors grew"; failed=1; }
[ "$last_threads" -le "$baseline_threads" ] || { echo "soak: FAIL: threads grew"; failed=1; }
[ "$failed" -eq 0 ] && echo "soak: PASS"
exit "$failed"
