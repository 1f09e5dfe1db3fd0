#!/bin/busybox sh
# /init of the power-cut guest (scripts/qemu/test-powercut.sh). What a boot does comes from the
# kernel command line, `outpost.mode=`:
#   service MANIFEST   the boot service: `outpost run` (provision, then one frame of /images)
#   switch MANIFEST    `outpost provision` of a newer manifest, cut the moment its generation
#                      record is renamed in, before `current` has moved (sysrq b: an immediate
#                      reset without any sync, so unflushed writes are lost as in a power cut)
#   bundle BUNDLE      `outpost cache import`, cut the same way
#   offline MANIFEST   no stick: `outpost run` on the vivid camera
# Every boot first reports the state of the flash as it found it ("state" lines), checked without
# outpost (busybox sha256sum) and with `outpost cache verify`. Lines for the harness start with
# "OUTPOST-PC: ".
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /tmp
say() { echo "OUTPOST-PC: $*"; }
mode= arg=
for w in $(cat /proc/cmdline); do
  case "$w" in
    outpost.mode=*) mode=${w#*=} ;;
    outpost.arg=*) arg=${w#*=} ;;
  esac
done
orders=/modules.order
[ "$mode" = offline ] && orders="$orders /vivid.order"
for m in $(cat $orders); do
  if [ "$m" = vivid ]; then args="n_devs=1 node_types=0x1"; else args=""; fi
  insmod /modules/$m.ko $args || say "insmod $m failed"
done

i=0; while [ -z "$(findfs LABEL=flash 2>/dev/null)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
flash=$(findfs LABEL=flash 2>/dev/null); stick=$(findfs LABEL=stick 2>/dev/null)
mount -t ext4 "$flash" /var/lib/outpost || { say "fatal: cannot mount the flash ($flash)"; poweroff -f; }
[ -n "$stick" ] && mount -t ext4 -o ro "$stick" /media/stick
say "boot mode=$mode arg=$arg flash=$flash stick=${stick:-none}"

cache=/var/lib/outpost/cache
outpost() { /outpost --board generic-aarch64 --cache-dir $cache --set inference.backend=tract --set inference.threads=1 "$@"; }

# The state of the flash, from outside outpost: every blob hashes to its name, every generation
# record names blobs that are there, `current` names a generation record. Then `cache verify`.
check_state() {
  if [ ! -d $cache ]; then say "state cache=none"; return; fi
  bad=0 blobs=0
  for b in $cache/blobs/sha256/*; do
    [ -f "$b" ] || continue
    blobs=$((blobs+1))
    h=$(sha256sum "$b" | cut -d' ' -f1)
    [ "$h" = "${b##*/}" ] || { say "state CORRUPT blob ${b##*/} hashes to $h"; bad=1; }
  done
  gens=
  for g in $cache/generations/*.json; do
    [ -f "$g" ] || continue
    n=${g##*/}; n=${n%.json}
    v=$(grep -o '"manifest_version": *[0-9]*' "$g" | grep -o '[0-9]*$')
    gens="$gens,$n:v$v"
    [ -f $cache/generations/$n.manifest ] || { say "state BROKEN generation $n has no manifest"; bad=1; }
    for s in $(grep -o '"sha256": *"[0-9a-f]*"' "$g" | grep -o '[0-9a-f]\{64\}'); do
      [ -f $cache/blobs/sha256/$s ] || { say "state BROKEN generation $n names blob $s, absent"; bad=1; }
    done
  done
  cur=none
  if [ -e $cache/current ]; then
    cur=$(cat $cache/current)
    [ -f "$cache/generations/$cur.json" ] || { say "state BROKEN current '$cur' names no generation"; bad=1; }
  fi
  floor=$(grep -o '"version": *[0-9]*' $cache/floor.json 2>/dev/null | grep -o '[0-9]*$')
  outpost cache verify > /tmp/verify.log 2>&1
  verify=$?
  sed 's/^/OUTPOST-PC: verify: /' /tmp/verify.log | tail -5
  say "state cache=present current=$cur generations=${gens#,} floor=${floor:-none} blobs=$blobs partial=$(ls $cache/partial 2>/dev/null | wc -l) verify=$verify independent=$([ $bad = 0 ] && echo ok || echo FAIL)"
}

# run_logged CMD...: runs outpost, its log lines on the console as they come, its exit code after.
run_logged() {
  { outpost "$@" 2>&1 >/tmp/out.jsonl; echo $? > /tmp/rc; } | while IFS= read -r l; do say "log $l"; done
  say "exit $(cat /tmp/rc)"
}

# cut_when FILE: an immediate reset, no sync, the moment FILE exists.
cut_when() {
  ( while [ ! -e "$1" ]; do :; done; echo b > /proc/sysrq-trigger ) &
}
next_generation() {
  last=$(ls $cache/generations 2>/dev/null | grep -o '^[0-9]*\.json$' | grep -o '^[0-9]*' | sort -n | tail -1)
  echo $(( ${last:-0} + 1 ))
}

check_state
case "$mode" in
  service)
    say "start"
    run_logged --set log.level=info --set run.model=faces --set run.input=160x160 --set run.frames=1 \
      --set run.stats_interval_secs=0 run --manifest "$arg" --source dir:/images
    ;;
  switch | bundle)
    n=$(next_generation)
    say "cutting when generation $n is recorded"
    cut_when $cache/generations/$n.json
    say "start"
    if [ "$mode" = switch ]; then
      run_logged --set log.level=info provision --manifest "$arg"
    else
      run_logged --set log.level=info cache import "$arg"
    fi
    ;;
  offline)
    say "start"
    run_logged --set log.level=info --set camera.format=YUYV --set camera.width=640 --set camera.height=480 \
      --set run.model=faces --set run.input=160x160 --set run.max_fps=2 --set run.frames=3 \
      --set run.stats_interval_secs=0 run --manifest "$arg" --source v4l2:///dev/video0
    ;;
esac
say "stdout"; cat /tmp/out.jsonl 2>/dev/null; say "end stdout"
sync; umount /var/lib/outpost
say "done"
poweroff -f
