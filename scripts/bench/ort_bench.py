#!/usr/bin/env python3
"""onnxruntime side of scripts/bench-inference.sh: time session.run on one prepared input.

usage: ort_bench.py MODEL HEIGHT WIDTH THREADS RUNS IMAGE    prints one JSON line
"""
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from make_references import session  # same fair session setup as the parity references

model, h, w, threads, runs, image = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
t0 = time.perf_counter()
sess = session(model, [1, 3, h, w], threads=threads)
load_s = time.perf_counter() - t0
img = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
x = np.ascontiguousarray((cv2.resize(img, (w, h)).astype(np.float32) / 255).transpose(2, 0, 1)[None])
feed = {sess.get_inputs()[0].name: x}
t1 = time.perf_counter()
sess.run(None, feed)
first = time.perf_counter() - t1
times = []
for _ in range(runs):
    t = time.perf_counter()
    sess.run(None, feed)
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(json.dumps({"model": model, "threads": threads, "input": [w, h], "load_s": load_s, "first_run_s": first,
                  "runs": runs, "median_ms": times[round((len(times) - 1) * 0.5)],
                  "p90_ms": times[round((len(times) - 1) * 0.9)], "min_ms": times[0]}))
