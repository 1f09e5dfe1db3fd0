//! The glibc build's ONNX Runtime backend through the real binary: `detect`, `run` and `serve`
//! on `inference.backend = "onnxruntime"` with PyPI's CPU-only library (the one the references
//! were made with), and what `tensorrt` does where TensorRT cannot run: with that library (no
//! TensorRT provider), and with no library at all.
#![cfg(feature = "onnxruntime")]

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::serve::{infer_body, provisioned_sandbox, Serve};
use support::{fixtures, onnxruntime_library, run, Sandbox};

fn library_setting() -> String {
    format!("inference.onnxruntime_library={}", onnxruntime_library().display())
}

fn astronaut() -> PathBuf {
    fixtures().join("images/astronaut.png")
}

/// `outpost detect` of CenterFace on the astronaut with `settings`.
fn detect_faces(sandbox: &Sandbox, settings: &[String]) -> support::Run {
    let mut cmd = sandbox.outpost();
    cmd.args(["--board", "x86_64-dev", "--set", "inference.threads=1"]);
    for s in settings {
        cmd.args(["--set", s]);
    }
    cmd.arg("detect").arg(astronaut()).arg("--model-file").arg(fixtures().join("centerface.onnx"));
    run(cmd.args(["--family", "centerface"]))
}

fn predictions(stdout: &str) -> Vec<Value> {
    let line: Value = serde_json::from_str(stdout.lines().next().expect("a JSON line")).unwrap();
    line["predictions"].as_array().unwrap().clone()
}

/// Same boxes, classes and confidences, within a tenth of a pixel and 1e-3.
fn assert_same_predictions(got: &[Value], want: &[Value]) {
    assert!(!want.is_empty(), "the fixture finds a face");
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["class"], w["class"]);
        for k in ["x", "y", "width", "height"] {
            let (a, b) = (g[k].as_f64().unwrap(), w[k].as_f64().unwrap());
            assert!((a - b).abs() < 0.1, "{k}: {a} vs {b}");
        }
        assert!((g["confidence"].as_f64().unwrap() - w["confidence"].as_f64().unwrap()).abs() < 1e-3);
    }
}

#[test]
fn detect_on_onnxruntime_finds_what_tract_finds_and_says_which_engine_ran() {
    let sandbox = Sandbox::new();
    let tract = detect_faces(&sandbox, &["inference.backend=tract".into()]);
    assert_eq!(tract.code, 0, "{}", tract.stderr);
    let ort = detect_faces(&sandbox, &["inference.backend=onnxruntime".into(), library_setting()]);
    assert_eq!(ort.code, 0, "{}", ort.stderr);
    assert!(ort.stderr.contains("ONNX Runtime 1.20.1 from"), "{}", ort.stderr);
    assert!(ort.stderr.contains("into ONNX Runtime 1.20.1 (onnxruntime)"), "{}", ort.stderr);
    assert!(!ort.stderr.contains("WARN"), "{}", ort.stderr);
    assert_same_predictions(&predictions(&ort.stdout), &predictions(&tract.stdout));
}

#[test]
fn tensorrt_without_its_provider_warns_naming_tensorrt_and_falls_back_as_configured() {
    let sandbox = Sandbox::new();
    let tract = detect_faces(&sandbox, &["inference.backend=tract".into()]);
    // The library loads but has only the CPU provider: fallback to ONNX Runtime's CPU provider.
    let out = detect_faces(
        &sandbox,
        &["inference.backend=tensorrt".into(), "inference.fallback=onnxruntime,tract".into(), library_setting()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warning = out.stderr.lines().find(|l| l.starts_with("WARN")).unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert!(warning.contains("using backend onnxruntime"), "{warning}");
    assert!(warning.contains("tensorrt: the ONNX Runtime 1.20.1 at"), "{warning}");
    assert!(warning.contains("has no TensorRT execution provider (it has: CPUExecutionProvider)"), "{warning}");
    assert!(warning.contains("install onnxruntime-gpu"), "{warning}");
    assert!(out.stderr.contains("(onnxruntime)"), "ONNX Runtime's CPU provider ran: {}", out.stderr);
    assert_same_predictions(&predictions(&out.stdout), &predictions(&tract.stdout));

    // `cuda` alike, here straight to tract.
    let out = detect_faces(&sandbox, &["inference.backend=cuda".into(), "inference.fallback=tract".into(), library_setting()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("using backend tract (cuda: the ONNX Runtime 1.20.1"), "{}", out.stderr);
    assert!(out.stderr.contains("has no CUDA execution provider"), "{}", out.stderr);

    // No fallback configured: a clear error, not a silent CPU run.
    let out = detect_faces(&sandbox, &["inference.backend=tensorrt".into(), "inference.fallback=".into(), library_setting()]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("no inference backend available: tensorrt: the ONNX Runtime"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn tensorrt_without_any_onnxruntime_falls_back_to_tract_naming_the_places_searched() {
    // The sandbox's environment is empty (no HOME, no VIRTUAL_ENV), and this machine has no
    // system-wide ONNX Runtime: nothing to find.
    let sandbox = Sandbox::new();
    let tract = detect_faces(&sandbox, &["inference.backend=tract".into()]);
    let out = detect_faces(&sandbox, &["inference.backend=tensorrt".into(), "inference.fallback=tract".into()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warning = out.stderr.lines().find(|l| l.starts_with("WARN")).unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert!(warning.contains("using backend tract (tensorrt: no ONNX Runtime library found (searched /usr/local/lib,"), "{warning}");
    assert!(warning.contains("onnxruntime/capi"), "the Python package's folder is searched: {warning}");
    assert!(warning.contains("set inference.onnxruntime_library"), "{warning}");
    assert_same_predictions(&predictions(&out.stdout), &predictions(&tract.stdout));

    // A configured path that is not there is named as such.
    let missing = sandbox.path().join("nowhere/libonnxruntime.so");
    let out = detect_faces(
        &sandbox,
        &["inference.backend=onnxruntime".into(), "inference.fallback=tract".into(), format!("inference.onnxruntime_library={}", missing.display())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("inference.onnxruntime_library = {}: no such file", missing.display())), "{}", out.stderr);
    // A file that is not a library: the loader's own words.
    let junk = sandbox.write("libonnxruntime.so.1.99.0", "not a library");
    let out = detect_faces(&sandbox, &["inference.backend=onnxruntime".into(), format!("inference.onnxruntime_library={}", junk.display())]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("cannot be loaded"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn an_onnxruntime_older_than_1_17_is_refused_with_its_version() {
    let sandbox = Sandbox::new();
    let old = support::old_onnxruntime_library();
    let setting = format!("inference.onnxruntime_library={}", old.display());
    let out = detect_faces(&sandbox, &["inference.backend=tensorrt".into(), "inference.fallback=tract".into(), setting.clone()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warning = out.stderr.lines().find(|l| l.starts_with("WARN")).unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert!(warning.contains("using backend tract (tensorrt: ONNX Runtime at "), "{warning}");
    assert!(warning.contains("but got '1.16.3'"), "the version found is named: {warning}");
    assert!(warning.contains("outpost needs ONNX Runtime 1.17 or newer"), "{warning}");
    assert_eq!(predictions(&out.stdout).len(), 1, "tract found the face: {}", out.stdout);
    // Without a fallback: an error that says the same, no output, no panic.
    let out = detect_faces(&sandbox, &["inference.backend=onnxruntime".into(), setting]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("but got '1.16.3'") && !out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn run_and_serve_work_on_onnxruntime() {
    let sandbox = provisioned_sandbox();
    let cache = sandbox.path().join("cache");
    let run_on = |backend: &str| {
        let mut cmd = sandbox.outpost();
        cmd.arg("--cache-dir").arg(&cache).args(["--set", "inference.threads=1", "--set", &format!("inference.backend={backend}")]);
        cmd.args(["--set", &library_setting(), "run", "--model", "faces", "--source"]);
        run(cmd.arg(format!("dir:{}", fixtures().join("images").display())))
    };
    let (ours, tract) = (run_on("onnxruntime"), run_on("tract"));
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert_eq!(tract.code, 0, "{}", tract.stderr);
    assert!(ours.stderr.contains("(onnxruntime)"), "{}", ours.stderr);
    let lines: Vec<&str> = ours.stdout.lines().collect();
    assert_eq!(lines.len(), tract.stdout.lines().count());
    assert!(lines.len() >= 4, "{}", ours.stdout);
    for (o, t) in ours.stdout.lines().zip(tract.stdout.lines()) {
        let (o, t): (Value, Value) = (serde_json::from_str(o).unwrap(), serde_json::from_str(t).unwrap());
        let (op, tp) = (o["predictions"].as_array().unwrap(), t["predictions"].as_array().unwrap());
        assert_eq!(op.len(), tp.len(), "{o} vs {t}");
        if !tp.is_empty() {
            assert_same_predictions(op, tp);
        }
    }

    let setting = library_setting();
    let mut serve = Serve::start(&sandbox, &["inference.threads=1", "inference.backend=onnxruntime", &setting]);
    let reply = serve.post_json("/infer/object_detection", &infer_body("faces", &astronaut()));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let tract = detect_faces(&sandbox, &["inference.backend=tract".into()]);
    assert_same_predictions(reply.json()["predictions"].as_array().unwrap(), &predictions(&tract.stdout));
    serve.assert_alive();
    assert!(serve.log().contains("(onnxruntime)"), "{}", serve.log());
}

#[test]
fn provision_with_tensorrt_configured_says_why_no_engine_was_built_and_doctor_reports_the_runtime() {
    let sandbox = Sandbox::new();
    let manifest = support::serve::fixture_manifest(&sandbox);
    let cache = sandbox.path().join("cache");
    let settings = ["inference.backend=tensorrt".to_string(), "inference.fallback=auto".into(), library_setting()];
    let mut cmd = sandbox.outpost();
    cmd.arg("--cache-dir").arg(&cache);
    for s in &settings {
        cmd.args(["--set", s]);
    }
    let out = run(cmd.arg("provision").arg("--manifest").arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warning = out.stderr.lines().find(|l| l.contains("no TensorRT engines built")).unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(warning.contains("has no TensorRT execution provider"), "{warning}");
    assert!(warning.contains("the models run on the fallback (auto)"), "{warning}");
    assert!(!cache.join("engines/tensorrt").exists() || std::fs::read_dir(cache.join("engines/tensorrt")).unwrap().next().is_none());

    let mut cmd = sandbox.outpost();
    cmd.arg("--cache-dir").arg(&cache);
    for s in &settings {
        cmd.args(["--set", s]);
    }
    let doctor = run(cmd.arg("doctor"));
    assert_eq!(doctor.code, 0, "a CPU fallback is configured: warnings only: {}{}", doctor.stdout, doctor.stderr);
    let line = |what: &str| doctor.stdout.lines().find(|l| l[5..].starts_with(what)).unwrap_or_else(|| panic!("no {what}: {}", doctor.stdout)).to_string();
    assert!(line("onnxruntime:").starts_with("ok   onnxruntime: 1.20.1 at "), "{}", doctor.stdout);
    assert!(line("onnxruntime:").ends_with("(providers: CPUExecutionProvider)"), "{}", doctor.stdout);
    assert!(line("gpu:").starts_with("warn gpu: no CUDA driver (libcuda.so.1: cannot open shared object file"), "{}", doctor.stdout);
    assert!(line("tensorrt:").starts_with("warn tensorrt: TensorRT is not installed"), "{}", doctor.stdout);
    assert!(line("backend tensorrt:").contains("has no TensorRT execution provider"), "{}", doctor.stdout);
    assert!(line("tensorrt engines:").contains("none yet for faces, yolo, colour"), "{}", doctor.stdout);
}
