#!/usr/bin/env bash
# Writes the seed corpus of each fuzz target (fuzz/corpus/<target>/): small valid inputs of each
# format, from the repository's own files and Debian's ffmpeg (H.264, MP4, PNG, JPEG), so the
# fuzzer starts inside the formats instead of guessing their magic numbers. The output is
# committed; rerun after a format gains a feature. Needs ffmpeg and a built outpost (the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
c=fuzz/corpus
rm -rf "$c"; mkdir -p "$c"/{manifest,config,bundle,environment,roboflow_api,image,pixels,http_request,h264,video_file}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

cp examples/models.toml "$c/manifest/example.toml"
cat > "$c/manifest/signed-roboflow.toml" <<'TOML'
version = 7
[[models]]
id = "cars"
source = "roboflow:my-workspace/cars/3"
family = "yolov8"
input = [640, 640]
[[models]]
id = "faces"
source = "https://models.example.com/centerface.onnx"
sha256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
size = 7304518
environment = "file:environment.json"
TOML
cp boards/*.toml "$c/config/"
cat > "$c/config/outpost.toml" <<'TOML'
board = "raspberry-pi-5"
[inference]
backend = "auto"
threads = 4
[camera]
device = "/dev/video2"
format = "NV12"
[[cameras]]
name = "gate"
source = "rtsp://user:secret@192.0.2.10/stream1"
model = "faces"
[sinks.webhook]
url = "https://hooks.example.com/x"
TOML

printf '{"CLASS_MAP": {"0": "cat", "2": "dog", "3": "fox"}, "PREPROCESSING": "{\\"resize\\": {\\"format\\": \\"Stretch to\\", \\"width\\": 640, \\"height\\": 640}}", "COLORS": {"cat": "#FF0000"}}' > "$c/environment/roboflow.json"
printf '{"CLASS_MAP": {"0": "face"}}' > "$c/environment/one.json"

printf '{"ort":{"model":"https://s/w.onnx?X-Amz-Signature=abc","environment":"https://s/e.json","classes":["car","bus"],"modelType":"yolov8n","type":"object-detection"}}' > "$c/roboflow_api/answer.json"
printf 'my-workspace/cars/3' > "$c/roboflow_api/id.txt"

ff -f lavfi -i testsrc=size=48x32:rate=1 -frames:v 1 "$c/image/tiny.png"
ff -f lavfi -i testsrc=size=48x32:rate=1 -frames:v 1 -q:v 5 "$c/image/tiny.jpg"
ff -f lavfi -i testsrc=size=16x16:rate=1 -frames:v 1 -pix_fmt gray "$c/image/gray.png"
ff -f lavfi -i testsrc=size=16x16:rate=1 -frames:v 1 -pix_fmt rgba "$c/image/rgba.png"
# A JPEG with an EXIF orientation (6: rotate 90): the APP1 segment spliced after SOI.
python3 - "$c/image/tiny.jpg" "$c/image/exif-rotated.jpg" <<'PY'
import struct, sys
jpeg = open(sys.argv[1], "rb").read()
ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
app1 = b"Exif\x00\x00" + tiff
open(sys.argv[2], "wb").write(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:])
PY

# pixels: format byte, width, height, stride (u16 LE each), then the plane bytes.
python3 - "$c/pixels" <<'PY'
import struct, sys, os
out = sys.argv[1]
for name, fmt, w, h, stride, size in (("yuyv", 0, 8, 4, 16, 64), ("nv12", 1, 8, 4, 8, 48), ("rgb24", 2, 4, 4, 12, 48), ("padded", 0, 6, 3, 16, 48)):
    open(os.path.join(out, name), "wb").write(bytes([fmt]) + struct.pack("<HHH", w, h, stride) + bytes(range(size)))
PY
cp "$c/image/tiny.jpg" "$tmp/j"; python3 -c "import sys,struct; open('$c/pixels/mjpeg','wb').write(bytes([3])+struct.pack('<HHH',48,32,0)+open('$tmp/j','rb').read())"

b64=$(base64 -w0 "$c/image/tiny.png")
printf 'POST /infer/object_detection HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
  $(( ${#b64} + 120 )) "{\"model_id\": \"faces\", \"api_key\": \"k\", \"image\": {\"type\": \"base64\", \"value\": \"$b64\"}, \"confidence\": 0.4, \"iou_threshold\": 0.5, \"max_detections\": 10}" > "$c/http_request/v1.txt"
printf 'POST /faces/1?api_key=k&confidence=40&overlap=30 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %s\r\n\r\n%s' ${#b64} "$b64" > "$c/http_request/v0-base64.txt"
{ printf 'POST /faces/1?api_key=k HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'; cat "$c/image/tiny.png"; printf '\r\n--XyZ--\r\n'; } > "$c/http_request/v0-multipart.txt"
printf 'GET /model/registry?api_key=k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' > "$c/http_request/get.txt"

ff -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 3 -pix_fmt yuv420p -c:v libx264 -profile:v main -g 2 -bf 1 -f h264 "$c/h264/clip.h264"
ff -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 3 -pix_fmt yuv420p -c:v libx264 -profile:v baseline -f h264 "$c/video_file/clip.h264"
ff -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 3 -pix_fmt yuv420p -c:v libx264 -profile:v main -bf 1 -movflags +faststart "$c/video_file/clip.mp4"
ff -f lavfi -i testsrc=size=64x48:rate=5 -frames:v 2 -pix_fmt yuv420p -c:v libx264 "$c/video_file/moov-last.mp4"

# A bundle of one small blob, made by outpost itself.
bin=${OUTPOST_BIN:-${CARGO_TARGET_DIR:-target}/debug/outpost}
head -c 2048 /dev/zero > "$tmp/tiny.bin"
printf 'version = 1\n[[models]]\nid = "tiny"\nsource = "file:tiny.bin"\nsha256 = "%s"\nsize = 2048\n' "$(sha256sum "$tmp/tiny.bin" | cut -d' ' -f1)" > "$tmp/m.toml"
OUTPOST_CONFIG=/dev/null "$bin" -q --cache-dir "$tmp/cache" provision --manifest "$tmp/m.toml" --allow-volatile-cache
OUTPOST_CONFIG=/dev/null "$bin" -q --cache-dir "$tmp/cache" cache export "$c/bundle/one-blob.tar"
du -sh "$c"/* | sed 's/^/make-seeds: /'
