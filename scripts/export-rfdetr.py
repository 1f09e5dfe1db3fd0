#!/usr/bin/env python3
"""The RF-DETR fixture: rfdetr's own architecture and ONNX exporter, random seeded weights, shrunk.

usage: export-rfdetr.py FIXTURES_DIR
  writes FIXTURES_DIR/rfdetr_random.onnx and FIXTURES_DIR/reference/rfdetr_chelsea.json

For regeneration only, not CI: the install is ~6 GB (rfdetr pulls CUDA torch):
  python3 -m venv /tmp/rfdetr && /tmp/rfdetr/bin/pip install rfdetr==1.11.2 onnxruntime==1.20.1
  /tmp/rfdetr/bin/python scripts/export-rfdetr.py tests/fixtures

The model: RF-DETR Nano's configuration (patch 16, 2 windows, 384x384, 2 decoder layers, two-stage
query selection, 300 queries, 91 class slots = COCO category ids) as rfdetr builds it from its
shipped config, with the DINOv2 backbone shrunk to 4 layers of width 96 and the decoder to width
64, so the file is ~5 MB instead of ~107 MB. No hub download (HF_HUB_OFFLINE=1,
pretrain_weights=None): every weight is torch's seeded initialisation, then the class and box heads
are perturbed (seeded) so that scores spread (about 20 query x class pairs above 0.4 on the fixture
images) and boxes vary in size.

The reference: onnxruntime 1.20.1 runs the exported file on chelsea.png placed top-left on a
384x384 black canvas (no resize, /255, ImageNet mean/std: the tensor tests/parity.rs rebuilds),
and rfdetr's own PostProcess turns its outputs into detections: per-class sigmoid, top-300 over
query x class, cxcywh to corners scaled to the canvas and clamped.
"""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = 384
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build():
    torch.manual_seed(0)
    from rfdetr.models.backbone import dinov2

    shipped = dinov2.get_config

    def shrunk(size, use_registers):
        config = shipped(size, use_registers)
        config.update(hidden_size=96, num_attention_heads=3, num_hidden_layers=4)
        return config

    dinov2.get_config = shrunk
    dinov2.size_to_width["small"] = 96
    from rfdetr import RFDETRNano

    model = RFDETRNano(pretrain_weights=None, hidden_dim=64, sa_nheads=4, ca_nheads=4,
                       out_feature_indexes=[1, 2, 3, 4], num_classes=90, device="cpu")
    net = model.model.model
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "class_embed" in name:
                if name.endswith("weight"):
                    p.mul_(3.0)
                else:
                    p.add_(torch.randn(p.shape, generator=g) * 1.0 - 1.5)
            elif "bbox_embed" in name and ".layers.2." in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.1 if name.endswith("weight") else 1.0))
    return model


def placed_chelsea(fixtures):
    img = np.asarray(Image.open(os.path.join(fixtures, "images", "chelsea.png")).convert("RGB"))
    canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
    h, w = min(SIZE, img.shape[0]), min(SIZE, img.shape[1])
    canvas[:h, :w] = img[:h, :w]
    x = canvas.astype(np.float32) * (1 / 255)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def main():
    fixtures = sys.argv[1]
    out_dir = os.path.join(fixtures, ".rfdetr-export")
    path = build().export(output_dir=out_dir, verbose=False, shape=(SIZE, SIZE))
    model_path = os.path.join(fixtures, "rfdetr_random.onnx")
    os.replace(path, model_path)
    os.rmdir(out_dir)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    dets, logits = sess.run(None, {sess.get_inputs()[0].name: placed_chelsea(fixtures)})

    from rfdetr.models.postprocess import PostProcess

    results = PostProcess(num_select=300)(
        {"pred_logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(dets)},
        torch.tensor([[SIZE, SIZE]]),
    )[0]
    keep = results["scores"] > 0.4
    detections = [
        {"label": int(label), "score": float(score), "x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3])}
        for score, label, b in zip(results["scores"][keep], results["labels"][keep], results["boxes"][keep])
    ]
    reference = {
        "reference": "rfdetr 1.11.2 PostProcess(num_select=300) on onnxruntime 1.20.1 outputs; scores > 0.4",
        "model": "rfdetr_random.onnx",
        "image": "chelsea.png",
        "input": {"height": SIZE, "width": SIZE, "pad": 0, "scale": 1 / 255, "mean": list(MEAN), "std": list(STD),
                  "placement": "top-left, no resize"},
        "outputs": [{"name": o.name, "shape": list(v.shape)} for o, v in zip(sess.get_outputs(), (dets, logits))],
        "detections": detections,
    }
    with open(os.path.join(fixtures, "reference", "rfdetr_chelsea.json"), "w") as f:
        json.dump(reference, f, indent=1)
    print(f"{model_path}: {os.path.getsize(model_path)} bytes; {len(detections)} detections above 0.4")


if __name__ == "__main__":
    main()
