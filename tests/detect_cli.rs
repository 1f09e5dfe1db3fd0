//! `outpost detect` through the real binary: the Roboflow response shape, thresholds, and clear
//! errors for bad images and models of the wrong family.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::{fixtures, run, Run, Sandbox};

fn detect(sandbox: &Sandbox, args: &[&str], images: &[PathBuf]) -> Run {
    let mut cmd: Command = sandbox.outpost();
    cmd.args(["--board", "x86_64-dev", "detect"]).args(images).args(args);
    run(&mut cmd)
}

fn centerface() -> String {
    fixtures().join("centerface.onnx").display().to_string()
}

#[test]
fn response_has_the_roboflow_shape() {
    let s = Sandbox::new();
    let out = detect(&s, &["--model-file", &fixtures().join("yolov8n_random.onnx").display().to_string()], &[fixtures().join("images/chelsea.png")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    for key in ["inference_id", "time", "image", "predictions"] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    let p = &v["predictions"][0];
    for key in ["x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"] {
        assert!(p.get(key).is_some(), "prediction {key} missing: {p}");
    }
    assert!(p["x"].as_f64().unwrap() <= 451.0 && p["y"].as_f64().unwrap() <= 300.0, "inside the original image");
    assert!(out.stderr.contains("inferred from its outputs: yolov8"), "{}", out.stderr);
}

#[test]
fn one_json_line_per_image_and_thresholds_apply() {
    let s = Sandbox::new();
    let images = [fixtures().join("images/astronaut.png"), fixtures().join("images/coffee.png")];
    let out = detect(&s, &["--model-file", &centerface(), "--family", "centerface", "--confidence", "0.05"], &images);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["image"], serde_json::json!({"width": 600, "height": 400}));
    let strict = detect(&s, &["--model-file", &centerface(), "--family", "centerface", "--confidence", "0.99"], &images[..1]);
    let v: Value = serde_json::from_str(strict.stdout.trim()).unwrap();
    assert_eq!(v["predictions"].as_array().unwrap().len(), 0, "no face at 0.99");
}

#[test]
fn truncated_and_non_images_fail_clearly_naming_the_file() {
    let s = Sandbox::new();
    let png = std::fs::read(fixtures().join("images/coffee.png")).unwrap();
    let truncated_png = s.write("cut.png", "");
    std::fs::write(&truncated_png, &png[..png.len() / 3]).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&image::RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30])))
        .unwrap();
    let truncated_jpeg = s.write("cut.jpg", "");
    std::fs::write(&truncated_jpeg, &jpeg[..jpeg.len() / 2]).unwrap();
    let text = s.write("notes.png", "this is not an image\n");
    for (path, why) in [(&truncated_png, "truncated or corrupt"), (&truncated_jpeg, "truncated or corrupt"), (&text, "not an image")] {
        let out = detect(&s, &["--model-file", &centerface(), "--family", "centerface"], &[path.clone()]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(&path.display().to_string()) && out.stderr.contains(why), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"));
    }
}

#[test]
fn model_of_the_wrong_family_is_a_clear_error() {
    let s = Sandbox::new();
    let out = detect(&s, &["--model-file", &centerface(), "--family", "yolov8"], &[fixtures().join("images/astronaut.png")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("do not fit family yolov8") && out.stderr.contains("astronaut.png"), "{}", out.stderr);
    let out = detect(&s, &["--model-file", &centerface(), "--family", "yolo-nonsense"], &[fixtures().join("images/astronaut.png")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("unknown model family"), "{}", out.stderr);
}

#[test]
fn a_non_onnx_model_file_is_a_clear_error() {
    let s = Sandbox::new();
    let bogus = s.write("model.onnx", "not a protobuf");
    let out = detect(&s, &["--model-file", &bogus.display().to_string()], &[fixtures().join("images/astronaut.png")]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("model.onnx") && out.stderr.contains("not a loadable ONNX model"), "{}", out.stderr);
}

#[test]
fn cached_model_is_found_by_id() {
    let s = Sandbox::new();
    let manifest = fixtures().join("../../examples/models.toml");
    let cache = s.path().join("cache");
    let mut prov = s.outpost();
    prov.env("OUTPOST_CACHE_DIR", &cache).args(["--board", "x86_64-dev", "provision", "--manifest"]).arg(&manifest);
    assert_eq!(run(&mut prov).code, 0);
    let mut cmd = s.outpost();
    cmd.env("OUTPOST_CACHE_DIR", &cache).args(["--board", "x86_64-dev", "detect", "--model", "faces"]).arg(fixtures().join("images/astronaut.png"));
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["predictions"][0]["class"], "face", "family and classes come from the manifest");
    let mut missing = s.outpost();
    missing.env("OUTPOST_CACHE_DIR", &cache).args(["--board", "x86_64-dev", "detect", "--model", "nope"]).arg(fixtures().join("images/astronaut.png"));
    let out = run(&mut missing);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("no model `nope`") && out.stderr.contains("faces"), "{}", out.stderr);
}
