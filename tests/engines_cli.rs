//! `inference.backend = "auto"` through the real binary: provisioning times tract and rten on each
//! model, checks they agree and records the faster; `detect` and `bench` use the record; `cache gc`
//! drops records of models no generation keeps; forcing an engine works.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::http::sha256_hex;
use support::{fixtures, run, Run, Unit};

const YOLO_SHA: &str = "3253521fc48bd22321314883dda29147b64e3e5ecef5b6b06e4c9dd82ee47b87";
const FACES_SHA: &str = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc";

impl Unit {
    /// `outpost` on one inference thread (records are per thread count).
    fn one_thread(&self) -> Command {
        let mut cmd = self.outpost();
        cmd.env("OUTPOST_INFERENCE_THREADS", "1");
        cmd
    }

    fn manifest(&self, version: u64, with_yolo: bool) -> PathBuf {
        let mut text = format!(
            "version = {version}\n[[models]]\nid = \"faces\"\nsource = \"file://{}\"\nsha256 = \"{FACES_SHA}\"\nsize = 7304518\n\
             family = \"centerface\"\n",
            fixtures().join("centerface.onnx").display()
        );
        if with_yolo {
            text += &format!(
                "[[models]]\nid = \"yolo\"\nsource = \"file://{}\"\nsha256 = \"{YOLO_SHA}\"\nsize = 12730365\nfamily = \"yolov8\"\n",
                fixtures().join("yolov8n_random.onnx").display()
            );
        }
        self.sandbox.write(&format!("models-v{version}.toml"), &text)
    }

    fn provision(&self, manifest: &Path) -> Run {
        let out = run(self.one_thread().arg("provision").arg("--manifest").arg(manifest));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    }

    fn record(&self, sha: &str) -> Option<Value> {
        let path = self.cache().join("engines").join(format!("{sha}-t1.json"));
        std::fs::read(path).ok().map(|b| serde_json::from_slice(&b).unwrap())
    }
}

#[test]
fn provision_measures_both_engines_and_detect_uses_the_record() {
    let unit = Unit::new();
    let out = unit.provision(&unit.manifest(1, true));
    assert!(out.stderr.contains("choosing the engine for `yolo`: tract and rten, 1 thread(s)"), "{}", out.stderr);
    for (sha, input) in [(YOLO_SHA, [640, 640]), (FACES_SHA, [640, 480])] {
        let r = unit.record(sha).unwrap_or_else(|| panic!("no engine record for {sha}"));
        assert_eq!(r["threads"], 1);
        assert_eq!(r["input"], serde_json::json!(input), "{r}");
        let (tract, rten) = (r["tract_ms"].as_f64().unwrap(), r["rten_ms"].as_f64().expect("rten ran"));
        assert!(tract > 0.0 && rten > 0.0, "{r}");
        assert!(r["max_difference"].as_f64().unwrap() < 1e-3, "the engines agree: {r}");
        let faster = if rten < tract { "rten" } else { "tract" };
        assert_eq!(r["engine"], faster, "{r}");
    }
    // A second provision of the same models measures nothing again.
    let again = unit.provision(&unit.manifest(1, true));
    assert!(!again.stderr.contains("choosing the engine"), "{}", again.stderr);

    let engine = unit.record(YOLO_SHA).unwrap()["engine"].as_str().unwrap().to_string();
    let image = fixtures().join("images/chelsea.png");
    let detect = run(unit.one_thread().args(["detect", "--model", "yolo"]).arg(&image));
    assert_eq!(detect.code, 0, "{}", detect.stderr);
    assert!(detect.stderr.contains(&format!("engine {engine} (")), "{}", detect.stderr);
    let bench = run(unit.one_thread().args(["bench", "--model", "yolo", "--runs", "1"]));
    assert_eq!(bench.code, 0, "{}", bench.stderr);
    let report: Value = serde_json::from_str(bench.stdout.trim()).unwrap();
    assert_eq!(report["backend"], engine.as_str());
    assert!(report["choice"].as_str().unwrap().starts_with("recorded at provision"), "{report}");
    let engines: Vec<&str> = report["engines"].as_array().unwrap().iter().map(|e| e["backend"].as_str().unwrap()).collect();
    assert_eq!(engines, ["tract", "rten"]);
}

#[test]
fn forced_engines_detect_the_same_objects() {
    let unit = Unit::new();
    let image = fixtures().join("images/chelsea.png");
    let model = fixtures().join("yolov8n_random.onnx");
    let detections = |engine: &str| -> Vec<(String, [f64; 4])> {
        let out = run(unit.one_thread().env("OUTPOST_INFERENCE_BACKEND", engine).args(["detect", "--model-file"]).arg(&model).arg(&image));
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("into {engine}")) || engine == "tract", "{}", out.stderr);
        let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["class"].as_str().unwrap().to_string(), ["x", "y", "width", "height"].map(|k| p[k].as_f64().unwrap())))
            .collect()
    };
    let (tract, rten) = (detections("tract"), detections("rten"));
    assert!(!tract.is_empty());
    assert_eq!(tract.len(), rten.len(), "tract {tract:?}\nrten {rten:?}");
    for ((ct, bt), (cr, br)) in tract.iter().zip(&rten) {
        assert_eq!(ct, cr);
        assert!(bt.iter().zip(br).all(|(a, b)| (a - b).abs() < 0.5), "{bt:?} vs {br:?}");
    }
}

#[test]
fn gc_drops_the_records_of_models_no_generation_keeps() {
    let unit = Unit::new();
    unit.provision(&unit.manifest(1, true));
    assert!(unit.record(YOLO_SHA).is_some());
    // gc keeps the current generation and the one before: two newer ones without yolo.
    unit.provision(&unit.manifest(2, false));
    unit.provision(&unit.manifest(3, false));
    let gc = run(unit.one_thread().args(["cache", "gc"]));
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(unit.record(YOLO_SHA).is_none(), "yolo's record outlived its blob");
    assert!(unit.record(FACES_SHA).is_some(), "faces is still cached");
}

#[test]
fn an_unknown_backend_is_a_configuration_error_naming_the_choices() {
    let unit = Unit::new();
    let out = run(unit.one_thread().env("OUTPOST_INFERENCE_BACKEND", "onnx").args(["config"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("use auto, tract, rten, onnxruntime, cuda or tensorrt"), "{}", out.stderr);
}

#[test]
fn f16_is_used_only_for_models_whose_outputs_survive_it() {
    let unit = Unit::new();
    let model = |id: &str, file: &str, family: &str| {
        let path = fixtures().join(file);
        let bytes = std::fs::read(&path).unwrap();
        let sha = sha256_hex(&bytes);
        (sha.clone(), format!(
            "[[models]]\nid = \"{id}\"\nsource = \"file://{}\"\nsha256 = \"{sha}\"\nsize = {}\nfamily = \"{family}\"\n",
            path.display(),
            bytes.len()
        ))
    };
    let (colour_sha, colour) = model("colour", "crafted/colour_classifier.onnx", "classification");
    let (detr_sha, detr) = model("detr", "rfdetr_random.onnx", "detr");
    let manifest = unit.sandbox.write("f16.toml", &format!("version = 1\n{colour}{detr}"));
    let out = run(unit.one_thread().env("OUTPOST_INFERENCE_PRECISION", "f16").arg("provision").arg("--manifest").arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let colour_half = &unit.record(&colour_sha).unwrap()["f16"];
    assert_eq!(colour_half["accepted"], true, "{colour_half}");
    assert!(colour_half["difference"].as_f64().unwrap() <= 1e-2);
    // The random-weight RF-DETR drifts in half precision: refused, and run in f32 with the reason.
    let detr_half = &unit.record(&detr_sha).unwrap()["f16"];
    assert_eq!(detr_half["accepted"], false, "{detr_half}");
    let image = fixtures().join("images/chelsea.png");
    let detect = run(unit.one_thread().env("OUTPOST_INFERENCE_PRECISION", "f16").args(["detect", "--model", "detr"]).arg(&image));
    assert_eq!(detect.code, 0, "{}", detect.stderr);
    assert!(detect.stderr.contains("in f16 at provision (limit 1e-2); running it in f32"), "{}", detect.stderr);
    let detect = run(unit.one_thread().env("OUTPOST_INFERENCE_PRECISION", "f16").args(["detect", "--model", "colour"]).arg(&image));
    assert_eq!(detect.code, 0, "{}", detect.stderr);
    assert!(detect.stderr.contains("tract in f16 (accepted at provision)"), "{}", detect.stderr);
}

