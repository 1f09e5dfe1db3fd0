#!/usr/bin/env bash
# H.264 decoding: frames/s of `outpost decode` (OpenH264 + outpost's I420->RGB conversion) against
# `ffmpeg -threads 1` (libavcodec's h264 decoder, output as raw RGB24 to /dev/null) on the same
# clips, in one run: 720p and 1080p, Main and High, made by ffmpeg from a fixture image panned.
# Then end to end: `outpost run` on an RTSP stream (GStreamer's RTSP server on 127.0.0.1) with
# CenterFace, frames/s and the share of time per stage from its summary line.
#
#   scripts/bench-decode.sh     (FRAMES=300 PROFILE=release TARGET=... OUTPOST_BIN=... RUN_SECS=20)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
frames=${FRAMES:-300}
profile=${PROFILE:-release}
run_secs=${RUN_SECS:-20}
if [ -z "${OUTPOST_BIN:-}" ]; then
  cargo build --profile "$profile" --locked -q ${TARGET:+--target "$TARGET"}
  OUTPOST_BIN="${CARGO_TARGET_DIR:-$here/target}/${TARGET:+$TARGET/}$profile/outpost"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-decode.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export OUTPOST_CONFIG=/dev/null
image=tests/fixtures/images/astronaut.png

clip() { # out WxH profile
  local w=${2%x*} h=${2#*x}
  ffmpeg -hide_banner -loglevel error -y -loop 1 -framerate 25 -i "$image" \
    -vf "scale=$((w * 3 / 2)):-2,crop=$w:$h:'(in_w-$w)*n/$frames':'(in_h-$h)*n/$frames',format=yuv420p" \
    -frames:v "$frames" -c:v libx264 -profile:v "$3" -preset medium -g 50 "$1"
}
secs() { python3 -c 'import sys; print(f"{float(sys.argv[1]):.3f}")' "$1"; }
time_it() { # command... -> seconds (best of 3)
  local best=999999999999 t0 t
  for _ in 1 2 3; do
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t=$(( $(date +%s%N) - t0 ))
    [ "$t" -lt "$best" ] && best=$t
  done
  echo "$best"
}

printf '%-16s %12s %12s %8s\n' clip "outpost f/s" "ffmpeg f/s" ratio
for spec in 1280x720:main 1280x720:high 1920x1080:main 1920x1080:high; do
  size=${spec%:*} prof=${spec#*:}
  c="$work/$size-$prof.mp4"
  clip "$c" "$size" "$prof"
  n=$("$OUTPOST_BIN" -q decode --source "file:$c" --set run.realtime=false | wc -l)
  [ "$n" -eq "$frames" ] || { echo "outpost decoded $n of $frames frames of $c" >&2; exit 1; }
  o=$(time_it "$OUTPOST_BIN" -q decode --source "file:$c" --set run.realtime=false)
  f=$(time_it ffmpeg -hide_banner -loglevel error -threads 1 -i "$c" -f rawvideo -pix_fmt rgb24 -y /dev/null)
  python3 - "$size-$prof" "$frames" "$o" "$f" <<'PY'
import sys
name, n, o, f = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1e9, int(sys.argv[4]) / 1e9
print(f"{name:<16} {n / o:12.1f} {n / f:12.1f} {f / o:8.2f}")
PY
done

echo
echo "end to end: outpost run on RTSP (640x480 H.264 Main, 25 fps), CenterFace, ${run_secs}s"
entry() {
  printf '[[models]]\nid = "%s"\nsource = "file://%s"\nsha256 = "%s"\nsize = %s\n%b\n' \
    "$1" "$here/tests/fixtures/$2" "$(sha256sum "tests/fixtures/$2" | cut -d' ' -f1)" "$(stat -c %s "tests/fixtures/$2")" "$3"
}
{ echo "version = 1"; entry faces centerface.onnx 'family = "centerface"\nclasses = ["face"]'; } > "$work/models.toml"
/usr/bin/python3 tests/rtsp/server.py --port 0 --image "$image" --size 640x480 --profile main > "$work/rtsp.out" &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/rtsp.out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/ready/ {print $2}' "$work/rtsp.out")
timeout --preserve-status -s INT "$run_secs" "$OUTPOST_BIN" --board x86_64-dev --cache-dir "$work/cache" --set run.stats_interval_secs=0 \
  run --allow-volatile-cache --manifest "$work/models.toml" --model faces --source "rtsp://127.0.0.1:$port/cam" \
  > /dev/null 2> "$work/run.err" || true
grep summary "$work/run.err" | tail -1 || { echo "no summary from outpost run:" >&2; tail -20 "$work/run.err" >&2; exit 1; }
