//! TensorRT engines in the cache, as `cache ls` shows them and `cache gc` keeps or removes them.
//! The engines here are any bytes (no GPU on CI machines): what is tested is the layout, the keys
//! and the clean-up, through the real binary on a real provisioned cache. Every build has this,
//! the static one included, so that it can clean a cache a glibc build wrote engines into.

mod support;

use outpost::backend::engine_cache::{self, EngineKey};
use support::serve::{fixture_manifest, provisioned_sandbox};
use support::{fixtures, run};

fn sha256_of(name: &str) -> String {
    support::http::sha256_hex(&std::fs::read(fixtures().join(name)).unwrap())
}

fn key(model_sha256: &str, tensorrt: &str) -> EngineKey {
    EngineKey {
        model_sha256: model_sha256.to_string(),
        tensorrt: tensorrt.into(),
        gpu: "Orin (nvgpu)".into(),
        compute_capability: "8.7".into(),
        precision: "fp32".into(),
        input: [640, 640],
    }
}

fn build(cache: &std::path::Path, key: &EngineKey, bytes: &[u8]) {
    let building = engine_cache::start(cache, key).unwrap();
    std::fs::write(building.dir().join("TensorrtExecutionProvider_cache.engine"), bytes).unwrap();
    building.finish().unwrap();
}

#[test]
fn cache_ls_shows_engines_and_gc_removes_those_of_models_gone_and_abandoned_builds() {
    let sandbox = provisioned_sandbox();
    let cache = sandbox.path().join("cache");
    let faces = sha256_of("centerface.onnx");
    let gone = "0".repeat(64);
    build(&cache, &key(&faces, "10.3.0"), &[7u8; 3000]);
    build(&cache, &key(&gone, "10.3.0"), b"engine of a model no generation has");
    // A build cut by power loss: its staging directory, of a process long gone.
    let cut = engine_cache::root(&cache).join(format!(".building-{}-4000000000", key(&faces, "10.7.0").dir_name()));
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("half.engine"), b"half").unwrap();
    let outpost = || {
        let mut cmd = sandbox.outpost();
        cmd.arg("--cache-dir").arg(&cache);
        cmd
    };

    let ls = run(outpost().args(["cache", "ls"]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("TensorRT engines: 2"), "the staging directory is no engine: {}", ls.stdout);
    assert!(ls.stdout.contains("  faces: 640x640 fp32 for TensorRT 10.3.0 on Orin (nvgpu) (compute 8.7), 3.2 KiB in "), "{}", ls.stdout);
    assert!(ls.stdout.contains("  (no model of this generation): 640x640 fp32 for TensorRT 10.3.0"), "{}", ls.stdout);

    let gc = run(outpost().args(["cache", "gc"]));
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("2 TensorRT engine(s)"), "{}", gc.stdout);
    assert!(!cut.exists());
    assert!(engine_cache::find(&cache, &key(&faces, "10.3.0")).is_some(), "the current model's engine stays");
    assert!(engine_cache::find(&cache, &key(&gone, "10.3.0")).is_none());

    // A JetPack upgrade (TensorRT 10.7): the old key misses; the new engine replaces the old one.
    assert!(engine_cache::find(&cache, &key(&faces, "10.7.0")).is_none());
    build(&cache, &key(&faces, "10.7.0"), b"rebuilt");
    let engines = engine_cache::list(&cache).unwrap();
    assert_eq!(engines.len(), 1, "{engines:?}");
    assert_eq!(engines[0].key.as_ref().unwrap().tensorrt, "10.7.0");

    // A new generation without `faces`: after the previous generation ages out too, its engine goes.
    for version in [2, 3] {
        let manifest = std::fs::read_to_string(fixture_manifest(&sandbox)).unwrap();
        let without_faces: String = manifest
            .replace("version = 1", &format!("version = {version}"))
            .split("[[models]]")
            .filter(|part| !part.contains("id = \"faces\""))
            .collect::<Vec<_>>()
            .join("[[models]]");
        let path = sandbox.write("models-v.toml", &without_faces);
        let out = run(outpost().arg("provision").arg("--manifest").arg(&path));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let gc = run(outpost().args(["cache", "gc"]));
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(gc.stdout.contains("1 TensorRT engine(s)"), "{}", gc.stdout);
    assert!(engine_cache::list(&cache).unwrap().is_empty());
}

#[test]
fn the_fp16_gate_verdict_is_shown_by_cache_ls_and_doctor() {
    let sandbox = provisioned_sandbox();
    let cache = sandbox.path().join("cache");
    let faces = sha256_of("centerface.onnx");
    let half = EngineKey { precision: "fp16".into(), ..key(&faces, "10.3.0") };
    let building = engine_cache::start(&cache, &half).unwrap();
    std::fs::write(building.dir().join("TensorrtExecutionProvider_cache.engine"), [1u8; 5000]).unwrap();
    let refused = engine_cache::HalfVerdict {
        accepted: false,
        reason: "f32's `face` 0.87 at (240, 120) 60x80 has no fp16 box at IoU >= 0.9 (best IoU 0.42) on pole.jpg at 640x640".into(),
        calibration_sha256: "ab".repeat(32),
    };
    engine_cache::record_verdict(building.dir(), &refused).unwrap();
    let dir = building.finish().unwrap();
    assert!(!dir.join("TensorrtExecutionProvider_cache.engine").exists(), "a refused engine does not take flash");
    build(&cache, &key(&faces, "10.3.0"), b"the f32 engine that runs instead");
    let outpost = |settings: &[&str]| {
        let mut cmd = sandbox.outpost();
        cmd.arg("--cache-dir").arg(&cache);
        for s in settings {
            cmd.args(["--set", s]);
        }
        cmd
    };

    let ls = run(outpost(&[]).args(["cache", "ls"]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("  faces: 640x640 fp16 for TensorRT 10.3.0"), "{}", ls.stdout);
    assert!(
        ls.stdout.contains(&format!("    fp16 accuracy gate: refused, the f32 engine runs: {}", refused.reason)),
        "{}",
        ls.stdout
    );

    let doctor_line = |settings: &[&str]| {
        let out = run(outpost(settings).arg("doctor"));
        out.stdout
            .lines()
            .find(|l| l.get(5..).is_some_and(|l| l.starts_with("tensorrt fp16:")))
            .unwrap_or_else(|| panic!("{}{}", out.stdout, out.stderr))
            .to_string()
    };
    let trt = ["inference.backend=tensorrt", "inference.fallback=tract", "inference.precision=f16"];
    let line = doctor_line(&trt);
    assert!(line.starts_with("warn") && line.contains("inference.calibration_image is not set"), "{line}");
    let missing = sandbox.path().join("no-such.jpg");
    let missing = format!("inference.calibration_image={}", missing.display());
    let line = doctor_line(&[trt[0], trt[1], trt[2], &missing]);
    assert!(line.starts_with("warn") && line.contains("no-such.jpg: cannot read"), "{line}");
    let image = format!("inference.calibration_image={}", support::fixtures().join("images/astronaut.png").display());
    let line = doctor_line(&[trt[0], trt[1], trt[2], &image]);
    assert!(line.starts_with("ok") && line.contains("fp16 engines accepted: 0, refused: 1"), "{line}");
}
