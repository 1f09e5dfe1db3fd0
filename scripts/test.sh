#!/usr/bin/env bash
# The test command (README): committed fixtures verified, the inference-sdk venv installed, then
# every unit and integration test on the host. `.ci/run` adds the cross-built aarch64 run under qemu and the fixture re-derivation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
bash scripts/fetch-fixtures.sh --offline
# The real inference-sdk client for tests/serve_sdk.rs (pinned; PyPI, about 1 minute once).
OUTPOST_SDK_VENV=$(bash scripts/sdk/setup-venv.sh | tail -1)
export OUTPOST_SDK_VENV
cargo test --locked "$@"
