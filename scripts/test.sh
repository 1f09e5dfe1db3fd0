#!/usr/bin/env bash
# The test command (README): committed fixtures verified, then every unit and integration test
# on the host. `.ci/run` adds the cross-built aarch64 run under qemu and the fixture re-derivation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
bash scripts/fetch-fixtures.sh --offline
cargo test --locked "$@"
