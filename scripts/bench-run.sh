#!/usr/bin/env bash
# `outpost run` throughput with and without overlap (run.overlap): a folder of frames handed over
# one after another (files never drop), CenterFace and yolov8n, each thread count, the two modes
# alternated ROUNDS times in one run so machine noise hits both alike. Prints the median fps of
# each mode (the summary line's fps: from the first frame taken to the last sunk), their ratio,
# and how busy the model was (mean engine time x fps): overlap's aim is a model never idle, and
# busy% is steadier than fps on a noisy machine, where the engine's own speed varies run to run.
#
#   scripts/bench-run.sh      (FRAMES=40 ROUNDS=3 THREADS="1 2"; PROFILE=release; OUTPOST_BIN=...)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
frames=${FRAMES:-40}
rounds=${ROUNDS:-3}
threads_list=${THREADS:-1 2}
profile=${PROFILE:-release}
cd "$here"
if [ -n "${OUTPOST_BIN:-}" ]; then
  outpost=$OUTPOST_BIN
else
  cargo build --profile "$profile" --locked -q
  outpost="${CARGO_TARGET_DIR:-$here/target}/$profile/outpost"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Two workloads: a small picture (preparing is ~2 % of a frame), and 1080p frames with an
# annotated JPEG kept of each (converting, resizing and encoding become a real share).
mkdir "$work/small" "$work/1080p"
ffmpeg -loglevel error -i tests/fixtures/images/astronaut.png -vf scale=1920:1080 "$work/big.png"
for i in $(seq -w 1 "$frames"); do
  cp tests/fixtures/images/astronaut.png "$work/small/$i.png"
  cp "$work/big.png" "$work/1080p/$i.png"
done
manifest() { # id file family sha size
  printf 'version = 1\n[[models]]\nid = "%s"\nsource = "file://%s/tests/fixtures/%s"\nsha256 = "%s"\nsize = %s\nfamily = "%s"\n' \
    "$1" "$here" "$2" "$(sha256sum "tests/fixtures/$2" | cut -d' ' -f1)" "$(stat -c %s "tests/fixtures/$2")" "$3"
}
summary() { # manifest (its own cache beside it) threads overlap workload -> "fps busy": frames/s, and the share of the time the model ran
  local sinks=()
  [ "$4" = 1080p ] && sinks=(--set "sinks.annotate.dir=$work/annotated" --set sinks.annotate.every=1 --set sinks.annotate.keep=4)
  OUTPOST_CONFIG=/dev/null "$outpost" --board "${BOARD:-x86_64-dev}" --cache-dir "$1.cache" --threads "$2" \
    --set run.stats_interval_secs=0 --set run.overlap="$3" "${sinks[@]}" \
    run --allow-volatile-cache --manifest "$1" --source "dir:$work/$4" 2>&1 >/dev/null |
    grep ' summary' | python3 -c '
import re, sys
line = sys.stdin.read()
fps = float(re.search(r"fps=([0-9.]+)", line).group(1))
infer = float(re.search(r"infer_ms=([0-9.]+)/", line).group(1))
print(fps, fps * infer / 1000)'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-12s %-6s %3s %9s %9s %8s %9s %9s\n' model frames thr "fps off" "fps on" "on/off" "busy off" "busy on"
for spec in "faces centerface.onnx centerface" "yolo yolov8n_random.onnx yolov8"; do
  read -r id file family <<<"$spec"
  manifest "$id" "$file" "$family" >"$work/$id.toml"
  for workload in small 1080p; do
  for t in $threads_list; do
    fps_on="" fps_off="" busy_on="" busy_off=""
    for _ in $(seq "$rounds"); do
      read -r f b < <(summary "$work/$id.toml" "$t" false "$workload")
      fps_off="$fps_off $f" busy_off="$busy_off $b"
      read -r f b < <(summary "$work/$id.toml" "$t" true "$workload")
      fps_on="$fps_on $f" busy_on="$busy_on $b"
    done
    a=$(echo "$fps_off" | median) b=$(echo "$fps_on" | median)
    printf '%-12s %-6s %3s %9s %9s %8.2f %8.0f%% %8.0f%%\n' "$id" "$workload" "$t" "$a" "$b" "$(echo "$b / $a" | bc -l)" \
      "$(echo "$busy_off" | median | awk '{print $1 * 100}')" "$(echo "$busy_on" | median | awk '{print $1 * 100}')"
  done
  done
done
