//! Roboflow model ids through a stand-in of Roboflow's API on 127.0.0.1: resolution, aliases,
//! trust-on-first-use digests, no API call once cached, and the API key in no output or file.

mod support;

use std::path::{Path, PathBuf};

use support::http::{payload, serve_file, sha256_hex, Response, Server};
use support::{run, Run, Sandbox};

/// These tests are about fetching; `auto` would time both engines on every model provisioned,
/// minutes under qemu-aarch64 (CI runs this file there). tests/engines_cli.rs covers `auto`.
const ONE_ENGINE: &str = "[inference]\nbackend = \"tract\"\n";

const KEY: &str = "rf_live_SECRET_9a8b7c";

struct Roboflow {
    server: Server,
    weights_sha: String,
}

/// Answers /ort/coco/3 (and /ort/cars-abc/2) like Roboflow's API, then serves the weights and
/// environment.json it points to. Requests without the right key get 401.
fn roboflow() -> Roboflow {
    let weights = payload(80_000, 21);
    let weights_sha = sha256_hex(&weights);
    let env = br#"{"PREPROCESSING":"{\"resize\":{\"format\":\"Stretch to\"}}","CLASS_MAP":{"0":"car"}}"#.to_vec();
    let server = Server::start(move |req, _| {
        let port = req.header("host").unwrap_or("").to_string();
        if req.path.starts_with("/ort/") {
            if !req.path.contains(&format!("api_key={KEY}")) {
                return Response::status(401).body(b"{\"error\":\"unauthorized\"}".to_vec());
            }
            let body = format!(
                r#"{{"ort":{{"model":"http://{port}/weights/w.onnx?X-Amz-Signature=tok123","environment":"http://{port}/env.json","classes":["car","bus"],"modelType":"yolov8n","type":"object-detection"}}}}"#
            );
            return Response::status(200).header("Content-Type", "application/json").body(body.into_bytes());
        }
        if req.path.starts_with("/weights/") {
            return serve_file(req, &weights, "\"w\"");
        }
        if req.path == "/env.json" {
            return serve_file(req, &env, "\"e\"");
        }
        Response::status(404)
    });
    Roboflow { server, weights_sha }
}

fn setup(rf: &Roboflow, source: &str) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", ONE_ENGINE);
    let manifest = sandbox.write(
        "models.toml",
        &format!("version = 1\nallow_http = true\n[[models]]\nid = \"cars\"\nsource = \"{source}\"\n"),
    );
    let _ = rf;
    (sandbox, manifest)
}

fn provision(sandbox: &Sandbox, rf: &Roboflow, manifest: &Path, key: &str) -> Run {
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_BOARD", "jetson-orin-nano")
        .env("OUTPOST_CACHE_DIR", sandbox.path().join("cache"))
        .env("OUTPOST_ROBOFLOW_API_BASE", rf.server.url(""))
        .env("ROBOFLOW_API_KEY", key)
        .env("OUTPOST_DOWNLOAD_RETRIES", "0")
        .args(["--log-level", "trace", "provision", "--manifest"])
        .arg(manifest);
    run(&mut cmd)
}


#[test]
fn alias_resolves_downloads_and_records_trust_on_first_use() {
    let rf = roboflow();
    let (sandbox, manifest) = setup(&rf, "yolov8n-640");
    let out = provision(&sandbox, &rf, &manifest, KEY);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let paths: Vec<String> = rf.server.requests().iter().map(|(r, _)| r.path.split('?').next().unwrap().to_string()).collect();
    assert_eq!(paths, vec!["/ort/coco/3", "/weights/w.onnx", "/env.json"]);
    let api = &rf.server.requests()[0].0;
    assert!(api.path.contains("device=outpost-jetson-orin-nano") && api.path.contains("nocache=true"), "{}", api.path);

    let mut ls = sandbox.outpost();
    ls.env("OUTPOST_CACHE_DIR", sandbox.path().join("cache")).args(["cache", "ls", "--json"]);
    let gen: serde_json::Value = serde_json::from_str(&run(&mut ls).stdout).unwrap();
    let model = &gen["models"][0];
    assert_eq!(model["trust"], "trust-on-first-use");
    assert_eq!(model["sha256"], rf.weights_sha.as_str());
    assert_eq!(model["classes"], serde_json::json!(["car", "bus"]));
    assert_eq!(model["source"], "roboflow:yolov8n-640");
    assert!(model["environment_sha256"].is_string());
}

#[test]
fn complete_cache_makes_no_api_call() {
    let rf = roboflow();
    let (sandbox, manifest) = setup(&rf, "roboflow:cars-abc/2");
    assert_eq!(provision(&sandbox, &rf, &manifest, KEY).code, 0);
    let before = rf.server.requests().len();
    let out = provision(&sandbox, &rf, &manifest, KEY);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(rf.server.requests().len(), before, "no API call and no download at boot");
}

#[test]
fn api_key_appears_in_no_output_and_no_cache_file() {
    let rf = roboflow();
    let (sandbox, manifest) = setup(&rf, "roboflow:cars-abc/2");
    let out = provision(&sandbox, &rf, &manifest, KEY);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"), "trace logging was on");
    assert!(!support::leaks(&out.stderr, KEY) && !support::leaks(&out.stdout, KEY), "key leaked:\n{}", out.stderr);
    let token_lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("tok123")).collect();
    assert!(token_lines.is_empty(), "the pre-signed URL's token is masked too: {token_lines:#?}");
    for file in support::files_under(&sandbox.path().join("cache")) {
        let bytes = std::fs::read(&file).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(KEY), "{} holds the API key", file.display());
    }
}

#[test]
fn rejected_key_fails_clearly_without_echoing_it() {
    let rf = roboflow();
    let (sandbox, manifest) = setup(&rf, "roboflow:cars-abc/2");
    let wrong = "rf_WRONG_1234567";
    let out = provision(&sandbox, &rf, &manifest, wrong);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("API key was rejected"), "{}", out.stderr);
    assert!(!support::leaks(&out.stderr, wrong), "{}", out.stderr);
    assert_eq!(rf.server.requests().len(), 1, "a rejected key is not retried");
}
