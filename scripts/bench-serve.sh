#!/usr/bin/env bash
# `outpost serve` under load: process start to the first `/info` 200, RSS idle and under load,
# and p50/p99 latency and requests/s with wrk at 1 and N concurrent clients, per fixture model
# (the same JSON body the inference-sdk client sends: base64 image in `image.value`).
# With ROBOFLOW_VENV=<venv with `inference-cpu[http]==1.8.3` and uvicorn> the real Roboflow
# Inference server (its Docker image's CPU app, scripts/bench/roboflow_server.py) runs side by
# side, offline, on the same YOLOv8n weights and image (MODEL_CACHE_DIR laid out by hand), and
# the ratios are printed. That install is ~7 GB: it stays out of CI.
#
#   scripts/bench-serve.sh        (DURATION=10 CLIENTS=4 PROFILE=release OUTPOST_BIN=...)
#   TARGET=x86_64-unknown-linux-musl scripts/bench-serve.sh    the static build as it ships
#                                 (mimalloc; needs musl-tools and that rustup target)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
duration=${DURATION:-10}
clients=${CLIENTS:-4}
profile=${PROFILE:-release}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk; scripts/setup-debian.sh)" >&2; exit 1; }
if [ -z "${OUTPOST_BIN:-}" ]; then
  cargo build --profile "$profile" --locked -q ${TARGET:+--target "$TARGET"}
  OUTPOST_BIN="${CARGO_TARGET_DIR:-$here/target}/${TARGET:+$TARGET/}$profile/outpost"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-serve.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fx=tests/fixtures
entry() { # id file extra-lines: one pinned [[models]] table for a fixture
  printf '[[models]]\nid = "%s"\nsource = "file://%s"\nsha256 = "%s"\nsize = %s\n%b\n' \
    "$1" "$here/$fx/$2" "$(sha256sum "$fx/$2" | cut -d' ' -f1)" "$(stat -c %s "$fx/$2")" "$3"
}
{
  echo "version = 1"
  entry faces centerface.onnx 'family = "centerface"\nclasses = ["face"]'
  entry yolo yolov8n_random.onnx 'family = "yolov8"\ninput = [640, 640]'
  entry colour crafted/colour_classifier.onnx 'family = "classification"\nclasses = ["red", "green", "blue"]'
} > "$work/models.toml"
export OUTPOST_CONFIG=/dev/null
"$OUTPOST_BIN" -q --board x86_64-dev --cache-dir "$work/cache" provision --manifest "$work/models.toml" >/dev/null

body() { # model image -> request body file
  python3 - "$1" "$2" > "$work/$1.json" <<'PY'
import base64, json, sys
print(json.dumps({"api_key": None, "model_id": sys.argv[1], "visualize_predictions": False,
                  "disable_active_learning": False,
                  "image": {"type": "base64", "value": base64.b64encode(open(sys.argv[2], "rb").read()).decode()}}))
PY
  echo "$work/$1.json"
}
cat > "$work/post.lua" <<'LUA'
local f = io.open(os.getenv("BODY"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
LUA
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
wait_info() { # url -> ms until the first 200
  local t0=$1 url=$2
  until curl -sf -o /dev/null "$url/info"; do sleep 0.005; done
  echo $(( $(now_ms) - t0 ))
}
# wrk url body clients -> "rps p50_ms p99_ms errors"
load() {
  BODY=$2 wrk -t "$(( $3 < 2 ? $3 : 2 ))" -c "$3" -d "${duration}s" --timeout 60s --latency -s "$work/post.lua" "$1" > "$work/wrk.txt"
  awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {err+=$NF}
    /Socket errors/ {for (i = 3; i <= NF; i++) err += $i + 0}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.1f %.1f %.1f %d\n", rps, ms(p50), ms(p99), err+0}' "$work/wrk.txt"
}

port=$((20000 + RANDOM % 20000))
t0=$(now_ms)
"$OUTPOST_BIN" -q --board x86_64-dev --cache-dir "$work/cache" serve --listen "127.0.0.1:$port" &
pids+=($!); opid=$!
start_ms=$(wait_info "$t0" "http://127.0.0.1:$port")
echo "outpost serve ($("$OUTPOST_BIN" --version | head -1), $("$OUTPOST_BIN" --version | awk '/^target|^allocator/ {printf "%s ", $0}')$(nproc) cores)"
echo "  start to first /info 200: ${start_ms} ms; RSS idle before any model: $(( $(rss_kib $opid) / 1024 )) MiB"
for m in faces yolo colour; do
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"model_id\": \"$m\"}" "http://127.0.0.1:$port/model/add"
done
echo "  RSS with the 3 models loaded: $(( $(rss_kib $opid) / 1024 )) MiB"
printf '  %-8s %-22s %8s %10s %9s %9s %7s\n' model route clients "req/s" "p50 ms" "p99 ms" errors
declare -A outpost_result
for spec in "faces object_detection astronaut.png" "yolo object_detection chelsea.png" "colour classification chelsea.png"; do
  read -r m route img <<<"$spec"
  b=$(body "$m" "$fx/images/$img")
  for c in 1 "$clients"; do
    read -r rps p50 p99 err < <(load "http://127.0.0.1:$port/infer/$route" "$b" "$c")
    printf '  %-8s %-22s %8s %10s %9s %9s %7s\n' "$m" "$route" "$c" "$rps" "$p50" "$p99" "$err"
    outpost_result["$m/$c"]="$rps $p50 $p99"
  done
done
echo "  RSS after the load: $(( $(rss_kib $opid) / 1024 )) MiB"

[ -n "${ROBOFLOW_VENV:-}" ] || { echo "(ROBOFLOW_VENV unset: the Roboflow Inference server comparison is skipped)"; exit 0; }

# The real Roboflow server, offline, on the same YOLOv8n weights: dataset/version bench/1.
cache="$work/rf-cache"
mkdir -p "$cache/bench/1"
cp "$fx/yolov8n_random.onnx" "$cache/bench/1/weights.onnx"
python3 -c 'print("\n".join(str(i) for i in range(80)))' > "$cache/bench/1/class_names.txt"
echo '{"project_task_type": "object-detection", "model_type": "yolov8n"}' > "$cache/bench/1/model_type.json"
cat > "$cache/bench/1/environment.json" <<'EOF'
{"PREPROCESSING": "{\"auto-orient\": {\"enabled\": false}, \"resize\": {\"enabled\": true, \"format\": \"Fit (black edges) in\", \"width\": 640, \"height\": 640}}", "CLASS_MAP": {}, "COLORS": {}, "BATCH_SIZE": 1}
EOF
rport=$((port + 1))
t0=$(now_ms)
# The app mounts its landing page from ./inference/landing/out: empty folders will do.
mkdir -p "$work/rf/inference/landing/out/static" "$work/rf/inference/landing/out/_next/static"
( cd "$work/rf" && PYTHONPATH="$here/scripts/bench" OFFLINE_MODE=True USE_INFERENCE_MODELS=False MODEL_CACHE_DIR="$cache" \
    API_KEY=bench DISABLE_VERSION_CHECK=True METRICS_ENABLED=False \
    exec "$ROBOFLOW_VENV/bin/python" -m uvicorn roboflow_server:app --port "$rport" >/dev/null 2>"$work/rf.log" ) &
pids+=($!)
echo "Roboflow Inference server (inference-cpu $("$ROBOFLOW_VENV/bin/pip" show inference-cpu 2>/dev/null | awk '/^Version/ {print $2}'))"
echo "  start to first /info 200: $(wait_info "$t0" "http://127.0.0.1:$rport") ms"
rpid=$(pgrep -f "uvicorn roboflow_server:app --port $rport" | head -1)
curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"model_id": "bench/1", "api_key": "bench"}' "http://127.0.0.1:$rport/model/add"
echo "  RSS with the model loaded: $(( $(rss_kib "$rpid") / 1024 )) MiB"
python3 - "$fx/images/chelsea.png" > "$work/rf.json" <<'PY'
import base64, json, sys
print(json.dumps({"api_key": "bench", "model_id": "bench/1", "image": {"type": "base64", "value": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}}))
PY
printf '  %-8s %-22s %8s %10s %9s %9s %7s %14s\n' model route clients "req/s" "p50 ms" "p99 ms" errors "outpost ratio"
for c in 1 "$clients"; do
  read -r rps p50 p99 err < <(load "http://127.0.0.1:$rport/infer/object_detection" "$work/rf.json" "$c")
  read -r orps op50 op99 <<<"${outpost_result[yolo/$c]}"
  printf '  %-8s %-22s %8s %10s %9s %9s %7s %14s\n' yolov8n object_detection "$c" "$rps" "$p50" "$p99" "$err" \
    "$(python3 -c "print(f'{$orps/$rps:.2f}x req/s')" 2>/dev/null || echo -)"
done
echo "  RSS after the load: $(( $(rss_kib "$rpid") / 1024 )) MiB"
