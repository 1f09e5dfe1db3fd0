#!/usr/bin/env python3
"""Drives `outpost serve` with the real, unmodified `inference-sdk` client (and `supervision`),
as tests/serve_sdk.rs starts it. Every answer is compared with `outpost detect` run on exactly
the bytes the client sent (the client's own encoder produces them), boxes within 0.5 px.

usage: check_client.py KEYLESS_ADDR KEYED_ADDR KEY IMAGES_DIR WORK_DIR ROBOFLOW_KEY
  (the environment carries OUTPOST_BIN and the sandbox's OUTPOST_* variables for `detect`)
Prints one `ok: ...` line per check; any failure raises (non-zero exit).
"""
import asyncio
import base64
import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import supervision as sv
from PIL import Image
from inference_sdk import InferenceConfiguration, InferenceHTTPClient
from inference_sdk.http.entities import VisualisationResponseFormat
from inference_sdk.http.errors import HTTPCallErrorError
from inference_sdk.http.utils.loaders import load_static_inference_input

warnings.simplefilter("ignore")  # the SDK's one-time guidance warning about key transport

KEYLESS, KEYED, KEY, IMAGES, WORK, ROBOFLOW_KEY = sys.argv[1:7]
ASTRONAUT = os.path.join(IMAGES, "astronaut.png")
COFFEE = os.path.join(IMAGES, "coffee.png")
CHELSEA = os.path.join(IMAGES, "chelsea.png")
FACES = "faces-demo/1"  # a roboflow:faces-demo/1 manifest entry (CenterFace weights)


def ok(what):
    print(f"ok: {what}", flush=True)


def detect(model, sent_b64, name):
    """`outpost detect` on the bytes the client sent, with the server's default thresholds."""
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(base64.b64decode(sent_b64))
    out = subprocess.run(
        [os.environ["OUTPOST_BIN"], "detect", "--model", model, "--confidence", "0.4", "--iou", "0.3",
         "--max-detections", "300", path],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.splitlines()[0])


def sent(image):
    """What the client puts on the wire for `image` (no downsizing): its own encoder."""
    [(b64, _)] = load_static_inference_input(image)
    return b64


def same(served, detected, what, scale=1.0, tolerance=0.5):
    assert served["image"] == {k: round(v * scale) for k, v in detected["image"].items()} or scale != 1.0, (what, served["image"], detected["image"])
    a, b = served["predictions"], detected["predictions"]
    assert len(a) == len(b), (what, a, b)
    for p, q in zip(a, b):
        assert p["class"] == q["class"] and p["class_id"] == q["class_id"], (what, p, q)
        for k in ("x", "y", "width", "height"):
            if k in q:
                assert abs(p[k] - q[k] * scale) <= tolerance, (what, k, p, q)
    ok(what)


def expect_error(status, call, what):
    try:
        call()
    except HTTPCallErrorError as e:
        assert e.status_code == status, (what, e.status_code, e.api_message)
        ok(f"{what}: HTTP {status} ({e.api_message})")
        return e
    raise AssertionError(f"{what}: no error")


client = InferenceHTTPClient(api_url=f"http://{KEYLESS}", api_key="any-key-works-without-serve.api_keys")

info = client.get_server_info()
assert info.name == "outpost" and info.version and info.uuid, info
ok("get_server_info")

# An alias is de-aliased by the client: yolov8n-640 arrives as coco/3, from the cache.
loaded = client.load_model(model_id="yolov8n-640")
assert [m.model_id for m in loaded.models] == ["coco/3"], loaded
assert loaded.models[0].task_type == "object-detection" and loaded.models[0].input_width == 640
ok("load_model (alias yolov8n-640 -> coco/3, from the cache)")
listed = client.list_loaded_models()
assert [m.model_id for m in listed.models] == ["coco/3"], listed
ok("list_loaded_models")

# infer on a path (the file's own bytes), a numpy BGR array and a PIL image (client-side JPEG).
r = client.infer(ASTRONAUT, model_id=FACES)
assert r["predictions"], r
same(r, detect(FACES, sent(ASTRONAUT), "path.png"), "infer(path)")
bgr = cv2.imread(ASTRONAUT)
same(client.infer(bgr, model_id=FACES), detect(FACES, sent(bgr), "numpy.jpg"), "infer(numpy BGR array)")
pil = Image.open(COFFEE).convert("RGB")
same(client.infer(pil, model_id=FACES), detect(FACES, sent(pil), "pil.jpg"), "infer(PIL image)")
pair = client.infer([COFFEE, ASTRONAUT], model_id=FACES)
assert isinstance(pair, list) and len(pair) == 2, pair
same(pair[0], detect(FACES, sent(COFFEE), "pair0.png"), "infer([a, b])[0]")
same(pair[1], detect(FACES, sent(ASTRONAUT), "pair1.png"), "infer([a, b])[1]")
r_async = asyncio.run(client.infer_async(ASTRONAUT, model_id=FACES))
same(r_async, detect(FACES, sent(ASTRONAUT), "async.png"), "infer_async")

# supervision parses the answer as it parses Roboflow's.
detections = sv.Detections.from_inference(r)
assert len(detections) == len(r["predictions"]), detections
p = r["predictions"][0]
assert np.allclose(detections.xyxy[0], [p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2, p["y"] + p["height"] / 2], atol=1e-3)
assert list(detections.data["class_name"]) == [q["class"] for q in r["predictions"]]
empty = client.infer(ASTRONAUT, model_id=FACES)
client.configure(InferenceConfiguration(confidence_threshold=0.999))
empty = client.infer(ASTRONAUT, model_id=FACES)
assert empty["predictions"] == [] and len(sv.Detections.from_inference(empty)) == 0, empty
client.configure(InferenceConfiguration())
ok("supervision.Detections.from_inference (with and without boxes)")

# visualize_predictions: the client decodes the annotated image the server sends.
client.configure(InferenceConfiguration(visualize_predictions=True, output_visualisation_format=VisualisationResponseFormat.NUMPY))
vis = client.infer(ASTRONAUT, model_id=FACES)
client.configure(InferenceConfiguration())
assert isinstance(vis["visualization"], np.ndarray) and vis["visualization"].shape == (512, 512, 3), type(vis["visualization"])
ok("visualize_predictions (decoded by the client)")

# Classification: the task comes from the registry.
c = client.infer(CHELSEA, model_id="colour")
d = detect("colour", sent(CHELSEA), "class.png")
assert c["top"] == d["top"] and abs(c["confidence"] - d["confidence"]) < 1e-4, (c, d)
assert [x["class"] for x in c["predictions"]] == [x["class"] for x in d["predictions"]]
ok(f"classification (top {c['top']})")

# Client-side downsizing: a 1536x1536 image goes out at the registry's size (CenterFace: none,
# so the client's default 1024) and the client scales the answer back to the image's pixels.
big = os.path.join(WORK, "astronaut_1536.png")
Image.open(ASTRONAUT).resize((1536, 1536), Image.BICUBIC).save(big)
client.configure(InferenceConfiguration(client_downsizing_disabled=False))
down = client.infer(big, model_id=FACES)
client.configure(InferenceConfiguration())
assert down["image"] == {"width": 1536, "height": 1536}, down["image"]
[(small_b64, factor)] = load_static_inference_input(big, max_height=1024, max_width=1024)
assert factor is not None and abs(factor - 1024 / 1536) < 1e-6, factor
small = detect(FACES, small_b64, "downsized.jpg")
assert small["image"] == {"width": 1024, "height": 1024} and small["predictions"], small
same(down, small, "client-side downsizing: image size and boxes in the original's pixels", scale=1 / factor, tolerance=0.5 / factor)

# The legacy v0 API (base64 body, options in the query).
client.select_api_v0()
v0 = client.infer(ASTRONAUT, model_id=FACES)
same(v0, detect(FACES, sent(ASTRONAUT), "v0.png"), "select_api_v0() infer")
client.select_api_v1()

# Errors through the real client; the server keeps answering after each.
# An uncached id is provisioned on demand with the client's key (the stand-in of Roboflow's API
# knows no `no-such/9`: 404; it rejects the key above: 403).
rf_client = InferenceHTTPClient(api_url=f"http://{KEYLESS}", api_key=ROBOFLOW_KEY)
expect_error(404, lambda: rf_client.infer(ASTRONAUT, model_id="no-such/9"), "unknown model")
expect_error(403, lambda: client.infer(ASTRONAUT, model_id="no-such/9"), "unknown model, key refused by Roboflow")
junk = base64.b64encode(b"this is not an image at all").decode()
expect_error(400, lambda: client.infer(junk, model_id=FACES), "junk image")
assert client.get_server_info().name == "outpost"

# Unloading.
after = client.unload_model(model_id=FACES)
assert FACES not in [m.model_id for m in after.models], after
client.unload_model(model_id="never/1")  # not loaded: a no-op, 200
assert client.unload_all_models().models == []
ok("unload_model, unload of an unknown model, unload_all_models")

# A keyless client (sends api_key=None) against the keyless server.
keyless = InferenceHTTPClient(api_url=f"http://{KEYLESS}")
same(keyless.infer(ASTRONAUT, model_id=FACES), detect(FACES, sent(ASTRONAUT), "keyless.png"), "keyless client")

# The keyed server: the key in headers (Authorization: Bearer) on every call, also the ones
# that carry no key in the legacy transport (/model/remove, /model/clear).
header = InferenceHTTPClient(api_url=f"http://{KEYED}", api_key=KEY)
header.configure(InferenceConfiguration(api_key_transport="header"))
same(header.infer(ASTRONAUT, model_id=FACES), detect(FACES, sent(ASTRONAUT), "header.png"), "header-transport key")
assert header.unload_model(model_id=FACES).models == []
ok("header-transport key on /model/remove")
legacy = InferenceHTTPClient(api_url=f"http://{KEYED}", api_key=KEY)
same(legacy.infer(ASTRONAUT, model_id=FACES), detect(FACES, sent(ASTRONAUT), "legacy.png"), "legacy-transport key (query and body)")
expect_error(401, lambda: InferenceHTTPClient(api_url=f"http://{KEYED}").infer(ASTRONAUT, model_id=FACES), "missing key")
expect_error(403, lambda: InferenceHTTPClient(api_url=f"http://{KEYED}", api_key="wrong").list_loaded_models(), "wrong key")
assert legacy.list_loaded_models().models
ok("all checks passed")
