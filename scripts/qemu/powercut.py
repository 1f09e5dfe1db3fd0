#!/usr/bin/env python3
"""Drives the boots of the power-cut test (scripts/qemu/test-powercut.sh; the guest side is
powercut-init.sh) and judges them.

1. Calibration: a fresh flash, the boot service provisions v1 uncut: how long provisioning takes.
2. Cuts: the boot service provisions v1 and QEMU is killed (SIGKILL) at a random moment of it;
   the next boot finds the flash as the cut left it. A cycle of cuts ends when a boot finishes
   provisioning; the next cycle starts from a fresh flash. Until N cuts landed mid-provisioning.
3. The last cycle's flash boots uncut: provisioning resumes and completes, the service runs.
4. A cut while `current` switches to manifest v2, then a boot with the old seed manifest (v1).
5. A cut while a bundle import (v3) switches `current`, then a boot with the v1 seed again.
6. The stick removed: an offline boot runs the vivid camera through the model.

Every boot begins by reporting the flash's state (checked by busybox and `outpost cache verify`);
a state is good when no blob differs from its name, no generation record or `current` points at
something absent, and `cache verify` passes whenever a generation is current.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

MARK = "OUTPOST-PC: "
PROVISIONED = re.compile(r"provisioned generation \d+|cache complete")


class Boot:
    """One boot of the guest: its console lines with the time each arrived."""

    def __init__(self, name, mode, arg):
        self.name, self.mode, self.arg = name, mode, arg
        self.lines = []  # (monotonic seconds, text)
        self.started = threading.Event()
        self.start_time = None
        self.killed_at = None
        self.rc = None

    def marked(self):
        return [(t, l[len(MARK):]) for t, l in self.lines if l.startswith(MARK)]

    def state(self):
        for _, text in self.marked():
            if text.startswith("state cache="):
                return dict(re.findall(r"(\w+)=(\S*)", text))
        return None

    def state_problems(self):
        return [text for _, text in self.marked() if text.startswith("state ") and ("CORRUPT" in text or "BROKEN" in text)]

    def logs(self):
        return [(t, text[4:]) for t, text in self.marked() if text.startswith("log ")]

    def exit_code(self):
        codes = [int(text.split()[1]) for _, text in self.marked() if re.fullmatch(r"exit -?\d+", text)]
        return codes[-1] if codes else None

    def provisioned_at(self):
        """Seconds after "start" at which outpost said provisioning was complete, or None."""
        for t, text in self.logs():
            if PROVISIONED.search(text):
                return t - self.start_time
        return None

    def finished(self):
        return any(text == "done" for _, text in self.marked())

    def stdout(self):
        out, inside = [], False
        for _, line in self.lines:
            if line == MARK + "stdout":
                inside = True
            elif line == MARK + "end stdout":
                inside = False
            elif inside and line.strip():
                out.append(line.strip())
        return out


class Harness:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.boots = 0
        self.failures = []
        self.env = dict(os.environ)
        host = os.path.join(args.tools, "host")
        self.env["LD_LIBRARY_PATH"] = f"{host}/usr/lib/x86_64-linux-gnu:{host}/lib/x86_64-linux-gnu"
        self.qemu = os.path.join(host, "usr/bin/qemu-system-aarch64")

    def fresh_flash(self, name):
        path = os.path.join(self.args.work, f"{name}.img")
        if os.path.exists(path):
            os.remove(path)
        # Inode tables and journal written now, not lazily by the guest during the test.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "flash", "-E", "lazy_itable_init=0,lazy_journal_init=0", path, "256M"], check=True)
        return path

    def boot(self, name, mode, arg, flash, stick=True, cut_after=None, timeout=420):
        """Boots once; `cut_after` seconds after the guest's "start" line QEMU is killed (SIGKILL)."""
        self.boots += 1
        b = Boot(name, mode, arg)
        cmd = [self.qemu, "-M", "virt", "-cpu", "max", "-smp", "2", "-m", "1024",
               "-kernel", self.args.kernel, "-initrd", self.args.initrd,
               "-append", f"console=ttyAMA0 quiet loglevel=3 panic=-1 outpost.mode={mode} outpost.arg={arg}",
               "-nographic", "-nic", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio",
               # cache=unsafe: the host keeps whatever QEMU wrote even when QEMU is killed, so
               # what is lost at a cut is exactly what the guest had not written to its disk.
               "-drive", f"file={flash},if=none,id=flash,format=raw,cache=unsafe",
               "-device", "virtio-blk-device,drive=flash"]
        if stick:
            cmd += ["-drive", f"file={self.args.stick},if=none,id=stick,format=raw,readonly=on,"
                              f"throttling.bps-read={self.args.stick_bps}",
                    "-device", "virtio-blk-device,drive=stick"]
        log = open(os.path.join(self.args.work, f"{self.boots:02d}-{name}.log"), "w")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)

        def read():
            for raw in proc.stdout:
                text = raw.decode(errors="replace").rstrip("\r\n")
                now = time.monotonic()
                b.lines.append((now, text))
                log.write(f"{now:.3f} {text}\n")
                log.flush()
                if text == MARK + "start":
                    b.start_time = now
                    b.started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        if cut_after is not None:
            if b.started.wait(timeout):
                time.sleep(max(0.0, b.start_time + cut_after - time.monotonic()))
                if proc.poll() is None:
                    proc.kill()
                    b.killed_at = time.monotonic() - b.start_time
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail(f"{name}: the guest ran past {timeout}s")
        reader.join(10)
        b.rc = proc.returncode
        log.close()
        return b

    def fail(self, message):
        print(f"powercut: FAIL: {message}", flush=True)
        self.failures.append(message)

    def judge_state(self, b):
        """The state this boot found: good, or failures recorded."""
        state = b.state()
        if state is None:
            self.fail(f"{b.name}: the guest reported no state (console: {self.tail(b)})")
            return None
        for problem in b.state_problems():
            self.fail(f"{b.name}: {problem}")
        if state.get("independent") == "FAIL" and not b.state_problems():
            self.fail(f"{b.name}: the independent check failed")
        if state.get("cache") == "present" and state.get("current") != "none" and state.get("verify") != "0":
            self.fail(f"{b.name}: generation {state['current']} is current but `outpost cache verify` exited {state['verify']}")
        return state

    def tail(self, b, n=12):
        return " | ".join(l for _, l in b.lines[-n:])

    def describe(self, state):
        if state is None:
            return "no state"
        if state.get("cache") == "none":
            return "no cache yet"
        return (f"current={state['current']} generations=[{state.get('generations', '')}] floor={state['floor']} "
                f"blobs={state['blobs']} partial={state['partial']} verify={state['verify']} independent={state['independent']}")

    def last_log(self, b, before):
        logs = [text for t, text in b.logs() if b.start_time is not None and t - b.start_time <= before]
        return logs[-1][:110] if logs else "(nothing logged yet)"

    def expect_service(self, b, what, frames=1):
        """An uncut boot service run: exit 0 and its JSON lines."""
        code = b.exit_code()
        objects = []
        for line in b.stdout():
            try:
                objects.append(json.loads(line))
            except ValueError:
                self.fail(f"{b.name}: not JSON: {line[:100]}")
        if code != 0 or not b.finished():
            self.fail(f"{b.name}: {what} exited {code} (console: {self.tail(b)})")
        elif len(objects) < frames or not all(isinstance(o.get("predictions"), list) for o in objects):
            self.fail(f"{b.name}: {what}: {len(objects)} prediction lines, expected {frames}")
        return objects

    def run(self):
        a = self.args
        print(f"powercut: seed {a.seed} (OUTPOST_POWERCUT_SEED={a.seed} repeats the cut points), {a.cuts} cuts, "
              f"stick read at {a.stick_bps // 1024} KiB/s", flush=True)
        started = time.monotonic()

        # 1. Calibration.
        calib = self.boot("calibrate", "service", "/etc/outpost/models-v1.toml", self.fresh_flash("calibration"))
        self.expect_service(calib, "the uncut boot service")
        span = calib.provisioned_at()
        if span is None:
            self.fail(f"calibration: provisioning never completed (console: {self.tail(calib)})")
            return self.report(started)
        print(f"powercut: calibration: provisioning took {span:.1f}s after the service started; "
              f"boot to start {calib.start_time - calib.lines[0][0]:.1f}s", flush=True)
        os.remove(os.path.join(a.work, "calibration.img"))

        # 2. Cuts.
        cycle, mid, boots, after_complete = 1, 0, 0, False
        flash = self.fresh_flash("flash")
        rows = []
        waiting = None  # the row of the last cut, until a boot on its flash reports what it found
        while mid < a.cuts and boots < 3 * a.cuts:
            boots += 1
            if after_complete:
                # The last boot finished provisioning before its cut: boot once uncut to check
                # what it left, then begin a new cycle on a fresh flash.
                b = self.boot(f"cycle{cycle}-settle", "service", "/etc/outpost/models-v1.toml", flash)
                waiting["found"], waiting = self.describe(self.judge_state(b)), None
                self.expect_service(b, "the boot after a cut past provisioning")
                cycle += 1
                flash = self.fresh_flash("flash")
                after_complete = False
                continue
            cut = self.rng.uniform(0.03, 1.0) * span
            b = self.boot(f"cycle{cycle}-cut{boots}", "service", "/etc/outpost/models-v1.toml", flash, cut_after=cut)
            state = self.judge_state(b)
            if waiting:
                waiting["found"], waiting = self.describe(state), None
            if b.killed_at is None:
                self.fail(f"{b.name}: the guest ended before its cut at {cut:.1f}s (console: {self.tail(b)})")
                break
            done_at = b.provisioned_at()
            landed = "mid-provisioning" if done_at is None else f"after provisioning (done at {done_at:.1f}s)"
            if done_at is None:
                mid += 1
            else:
                after_complete = True
            waiting = {"boot": b.name, "cut": b.killed_at, "landed": landed, "doing": self.last_log(b, b.killed_at), "found": None}
            rows.append(waiting)
            print(f"powercut: {b.name}: found {self.describe(state)}; cut at {b.killed_at:.2f}s "
                  f"({b.killed_at / span:.0%} of a full provisioning), {landed}; outpost was at: {rows[-1]['doing']}", flush=True)
        if mid < a.cuts:
            self.fail(f"only {mid} of {a.cuts} cuts landed mid-provisioning in {boots} boots")

        # 3. The flash of the last cut boots uncut: provisioning resumes and completes.
        b = self.boot("resume", "service", "/etc/outpost/models-v1.toml", flash)
        state = self.judge_state(b)
        if waiting:
            waiting["found"] = self.describe(state)
        self.expect_service(b, "the boot service after the last cut")
        print(f"powercut: resume: found {self.describe(state)}; exit {b.exit_code()}; "
              f"{'provisioned' if b.provisioned_at() is not None else 'NOT provisioned'}", flush=True)

        # 4, 5. Cuts while `current` switches, each followed by a boot with the old seed manifest.
        for kind, arg in (("switch", "/etc/outpost/models-v2.toml"), ("bundle", "/media/stick/v3.tar")):
            b = self.boot(f"{kind}-cut", kind, arg, flash)
            self.judge_state(b)
            recorded = [t for t in b.marked() if t[1].startswith("cutting when")]
            if b.finished() or b.start_time is None:
                self.fail(f"{b.name}: the guest was not cut at the switch (console: {self.tail(b)})")
            after = self.boot(f"{kind}-old-seed", "service", "/etc/outpost/models-v1.toml", flash)
            state = self.judge_state(after)
            objects = self.expect_service(after, "the boot service with the old seed manifest")
            ran = [text for _, text in after.logs() if "superseded" in text or "generation" in text]
            print(f"powercut: {kind}: {recorded[0][1] if recorded else '?'}; outpost was at: "
                  f"{self.last_log(b, 1e9)}; the next boot found {self.describe(state)}; the v1 seed boot "
                  f"exited {after.exit_code()} with {len(objects)} prediction line(s)"
                  + (f"; it said: {ran[-1][:140]}" if ran else ""), flush=True)
            if state and state.get("current") == "none":
                self.fail(f"{kind}: no generation current after the cut")

        # 6. Offline: the stick is gone; the camera through the model.
        b = self.boot("offline", "offline", "/etc/outpost/models-v1.toml", flash, stick=False)
        state = self.judge_state(b)
        objects = self.expect_service(b, "the offline camera run", frames=3)
        sources = {o.get("source") for o in objects}
        if objects and sources != {"v4l2:///dev/video0"}:
            self.fail(f"offline: JSON lines from {sources}, expected the vivid camera")
        print(f"powercut: offline: found {self.describe(state)}; exit {b.exit_code()}; {len(objects)} JSON lines "
              f"from {sorted(s for s in sources if s)}", flush=True)
        return self.report(started, rows)

    def report(self, started, rows=()):
        print(f"\npowercut: {len(rows)} cuts during provisioning boots, {self.boots} boots, {time.monotonic() - started:.0f}s")
        for r in rows:
            print(f"  {r['boot']:<16} cut {r['cut']:6.2f}s  {r['landed']:<34} doing: {r['doing']}\n"
                  f"  {'':<16} next boot found: {r['found']}")
        if self.failures:
            print(f"powercut: {len(self.failures)} FAILURE(S):\n  " + "\n  ".join(self.failures))
            return 1
        print("powercut: PASS: no corrupt blob or broken generation after any cut; old seeds boot; offline camera runs")
        return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tools", required=True)
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--stick", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--cuts", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stick-bps", type=int, default=int(os.environ.get("OUTPOST_POWERCUT_STICK_BPS", 4 << 20)))
    sys.exit(Harness(p.parse_args()).run())


if __name__ == "__main__":
    main()
