//! Provisioning against a hostile network (servers on 127.0.0.1): redirects that leave https,
//! compressed bodies, an API key over plain http or with characters that need encoding, a server
//! asking for absurd waits, oversized signatures, settings that would switch checks off, and
//! secrets in `outpost config`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{payload, serve_file, sha256_hex, Response, Server};
use support::nginx::{Nginx, Pki};
use support::{leaks, run, Run, Sandbox};

fn outpost(s: &Sandbox) -> Command {
    let mut cmd = s.outpost();
    cmd.env("OUTPOST_BOARD", "x86_64-dev")
        .env("OUTPOST_CACHE_DIR", s.path().join("cache"))
        .env("OUTPOST_DOWNLOAD_RETRIES", "0")
        .env("OUTPOST_DOWNLOAD_BACKOFF_MS", "20");
    cmd
}

fn provision(s: &Sandbox, manifest: &Path, cmd: &mut Command) -> Run {
    run(cmd.arg("provision").arg("--manifest").arg(manifest).env("OUTPOST_CACHE_DIR", s.path().join("cache")))
}

fn pinned_manifest(s: &Sandbox, data: &[u8], source: &str, extra: &str) -> PathBuf {
    s.write(
        "models.toml",
        &format!(
            "version = 1\n{extra}[[models]]\nid = \"m\"\nsource = \"{source}\"\nsha256 = \"{}\"\nsize = {}\n",
            sha256_hex(data),
            data.len()
        ),
    )
}

#[test]
fn a_redirect_from_https_to_http_is_refused_without_allow_http() {
    let s = Sandbox::new();
    let data = payload(20_000, 3);
    let served = data.clone();
    let plain = Server::start(move |req, _| serve_file(req, &served, "\"p\""));
    let pki = Pki::create(s.path(), "lab");
    let root = s.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let extra = format!("location /moved/ {{ return 302 {}; }}", plain.url("/m.onnx?token=SEKRIT123"));
    let nginx = Nginx::start_with(s.path(), &root, &pki, &extra);
    let manifest = pinned_manifest(&s, &data, &nginx.url("/moved/m.onnx"), "");
    let out = provision(&s, &manifest, outpost(&s).env("OUTPOST_DOWNLOAD_CA_FILE", pki.ca()));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("redirected to plain http") && out.stderr.contains("allow_http"), "{}", out.stderr);
    assert!(!out.stderr.contains("SEKRIT123"), "the redirect target's token is masked: {}", out.stderr);
    assert!(plain.requests().is_empty(), "nothing was fetched over plain http");
    assert!(!s.path().join("cache/current").exists());
}

#[test]
fn a_followed_redirect_is_logged_at_info() {
    let s = Sandbox::new();
    let data = payload(20_000, 4);
    let served = data.clone();
    let server = Server::start(move |req, _| {
        if req.path == "/old" {
            Response::status(301).header("Location", "/new")
        } else {
            serve_file(req, &served, "\"n\"")
        }
    });
    let manifest = pinned_manifest(&s, &data, &server.url("/old"), "allow_http = true\n");
    let out = provision(&s, &manifest, &mut outpost(&s));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.lines().any(|l| l.starts_with("INFO") && l.contains("redirected to") && l.contains("/new")), "{}", out.stderr);
}

#[test]
fn a_compressed_body_is_never_stored_as_the_model() {
    let s = Sandbox::new();
    let data = payload(20_000, 5);
    let served = data.clone();
    let server = Server::start(move |req, _| {
        if req.path == "/env.json" {
            // What a server that compresses JSON regardless of Accept-Encoding sends.
            Response::status(200).header("Content-Encoding", "gzip").body(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        } else {
            serve_file(req, &served, "\"m\"")
        }
    });
    let manifest = pinned_manifest(&s, &data, &server.url("/m"), "allow_http = true\n");
    let text = std::fs::read_to_string(&manifest).unwrap() + &format!("environment = \"{}\"\n", server.url("/env.json"));
    std::fs::write(&manifest, text).unwrap();
    let out = provision(&s, &manifest, &mut outpost(&s));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("gzip") && out.stderr.contains("Content-Encoding"), "{}", out.stderr);
    let asked = server.requests();
    assert!(asked.iter().all(|(r, _)| r.header("accept-encoding") == Some("identity")), "{asked:?}");
    assert!(!s.path().join("cache/current").exists(), "nothing activated");
}

#[test]
fn retry_after_is_capped_by_backoff_max() {
    let s = Sandbox::new();
    let data = payload(10_000, 6);
    let served = data.clone();
    let server = Server::start(move |req, n| {
        if n == 0 {
            Response::status(503).header("Retry-After", "1000000000")
        } else {
            serve_file(req, &served, "\"r\"")
        }
    });
    let manifest = pinned_manifest(&s, &data, &server.url("/m"), "allow_http = true\n");
    let started = Instant::now();
    let out = provision(
        &s,
        &manifest,
        outpost(&s).env("OUTPOST_DOWNLOAD_RETRIES", "1").env("OUTPOST_DOWNLOAD_BACKOFF_MAX_SECS", "1"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20), "waited {:?}", started.elapsed());
}

#[test]
fn an_oversized_signature_file_is_refused_before_reading_it() {
    let s = Sandbox::new();
    let data = payload(1_000, 7);
    let manifest = pinned_manifest(&s, &data, "https://127.0.0.1:9/m", "");
    std::fs::write(s.path().join("models.toml.sig"), vec![b'a'; 10 << 20]).unwrap();
    let out = provision(&s, &manifest, outpost(&s).env("OUTPOST_PROVISION_TRUSTED_KEYS", "00".repeat(32)));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("models.toml.sig") && out.stderr.contains("64 bytes"), "{}", out.stderr);
}

#[test]
fn an_empty_trusted_keys_setting_is_refused_and_none_says_it_on_purpose() {
    let s = Sandbox::new();
    s.write("outpost.toml", &format!("[provision]\ntrusted_keys = [\"{}\"]\n", "11".repeat(32)));
    let data = payload(1_000, 8);
    let blob = s.path().join("m.bin");
    std::fs::write(&blob, &data).unwrap();
    let manifest = pinned_manifest(&s, &data, &format!("file://{}", blob.display()), "");
    let out = provision(&s, &manifest, outpost(&s).env("OUTPOST_PROVISION_TRUSTED_KEYS", ""));
    assert_eq!(out.code, 3, "an empty variable must not switch signatures off: {}", out.stderr);
    assert!(out.stderr.contains("provision.trusted_keys") && out.stderr.contains("none"), "{}", out.stderr);
    assert!(!s.path().join("cache/current").exists());
    let out = provision(&s, &manifest, outpost(&s).env("OUTPOST_PROVISION_TRUSTED_KEYS", "none"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("0 trusted keys"), "the key count is logged at info: {}", out.stderr);
}

#[test]
fn config_masks_webhook_credentials_like_the_logs() {
    let s = Sandbox::new();
    let url = "https://hookuser:HOOKPASS99@hooks.example/in?token=TOKSECRET42";
    for json in [false, true] {
        let mut cmd = outpost(&s);
        cmd.args(["--set", &format!("sinks.webhook.url={url}"), "config"]);
        if json {
            cmd.arg("--json");
        }
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("hooks.example"), "{}", out.stdout);
        assert!(!leaks(&out.stdout, "HOOKPASS99") && !leaks(&out.stdout, "TOKSECRET42"), "{}", out.stdout);
    }
}

/// A Roboflow-API stand-in that records the key it receives.
fn roboflow_api() -> Server {
    Server::start(move |req, _| {
        let port = req.header("host").unwrap_or("").to_string();
        if req.path.starts_with("/ort/") {
            let body = format!(r#"{{"ort":{{"model":"http://{port}/w.onnx","modelType":"yolov8n"}}}}"#);
            return Response::status(200).body(body.into_bytes());
        }
        serve_file(req, &payload(5_000, 9), "\"w\"")
    })
}

#[test]
fn the_api_key_never_travels_over_plain_http_without_allow_http() {
    let s = Sandbox::new();
    let api = roboflow_api();
    let manifest = s.write("models.toml", "version = 1\n[[models]]\nid = \"cars\"\nsource = \"roboflow:cars/1\"\n");
    let out = provision(
        &s,
        &manifest,
        outpost(&s).env("OUTPOST_ROBOFLOW_API_BASE", api.url("")).env("ROBOFLOW_API_KEY", "rf_plain_KEY123"),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("cleartext") && out.stderr.contains("allow_http"), "{}", out.stderr);
    assert!(api.requests().is_empty(), "the key was not sent");
}

#[test]
fn an_api_key_with_reserved_characters_is_encoded_and_masked_whole() {
    let s = Sandbox::new();
    let api = roboflow_api();
    let manifest = s.write("models.toml", "version = 1\nallow_http = true\n[[models]]\nid = \"cars\"\nsource = \"roboflow:cars/1\"\n");
    let key = "rf key#TAILSECRET77&x=1";
    let out = provision(
        &s,
        &manifest,
        outpost(&s).env("OUTPOST_ROBOFLOW_API_BASE", api.url("")).env("ROBOFLOW_API_KEY", key).args(["--log-level", "debug"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = &api.requests()[0].0.path;
    assert!(path.contains("api_key=rf%20key%23TAILSECRET77%26x%3D1&device="), "{path}");
    assert!(out.stderr.contains("cleartext"), "the http API base is warned about: {}", out.stderr);
    assert!(!leaks(&out.stderr, "TAILSECRET77"), "{}", out.stderr);
}

#[test]
fn verifying_a_cache_that_does_not_exist_is_an_error_and_creates_nothing() {
    let s = Sandbox::new();
    let typo = s.path().join("cahce");
    for args in [&["cache", "verify"][..], &["cache", "gc"]] {
        let out = run(outpost(&s).env("OUTPOST_CACHE_DIR", &typo).args(args));
        assert_eq!(out.code, 4, "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains(&typo.display().to_string()), "{}", out.stderr);
        assert!(!typo.exists(), "{args:?} created the cache");
    }
    std::fs::create_dir_all(&typo).unwrap();
    let out = run(outpost(&s).env("OUTPOST_CACHE_DIR", &typo).args(["cache", "verify"]));
    assert_eq!(out.code, 4, "an empty cache verifies nothing: {}", out.stdout);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
}

/// Serves `data` honouring `Range` without any validator (no ETag, no Last-Modified): the kind
/// of server on which a blind resume splices files.
fn serve_without_validator(req: &support::http::Request, data: &[u8]) -> Response {
    let start = req.header("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split('-').next()).and_then(|s| s.parse::<usize>().ok());
    match start {
        Some(start) if start < data.len() => Response::status(206)
            .header("Content-Range", &format!("bytes {start}-{}/{}", data.len() - 1, data.len()))
            .body(data[start..].to_vec()),
        _ => Response::status(200).body(data.to_vec()),
    }
}

#[test]
fn a_resumed_unpinned_download_never_splices_two_files() {
    let s = Sandbox::new();
    let (a, b) = (payload(300_000, 31), payload(300_000, 32));
    let (served_a, served_b) = (a.clone(), b.clone());
    let api = Server::start(move |req, _| {
        let host = req.header("host").unwrap_or("").to_string();
        if let Some(rest) = req.path.strip_prefix("/ort/cars-abc/") {
            let file = if rest.starts_with('3') { "a" } else { "b" };
            return Response::status(200).body(format!(r#"{{"ort":{{"model":"http://{host}/{file}.onnx"}}}}"#).into_bytes());
        }
        match req.path.as_str() {
            // Version 3's weights: the connection drops after 100 kB.
            "/a.onnx" => serve_without_validator(req, &served_a).cut(support::http::Cut::CloseAfter(100_000)),
            _ => serve_without_validator(req, &served_b),
        }
    });
    let manifest = |version: u32| {
        s.write(
            "models.toml",
            &format!("version = {version}\nallow_http = true\n[[models]]\nid = \"cars\"\nsource = \"roboflow:cars-abc/{version}\"\n"),
        )
    };
    let env = |cmd: &mut Command| {
        cmd.env("OUTPOST_ROBOFLOW_API_BASE", api.url("")).env("ROBOFLOW_API_KEY", "k");
    };
    let mut first = outpost(&s);
    env(&mut first);
    assert_eq!(provision(&s, &manifest(3), &mut first).code, 4, "version 3 is cut off");
    let mut second = outpost(&s);
    env(&mut second);
    let out = provision(&s, &manifest(4), &mut second);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ls = run(outpost(&s).args(["cache", "ls", "--json"]));
    let gen: serde_json::Value = serde_json::from_str(&ls.stdout).unwrap();
    assert_eq!(gen["models"][0]["sha256"], sha256_hex(&b).as_str(), "the blob is version 4's file, whole");
    let ranged = api.requests().iter().filter(|(r, _)| r.header("range").is_some()).count();
    assert_eq!(ranged, 0, "nothing was resumed without a strong validator");
}

#[test]
fn unpinned_downloads_are_capped_and_their_partials_dropped() {
    let s = Sandbox::new();
    let data = payload(10_000, 41);
    let served = data.clone();
    let server = Server::start(move |req, _| {
        if req.path == "/env.json" {
            // An "environment" that does not end where it should: 3 MB, no length announced.
            Response::status(200).body(vec![b' '; 3_000_000]).without_length()
        } else {
            serve_file(req, &served, "\"m\"")
        }
    });
    let manifest = pinned_manifest(&s, &data, &server.url("/m"), "allow_http = true\n");
    let text = std::fs::read_to_string(&manifest).unwrap() + &format!("environment = \"{}\"\n", server.url("/env.json"));
    std::fs::write(&manifest, text).unwrap();
    let out = provision(&s, &manifest, outpost(&s).env("OUTPOST_DOWNLOAD_MAX_ENVIRONMENT_MB", "1"));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("exceeds the 1000000 bytes"), "{}", out.stderr);
    let partials: Vec<_> = std::fs::read_dir(s.path().join("cache/partial")).unwrap().flatten().collect();
    assert!(partials.is_empty(), "the oversized partial is dropped: {partials:?}");
}

#[test]
fn a_fifo_as_a_file_source_is_refused_not_waited_on() {
    let s = Sandbox::new();
    let fifo = s.path().join("model.onnx");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let data = payload(1_000, 42);
    let manifest = pinned_manifest(&s, &data, &format!("file://{}", fifo.display()), "");
    let started = Instant::now();
    let out = provision(&s, &manifest, &mut outpost(&s));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn misbehaving_servers_cannot_outlast_the_provisioning_deadline() {
    let s = Sandbox::new();
    let data = payload(10_000, 43);
    // Always "come back later", for longer than any unit waits.
    let server = Server::start(|_, _| Response::status(503).header("Retry-After", "30"));
    let manifest = pinned_manifest(&s, &data, &server.url("/m"), "allow_http = true\n");
    let started = Instant::now();
    let out = provision(
        &s,
        &manifest,
        outpost(&s)
            .env("OUTPOST_DOWNLOAD_RETRIES", "50")
            .env("OUTPOST_DOWNLOAD_BACKOFF_MAX_SECS", "30")
            .env("OUTPOST_PROVISION_DEADLINE_SECS", "2"),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("provision.deadline_secs"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}
