#!/usr/bin/env python3
"""Export a YOLOv8n-architecture ONNX graph with random (seeded) weights.

The graph follows Ultralytics' yolov8n.yaml (width 0.25, depth 0.33) as `yolo export format=onnx`
writes it with BatchNorm fused into the convolutions: Conv+SiLU blocks, C2f, SPPF, the FPN/PAN
head, and the Detect head with DFL decoding and anchor/stride scaling. Input `images`
[1,3,640,640], output `output0` [1,84,8400] (cx, cy, w, h in input pixels, then 80 class scores).

The weights are random, so its detections are meaningless: it exists to exercise a real YOLOv8
graph and output layout without shipping a trained model's licence. Deterministic for pinned
numpy/onnx versions (see scripts/requirements-fixtures.txt), so fetch-fixtures.sh can check its
sha256.

usage: export-yolov8n.py OUTPUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NC = 80
REG_MAX = 16
STRIDES = (8, 16, 32)
SIZE = 640
CLS_GAIN, CLS_BIAS = 20.0, -6.0


class Graph:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"/{prefix}_{self.n}"

    def const(self, array, prefix="c"):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv2d(self, x, c1, c2, k=1, s=1, w_gain=1.0, bias=0.0):
        # He-style scale keeps activations in a sane range through 100+ random layers.
        w = self.rng.normal(0, w_gain * np.sqrt(2.0 / (c1 * k * k)), (c2, c1, k, k)).astype(np.float32)
        b = (bias + self.rng.normal(0, 0.1, (c2,))).astype(np.float32)
        p = k // 2
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")],
                       kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])

    def conv(self, x, c1, c2, k=1, s=1):
        """Ultralytics Conv: Conv2d + BatchNorm (fused) + SiLU, exported as x * sigmoid(x)."""
        y = self.conv2d(x, c1, c2, k, s)
        return self.op("Mul", [y, self.op("Sigmoid", [y])])

    def bottleneck(self, x, c, shortcut):
        y = self.conv(self.conv(x, c, c, 3), c, c, 3)
        return self.op("Add", [x, y]) if shortcut else y

    def c2f(self, x, c1, c2, n, shortcut):
        c = c2 // 2
        y = self.conv(x, c1, 2 * c, 1)
        split = self.const(np.array([c, c], dtype=np.int64), "split")
        a, b = self.name("split_a"), self.name("split_b")
        self.nodes.append(helper.make_node("Split", [y, split], [a, b], axis=1, name=a + "_node"))
        parts = [a, b]
        for _ in range(n):
            parts.append(self.bottleneck(parts[-1], c, shortcut))
        return self.conv(self.op("Concat", parts, axis=1), (2 + n) * c, c2, 1)

    def sppf(self, x, c1, c2):
        c = c1 // 2
        y = [self.conv(x, c1, c, 1)]
        for _ in range(3):
            y.append(self.op("MaxPool", [y[-1]], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]))
        return self.conv(self.op("Concat", y, axis=1), 4 * c, c2, 1)

    def upsample(self, x):
        scales = self.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
        return self.op("Resize", [x, "", scales], mode="nearest")


def anchors():
    points, strides = [], []
    for s in STRIDES:
        h = w = SIZE // s
        sx = np.arange(w, dtype=np.float32) + 0.5
        sy = np.arange(h, dtype=np.float32) + 0.5
        yy, xx = np.meshgrid(sy, sx, indexing="ij")
        points.append(np.stack([xx, yy], -1).reshape(-1, 2))
        strides.append(np.full((h * w, 1), s, dtype=np.float32))
    return np.concatenate(points).T[None], np.concatenate(strides).T[None]  # [1,2,8400], [1,1,8400]


def build():
    g = Graph(seed=0)
    x = "images"
    x = g.conv(x, 3, 16, 3, 2)
    x = g.conv(x, 16, 32, 3, 2)
    x = g.c2f(x, 32, 32, 1, True)
    x = g.conv(x, 32, 64, 3, 2)
    p3 = g.c2f(x, 64, 64, 2, True)
    x = g.conv(p3, 64, 128, 3, 2)
    p4 = g.c2f(x, 128, 128, 2, True)
    x = g.conv(p4, 128, 256, 3, 2)
    x = g.c2f(x, 256, 256, 1, True)
    p5 = g.sppf(x, 256, 256)

    h12 = g.c2f(g.op("Concat", [g.upsample(p5), p4], axis=1), 384, 128, 1, False)
    h15 = g.c2f(g.op("Concat", [g.upsample(h12), p3], axis=1), 192, 64, 1, False)
    h18 = g.c2f(g.op("Concat", [g.conv(h15, 64, 64, 3, 2), h12], axis=1), 192, 128, 1, False)
    h21 = g.c2f(g.op("Concat", [g.conv(h18, 128, 128, 3, 2), p5], axis=1), 384, 256, 1, False)

    c2, c3 = max(16, 64 // 4, REG_MAX * 4), max(64, min(NC, 100))
    levels = []
    for feat, ch in ((h15, 64), (h18, 128), (h21, 256)):
        box = g.conv2d(g.conv(g.conv(feat, ch, c2, 3), c2, c2, 3), c2, 4 * REG_MAX, 1)
        # Spread the class logits and bias them negative, as a trained head is, so that only a
        # small share of anchors passes a 0.4 confidence threshold and NMS has real work to do.
        cls = g.conv2d(g.conv(g.conv(feat, ch, c3, 3), c3, c3, 3), c3, NC, 1, w_gain=CLS_GAIN, bias=CLS_BIAS)
        y = g.op("Concat", [box, cls], axis=1)
        levels.append(g.op("Reshape", [y, g.const(np.array([1, 4 * REG_MAX + NC, -1], dtype=np.int64), "shape")]))
    y = g.op("Concat", levels, axis=2)  # [1,144,8400]

    split = g.const(np.array([4 * REG_MAX, NC], dtype=np.int64), "split")
    box, cls = g.name("box"), g.name("cls")
    g.nodes.append(helper.make_node("Split", [y, split], [box, cls], axis=1, name=box + "_node"))

    # DFL: softmax over the 16 bins of each side, expectation via a 1x1 conv with weights 0..15.
    b = g.op("Reshape", [box, g.const(np.array([1, 4, REG_MAX, -1], dtype=np.int64), "shape")])
    b = g.op("Softmax", [g.op("Transpose", [b], perm=[0, 2, 1, 3])], axis=1)
    dfl_w = g.const(np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1), "dfl")
    b = g.op("Conv", [b, dfl_w], kernel_shape=[1, 1])
    dist = g.op("Reshape", [b, g.const(np.array([1, 4, -1], dtype=np.int64), "shape")])

    anchor_points, stride_tensor = anchors()
    lt, rb = g.name("lt"), g.name("rb")
    g.nodes.append(helper.make_node("Split", [dist, g.const(np.array([2, 2], dtype=np.int64), "split")],
                                    [lt, rb], axis=1, name=lt + "_node"))
    ap = g.const(anchor_points, "anchors")
    x1y1 = g.op("Sub", [ap, lt])
    x2y2 = g.op("Add", [ap, rb])
    cxy = g.op("Div", [g.op("Add", [x1y1, x2y2]), g.const(np.array(2, dtype=np.float32), "two")])
    wh = g.op("Sub", [x2y2, x1y1])
    dbox = g.op("Mul", [g.op("Concat", [cxy, wh], axis=1), g.const(stride_tensor, "strides")])
    out = g.op("Concat", [dbox, g.op("Sigmoid", [cls])], axis=1)
    g.nodes.append(helper.make_node("Identity", [out], ["output0"], name="output0_node"))

    graph = helper.make_graph(
        g.nodes, "yolov8n_random",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + NC, 8400])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="outpost/scripts/export-yolov8n.py")
    model.ir_version = 8
    model.metadata_props.append(onnx.StringStringEntryProto(
        key="note", value="YOLOv8n architecture with random weights: detections are meaningless"))
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model = build()
    with open(sys.argv[1], "wb") as f:
        f.write(model.SerializeToString())
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {sys.argv[1]}: {len(model.graph.node)} nodes, {params} parameters")
