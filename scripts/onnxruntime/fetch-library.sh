#!/usr/bin/env bash
# Fetches ONNX Runtime's CPU library for the tests of the glibc build's `onnxruntime` backend:
# PyPI's pinned `onnxruntime` wheel (its libonnxruntime.so carries the CPU execution provider
# only), unpacked under $OUTPOST_ONNXRUNTIME_DIR (default scripts/.onnxruntime). Prints the
# library's path on the last line. The version is the one the reference venv pins
# (scripts/reference/requirements.txt), so the tests' ONNX Runtime is the references' own.
#
#   scripts/onnxruntime/fetch-library.sh            x86_64 (the host)
#   scripts/onnxruntime/fetch-library.sh aarch64    the manylinux aarch64 wheel (for qemu runs)
#   scripts/onnxruntime/fetch-library.sh old        ONNX Runtime 1.16.3 (x86_64), older than the
#       API level outpost needs, for the test that it is refused with its version. PyPI's 1.16
#       wheels link the library into their Python module, so it comes from npm's onnxruntime-node
#       package (the same release's libonnxruntime.so), checked against the registry's sha512.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:-x86_64}
if [ "$arch" = old ]; then
  dir="${OUTPOST_ONNXRUNTIME_DIR:-$here/scripts/.onnxruntime}/1.16.3-x86_64-npm"
  lib="$dir/libonnxruntime.so.1.16.3"
  if [ ! -f "$lib" ]; then
    mkdir -p "$dir"
    "${PYTHON:-python3}" - "$dir" <<'PY'
import base64, hashlib, io, pathlib, sys, tarfile, urllib.request
out = pathlib.Path(sys.argv[1])
url = "https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-1.16.3.tgz"
integrity = "6T2pjwg5ik74VnI1IXFzxvPAm2UCo+vNNsDGbMP+A2q6GZPMYai2pMA17g3YMUvgOZLwsjWBUwNIlP4QaVRFlA=="
data = urllib.request.urlopen(url, timeout=300).read()
got = base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != integrity:
    sys.exit(f"fetch-library: {url}: sha512 {got}, the registry's is {integrity}")
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    member = tar.extractfile("package/bin/napi-v3/linux/x64/libonnxruntime.so.1.16.3")
    (out / "libonnxruntime.so.1.16.3.part").write_bytes(member.read())
(out / "libonnxruntime.so.1.16.3.part").rename(out / "libonnxruntime.so.1.16.3")
PY
  fi
  echo "$lib"
  exit 0
fi
version=$(sed -n 's/^onnxruntime==//p' "$here/scripts/reference/requirements.txt")
[ -n "$version" ] || { echo "fetch-library: no onnxruntime== pin in scripts/reference/requirements.txt" >&2; exit 1; }
dir="${OUTPOST_ONNXRUNTIME_DIR:-$here/scripts/.onnxruntime}/$version-$arch"
lib="$dir/libonnxruntime.so.$version"
if [ ! -f "$lib" ]; then
  mkdir -p "$dir/wheel"
  python=${PYTHON:-python3}
  [ -x "$dir/venv/bin/pip" ] || "$python" -m venv "$dir/venv"
  # Any CPython's wheel holds the same library: ask for one the host's pip can name.
  "$dir/venv/bin/pip" download -q --no-deps --only-binary=:all: --platform "manylinux_2_27_$arch" \
    --python-version 3.11 --implementation cp -d "$dir/wheel" "onnxruntime==$version"
  "$dir/venv/bin/python" - "$dir/wheel" "$dir" "$version" <<'PY'
import pathlib, sys, zipfile
wheel_dir, out, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(wheel,) = wheel_dir.glob("onnxruntime-*.whl")
with zipfile.ZipFile(wheel) as z:
    name = f"onnxruntime/capi/libonnxruntime.so.{version}"
    (out / f"libonnxruntime.so.{version}.part").write_bytes(z.read(name))
    (out / f"libonnxruntime.so.{version}.part").rename(out / f"libonnxruntime.so.{version}")
PY
  rm -rf "$dir/wheel" "$dir/venv"
fi
echo "$lib"
