#!/usr/bin/env bash
# Power cuts of a whole emulated ARM appliance while it provisions: an arm64 QEMU guest boots
# with outpost as its boot service, its cache on a virtio disk formatted ext4 (the flash), its
# models on a second, read-throttled virtio disk (a USB stick: file:///media/stick/... sources).
# The harness kills QEMU with SIGKILL at random moments of provisioning, so every write the guest
# had not flushed is lost, as on a real power cut, and boots again from the same flash: every blob
# must hash to its name, `current` must name a complete generation, `outpost cache verify` must
# pass or the provisioning resume. Then: a cut while `current` switches to a new manifest version,
# one while a bundle import switches it (each followed by a boot with the old seed manifest, which
# must run), and a last boot without the stick: offline, the vivid camera through the model.
#
#   scripts/qemu/test-powercut.sh [--cuts N] [--seed S]    CI: 10 cuts (the default); long: --cuts 100
#
# The guest binary is the static aarch64 release build (scripts/build-aarch64.sh), OUTPOST_BIN
# overrides; the bundle is made on the host by the host's dev build (OUTPOST_HOST_BIN). No
# network anywhere in the guest (-nic none). The boots are driven by powercut.py, which reads the
# serial console; the log of every boot goes to the work folder (kept on failure).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$here/target}
cuts=10 seed=${OUTPOST_POWERCUT_SEED:-$(date +%s)}
while [ $# -gt 0 ]; do
  case "$1" in
    --cuts) cuts=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "usage: test-powercut.sh [--cuts N] [--seed S]" >&2; exit 2 ;;
  esac
done

tools=$(bash "$here/scripts/qemu/fetch-tools.sh" amd64 arm64 | tail -1)
guest_root="$tools/arm64/root"
host_bb="$tools/amd64/root/bin/busybox"
kver=$(ls "$guest_root/lib/modules")
bin=${OUTPOST_BIN:-$target_dir/aarch64-unknown-linux-musl/release/outpost}
[ -x "$bin" ] || { echo "test-powercut: no aarch64 outpost binary at $bin (run scripts/build-aarch64.sh)" >&2; exit 1; }
host_bin=${OUTPOST_HOST_BIN:-$target_dir/debug/outpost}
[ -x "$host_bin" ] || (cd "$here" && cargo build --locked --quiet)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-powercut.XXXXXX")
keep=0
trap '[ "$keep" = 1 ] || rm -rf "$work"' EXIT
root="$work/root" stick="$work/stick"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,var/lib/outpost,media/stick,etc/outpost,images} "$stick/models"

# The stick: CenterFace and a large blob (v1), a second blob (v2), a bundle of v3 (CenterFace and
# a third blob) made on the host. The blobs are random bytes: provisioning only hashes them, and
# the camera runs CenterFace.
cp "$here/tests/fixtures/centerface.onnx" "$stick/models/centerface.onnx"
head -c "${OUTPOST_POWERCUT_BLOB_MIB:-24}M" /dev/urandom > "$stick/models/archive-1.bin"
head -c 6M /dev/urandom > "$stick/models/archive-2.bin"
head -c 3M /dev/urandom > "$stick/models/archive-3.bin"
model() {  # model ID FILE SOURCE [FAMILY LINE]
  printf '\n[[models]]\nid = "%s"\nsource = "%s"\nsha256 = "%s"\nsize = %s\n%s\n' "$1" "$3" \
    "$(sha256sum "$2" | cut -d' ' -f1)" "$(stat -c %s "$2")" "${4:-}"
}
faces_family=$'family = "centerface"\nclasses = ["face"]'
for v in 1 2; do
  {
    echo "version = $v"
    model faces "$stick/models/centerface.onnx" file:///media/stick/models/centerface.onnx "$faces_family"
    model archive-1 "$stick/models/archive-1.bin" file:///media/stick/models/archive-1.bin
    [ "$v" = 1 ] || model archive-2 "$stick/models/archive-2.bin" file:///media/stick/models/archive-2.bin
  } > "$root/etc/outpost/models-v$v.toml"
done
{
  echo "version = 3"
  model faces "$stick/models/centerface.onnx" file:models/centerface.onnx "$faces_family"
  model archive-3 "$stick/models/archive-3.bin" file:models/archive-3.bin
} > "$stick/v3.toml"
OUTPOST_CONFIG=/dev/null "$host_bin" -q --cache-dir "$work/bundle-cache" provision --manifest "$stick/v3.toml" --allow-volatile-cache
OUTPOST_CONFIG=/dev/null "$host_bin" -q --cache-dir "$work/bundle-cache" cache export "$stick/v3.tar"
rm -rf "$work/bundle-cache"
cp "$here/tests/fixtures/images/astronaut.png" "$root/images/"

# The disks. The flash is made anew by powercut.py for each cycle of cuts (mkfs.ext4, empty); the
# stick is an ext4 image of the folder above.
mkfs.ext4 -q -F -L stick -d "$stick" "$work/stick.img" $(( $(du -sm "$stick" | cut -f1) + 16 ))M

# The guest: busybox, the modules (storage always, vivid for the camera boot), outpost.
cp "$guest_root/bin/busybox" "$root/bin/busybox"
python3 "$here/scripts/qemu/modules.py" "$guest_root/lib/modules/$kver" "$root" vivid >/dev/null
mv "$root/modules.order" "$root/vivid.order"
python3 "$here/scripts/qemu/modules.py" "$guest_root/lib/modules/$kver" "$root" \
  virtio_mmio virtio_blk crc32c_generic ext4 >/dev/null
strip -o "$root/outpost" "$bin" 2>/dev/null || cp "$bin" "$root/outpost"
cp "$here/scripts/qemu/powercut-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | "$host_bb" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")

set +e
python3 "$here/scripts/qemu/powercut.py" --tools "$tools" --kernel "$guest_root/boot/vmlinuz-$kver" \
  --initrd "$work/initrd.gz" --stick "$work/stick.img" --work "$work" --cuts "$cuts" --seed "$seed"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then keep=1; echo "test-powercut: FAILED; console logs kept in $work" >&2; fi
exit "$rc"
