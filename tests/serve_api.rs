//! `outpost serve` over real HTTP on 127.0.0.1: the Roboflow routes and their answers (equal to
//! `outpost detect`), errors as `{"message"}` with fitting statuses, API keys, and the limits an
//! abusive client meets (body and head size, decompression bombs, slow clients, queue, bad JSON).
//! The real `inference-sdk` client is driven against it in tests/serve_sdk.rs.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::serve::{b64, infer_body, provisioned_sandbox, request, Serve};
use support::{fixtures, run, Sandbox};

/// The tests here run one at a time: several time what a client waits (slowloris, the registry
/// beside inference), and parallel CenterFace runs on a 2-core machine would make that noise.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn image(name: &str) -> std::path::PathBuf {
    fixtures().join("images").join(name)
}

/// `outpost detect` on the same cache and image, with the server's default thresholds.
fn detect(sandbox: &Sandbox, model: &str, img: &std::path::Path) -> Value {
    let out = run(sandbox
        .outpost()
        .arg("--cache-dir")
        .arg(sandbox.path().join("cache"))
        .args(["detect", "--model", model, "--confidence", "0.4", "--iou", "0.3", "--max-detections", "300"])
        .arg(img));
    assert_eq!(out.code, 0, "detect: {}", out.stderr);
    serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap()
}

/// Same image size, same predictions (boxes within 0.5 px, same classes, same order).
fn assert_same_answer(served: &Value, detected: &Value) {
    assert_eq!(served["image"], detected["image"]);
    let (a, b) = (served["predictions"].as_array().unwrap(), detected["predictions"].as_array().unwrap());
    assert_eq!(a.len(), b.len(), "served {served}\ndetected {detected}");
    for (p, q) in a.iter().zip(b) {
        assert_eq!(p["class"], q["class"]);
        assert_eq!(p["class_id"], q["class_id"]);
        for k in ["x", "y", "width", "height"] {
            if p.get(k).is_some() {
                assert!((p[k].as_f64().unwrap() - q[k].as_f64().unwrap()).abs() < 0.5, "{k}: {p} vs {q}");
            }
        }
        assert!((p["confidence"].as_f64().unwrap() - q["confidence"].as_f64().unwrap()).abs() < 1e-4);
    }
}

#[test]
fn routes_answer_as_the_roboflow_server_and_equal_detect() {
    let _serial = serial();
    let sandbox = provisioned_sandbox();
    // cache-only: unknown ids are 404 without a provisioning attempt (on-demand is tested below).
    let mut serve = Serve::start(&sandbox, &["serve.provision=cache-only"]);

    let info = serve.get("/info");
    assert_eq!(info.status, 200);
    assert_eq!(info.header("content-type"), Some("application/json"));
    let info = info.json();
    assert_eq!(info["name"], "outpost");
    assert!(info["version"].is_string() && info["uuid"].as_str().unwrap().len() == 36, "{info}");

    // The client's keyless spelling of the key: the literal `None`, not URL-encoded.
    let reg = serve.get("/model/registry?api_key=None");
    assert_eq!((reg.status, reg.json()), (200, json!({"models": []})));

    let added = serve.post_json("/model/add", &json!({"model_id": "faces", "api_key": null}));
    assert_eq!(added.status, 200, "{}", added.text());
    let models = added.json()["models"].clone();
    assert_eq!(models[0]["model_id"], "faces");
    assert_eq!(models[0]["task_type"], "object-detection");
    assert_eq!(models[0]["input_width"], Value::Null, "CenterFace runs at each image's size");

    // Detection equals `outpost detect`, single and as a list (list in, list out, in order).
    let single = serve.post_json("/infer/object_detection", &infer_body("faces", &image("astronaut.png")));
    assert_eq!(single.status, 200, "{}", single.text());
    assert_eq!(single.header("content-type"), Some("application/json"));
    let single = single.json();
    assert!(!single["predictions"].as_array().unwrap().is_empty(), "the astronaut has a face: {single}");
    assert_same_answer(&single, &detect(&sandbox, "faces", &image("astronaut.png")));
    let two = json!({"model_id": "faces", "image": [
        {"type": "base64", "value": b64(&std::fs::read(image("coffee.png")).unwrap())},
        {"type": "base64", "value": b64(&std::fs::read(image("astronaut.png")).unwrap())},
    ]});
    let list = serve.post_json("/infer/object_detection", &two).json();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_same_answer(&list[0], &detect(&sandbox, "faces", &image("coffee.png")));
    assert_same_answer(&list[1], &single);

    // Options: a confidence above every face's empties the answer; class_filter keeps one class.
    let mut body = infer_body("faces", &image("astronaut.png"));
    body["confidence"] = json!(0.999);
    assert_eq!(serve.post_json("/infer/object_detection", &body).json()["predictions"], json!([]));
    body["confidence"] = json!(0.4);
    body["class_filter"] = json!(["no-such-class"]);
    assert_eq!(serve.post_json("/infer/object_detection", &body).json()["predictions"], json!([]));

    // visualize_predictions: the annotated image as base64 JPEG, the size of the input.
    let mut body = infer_body("faces", &image("astronaut.png"));
    body["visualize_predictions"] = json!(true);
    let vis = serve.post_json("/infer/object_detection", &body).json();
    let jpeg = support::serve::unb64(vis["visualization"].as_str().expect("a visualization"));
    let drawn = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (512, 512));
    let p = &vis["predictions"][0];
    let left = (p["x"].as_f64().unwrap() - p["width"].as_f64().unwrap() / 2.0).round() as u32 + 1;
    let edge = drawn.get_pixel(left, p["y"].as_f64().unwrap() as u32);
    assert!(edge[0] > 200 && edge[1] < 110, "no box colour on the box's edge: {edge:?}");

    // Classification (loaded on demand by the infer route, as the real server does).
    let class = serve.post_json("/infer/classification", &infer_body("colour", &image("chelsea.png")));
    assert_eq!(class.status, 200, "{}", class.text());
    let class = class.json();
    assert_same_answer(&class, &detect(&sandbox, "colour", &image("chelsea.png")));
    assert_eq!(class["top"], class["predictions"][0]["class"]);
    let reg = serve.get("/model/registry").json();
    let colour = reg["models"].as_array().unwrap().iter().find(|m| m["model_id"] == "colour").unwrap().clone();
    assert_eq!((colour["task_type"].as_str(), colour["input_width"].as_u64()), (Some("classification"), Some(64)));
    // The wrong task's route says which one to use.
    let wrong = serve.post_json("/infer/object_detection", &infer_body("colour", &image("chelsea.png")));
    assert_eq!(wrong.status, 400);
    assert!(wrong.message().contains("/infer/classification"), "{}", wrong.message());

    // Legacy v0 needs a dataset/version: a manifest id has none, so it is a 404 naming it.
    let b64_body = b64(&std::fs::read(image("astronaut.png")).unwrap());
    let v0 = request(serve.addr, "POST", "/faces/1?api_key=None", &[("Content-Type", "application/json")], b64_body.as_bytes());
    assert_eq!(v0.status, 404, "{}", v0.text());
    assert!(v0.message().contains("faces/1"), "{}", v0.message());

    // Unknown model: 404 naming it and how to add it; unknown route: 404 JSON.
    let unknown = serve.post_json("/infer/object_detection", &infer_body("nope/3", &image("astronaut.png")));
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("content-type"), Some("application/json"));
    assert!(unknown.message().contains("nope/3") && unknown.message().contains("manifest"), "{}", unknown.message());
    let head = request(serve.addr, "HEAD", "/info", &[], b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert!(head.header("content-length").unwrap().parse::<usize>().unwrap() > 0);
    let no_route = serve.get("/no/such/route/here");
    assert_eq!((no_route.status, no_route.header("content-type")), (404, Some("application/json")));

    // Junk image: 400 with the real server's wording; the server answers the next request.
    let junk = serve.post_json("/infer/object_detection", &json!({"model_id": "faces", "image": {"type": "base64", "value": b64(b"definitely not an image")}}));
    assert_eq!(junk.status, 400);
    assert!(junk.message().starts_with("Could not load input image"), "{}", junk.message());

    // Unload: unknown is a no-op 200; clear takes no body and no Content-Type.
    let removed = serve.post_json("/model/remove", &json!({"model_id": "not-loaded"}));
    assert_eq!(removed.status, 200);
    let removed = serve.post_json("/model/remove", &json!({"model_id": "faces"})).json();
    assert!(removed["models"].as_array().unwrap().iter().all(|m| m["model_id"] != "faces"), "{removed}");
    let cleared = request(serve.addr, "POST", "/model/clear", &[], b"");
    assert_eq!((cleared.status, cleared.json()), (200, json!({"models": []})));

    let metrics = serve.get("/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let text = metrics.text();
    for expected in [
        "outpost_http_requests_total{route=\"/infer/object_detection\",status=\"200\"}",
        "outpost_http_requests_total{route=\"/infer/object_detection\",status=\"404\"}",
        "outpost_inference_seconds_count{model=\"faces\"}",
        "outpost_models_loaded 0",
        "outpost_cache_generation 1",
        "outpost_process_resident_bytes",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    serve.assert_alive();
}

#[test]
fn roboflow_models_answer_to_every_spelling_and_the_legacy_route() {
    let _serial = serial();
    let rf = support::serve::roboflow_standin();
    let sandbox = support::serve::roboflow_sandbox(&rf);
    let fetched = rf.requests().len();
    let mut serve = Serve::start_with(support::serve::with_roboflow(&sandbox, &rf), &[]);
    let want = detect(&sandbox, "faces-rf", &image("astronaut.png"));

    // The manifest id, the dataset/version the SDK sends, and (for curl users) the alias.
    for spelling in ["faces-rf", "faces-demo/1"] {
        let r = serve.post_json("/infer/object_detection", &infer_body(spelling, &image("astronaut.png")));
        assert_eq!(r.status, 200, "{spelling}: {}", r.text());
        assert_same_answer(&r.json(), &want);
    }
    assert_eq!(serve.post_json("/model/add", &json!({"model_id": "yolov8n-640"})).status, 200);
    let listed: Vec<String> = serve.get("/model/registry").json()["models"].as_array().unwrap().iter()
        .map(|m| m["model_id"].as_str().unwrap().to_string()).collect();
    for spelling in ["faces-rf", "faces-demo/1", "yolov8n-640"] {
        assert!(listed.iter().any(|l| l == spelling), "{spelling} not in {listed:?}");
    }
    assert_eq!(serve.post_json("/model/add", &json!({"model_id": "coco/3"})).json()["models"].as_array().unwrap().len(), 4);

    // Legacy v0: base64 text labelled as JSON, options in the query (confidence in percent,
    // booleans as Python writes them); multipart with a `file` part (curl -F) too.
    let b64_body = b64(&std::fs::read(image("astronaut.png")).unwrap());
    let v0 = request(serve.addr, "POST", "/faces-demo/1?api_key=None&confidence=40&overlap=30&allow_reduced_mask_resolution=False&disable_active_learning=False",
        &[("Content-Type", "application/json")], b64_body.as_bytes());
    assert_eq!(v0.status, 200, "{}", v0.text());
    assert_same_answer(&v0.json(), &want);
    let v0_strict = request(serve.addr, "POST", "/faces-demo/1?confidence=99.9", &[("Content-Type", "application/json")], b64_body.as_bytes());
    assert_eq!(v0_strict.json()["predictions"], json!([]), "confidence=99.9 is 0.999");
    let no_type = request(serve.addr, "POST", "/faces-demo/1", &[], b64_body.as_bytes());
    assert_eq!(no_type.status, 400);
    assert!(no_type.message().contains("Content-Type"), "{}", no_type.message());
    let png = std::fs::read(image("astronaut.png")).unwrap();
    let mut form = b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    form.extend_from_slice(&png);
    form.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
    let multipart = request(serve.addr, "POST", "/faces-demo/1", &[("Content-Type", "multipart/form-data; boundary=BOUNDARY")], &form);
    assert_eq!(multipart.status, 200, "{}", multipart.text());
    assert_same_answer(&multipart.json(), &want);

    // All of it from the cache: not one request reached the Roboflow API.
    assert_eq!(rf.requests().len(), fetched, "serve went to the network");
    serve.assert_alive();
}

#[test]
fn on_demand_models_are_downloaded_once_cached_and_survive_a_restart() {
    let _serial = serial();
    let rf = support::serve::roboflow_standin_throttled(Some((1 << 20, Duration::from_millis(150))));
    let sandbox = provisioned_sandbox();
    let manifest = sandbox.path().join("models.toml");
    let serve_cmd = || {
        let mut cmd = support::serve::with_roboflow(&sandbox, &rf);
        cmd.arg("--manifest").arg(&manifest);
        cmd
    };
    let api_calls = |rf: &support::http::Server| rf.requests().iter().filter(|(r, _)| r.path.starts_with("/ort/")).count();
    let serve = Serve::start_with(serve_cmd(), &[]);

    // While it downloads, the same model is "still loading" (503); the listing is not blocked.
    let adding = std::thread::scope(|scope| {
        let first = scope.spawn(|| serve.post_json("/model/add", &json!({"model_id": "faces-demo/1", "api_key": null})));
        std::thread::sleep(Duration::from_millis(400));
        let second = serve.post_json("/model/add", &json!({"model_id": "faces-demo/1"}));
        assert_eq!(second.status, 503, "{}", second.text());
        assert_eq!(second.header("retry-after"), Some("1"));
        let started = Instant::now();
        assert_eq!(serve.get("/model/registry").status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
        first.join().unwrap()
    });
    assert_eq!(adding.status, 200, "{}", adding.text());
    assert_eq!(adding.json()["models"][0]["model_id"], "faces-demo/1");
    assert_eq!(api_calls(&rf), 1);
    let answer = serve.post_json("/infer/object_detection", &infer_body("faces-demo/1", &image("astronaut.png")));
    assert_same_answer(&answer.json(), &detect(&sandbox, "faces-demo/1", &image("astronaut.png")));
    let verify = run(sandbox.outpost().arg("--cache-dir").arg(sandbox.path().join("cache")).args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    drop(serve);

    // A restart provisions the same manifest: the cache is complete, the addition is kept, and
    // the model loads without a request to Roboflow.
    let serve = Serve::start_with(serve_cmd(), &[]);
    assert_eq!(serve.post_json("/model/add", &json!({"model_id": "faces-demo/1"})).status, 200);
    assert_eq!(api_calls(&rf), 1, "downloaded again after a restart");
    let weights = rf.requests().iter().filter(|(r, s)| r.path.starts_with("/weights/") && *s < 300).count();
    assert!(weights >= 1);

    // Keys: none configured or sent is 401; a wrong one 403; the client's own key works.
    let mut keyless = serve_cmd();
    keyless.env_remove("ROBOFLOW_API_KEY");
    drop(serve);
    let serve = Serve::start_with(keyless, &[]);
    let r = serve.post_json("/model/add", &json!({"model_id": "yolov8n-640", "api_key": null}));
    assert_eq!(r.status, 401, "{}", r.text());
    let r = serve.post_json("/model/add", &json!({"model_id": "yolov8n-640", "api_key": "wrong-key"}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains("wrong-key"));
    let r = serve.post_json("/model/add", &json!({"model_id": "yolov8n-640", "api_key": support::serve::ROBOFLOW_KEY}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["models"].as_array().unwrap().iter().any(|m| m["model_id"] == "yolov8n-640"));
    assert!(!serve.log().contains(support::serve::ROBOFLOW_KEY), "the key reached the log");
    drop(serve);

    // cache-only: an uncached model is a 404 naming it and the manifest, with no network.
    let before = rf.requests().len();
    let serve = Serve::start_with(serve_cmd(), &["serve.provision=cache-only"]);
    let r = serve.post_json("/model/add", &json!({"model_id": "coco/9"}));
    assert_eq!(r.status, 404);
    assert!(r.message().contains("coco/9") && r.message().contains("manifest"), "{}", r.message());
    assert_eq!(rf.requests().len(), before);
    drop(serve);

    // Offline (the API unreachable): a 404 that says why; the server stays up.
    let mut offline = sandbox.outpost();
    offline.arg("--cache-dir").arg(sandbox.path().join("cache"))
        .env("OUTPOST_ROBOFLOW_API_BASE", "http://127.0.0.1:9")
        .env("ROBOFLOW_API_KEY", support::serve::ROBOFLOW_KEY)
        .env("OUTPOST_DOWNLOAD_RETRIES", "0");
    let mut serve = Serve::start_with(offline, &[]);
    let r = serve.post_json("/model/add", &json!({"model_id": "coco/9"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("coco/9"), "{}", r.message());
    // The cached models still load and infer.
    assert_eq!(serve.post_json("/infer/object_detection", &infer_body("faces-demo/1", &image("astronaut.png"))).status, 200);
    serve.assert_alive();
}

#[test]
fn on_demand_fills_an_empty_cache() {
    let _serial = serial();
    let rf = support::serve::roboflow_standin();
    let sandbox = Sandbox::new();
    let serve = Serve::start_with(support::serve::with_roboflow(&sandbox, &rf), &[]);
    assert_eq!(serve.get("/model/registry").json(), json!({"models": []}));
    let r = serve.post_json("/model/add", &json!({"model_id": "faces-demo/1"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = serve.post_json("/infer/object_detection", &infer_body("faces-demo/1", &image("astronaut.png")));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(serve);
    let ls = run(sandbox.outpost().arg("--cache-dir").arg(sandbox.path().join("cache")).args(["cache", "ls"]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("faces-demo-1") && ls.stdout.contains("roboflow:faces-demo/1"), "{}", ls.stdout);
    // Its engine was chosen when it entered the cache (x86_64-dev: backend auto, 2 threads), as
    // `provision` does, not left to tract until the next provision.
    let records: Vec<_> = std::fs::read_dir(sandbox.path().join("cache/engines"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(records.iter().any(|name| name.ends_with("-t2.json")), "no engine record: {records:?}");
    // A manifest (version 1) replaces the on-demand one (version 0) without a downgrade error.
    let manifest = support::serve::fixture_manifest(&sandbox);
    let out = run(sandbox.outpost().arg("--cache-dir").arg(sandbox.path().join("cache")).arg("provision").arg("--manifest").arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn api_keys_are_required_when_configured_and_never_logged() {
    let _serial = serial();
    let sandbox = provisioned_sandbox();
    let key = "sk_SERVE_7f3a91";
    let mut serve = Serve::start(&sandbox, &[&format!("serve.api_keys={key},second-key"), "log.level=trace"]);
    assert_eq!(serve.get("/info").status, 200, "/info needs no key");
    assert_eq!(serve.get("/healthz").status, 200);
    assert_eq!(serve.get("/readiness").status, 200);
    let missing = serve.get("/model/registry?api_key=None");
    assert_eq!(missing.status, 401);
    assert!(missing.message().contains("API key"), "{}", missing.message());
    assert_eq!(serve.get("/model/registry?api_key=wrong").status, 403);
    assert_eq!(serve.get(&format!("/model/registry?api_key={key}")).status, 200);
    assert_eq!(serve.get("/model/registry?api_key=second-key").status, 200);
    let bearer = request(serve.addr, "GET", "/metrics", &[("Authorization", &format!("Bearer {key}"))], b"");
    assert_eq!(bearer.status, 200);
    let mut body = infer_body("faces", &image("astronaut.png"));
    assert_eq!(serve.post_json("/infer/object_detection", &body).status, 401);
    body["api_key"] = json!(key);
    assert_eq!(serve.post_json("/infer/object_detection", &body).status, 200);
    serve.assert_alive();
    assert!(!serve.log().contains(key), "the key reached the log:\n{}", serve.log());
    assert!(!serve.get(&format!("/metrics?api_key={key}")).text().contains(key));
}

/// A PNG that declares `w` x `h` pixels and holds almost nothing: a decompression bomb's header.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn abusive_requests_get_clear_errors_and_the_server_stays_up() {
    let _serial = serial();
    let sandbox = provisioned_sandbox();
    let mut serve = Serve::start(&sandbox, &["serve.max_body_mb=1", "serve.header_timeout_secs=2", "serve.max_header_kb=8"]);
    let rss_before = serve.rss_kib();

    // Oversized body: 413 from the Content-Length, before reading it.
    let big = vec![b'a'; 2_000_000];
    let r = request(serve.addr, "POST", "/infer/object_detection", &[("Content-Type", "application/json")], &big);
    assert_eq!(r.status, 413);
    assert!(r.message().contains("too large"), "{}", r.message());

    // Slow uploads of large bodies on many connections: four 1 MB bodies at once (4 x
    // serve.max_body_mb) are held; the fifth gets 429 instead of more memory.
    let head = format!("POST /infer/object_detection HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"model_id\"", 1_000_000);
    let mut uploads: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(serve.addr).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = TcpStream::connect(serve.addr).unwrap();
    fifth.write_all(head.as_bytes()).unwrap();
    let r = support::serve::read_reply(&mut fifth);
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")), "{}", r.text());
    uploads.clear();
    assert!(support::serve::eventually(Duration::from_secs(5), || serve.get("/info").status == 200));

    // A 20000 x 20000 PNG: refused from its header, before 1.2 GB is allocated.
    let bomb = json!({"model_id": "faces", "image": {"type": "base64", "value": b64(&png_declaring(20_000, 20_000))}});
    let r = serve.post_json("/infer/object_detection", &bomb);
    assert_eq!(r.status, 400);
    assert!(r.message().contains("20000x20000"), "{}", r.message());

    // Malformed JSON and wrong field types: 400 naming the problem.
    let r = request(serve.addr, "POST", "/infer/object_detection", &[("Content-Type", "application/json")], b"{\"model_id\": ");
    assert_eq!(r.status, 400);
    assert!(r.message().contains("not valid JSON"), "{}", r.message());
    for (body, field) in [
        (json!({"model_id": 7, "image": "aGk="}), "model_id"),
        (json!({"model_id": "faces", "image": 5}), "image"),
        (json!({"model_id": "faces", "image": "aGk=", "confidence": "very"}), "confidence"),
        (json!({"model_id": "faces", "image": "aGk=", "iou_threshold": [1]}), "iou_threshold"),
        (json!(["not", "an", "object"]), "JSON object"),
    ] {
        let r = serve.post_json("/infer/object_detection", &body);
        assert_eq!(r.status, 400, "{body}");
        assert!(r.message().contains(field), "{body}: {}", r.message());
    }

    // A header flood and an oversized head: 431.
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("X-Flood-{i}"), "x".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(request(serve.addr, "GET", "/info", &many, b"").status, 431);
    let long = "y".repeat(10_000);
    assert_eq!(request(serve.addr, "GET", "/info", &[("X-Long", &long)], b"").status, 431);
    // Not HTTP at all: 400, and no panic.
    let mut s = TcpStream::connect(serve.addr).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00garbage that is no request\r\n\r\n").unwrap();
    assert_eq!(support::serve::read_reply(&mut s).status, 400);
    // Chunked bodies are refused with 411 rather than misread.
    let r = request(serve.addr, "POST", "/model/add", &[("Transfer-Encoding", "chunked")], b"");
    assert_eq!(r.status, 411);

    // Slowloris: 20 connections dribbling a head; others are still served at once, and the slow
    // ones are cut at serve.header_timeout_secs with 408.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(serve.addr).unwrap();
            s.write_all(b"GET /info HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(serve.get("/info").status, 200);
        assert!(started.elapsed() < Duration::from_secs(1), "a normal client waited {:?}", started.elapsed());
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut timed_out = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if support::serve::read_reply(s).status == 408 {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 20);

    let metrics = serve.get("/metrics").text();
    for reason in ["body_size", "body_memory", "header_size", "malformed", "timeout", "length_required"] {
        assert!(metrics.contains(&format!("outpost_http_rejected_total{{reason=\"{reason}\"}}")), "{reason} not counted:\n{metrics}");
    }
    serve.assert_alive();
    let rss_after = serve.rss_kib();
    assert!(rss_after < rss_before + 200_000, "RSS grew from {rss_before} to {rss_after} KiB");
}

#[test]
fn parallel_clients_get_equal_answers_and_a_full_queue_gets_429() {
    let _serial = serial();
    let sandbox = provisioned_sandbox();
    // A small image keeps CenterFace quick; the colour classifier is the second model.
    let small = sandbox.path().join("small.png");
    let img = image::open(image("astronaut.png")).unwrap().resize(128, 128, image::imageops::FilterType::Triangle);
    img.save(&small).unwrap();
    let serve = Serve::start(&sandbox, &[]);
    let faces = infer_body("faces", &small);
    let colour = infer_body("colour", &image("chelsea.png"));
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("inference_id");
        v.as_object_mut().unwrap().remove("time");
        for p in v["predictions"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("detection_id");
        }
        v
    };
    let want_faces = strip(serve.post_json("/infer/object_detection", &faces).json());
    let want_colour = strip(serve.post_json("/infer/classification", &colour).json());
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (serve, faces, colour, want_faces, want_colour) = (&serve, &faces, &colour, &want_faces, &want_colour);
            scope.spawn(move || {
                for i in 0..25 {
                    let (route, body, want) = if (t + i) % 2 == 0 {
                        ("/infer/object_detection", faces, want_faces)
                    } else {
                        ("/infer/classification", colour, want_colour)
                    };
                    let r = serve.post_json(route, body);
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(&strip(r.json()), want);
                    if i % 5 == 0 {
                        // The registry never waits behind an inference.
                        let started = Instant::now();
                        assert_eq!(serve.get("/model/registry").status, 200);
                        assert!(started.elapsed() < Duration::from_millis(500), "registry took {:?}", started.elapsed());
                    }
                }
            });
        }
    });
    // Memory stays bounded: each model's working memory lives on its own worker thread, not in
    // every connection thread's allocator arena (that grew a 16-client server past 1.3 GB).
    let rss = serve.rss_kib();
    assert!(rss < 600_000, "RSS {rss} KiB after 200 requests from 8 clients");
    drop(serve);

    // No queue at all: concurrent requests beyond the running one get 429 with Retry-After.
    let serve = Serve::start(&sandbox, &["serve.queue=0"]);
    let slow_image = infer_body("faces", &image("astronaut.png"));
    assert_eq!(serve.post_json("/model/add", &json!({"model_id": "faces"})).status, 200);
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (serve, body) = (&serve, &slow_image);
                scope.spawn(move || {
                    let r = serve.post_json("/infer/object_detection", body);
                    (r.status, r.header("retry-after").map(String::from))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().any(|(s, _)| *s == 200), "{statuses:?}");
    assert!(statuses.iter().any(|(s, r)| *s == 429 && r.as_deref() == Some("1")), "{statuses:?}");
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 429), "{statuses:?}");
    let metrics = serve.get("/metrics").text();
    assert!(metrics.contains("outpost_http_rejected_total{reason=\"queue_full\"}"), "{metrics}");
    drop(serve);

    // Decoded images are bounded too: with 1-megapixel images allowed, three may be held at
    // once (waiting or in the model); more concurrent ones get 429, not more memory.
    let serve = Serve::start(&sandbox, &["inference.max_image_megapixels=1"]);
    let big = sandbox.path().join("big.png");
    image::open(image("astronaut.png")).unwrap().resize_exact(1000, 1000, image::imageops::FilterType::Triangle).save(&big).unwrap();
    let body = infer_body("faces", &big);
    assert_eq!(serve.post_json("/infer/object_detection", &body).status, 200);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6).map(|_| scope.spawn(|| serve.post_json("/infer/object_detection", &body).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&429) && statuses.contains(&200), "{statuses:?}");
    let metrics = serve.get("/metrics").text();
    assert!(metrics.contains("outpost_http_rejected_total{reason=\"image_memory\"}"), "{metrics}");
    assert!(metrics.contains("outpost_http_requests_total{route=\"/infer/object_detection\",status=\"429\"}"), "{metrics}");
}

#[test]
fn too_many_connections_get_429_and_a_bad_listen_address_is_a_config_error() {
    let _serial = serial();
    let sandbox = provisioned_sandbox();
    let serve = Serve::start(&sandbox, &["serve.max_connections=2"]);
    let _held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(serve.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = serve.get("/info");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));

    let out = run(sandbox.outpost().args(["--cache-dir", "/tmp", "serve", "--listen", "nonsense"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("serve.listen"), "{}", out.stderr);
}
