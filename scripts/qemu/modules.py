#!/usr/bin/env python3
"""Copies a kernel module and everything it depends on, in load order, into an initramfs tree.

    modules.py MODULES_DIR OUT_DIR MODULE...

MODULES_DIR is an unpacked /lib/modules/<version> of Debian's kernel package, which ships no
modules.dep (depmod runs at install time), so the dependencies are read from each module's own
.modinfo `depends=` string. OUT_DIR/modules gets the .ko files and OUT_DIR/modules.order the
names in an order busybox `insmod` can follow (dependencies first).
"""
import os
import re
import shutil
import sys


def index(modules_dir):
    found = {}
    for root, _, files in os.walk(modules_dir):
        for name in files:
            if name.endswith(".ko"):
                found[name[:-3].replace("-", "_")] = os.path.join(root, name)
    return found


def depends(path):
    data = open(path, "rb").read()
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def main():
    modules_dir, out_dir, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
    known = index(modules_dir)
    order, seen = [], set()

    def visit(name, chain):
        if name in seen:
            return
        if name not in known:
            sys.exit(f"modules.py: module {name} (needed by {' <- '.join(chain) or 'request'}) not found in {modules_dir}")
        for dep in depends(known[name]):
            visit(dep, chain + [name])
        seen.add(name)
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"), [])
    os.makedirs(os.path.join(out_dir, "modules"), exist_ok=True)
    with open(os.path.join(out_dir, "modules.order"), "w") as f:
        for name in order:
            shutil.copy(known[name], os.path.join(out_dir, "modules", name + ".ko"))
            f.write(name + "\n")
    print(" ".join(order))


if __name__ == "__main__":
    main()
