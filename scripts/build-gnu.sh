#!/usr/bin/env bash
# Builds the glibc binary with the `onnxruntime` backend (ONNX Runtime's CPU, CUDA and TensorRT
# providers, opened at run time): x86_64 for PCs with NVIDIA GPUs, aarch64 for Jetson (JetPack 6,
# Ubuntu 22.04, glibc 2.35). Checks the binary needs no glibc newer than 2.35 and prints what it
# links. The static musl build (scripts/build-aarch64.sh) stays the default artefact.
#
#   scripts/build-gnu.sh x86_64                 release build -> target/x86_64-unknown-linux-gnu/release/outpost
#   scripts/build-gnu.sh aarch64                release build -> target/aarch64-unknown-linux-gnu/release/outpost
#   scripts/build-gnu.sh aarch64 --profile cross-test  without fat LTO, dependencies at opt-level 1 (CI: 7.7 min cold)
#
# Needs: rustup; for aarch64 Debian's gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu (openh264's
# C++) and libc6-dev-arm64-cross (its glibc), installed here if missing; qemu-user-static runs
# the result (`qemu-aarch64-static -L /usr/aarch64-linux-gnu`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-}
shift || true
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    *) echo "build-gnu: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  x86_64|aarch64) ;;
  *) echo "usage: scripts/build-gnu.sh x86_64|aarch64 [--profile release|dev|fast-release|cross-test]" >&2; exit 2 ;;
esac
target="$arch-unknown-linux-gnu"
max_glibc=2.35

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
if [ "$arch" = aarch64 ]; then
  missing=()
  for pkg in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  objdump=aarch64-linux-gnu-objdump
else
  objdump=objdump
fi

cd "$here"
cargo build --locked --profile "$profile" --features onnxruntime --target "$target"
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-$here/target}/$target/$dir/outpost"

echo "build-gnu: $bin: $(file -b "$bin")"
echo "build-gnu: needs $($objdump -p "$bin" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')"
newest=$($objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
echo "build-gnu: newest glibc symbol version needed: $newest (limit $max_glibc, JetPack 6 / Ubuntu 22.04)"
if [ "$(printf '%s\n%s\n' "$newest" "$max_glibc" | sort -V | tail -1)" != "$max_glibc" ]; then
  echo "build-gnu: the binary needs glibc $newest, newer than $max_glibc: it would not start on JetPack 6" >&2
  exit 1
fi
echo "build-gnu: size $(stat -c %s "$bin") bytes"
echo "$bin"
