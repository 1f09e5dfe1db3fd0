//! Decoders on crafted models whose outputs are constants (scripts/make-crafted-models.py): NaN,
//! infinities, inside-out boxes and hostile input shapes give exact answers or clear errors,
//! never a panic and never `null` where a number is promised.

mod support;

use serde_json::Value;
use support::{fixtures, run, Run, Sandbox};

fn crafted(name: &str) -> String {
    fixtures().join("crafted").join(name).display().to_string()
}

fn image() -> String {
    fixtures().join("images/astronaut.png").display().to_string()
}

fn detect(s: &Sandbox, args: &[&str]) -> Run {
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache")).arg("detect");
    run(cmd.args(args))
}

/// The one JSON answer, after checking it holds no `null`.
fn answer(out: &Run) -> Value {
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("null"), "a number became null: {}", out.stdout);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn predictions(v: &Value) -> Vec<(String, f64)> {
    v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["class"].as_str().unwrap().to_string(), p["confidence"].as_f64().unwrap()))
        .collect()
}

#[test]
fn detr_nan_logits_and_boxes_are_skipped_at_every_max_detections() {
    let s = Sandbox::new();
    let model = crafted("detr_nan.onnx");
    for (max, expected) in [("1", 1), ("2", 2), ("3", 2), ("300", 2)] {
        let out = detect(&s, &[&image(), "--model-file", &model, "--family", "detr", "--max-detections", max]);
        let preds = predictions(&answer(&out));
        assert_eq!(preds.len(), expected, "max {max}: {preds:?}");
        // Query 2 class 0 (sigmoid 4) first, then query 0 class 1 (sigmoid 2); NaNs never.
        assert_eq!(preds[0].0, "0");
        assert!((preds[0].1 - 0.982).abs() < 1e-3, "{preds:?}");
        if expected == 2 {
            assert_eq!(preds[1].0, "1");
            assert!((preds[1].1 - 0.881).abs() < 1e-3, "{preds:?}");
        }
    }
}

#[test]
fn yolov8_non_finite_and_inside_out_boxes_are_dropped_and_boxes_clamped() {
    let s = Sandbox::new();
    let out = detect(&s, &[&image(), "--model-file", &crafted("yolov8_nonfinite.onnx"), "--family", "yolov8"]);
    let v = answer(&out);
    let preds = predictions(&v);
    assert_eq!(preds, vec![("0".to_string(), 0.9), ("2".to_string(), 0.7)], "{v}");
    // The second box ran off the 64x64 input: clamped to the 512x512 image's right edge.
    let p = &v["predictions"][1];
    let right = p["x"].as_f64().unwrap() + p["width"].as_f64().unwrap() / 2.0;
    assert!((right - 512.0).abs() < 0.01, "{p}");
}

#[test]
fn an_infinite_classification_logit_is_that_class_at_one() {
    let s = Sandbox::new();
    let out = detect(&s, &[&image(), "--model-file", &crafted("classification_inf.onnx"), "--family", "classification"]);
    let v = answer(&out);
    assert_eq!(v["top"], "1", "{v}");
    assert_eq!(v["confidence"], 1.0, "{v}");
}

#[test]
fn hostile_declared_input_shapes_are_clear_errors() {
    let s = Sandbox::new();
    for (name, says) in [("input_zero.onnx", "out of range"), ("input_huge.onnx", "out of range"), ("input_nhwc.onnx", "NCHW")] {
        let model = crafted(name);
        let out = detect(&s, &[&image(), "--model-file", &model, "--family", "yolov8"]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(name) && out.stderr.contains(says), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn a_wrong_family_is_an_error_not_garbage() {
    let s = Sandbox::new();
    let model = fixtures().join("yolov8n_random.onnx").display().to_string();
    let out = detect(&s, &[&image(), "--model-file", &model, "--family", "yolov5", "--confidence", "0.01"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("do not fit") && out.stderr.contains("yolov5"), "{}", out.stderr);
}

#[test]
fn centerface_without_a_family_still_names_faces() {
    let s = Sandbox::new();
    let model = fixtures().join("centerface.onnx").display().to_string();
    let out = detect(&s, &[&image(), "--model-file", &model, "--input", "256x256"]);
    let preds = predictions(&answer(&out));
    assert!(!preds.is_empty() && preds.iter().all(|(class, _)| class == "face"), "{preds:?}");
}

#[test]
fn class_map_with_gaps_names_ids_by_key() {
    let s = Sandbox::new();
    s.write("environment.json", r#"{"CLASS_MAP": {"0": "cat", "2": "dog", "3": "fox"}}"#);
    let model = std::fs::read(crafted("yolov8_nonfinite.onnx")).unwrap();
    let sha = support::http::sha256_hex(&model);
    let manifest = s.write(
        "models.toml",
        &format!(
            "version = 1\n[[models]]\nid = \"m\"\nsource = \"file://{}\"\nsha256 = \"{sha}\"\nsize = {}\nfamily = \"yolov8\"\n\
             environment = \"file:environment.json\"\n",
            crafted("yolov8_nonfinite.onnx"),
            model.len()
        ),
    );
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache"));
    let out = run(cmd.args(["provision", "--manifest"]).arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = detect(&s, &[&image(), "--model", "m"]);
    let preds = predictions(&answer(&out));
    let classes: Vec<&str> = preds.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(classes, vec!["cat", "dog"], "id 2 is `dog` by key, not by position");
}

/// Provisions model `m` (the crafted YOLOv8 head) with `environment` written as `env_name`.
fn provision_with_environment(s: &Sandbox, version: u32, env_name: &str, environment: &str) -> Run {
    s.write(env_name, environment);
    let model = std::fs::read(crafted("yolov8_nonfinite.onnx")).unwrap();
    let manifest = s.write(
        "models.toml",
        &format!(
            "version = {version}\n[[models]]\nid = \"m\"\nsource = \"file://{}\"\nsha256 = \"{}\"\nsize = {}\n\
             family = \"yolov8\"\nenvironment = \"file:{env_name}\"\n",
            crafted("yolov8_nonfinite.onnx"),
            support::http::sha256_hex(&model),
            model.len()
        ),
    );
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache"));
    run(cmd.args(["provision", "--manifest"]).arg(&manifest))
}

#[test]
fn a_new_manifest_version_with_another_environment_takes_effect() {
    let s = Sandbox::new();
    let out = provision_with_environment(&s, 1, "env-a.json", r#"{"CLASS_MAP": {"0": "cat", "2": "owl"}}"#);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = predictions(&answer(&detect(&s, &[&image(), "--model", "m"])));
    assert_eq!(first[0].0, "cat");
    let out = provision_with_environment(&s, 2, "env-b.json", r#"{"CLASS_MAP": {"0": "dog", "2": "eel"}}"#);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second = predictions(&answer(&detect(&s, &[&image(), "--model", "m"])));
    let classes: Vec<&str> = second.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(classes, vec!["dog", "eel"], "the new environment's names, not the reused old ones");
}

#[test]
fn a_malformed_environment_is_refused_at_provision_naming_what_is_wrong() {
    for (name, text, says) in [
        ("array.json", "[1, 2]", "environment.json"),
        ("pre.json", r#"{"PREPROCESSING": "{not json"}"#, "PREPROCESSING"),
        ("resize.json", r#"{"PREPROCESSING": {"resize": {"format": "Fill (center crop) in"}}}"#, "unknown resize format"),
        ("list.json", r#"{"CLASS_MAP": ["cat", "dog"]}"#, "CLASS_MAP"),
        ("numbers.json", r#"{"CLASS_MAP": {"0": 7}}"#, "CLASS_MAP"),
    ] {
        let s = Sandbox::new();
        let out = provision_with_environment(&s, 1, name, text);
        assert_eq!(out.code, 3, "{name}: {}", out.stderr);
        assert!(out.stderr.contains(says) && out.stderr.contains(name), "{name}: {}", out.stderr);
        assert!(!s.path().join("cache/current").exists(), "{name}: nothing activated");
    }
}

#[test]
fn yolov8_layout_follows_the_anchor_count_not_the_longer_axis() {
    let s = Sandbox::new();
    for (model, class) in [("yolov8_600classes_160.onnx", "599"), ("yolov8_80classes_32.onnx", "7")] {
        let out = detect(&s, &[&image(), "--model-file", &crafted(model), "--family", "yolov8"]);
        let preds = predictions(&answer(&out));
        assert_eq!(preds.len(), 1, "{model}: {preds:?}");
        assert_eq!(preds[0].0, class, "{model}");
    }
}

#[test]
fn end_to_end_yolo_heads_are_corner_boxes_without_nms() {
    let s = Sandbox::new();
    for family in ["yolov10n", "yolo26n"] {
        let out = detect(&s, &[&image(), "--model-file", &crafted("yolo_end2end.onnx"), "--family", family]);
        let v = answer(&out);
        let preds = predictions(&v);
        assert_eq!(preds, vec![("2".to_string(), 0.9)], "{family}: {v}");
        // Corners (8, 8)-(24, 40) in the 64x64 input are (64, 64)-(192, 320) in the 512x512 image.
        let p = &v["predictions"][0];
        let n = |k: &str| p[k].as_f64().unwrap();
        assert_eq!((n("x"), n("y"), n("width"), n("height")), (128.0, 192.0, 128.0, 256.0), "{family}: {p}");
    }
    // Read as a YOLOv8 head it does not fit, and says so.
    let out = detect(&s, &[&image(), "--model-file", &crafted("yolo_end2end.onnx"), "--family", "yolov8"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("do not fit family yolov8"), "{}", out.stderr);
}

/// A PNG that declares `w`x`h` pixels in a few dozen bytes (a decompression bomb's header).
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), (b"IEND", &[])] {
        let body = [kind, data].concat();
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    png
}

#[test]
fn an_image_declaring_forty_thousand_squared_pixels_is_refused_from_its_header() {
    let s = Sandbox::new();
    let bomb = s.path().join("bomb.png");
    std::fs::write(&bomb, png_declaring(40_000, 40_000)).unwrap();
    let model = fixtures().join("centerface.onnx").display().to_string();
    let started = std::time::Instant::now();
    let out = detect(&s, &[&bomb.display().to_string(), "--model-file", &model, "--family", "centerface"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("bomb.png") && out.stderr.contains("40000x40000") && out.stderr.contains("megapixels"), "{}", out.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "refused before decoding");
}

#[test]
fn float16_outputs_are_read_and_other_types_are_named_errors() {
    let s = Sandbox::new();
    let out = detect(&s, &[&image(), "--model-file", &crafted("classification_f16.onnx"), "--family", "classification"]);
    let v = answer(&out);
    assert_eq!(v["top"], "1", "{v}");
    assert!((v["confidence"].as_f64().unwrap() - 0.7).abs() < 1e-3, "probabilities kept, not softmaxed again: {v}");
    let out = detect(&s, &[&image(), "--model-file", &crafted("output_int64.onnx"), "--family", "classification"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("output `probs`") && out.stderr.contains("reads float outputs"), "{}", out.stderr);
    let out = detect(&s, &[&image(), "--model-file", &crafted("input_uint8.onnx"), "--family", "classification"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("input_uint8.onnx") && out.stderr.contains("U8") && out.stderr.contains("float32"), "{}", out.stderr);
}

#[test]
fn the_image_size_limit_is_a_setting() {
    let s = Sandbox::new();
    let model = fixtures().join("centerface.onnx").display().to_string();
    // With the limit at 1 MP, a 2 MP image is refused (the default 40 MP would decode it).
    let big = s.path().join("big.png");
    std::fs::write(&big, png_declaring(2000, 1000)).unwrap();
    let mut cmd = s.outpost();
    cmd.args(["--board", "x86_64-dev", "--set", "inference.max_image_megapixels=1", "detect"])
        .arg(&big)
        .args(["--model-file", &model, "--family", "centerface"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("2000x1000") && out.stderr.contains("1 megapixels"), "{}", out.stderr);
}

#[test]
fn repair_fetches_a_corrupt_environment_again() {
    let s = Sandbox::new();
    let env = r#"{"CLASS_MAP": {"0": "cat", "2": "owl"}}"#;
    let out = provision_with_environment(&s, 1, "env.json", env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let blob = s.path().join("cache/blobs/sha256").join(support::http::sha256_hex(env.as_bytes()));
    std::fs::write(&blob, env.replace("owl", "cow")).unwrap();
    let cache = |args: &[&str]| {
        let mut cmd = s.outpost();
        cmd.args(["--board", "x86_64-dev", "--cache-dir"]).arg(s.path().join("cache")).arg("cache").args(args);
        run(&mut cmd)
    };
    assert_eq!(cache(&["verify"]).code, 4);
    let out = cache(&["verify", "--repair"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(std::fs::read_to_string(&blob).unwrap(), env);
    assert_eq!(cache(&["verify"]).code, 0);
}

#[test]
fn truncated_and_bit_flipped_model_files_are_clear_errors_never_a_crash() {
    // Models from outside (a stick, a download that was not pinned) may be damaged: whatever the
    // bytes, `detect` answers or exits 1 naming the file; never a panic (101), an abort or a
    // signal. The damage is deterministic (a fixed LCG), so a failure here reproduces.
    let s = Sandbox::new();
    let good = std::fs::read(fixtures().join("centerface.onnx")).unwrap();
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for keep in [0, 16, 1024, good.len() / 10, good.len() / 2, good.len() - 1] {
        damaged.push((format!("cut-{keep}.onnx"), good[..keep].to_vec()));
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % below
    };
    for i in 0..12 {
        let mut bytes = good.clone();
        // The graph's structure (node list, shapes, attributes) is in the first few KiB; the
        // rest is mostly weights. Flip bits in both.
        let span = if i % 2 == 0 { 4096 } else { bytes.len() };
        for _ in 0..1 + i % 4 {
            let at = next(span);
            bytes[at] ^= 1 << next(8);
        }
        damaged.push((format!("flip-{i}.onnx"), bytes));
    }
    let (mut answered, mut refused) = (0, 0);
    for (name, bytes) in &damaged {
        let path = s.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        // flip-11 (a Conv attribute 1 -> 9 at byte 1916, among others) sends tract's declutter
        // pass into a loop that never ends: inference.plan_timeout_secs turns that into a refusal.
        // Planning the sound ones at 128x128 takes well under a second.
        let mut cmd = s.outpost();
        cmd.args(["--board", "x86_64-dev", "--set", "inference.plan_timeout_secs=15", "--cache-dir"])
            .arg(s.path().join("cache"))
            .args(["detect", &image(), "--model-file", &path.display().to_string(), "--input", "128x128"]);
        let out = run(&mut cmd);
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
        if name == "flip-11.onnx" {
            assert!(out.code == 1 && out.stderr.contains("did not finish in 15s"), "{name}: {}", out.stderr);
        }
        match out.code {
            0 => {
                let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {}", out.stdout));
                assert!(v["predictions"].is_array(), "{name}: {v}");
                answered += 1;
            }
            1 => {
                assert!(out.stderr.contains(name.as_str()), "{name}: the error does not name the file: {}", out.stderr);
                refused += 1;
            }
            code => panic!("{name}: exit {code} (a crash): {}", out.stderr),
        }
    }
    assert!(refused >= 6, "every truncated file must be refused ({refused} refused, {answered} answered)");
    eprintln!("{} damaged models: {refused} refused clearly, {answered} still answered", damaged.len());
}
