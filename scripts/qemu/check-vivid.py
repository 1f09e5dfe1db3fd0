#!/usr/bin/env python3
"""Reads a vivid guest's serial console log and checks that `outpost doctor` describes the vivid
camera, and, for each pixel format's `outpost run`: exit 0, >= 20 frames captured and converted,
>= 6 through the model, frames dropped (counted) while inference ran, and well-formed
Roboflow-shaped JSON lines for 640x480 frames. UNPLUG is a YUYV run during which the camera is
unplugged (vivid's Disconnect control): outpost must log it, reopen the device and finish its 6
frames.

    check-vivid.py CONSOLE_LOG FORMAT...
"""
import json
import re
import sys

MARK = "OUTPOST-VIVID: "


def sections(lines):
    out, current, kind = {}, None, None
    for line in lines:
        if line.startswith(MARK):
            words = line[len(MARK):].split()
            if words[0] == "begin":
                current = out.setdefault(words[1], {"stdout": [], "stderr": [], "exit": None})
                kind = None
            elif words[0] == "exit" and current is not None:
                current["exit"] = int(words[2])
            elif words[0] in ("stdout", "stderr"):
                kind = words[0]
            elif words[0] == "end":
                current, kind = None, None
            continue
        if current is not None and kind:
            current[kind].append(line)
    return out


def check(fmt, run, lines):
    problems = []
    err = "\n".join(run["stderr"])
    negotiated = "YUYV" if fmt == "UNPLUG" else fmt
    if run["exit"] != 0:
        problems.append(f"exit code {run['exit']}")
    if not re.search(rf"camera /dev/video0: .*{negotiated} 640x480", err):
        problems.append(f"no negotiation line for {negotiated} 640x480")
    if fmt == "UNPLUG":
        if MARK + "unplug vivid-disconnect: /dev/video0 unplugged" not in lines:
            problems.append("the camera was not unplugged")
        if not re.search(r"/dev/video0: .*; reopening in \d+s", err):
            problems.append("no reopening line after the unplug")
        if "camera /dev/video0 is back" not in err:
            problems.append("the camera was not reopened")
    summary = [l for l in run["stderr"] if "summary" in l]
    counts = dict(re.findall(r"(\w+)=([\d.]+)", summary[-1])) if summary else {}
    if not counts:
        problems.append("no summary line")
    else:
        if int(counts["frames_captured"]) < 20:
            problems.append(f"only {counts['frames_captured']} frames captured")
        if int(counts["frames_processed"]) < 6:
            problems.append(f"only {counts['frames_processed']} frames processed")
        if int(counts["frames_dropped"]) < 1:
            problems.append("no frame dropped while inference ran")
    objects = []
    for line in run["stdout"]:
        line = line.strip()
        if not line:
            continue
        try:
            objects.append(json.loads(line))
        except ValueError as e:
            problems.append(f"not JSON ({e}): {line[:120]}")
    wanted = 6
    if len(objects) < wanted:
        problems.append(f"{len(objects)} JSON lines, expected >= {wanted}")
    for o in objects:
        if o.get("image") != {"width": 640, "height": 480} or not isinstance(o.get("predictions"), list):
            problems.append(f"unexpected object: {str(o)[:160]}")
        if o.get("source") != "v4l2:///dev/video0" or not isinstance(o.get("frame_id"), int):
            problems.append(f"no source/frame_id: {str(o)[:160]}")
    ids = [o.get("frame_id") for o in objects]
    if ids != sorted(ids):
        problems.append(f"frame ids out of order: {ids}")
    print(f"check-vivid: {fmt}: " + (", ".join(f"{k}={counts[k]}" for k in ("frames_captured", "frames_processed", "frames_dropped", "capture_errors", "infer_ms", "convert_ms") if k in counts) or "no counts") + f", {len(objects)} JSON lines, frame ids {ids}")
    return problems


def main():
    path, formats = sys.argv[1], sys.argv[2:]
    lines = open(path, errors="replace").read().splitlines()
    runs = sections(lines)
    failed = False
    doctor = [l for l in lines if l.startswith(MARK + "doctor")]
    if not doctor or "/dev/video0: vivid" not in doctor[0] or "YUYV" not in doctor[0]:
        print(f"check-vivid: `outpost doctor` did not describe the vivid camera: {doctor}", file=sys.stderr)
        failed = True
    else:
        print("check-vivid: " + doctor[0][len(MARK):])
    for fmt in formats:
        if fmt not in runs:
            print(f"check-vivid: {fmt}: the guest never ran it", file=sys.stderr)
            failed = True
            continue
        problems = check(fmt, runs[fmt], lines)
        if problems:
            failed = True
            print(f"check-vivid: {fmt} FAILED: " + "; ".join(problems), file=sys.stderr)
            print("\n".join(runs[fmt]["stderr"][-40:]), file=sys.stderr)
    if failed:
        print("check-vivid: console log tail:\n" + "\n".join(lines[-60:]), file=sys.stderr)
        sys.exit(1)
    print("check-vivid: all formats passed")


if __name__ == "__main__":
    main()
