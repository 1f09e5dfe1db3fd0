#!/usr/bin/env bash
# Boots a real Linux kernel under QEMU (software emulation) with the `vivid` virtual camera
# driver and runs `outpost run` on /dev/video0 in the guest, once per pixel format (YUYV, NV12,
# RGB24): format negotiation, mmap capture, pixel conversion, the latest-frame pipeline and a
# real model.
#
#   scripts/qemu/test-vivid.sh x86_64|aarch64
#
# The guest binary: aarch64 = the static release build (scripts/build-aarch64.sh); x86_64 = the
# host's dev build (cargo build) with the shared libraries it needs. OUTPOST_BIN overrides.
# Kernel + busybox come from Debian (scripts/qemu/fetch-tools.sh); the guest has no network
# (-nic none) and runs under `timeout`. Results are read from the serial console.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:?usage: test-vivid.sh x86_64|aarch64}
case "$arch" in
  x86_64) deb_arch=amd64 ;;
  aarch64) deb_arch=arm64 ;;
  *) echo "test-vivid: unknown guest architecture $arch" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$here/target}
tools=$(bash "$here/scripts/qemu/fetch-tools.sh" amd64 "$deb_arch" | tail -1)
guest_root="$tools/$deb_arch/root"
host_bb="$tools/amd64/root/bin/busybox"
kver=$(ls "$guest_root/lib/modules")
formats=${OUTPOST_VIVID_FORMATS:-YUYV NV12 RGB24}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-vivid-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,var,models}

# busybox, the modules vivid needs (dependencies first), the model and its manifest.
cp "$guest_root/bin/busybox" "$root/bin/busybox"
python3 "$here/scripts/qemu/modules.py" "$guest_root/lib/modules/$kver" "$root" vivid >/dev/null
cp "$here/tests/fixtures/centerface.onnx" "$root/models/centerface.onnx"
cat > "$root/models.toml" <<'TOML'
version = 1
[[models]]
id = "faces"
source = "file:///models/centerface.onnx"
sha256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
size = 7304518
family = "centerface"
classes = ["face"]
TOML

# The unplug helper (static C: the guest has no libc).
if [ "$arch" = aarch64 ]; then cc=aarch64-linux-gnu-gcc; else cc=gcc; fi
"$cc" -static -O2 -o "$root/vivid-disconnect" "$here/scripts/qemu/vivid-disconnect.c"

# outpost itself.
if [ "$arch" = aarch64 ]; then
  bin=${OUTPOST_BIN:-$target_dir/aarch64-unknown-linux-musl/release/outpost}
  board=generic-aarch64
else
  bin=${OUTPOST_BIN:-$target_dir/debug/outpost}
  board=x86_64-dev
fi
[ -x "$bin" ] || { echo "test-vivid: no outpost binary at $bin (build it first)" >&2; exit 1; }
strip -o "$root/outpost" "$bin" 2>/dev/null || cp "$bin" "$root/outpost"
if [ "$arch" = x86_64 ]; then
  # A dynamically linked host build: bring its loader and libraries along.
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
fi

cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /tmp
for m in \$(cat /modules.order); do
  if [ "\$m" = vivid ]; then args="n_devs=1 node_types=0x1"; else args=""; fi
  insmod /modules/\$m.ko \$args || echo "OUTPOST-VIVID: insmod \$m failed"
done
i=0; while [ ! -e /dev/video0 ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
echo "OUTPOST-VIVID: kernel \$(uname -r) \$(uname -m), \$(ls /dev/video* 2>&1)"
echo "OUTPOST-VIVID: doctor \$(/outpost --board $board doctor 2>&1 | grep camera)"
# outpost_run FORMAT FRAMES [--set ...]: outpost run on the camera, output to /tmp. One inference
# thread: the guest has two emulated CPUs, and with the engine on both, capture (the thing under
# test; ~0.5 s a frame to convert in the dev build under TCG) and the worker preparing the next
# frame fought over them: 18 frames captured where 20 are required.
# Six frames through the model per format, not three: capture's rate is the guest's speed, and a
# slow host (cold CI, 2.5 s an inference) captured 17 frames in the time three took.
outpost_run() {
  fmt=\$1; frames=\$2; shift 2
  /outpost --board $board --cache-dir /var/cache/outpost --set log.level=info \\
    --set camera.format=\$fmt --set camera.width=640 --set camera.height=480 --set camera.fps=25 \\
    --set run.model=faces --set run.input=160x160 --set run.max_fps=2 --set run.frames=\$frames \\
    --set run.stats_interval_secs=0 --set inference.backend=tract --set inference.threads=1 "\$@" \\
    run --allow-volatile-cache --manifest /models.toml --source v4l2:///dev/video0 \\
    > /tmp/out.jsonl 2> /tmp/err.log
}
# report NAME EXIT: one section of the console log for check-vivid.py.
report() {
  echo "OUTPOST-VIVID: exit \$1 \$2"
  echo "OUTPOST-VIVID: stdout \$1"; cat /tmp/out.jsonl
  echo "OUTPOST-VIVID: stderr \$1"; cat /tmp/err.log
  echo "OUTPOST-VIVID: end \$1"
}
for fmt in $formats; do
  echo "OUTPOST-VIVID: begin \$fmt"
  outpost_run \$fmt 6
  report \$fmt \$?
done
# Unplug: the camera vanishes after two frames; outpost must log it, reopen it and go on.
echo "OUTPOST-VIVID: begin UNPLUG"
: > /tmp/out.jsonl  # empty before the wait below counts its lines (the last run's are there)
outpost_run YUYV 6 --set camera.reopen_secs=1 &
pid=\$!
i=0; while [ \$(wc -l < /tmp/out.jsonl) -lt 2 ] && [ \$i -lt 1200 ]; do sleep 0.1; i=\$((i+1)); done
echo "OUTPOST-VIVID: unplug \$(/vivid-disconnect /dev/video0 2>&1)"
wait \$pid
report UNPLUG \$?
echo "OUTPOST-VIVID: done"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | "$host_bb" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")

qemu_lib="$tools/host/usr/lib/x86_64-linux-gnu:$tools/host/lib/x86_64-linux-gnu"
kernel="$guest_root/boot/vmlinuz-$kver"
if [ "$arch" = aarch64 ]; then
  qemu=(qemu-system-aarch64 -M virt -cpu max -smp 2 -m 1024)
  console=ttyAMA0
else
  qemu=(qemu-system-x86_64 -M pc -cpu max -smp 2 -m 1024 -L "$tools/host/usr/share/qemu" -L "$tools/host/usr/share/seabios")
  console=ttyS0
fi
log="$work/console.log"
echo "test-vivid: booting $arch guest (kernel $kver, outpost $(du -h "$root/outpost" | cut -f1))"
started=$(date +%s)
set +e
LD_LIBRARY_PATH="$qemu_lib" timeout "${OUTPOST_VIVID_TIMEOUT:-420}" "$tools/host/usr/bin/${qemu[0]}" "${qemu[@]:1}" \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=$console quiet loglevel=3 panic=-1" \
  -nographic -nic none -no-reboot -monitor none -serial stdio < /dev/null > "$log" 2>&1
rc=$?
set -e
echo "test-vivid: guest ran $(( $(date +%s) - started ))s (qemu exit $rc)"
tr -d '\r' < "$log" > "$log.txt"
if [ -n "${OUTPOST_VIVID_LOG:-}" ]; then cp "$log.txt" "$OUTPOST_VIVID_LOG"; fi
python3 "$here/scripts/qemu/check-vivid.py" "$log.txt" $formats UNPLUG
