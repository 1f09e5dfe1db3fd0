#!/usr/bin/env bash
# Builds the static aarch64 binary (aarch64-unknown-linux-musl, release profile) without docker,
# checks that it is statically linked, and prints its size.
#
#   scripts/build-aarch64.sh            release build -> target/aarch64-unknown-linux-musl/release/outpost
#   scripts/build-aarch64.sh --setup    only install the toolchain pieces
#
# Needs: rustup; Debian/Ubuntu apt for gcc-aarch64-linux-gnu (linker, C compiler for mimalloc and
# ring), g++-aarch64-linux-gnu (openh264's C++; its runtime pieces come from the static libstdc++), qemu-user-static (runner for `cargo test --target ...`) and file. musl's own headers come
# from Debian's musl-dev:arm64, fetched with a private apt configuration (the machine's apt
# architectures are left alone) and unpacked under .toolchains/.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
target=aarch64-unknown-linux-musl
sysroot=${OUTPOST_MUSL_SYSROOT:-$here/.toolchains/aarch64-musl}
max_bytes=$((24 * 1024 * 1024))

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_tools() {
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  local missing=()
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
  command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v file >/dev/null || missing+=(file)
  if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

fetch_musl_headers() {
  [ -f "$sysroot/usr/include/aarch64-linux-musl/stdlib.h" ] && return
  echo "build-aarch64: fetching musl-dev:arm64 into $sysroot"
  local apt_dir
  apt_dir=$(mktemp -d)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  local o=(-oAPT::Architecture=arm64 -oAPT::Architectures=arm64 -oDir::State::Lists="$apt_dir/lists"
           -oDir::Cache="$apt_dir/cache" -oDebug::NoLocking=1)
  apt-get "${o[@]}" update -qq
  (cd "$apt_dir/debs" && apt-get "${o[@]}" download musl-dev musl 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  mkdir -p "$sysroot"
  for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
  rm -rf "$apt_dir"
  [ -f "$sysroot/usr/include/aarch64-linux-musl/stdlib.h" ] || { echo "musl headers missing after fetch" >&2; exit 1; }
}

install_tools
fetch_musl_headers
[ "${1:-}" = "--setup" ] && exit 0

cd "$here"
export OUTPOST_MUSL_SYSROOT="$sysroot"
cargo build --release --locked --target "$target"

bin="${CARGO_TARGET_DIR:-$here/target}/$target/release/outpost"
description=$(file -b "$bin")
echo "build-aarch64: $bin: $description"
case "$description" in
  *"ARM aarch64"*) ;;
  *) echo "build-aarch64: not an aarch64 ELF" >&2; exit 1 ;;
esac
case "$description" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "build-aarch64: not statically linked" >&2; exit 1 ;;
esac
size=$(stat -c %s "$bin")
echo "build-aarch64: size $size bytes ($(awk "BEGIN{printf \"%.1f\", $size/1048576}") MiB), limit $max_bytes"
[ "$size" -le "$max_bytes" ] || { echo "build-aarch64: binary exceeds $max_bytes bytes" >&2; exit 1; }
qemu-aarch64-static "$bin" --version
