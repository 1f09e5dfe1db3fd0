//! `outpost config`, exit codes, logging and secret redaction, through the real binary.

mod support;

use serde_json::Value;
use support::{device_tree, run, Sandbox};

fn config_json(cmd: &mut std::process::Command) -> Value {
    let out = run(cmd.args(["config", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("config --json prints JSON")
}

fn setting<'a>(doc: &'a Value, key: &str) -> (&'a Value, &'a str) {
    let entry = &doc["settings"][key];
    (&entry["value"], entry["source"].as_str().unwrap())
}

#[test]
fn each_layer_overrides_the_one_below() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "outpost.toml",
        "[inference]\nthreads = 3\n[camera]\nfps = 12\nwidth = 800\n[cache]\ndir = \"/srv/file-cache\"\n",
    );
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_SYSROOT", device_tree("orin-nano-devkit"))
        .env("OUTPOST_CAMERA_FPS", "20")
        .env("OUTPOST_CACHE_DIR", "/srv/env-cache")
        .args(["--cache-dir", "/srv/flag-cache"]);
    let doc = config_json(&mut cmd);

    // Detected board, its profile below everything else.
    let (board, source) = setting(&doc, "board");
    assert_eq!(board, "jetson-orin-nano");
    assert!(source.starts_with("detected: device-tree compatible"), "{source}");
    let (backend, source) = setting(&doc, "inference.backend");
    assert_eq!(backend, "tensorrt");
    assert!(source.starts_with("board jetson-orin-nano"), "{source}");
    // Inherited from the parent profile.
    let (_, source) = setting(&doc, "camera.device");
    assert!(source.starts_with("board generic-aarch64"), "{source}");
    // File over profile.
    assert_eq!(setting(&doc, "inference.threads").0, 3);
    assert!(setting(&doc, "inference.threads").1.starts_with("file "));
    assert_eq!(setting(&doc, "camera.width").0, 800);
    // Env over file.
    assert_eq!(setting(&doc, "camera.fps"), (&Value::from(20), "env OUTPOST_CAMERA_FPS"));
    // Flag over env over file.
    assert_eq!(setting(&doc, "cache.dir"), (&Value::from("/srv/flag-cache"), "flag --cache-dir"));
    // Defaults where nobody says anything.
    assert_eq!(setting(&doc, "log.level"), (&Value::from("info"), "default"));
}

#[test]
fn board_flag_beats_detection() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_SYSROOT", device_tree("orin-nano-devkit")).args(["--board", "raspberry-pi-4"]);
    let doc = config_json(&mut cmd);
    assert_eq!(setting(&doc, "board"), (&Value::from("raspberry-pi-4"), "flag --board"));
    assert_eq!(setting(&doc, "inference.backend").0, "auto");
}

#[test]
fn model_cache_dir_is_honoured_below_outpost_cache_dir() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.outpost();
    cmd.env("MODEL_CACHE_DIR", "/srv/roboflow-cache");
    let doc = config_json(&mut cmd);
    assert_eq!(setting(&doc, "cache.dir"), (&Value::from("/srv/roboflow-cache"), "env MODEL_CACHE_DIR"));

    let mut cmd = sandbox.outpost();
    cmd.env("MODEL_CACHE_DIR", "/srv/roboflow-cache").env("OUTPOST_CACHE_DIR", "/srv/ours");
    let doc = config_json(&mut cmd);
    assert_eq!(setting(&doc, "cache.dir"), (&Value::from("/srv/ours"), "env OUTPOST_CACHE_DIR"));
}

#[test]
fn text_output_shows_value_and_source_per_key() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().env("OUTPOST_INFERENCE_THREADS", "1").arg("config"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out.stdout.lines().find(|l| l.starts_with("inference.threads")).unwrap();
    assert!(line.contains("= 1") && line.ends_with("# env OUTPOST_INFERENCE_THREADS"), "{line}");
}

#[test]
fn unknown_key_in_config_file_names_file_and_key() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("outpost.toml", "[camera]\ndevise = \"/dev/video2\"\n");
    let out = run(sandbox.outpost().arg("config"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(&file.display().to_string()), "{}", out.stderr);
    assert!(out.stderr.contains("camera.devise"), "{}", out.stderr);
}

#[test]
fn invalid_value_names_key_and_the_layer_that_set_it() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["--set", "camera.format=BGR32", "config"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("camera.format") && out.stderr.contains("--set camera.format"), "{}", out.stderr);
}

#[test]
fn api_key_never_appears_in_output_at_trace_level() {
    let secret = "rf_SECRET_4f8a2c";
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", &format!("[roboflow]\napi_key = \"{secret}\"\n"));
    for args in [
        vec!["--log-level", "trace", "config"],
        vec!["--log-level", "trace", "config", "--json"],
        vec!["-vv", "doctor"],
        vec!["-vv", "board", "detect"],
    ] {
        let mut cmd = sandbox.outpost();
        cmd.env("ROBOFLOW_API_KEY", secret).args(&args);
        let out = run(&mut cmd);
        assert!(!support::leaks(&out.stdout, secret) && !support::leaks(&out.stderr, secret), "{args:?} leaked the key");
    }
    let doc = config_json(&mut sandbox.outpost());
    assert_eq!(setting(&doc, "roboflow.api_key").0, "***");
}

#[test]
fn trace_logging_shows_detection_steps() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_SYSROOT", device_tree("jetson-nano")).args(["-vv", "config"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0);
    assert!(out.stderr.lines().any(|l| l.starts_with("DEBUG") && l.contains("jetson-nano")), "{}", out.stderr);
}

#[test]
fn run_without_a_manifest_or_models_is_a_configuration_error() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.path().join("missing.toml");
    let out = run(sandbox.outpost().arg("--cache-dir").arg(sandbox.path().join("cache")).args(["run", "--manifest"]).arg(&manifest));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("cannot read manifest {}", manifest.display())), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let sandbox = Sandbox::new();
    for args in [vec![], vec!["frobnicate"], vec!["config", "--nope"], vec!["board", "show"]] {
        let out = run(sandbox.outpost().args(&args));
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains("--help"), "{}", out.stderr);
    }
}

#[test]
fn version_lists_features_target_and_allocator() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().arg("--version"));
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with(&format!("outpost {}", env!("CARGO_PKG_VERSION"))));
    for field in ["target: ", "allocator: ", "features: ", "built: "] {
        assert!(out.stdout.contains(field), "{field} missing:\n{}", out.stdout);
    }
}

#[test]
fn doctor_fails_on_a_cache_in_memory() {
    if !std::path::Path::new("/dev/shm").is_dir() {
        return;
    }
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["--cache-dir", "/dev/shm/outpost-doctor-test", "doctor"]));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let line = out.stdout.lines().find(|l| l.starts_with("FAIL cache")).expect("cache check fails");
    assert!(line.contains("tmpfs") && line.contains("reboot"), "{line}");
}

#[test]
fn doctor_passes_with_a_writable_persistent_cache() {
    let sandbox = Sandbox::new();
    let cache = sandbox.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let out = run(sandbox.outpost().arg("--cache-dir").arg(&cache).arg("doctor"));
    // A sandbox under /tmp on a tmpfs /tmp would be refused: that is the point of the check.
    if out.stdout.contains("tmpfs") {
        return;
    }
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok   cache"), "{}", out.stdout);
}

#[test]
fn config_and_doctor_refuse_what_run_would_refuse() {
    let sandbox = Sandbox::new();
    for setting in [
        "sinks.webhook.queue=0",
        "sinks.webhook.timeout_secs=0",
        "sinks.annotate.quality=0",
        "sinks.annotate.quality=101",
        "run.source=rtmp://camera/stream",
        "run.source=rtsp:///no-host",
        "run.source=dir:",
    ] {
        let key = setting.split('=').next().unwrap();
        for command in ["config", "doctor"] {
            let out = run(sandbox.outpost().args(["--board", "x86_64-dev", "--set", setting, command]));
            assert_eq!(out.code, 3, "{command} with {setting}: {}{}", out.stdout, out.stderr);
            assert!(out.stderr.contains(key) || out.stdout.contains(key), "{command} with {setting}: {}", out.stderr);
        }
    }
}

#[test]
fn small_things_a_new_user_trips_over() {
    let sandbox = Sandbox::new();
    // --version lists the default v4l2 feature.
    let out = run(sandbox.outpost().arg("--version"));
    assert!(out.stdout.lines().any(|l| l.starts_with("features:") && l.contains("v4l2")), "{}", out.stdout);
    // A closed pipe is no crash.
    let mut child = sandbox
        .outpost()
        .args(["--board", "x86_64-dev", "config", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Counts are whole numbers.
    let out = run(sandbox.outpost().args(["detect", "x.png", "--model-file", "m.onnx", "--max-detections", "1.5"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("whole number"), "{}", out.stderr);
    // Manifest errors name the file on the line that says what is wrong.
    let manifest = sandbox.write("models.toml", "[[models]]\nid = \"a\"\nsource = \"https://x/y\"\n");
    let out = run(sandbox.outpost().args(["--board", "x86_64-dev", "--cache-dir"]).arg(sandbox.path().join("c")).args(["provision", "--manifest"]).arg(&manifest));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains(&manifest.display().to_string()) && last.contains("version"), "{last}");
    // `cache import --allow-volatile-cache` is in the help.
    let out = run(sandbox.outpost().arg("--help"));
    assert!(out.stdout.lines().any(|l| l.contains("cache import") && l.contains("--allow-volatile-cache")), "{}", out.stdout);
}

#[test]
fn floats_print_in_their_shortest_form() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["--board", "x86_64-dev", "--set", "run.confidence=1e-320", "config"]));
    let line = out.stdout.lines().find(|l| l.starts_with("run.confidence")).unwrap();
    assert!(line.contains("= 1e-320 "), "{line}");
    let out = run(sandbox.outpost().args(["--board", "x86_64-dev", "--set", "run.max_fps=1e308", "config"]));
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("1e308 is out of range") && out.stderr.len() < 300, "{}", out.stderr);
}
