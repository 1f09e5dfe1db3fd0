#!/usr/bin/env python3
"""Write small ONNX graphs whose outputs are constants, for decoder edge cases.

Each graph takes an image input `images` and returns fixed tensors (the input only feeds a
`0 * mean(images)` term, so the graph stays connected and every output is exact): NaN and
infinite scores, inside-out boxes, hostile declared input shapes, a wrong family. The tests in
tests/decoding.rs run the real binary on them; the expected answers follow from the constants.
Deterministic for the pinned numpy/onnx (scripts/requirements-fixtures.txt): fetch-fixtures.sh
re-derives them and checks tests/fixtures/SHA256SUMS.

usage: make-crafted-models.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAN, INF = float("nan"), float("inf")


def constant_model(path, outputs, input_shape=(1, 3, 64, 64), input_type=TensorProto.FLOAT, output_type=TensorProto.FLOAT):
    """outputs: list of (name, numpy array). Each output = array + 0 * mean(images), cast to
    `output_type`; the input is `images` of `input_type`."""
    nodes = [
        helper.make_node("Cast", ["images"], ["images_f32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["images_f32"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    outs = []
    for name, array in outputs:
        array = np.asarray(array, dtype=np.float32)
        inits.append(numpy_helper.from_array(array, f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [f"{name}_f32"]))
        nodes.append(helper.make_node("Cast", [f"{name}_f32"], [name], to=output_type))
        outs.append(helper.make_tensor_value_info(name, output_type, list(array.shape)))
    graph = helper.make_graph(
        nodes,
        "crafted",
        [helper.make_tensor_value_info("images", input_type, list(input_shape))],
        outs,
        inits,
    )
    model = helper.make_model(graph, producer_name="outpost-crafted", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def yolov8_head(classes, anchors, rows):
    """[1, 4 + classes, anchors] with the given (anchor, cx, cy, w, h, class, score) rows."""
    out = np.zeros((1, 4 + classes, anchors), dtype=np.float32)
    for i, cx, cy, w, h, c, score in rows:
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + c, i] = score
    return out


def colour_classifier(path):
    """A real (if tiny) classifier that reads the image: the mean of each channel, scaled, then
    softmax over classes red, green, blue. Different images get different answers, so `serve`'s
    classification can be compared with `detect` on real pictures."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
        helper.make_node("MatMul", ["means", "weight"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    weight = numpy_helper.from_array((np.eye(3) * 20.0).astype(np.float32), "weight")
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, producer_name="outpost-crafted", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    at = lambda name: os.path.join(outdir, name)

    # YOLOv8 at 64x64: a good box, then NaN centre, infinite score, negative width, and a box
    # running off the input (clamped).
    constant_model(at("yolov8_nonfinite.onnx"), [("output0", yolov8_head(3, 84, [
        (0, 20.0, 20.0, 10.0, 10.0, 0, 0.9),
        (1, NAN, 20.0, 10.0, 10.0, 1, 0.9),
        (2, 30.0, 30.0, 10.0, 10.0, 1, INF),
        (3, 40.0, 40.0, -10.0, 10.0, 2, 0.8),
        (4, 60.0, 10.0, 20.0, 10.0, 2, 0.7),
    ]))])

    # DETR: 4 queries x 2 classes with NaN logits and a NaN box.
    boxes = np.array([[[0.5, 0.5, 0.2, 0.2], [NAN, 0.5, 0.1, 0.1], [0.25, 0.25, 0.1, 0.1], [0.75, 0.75, 0.1, 0.1]]])
    logits = np.array([[[NAN, 2.0], [3.0, 3.0], [4.0, NAN], [NAN, NAN]]])
    constant_model(at("detr_nan.onnx"), [("dets", boxes), ("labels", logits)])

    # Classification with one +Inf logit: that class at 1.0.
    constant_model(at("classification_inf.onnx"), [("probs", np.array([[0.5, INF, 1.0, NAN]]))])

    # YOLOv8 layouts the longer-axis guess got wrong: 600 classes at 160x160 ([1, 604, 525]) and
    # 80 classes at 32x32 ([1, 84, 21]); one box each.
    constant_model(at("yolov8_600classes_160.onnx"), [("output0", yolov8_head(600, 525, [
        (3, 80.0, 80.0, 40.0, 20.0, 599, 0.8),
    ]))], input_shape=(1, 3, 160, 160))
    constant_model(at("yolov8_80classes_32.onnx"), [("output0", yolov8_head(80, 21, [
        (5, 16.0, 16.0, 8.0, 8.0, 7, 0.9),
    ]))], input_shape=(1, 3, 32, 32))

    # End-to-end head (YOLOv10 / YOLO26): [1, 300, 6] rows x1, y1, x2, y2, score, class.
    e2e = np.zeros((1, 300, 6), dtype=np.float32)
    e2e[0, 0] = (8.0, 8.0, 24.0, 40.0, 0.9, 2.0)
    e2e[0, 1] = (0.0, 0.0, 4.0, 4.0, 0.1, 1.0)
    constant_model(at("yolo_end2end.onnx"), [("output0", e2e)])

    # Output and input types other than float32: float16 and int64 outputs, a uint8 input.
    constant_model(at("classification_f16.onnx"), [("probs", np.array([[0.1, 0.7, 0.2]]))], output_type=TensorProto.FLOAT16)
    constant_model(at("output_int64.onnx"), [("probs", np.array([[1, 2, 3]]))], output_type=TensorProto.INT64)
    constant_model(at("input_uint8.onnx"), [("probs", np.array([[0.1, 0.9]]))], input_type=TensorProto.UINT8)

    # A classifier that depends on the image (classes red, green, blue).
    colour_classifier(at("colour_classifier.onnx"))

    # Hostile declared inputs: zero-sized and 100000x100000.
    head = [("output0", yolov8_head(1, 84, []))]
    constant_model(at("input_zero.onnx"), head, input_shape=(1, 3, 0, 0))
    constant_model(at("input_huge.onnx"), head, input_shape=(1, 3, 100000, 100000))
    constant_model(at("input_nhwc.onnx"), head, input_shape=(1, 64, 64, 3))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
