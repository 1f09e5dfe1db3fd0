#!/usr/bin/env bash
# Fetches ONNX Runtime's CPU library for the tests of the glibc build's `onnxruntime` backend:
# PyPI's pinned `onnxruntime` wheel (its libonnxruntime.so carries the CPU execution provider
# only), unpacked under $OUTPOST_ONNXRUNTIME_DIR (default scripts/.onnxruntime). Prints the
# library's path on the last line. The version is the one the reference venv pins
# (scripts/reference/requirements.txt), so the tests' ONNX Runtime is the references' own.
#
#   scripts/onnxruntime/fetch-library.sh            x86_64 (the host)
#   scripts/onnxruntime/fetch-library.sh aarch64    the manylinux aarch64 wheel (for qemu runs)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:-x86_64}
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
