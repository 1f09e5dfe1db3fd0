#!/usr/bin/env bash
# One short check of the glibc build on an x86_64 machine with an NVIDIA GPU and no network (the
# device machine lent to some tasks). Carry: the x86_64 glibc binary (scripts/build-gnu.sh
# x86_64), ONNX Runtime's CPU library (scripts/onnxruntime/fetch-library.sh), tests/fixtures.
# Checks: `doctor` sees the CUDA driver and the GPU (name, compute capability); the CPU provider
# runs a fixture model and finds what tract finds; `tensorrt` with that CPU-only library falls
# back naming TensorRT. With ORT_GPU_LIBRARY (onnxruntime-gpu's libonnxruntime.so, ~250 MB wheel,
# not carried by default) it also runs `cuda`, builds a TensorRT engine at provision, and an fp16
# one through the accuracy gate.
#
#   OUTPOST_BIN=... ORT_LIBRARY=... scripts/gpu-check.sh     exit 0 = every check passed
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OUTPOST_BIN:-target/x86_64-unknown-linux-gnu/release/outpost}
lib=${ORT_LIBRARY:-$(ls scripts/.onnxruntime/*-x86_64/libonnxruntime.so.* 2>/dev/null | head -1)}
[ -x "$bin" ] || { echo "gpu-check: no binary at $bin (scripts/build-gnu.sh x86_64)"; exit 2; }
[ -f "$lib" ] || { echo "gpu-check: no ONNX Runtime library (scripts/onnxruntime/fetch-library.sh)"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OUTPOST_CONFIG=/dev/null
failures=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then echo "PASS $name"; else echo "FAIL $name"; sed 's/^/    /' "$work/out" | tail -20; failures=$((failures + 1)); fi
}
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "(no nvidia-smi)"
"$bin" --version

face() { # backend [settings...] -> JSON line on stdout
  local backend=$1; shift
  "$bin" --board x86_64-dev --cache-dir "$work/cache" --set "inference.backend=$backend" --set "inference.onnxruntime_library=$lib" "$@" \
    detect tests/fixtures/images/astronaut.png --model-file tests/fixtures/centerface.onnx --family centerface
}
doctor_sees_gpu() {
  "$bin" --board x86_64-dev --cache-dir "$work/cache" --set inference.backend=cuda --set inference.fallback=onnxruntime \
    --set "inference.onnxruntime_library=$lib" doctor | tee "$work/doctor"
  grep -E '^ok   gpu: .+ \(compute capability [0-9]+\.[0-9]+\), CUDA driver [0-9]' "$work/doctor"
  grep -E '^ok   onnxruntime: ' "$work/doctor"
}
cpu_provider_matches_tract() {
  face onnxruntime > "$work/ort.json" 2>"$work/ort.log"
  face tract > "$work/tract.json" 2>/dev/null
  grep -q '(onnxruntime)' "$work/ort.log"
  python3 - "$work/ort.json" "$work/tract.json" <<'PY'
import json, sys
a, b = (json.loads(open(p).readline())["predictions"] for p in sys.argv[1:])
assert a and len(a) == len(b), (a, b)
for p, q in zip(a, b):
    assert all(abs(p[k] - q[k]) < 0.1 for k in ("x", "y", "width", "height")), (p, q)
print(f"{len(a)} face(s), same as tract")
PY
}
tensorrt_falls_back_naming_it() {
  face tensorrt --set inference.fallback=onnxruntime 2>"$work/trt.log" >/dev/null
  grep -E 'WARN .*tensorrt: .*TensorRT' "$work/trt.log"
}
check "doctor sees the CUDA driver and the GPU" doctor_sees_gpu
check "ONNX Runtime's CPU provider runs CenterFace as tract does" cpu_provider_matches_tract
check "tensorrt without its provider falls back, naming TensorRT" tensorrt_falls_back_naming_it

if [ -n "${ORT_GPU_LIBRARY:-}" ]; then
  lib=$ORT_GPU_LIBRARY
  cuda_runs() { face cuda --set inference.fallback= 2>&1 | tee "$work/cuda.log" | tail -1 | grep -q predictions; grep -q '(cuda)' "$work/cuda.log"; }
  engine_built_at_provision() {
    sha=$(sha256sum tests/fixtures/yolov8n_random.onnx | cut -d' ' -f1)
    printf 'version = 1\n[[models]]\nid = "yolo"\nsource = "file://%s"\nsha256 = "%s"\nfamily = "yolov8"\ninput = [640, 640]\n' \
      "$PWD/tests/fixtures/yolov8n_random.onnx" "$sha" > "$work/models.toml"
    "$bin" --board x86_64-dev --cache-dir "$work/cache" --set inference.backend=tensorrt --set "inference.onnxruntime_library=$lib" \
      provision --manifest "$work/models.toml" 2>&1 | tee "$work/provision.log"
    grep -q 'TensorRT engine for `yolo` at 640x640 ready' "$work/provision.log"
    "$bin" --cache-dir "$work/cache" cache ls | grep -q 'yolo: 640x640 fp32 for TensorRT'
  }
  fp16_engine_through_the_gate() {
    # CenterFace keeps its face in fp16 (tract's f16 does, tests/half_gate.rs): its engine should pass.
    sha=$(sha256sum tests/fixtures/centerface.onnx | cut -d' ' -f1)
    printf 'version = 1\n[[models]]\nid = "faces"\nsource = "file://%s"\nsha256 = "%s"\nfamily = "centerface"\n' \
      "$PWD/tests/fixtures/centerface.onnx" "$sha" > "$work/faces.toml"
    "$bin" --board x86_64-dev --cache-dir "$work/cache16" --set inference.backend=tensorrt --set "inference.onnxruntime_library=$lib" \
      --set inference.precision=f16 --set "inference.calibration_image=$PWD/tests/fixtures/images/astronaut.png" \
      provision --manifest "$work/faces.toml" 2>&1 | tee "$work/provision16.log"
    grep -q 'TensorRT fp16 engine for .* accepted' "$work/provision16.log"
    "$bin" --cache-dir "$work/cache16" cache ls | tee "$work/ls16" | grep -q 'fp16 accuracy gate: accepted'
  }
  check "the CUDA provider runs (onnxruntime-gpu)" cuda_runs
  check "a TensorRT engine is built at provision and listed (onnxruntime-gpu)" engine_built_at_provision
  check "an fp16 TensorRT engine passes the accuracy gate at provision (onnxruntime-gpu)" fp16_engine_through_the_gate
else
  echo "SKIP cuda and tensorrt providers: set ORT_GPU_LIBRARY to onnxruntime-gpu's libonnxruntime.so"
fi
echo "gpu-check: $failures failure(s)"
[ "$failures" -eq 0 ]
