#!/usr/bin/env bash
# The test command (README): committed fixtures verified, the inference-sdk venv and ONNX Runtime's
# library installed, then every unit and integration test on the host (glibc build, with the
# `onnxruntime` backend). `.ci/run` adds the cross-built aarch64 run under qemu and the fixture re-derivation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
bash scripts/fetch-fixtures.sh --offline
# The real inference-sdk client for tests/serve_sdk.rs (pinned; PyPI, about 1 minute once).
OUTPOST_SDK_VENV=$(bash scripts/sdk/setup-venv.sh | tail -1)
export OUTPOST_SDK_VENV
# The tests build the host (glibc) binary with the `onnxruntime` backend, run on PyPI's CPU-only
# ONNX Runtime library (the pinned wheel the references were made with; ~10 s once).
OUTPOST_TEST_ONNXRUNTIME=$(bash scripts/onnxruntime/fetch-library.sh | tail -1)
export OUTPOST_TEST_ONNXRUNTIME
# And ONNX Runtime 1.16.3, below the API level outpost needs: refused with its version (~33 MB once).
OUTPOST_TEST_ONNXRUNTIME_OLD=$(bash scripts/onnxruntime/fetch-library.sh old | tail -1)
export OUTPOST_TEST_ONNXRUNTIME_OLD
cargo test --locked --features onnxruntime "$@"
