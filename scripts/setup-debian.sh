#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages outpost's build and tests need, if any is missing:
# cross toolchain and emulator for the aarch64 build, nginx + openssl + faketime for the TLS
# provisioning tests, curl/bc/time for the benchmark scripts, libclang + kernel headers (host and
# arm64) for scripts/v4l2-bindgen's check of the committed V4L2 bindings and the static vivid
# test helper, systemd for `systemd-analyze verify` of the unit, python3-venv for the
# inference-sdk and reference venvs, chromium for the live view's browser test, wrk for
# scripts/bench-serve.sh, g++ + nasm for openh264's bundled source (nasm: its x86 assembly; the
# build silently drops it without), g++-aarch64-linux-gnu for the aarch64 build of it, ffmpeg and
# GStreamer's RTSP server (python3-gi) for the video-source tests and scripts/bench-decode.sh.
# Idempotent; uses sudo when not root.
set -euo pipefail
packages=(gcc-aarch64-linux-gnu qemu-user-static file nginx-light openssl faketime curl bc time
          libclang-dev linux-libc-dev linux-libc-dev-arm64-cross libc6-dev-arm64-cross systemd python3-venv
          chromium wrk g++ nasm g++-aarch64-linux-gnu ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0
          gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
          gstreamer1.0-plugins-ugly gstreamer1.0-libav)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "setup-debian: installing ${missing[*]}"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The nginx package starts a system service on port 80; the tests run their own instances.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  as_root systemctl disable --now nginx >/dev/null 2>&1 || true
fi
