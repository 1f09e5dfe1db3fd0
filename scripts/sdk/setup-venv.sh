#!/usr/bin/env bash
# Creates the venv with the real `inference-sdk` 1.8.3 and `supervision` 0.30.9 (pinned, with
# their dependencies) that tests/serve_sdk.rs drives `outpost serve` with. Prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv="${OUTPOST_SDK_VENV:-$here/scripts/.sdk-venv}"
python=${PYTHON:-python3}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$here/scripts/sdk/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/scripts/sdk/requirements.txt"
  echo "$want" > "$stamp"
fi
echo "$venv"
