#!/usr/bin/env bash
# Fetches what the vivid camera tests boot, without touching the machine's own packages:
#   - qemu-system-x86 / qemu-system-arm and the libraries they need that are not installed,
#     unpacked with dpkg-deb into $OUTPOST_QEMU_TOOLS (apt-get install would conflict with the
#     preinstalled qemu-utils backport on the CI machines);
#   - for each guest architecture, Debian's kernel image (with the vivid module) and
#     busybox-static, fetched with a private apt configuration for that architecture.
# Idempotent: a tool directory that is complete is left alone. Prints the tool directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
tools=${OUTPOST_QEMU_TOOLS:-$here/.toolchains/qemu}
mkdir -p "$tools"

log() { echo "fetch-tools: $*" >&2; }

# apt-get / apt-cache ($1) for another architecture (or the host's), with its own state under $3.
private_apt() {
  local tool=$1 arch=$2 state=$3; shift 3
  "$tool" -oAPT::Architecture="$arch" -oAPT::Architectures="$arch" -oDir::State::Lists="$state/lists" \
    -oDir::Cache="$state/cache" -oDebug::NoLocking=1 "$@"
}

fetch_host_qemu() {
  [ -x "$tools/host/usr/bin/qemu-system-aarch64" ] && [ -x "$tools/host/usr/bin/qemu-system-x86_64" ] && return
  log "fetching qemu-system-x86, qemu-system-arm and their libraries"
  # A private apt state: works whatever the machine's package lists hold, and needs no root.
  local state; state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
  private_apt apt-get amd64 "$state" update -qq 2>&1 | grep -v unsandboxed >&2 || true
  local roots=(qemu-system-x86 qemu-system-arm qemu-system-common qemu-system-data seabios)
  # Every package the roots pull in, minus those installed already (their files are on the host).
  local wanted=()
  for pkg in $(private_apt apt-cache amd64 "$state" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
                 --no-replaces --no-enhances "${roots[@]}" | grep -v '^ ' | grep -v '^<' | sort -u); do
    case "$pkg" in *:i386) continue ;; esac
    if [[ " ${roots[*]} " == *" $pkg "* ]] || ! dpkg -s "$pkg" >/dev/null 2>&1; then wanted+=("$pkg"); fi
  done
  (cd "$state/debs" && private_apt apt-get amd64 "$state" download "${wanted[@]}" 2>&1 | grep -v 'unsandboxed' >&2 || true)
  mkdir -p "$tools/host"
  for deb in "$state"/debs/*.deb; do dpkg-deb -x "$deb" "$tools/host"; done
  rm -rf "$state"
  [ -x "$tools/host/usr/bin/qemu-system-aarch64" ] || { log "qemu-system-aarch64 missing after the fetch"; exit 1; }
}

fetch_guest() {
  local arch=$1 dir="$tools/$1"
  [ -f "$dir/done" ] && return
  log "fetching the $arch kernel and busybox-static"
  local state; state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$dir"
  private_apt apt-get "$arch" "$state" update -qq 2>&1 | grep -v unsandboxed >&2 || true
  local kernel
  kernel=$(private_apt apt-cache "$arch" "$state" depends linux-image-$arch 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kernel" ] || { log "no linux-image for $arch"; exit 1; }
  (cd "$state" && private_apt apt-get "$arch" "$state" download "$kernel" busybox-static 2>&1 | grep -v 'unsandboxed' >&2 || true)
  rm -rf "$dir/root"; mkdir -p "$dir/root"
  for deb in "$state"/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  rm -rf "$state"
  touch "$dir/done"
}

fetch_host_qemu
for arch in "$@"; do fetch_guest "$arch"; done
echo "$tools"
