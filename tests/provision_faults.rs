//! `outpost provision` against a fault-injecting HTTP server on 127.0.0.1: each fault gets the
//! right retry or a clear error, and nothing unverified ever enters the cache.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::{payload, serve_file, sha256_hex, Cut, Response, Server};
use support::{run, Run, Sandbox};

const SIZE: usize = 300_000;

struct Setup {
    sandbox: Sandbox,
    data: Vec<u8>,
    sha: String,
}

impl Setup {
    fn new() -> Setup {
        let data = payload(SIZE, 7);
        let sha = sha256_hex(&data);
        Setup { sandbox: Sandbox::new(), data, sha }
    }

    fn cache(&self) -> PathBuf {
        self.sandbox.path().join("cache")
    }

    /// A manifest with one model served from `url`.
    fn manifest(&self, version: u64, url: &str) -> PathBuf {
        let text = format!(
            "version = {version}\nallow_http = true\n[[models]]\nid = \"model\"\nsource = \"{url}\"\nsha256 = \"{}\"\nsize = {}\n",
            self.sha,
            self.data.len()
        );
        self.sandbox.write("models.toml", &text)
    }

    fn outpost(&self) -> Command {
        let mut cmd = self.sandbox.outpost();
        cmd.env("OUTPOST_BOARD", "x86_64-dev")
            .env("OUTPOST_CACHE_DIR", self.cache())
            .env("OUTPOST_DOWNLOAD_BACKOFF_MS", "20")
            .env("OUTPOST_DOWNLOAD_BACKOFF_MAX_SECS", "1")
            .env("OUTPOST_DOWNLOAD_READ_TIMEOUT_SECS", "1")
            .env("OUTPOST_DOWNLOAD_RETRIES", "3");
        cmd
    }

    fn provision(&self, manifest: &Path) -> Run {
        run(self.outpost().arg("provision").arg("--manifest").arg(manifest))
    }

    fn blob(&self) -> PathBuf {
        self.cache().join("blobs/sha256").join(&self.sha)
    }

    /// The cache holds no blob and no generation: nothing unverified got in.
    fn assert_nothing_trusted(&self) {
        let blobs = self.cache().join("blobs/sha256");
        let count = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
        assert_eq!(count, 0, "no blob may be installed");
        assert!(!self.cache().join("current").exists(), "no generation may be switched to");
    }

    fn assert_installed(&self) {
        assert_eq!(std::fs::read(self.blob()).expect("blob installed"), self.data);
        let verify = run(self.outpost().args(["cache", "verify"]));
        assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    }
}

#[test]
fn full_download_installs_a_verified_blob_and_generation() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, _| serve_file(req, &data, "\"v1\""));
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.assert_installed();
    assert!(out.stdout.contains("generation 1"), "{}", out.stdout);
}

#[test]
fn truncated_body_is_resumed_with_range_and_if_range() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, i| {
        let full = serve_file(req, &data, "\"v1\"");
        if i == 0 { full.cut(Cut::CloseAfter(100_000)) } else { full }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.assert_installed();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one retry");
    assert_eq!(reqs[1].0.header("range"), Some("bytes=100000-"));
    assert_eq!(reqs[1].0.header("if-range"), Some("\"v1\""));
    assert_eq!(reqs[1].1, 206, "resumed, not restarted");
}

#[test]
fn connection_reset_mid_body_is_retried_and_resumed() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, i| {
        let full = serve_file(req, &data, "\"v1\"");
        if i < 2 { full.cut(Cut::ResetAfter(50_000 * (i + 1))) } else { full }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.assert_installed();
    let reqs = server.requests();
    assert!(reqs.len() >= 2 && reqs.iter().skip(1).any(|(r, st)| r.header("range").is_some() && *st == 206));
}

#[test]
fn stalled_connection_times_out_and_is_retried() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, i| {
        let full = serve_file(req, &data, "\"v1\"");
        if i == 0 { full.cut(Cut::StallAfter(10_000, Duration::from_secs(20))) } else { full }
    });
    let started = Instant::now();
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "the 1 s read timeout, not the 20 s stall, decided");
    s.assert_installed();
}

#[test]
fn not_found_fails_fast_with_exit_4_and_the_url() {
    let s = Setup::new();
    let server = Server::start(|_, _| Response::status(404));
    let out = s.provision(&s.manifest(1, &server.url("/missing.onnx")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("/missing.onnx") && out.stderr.contains("404"), "{}", out.stderr);
    assert!(out.stderr.contains("provisioning incomplete"), "{}", out.stderr);
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    s.assert_nothing_trusted();
}

#[test]
fn server_errors_are_retried_within_a_bounded_budget() {
    let s = Setup::new();
    let server = Server::start(|_, _| Response::status(500));
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(server.requests().len(), 4, "1 attempt + 3 retries");
    assert!(out.stderr.contains("gave up after 4 attempts"), "{}", out.stderr);
    s.assert_nothing_trusted();
}

#[test]
fn retry_after_is_honoured() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, i| {
        // Within download.backoff_max_secs (1 s here), which caps it (tests/provision_security.rs).
        if i == 0 { Response::status(503).header("Retry-After", "1") } else { serve_file(req, &data, "\"v1\"") }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = server.requests();
    let gap = reqs[1].0.at.duration_since(reqs[0].0.at);
    assert!(gap >= Duration::from_millis(950), "waited {gap:?}, not the 20 ms backoff");
    s.assert_installed();
}

#[test]
fn redirect_loop_is_a_clear_error() {
    let s = Setup::new();
    let server = Server::start(|_, _| Response::status(302).header("Location", "/loop"));
    let out = s.provision(&s.manifest(1, &server.url("/loop")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("redirect"), "{}", out.stderr);
    assert!(server.requests().len() <= 8, "the loop is cut short");
    s.assert_nothing_trusted();
}

#[test]
fn content_length_beyond_the_manifest_size_is_refused() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |_, _| {
        Response::status(200).header("Content-Length", &(SIZE + 5000).to_string()).body(data.clone())
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("manifest size"), "{}", out.stderr);
    s.assert_nothing_trusted();
}

#[test]
fn short_content_length_then_close_is_resumed() {
    // The server claims the full length but the connection ends early every first time.
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, i| {
        let full = serve_file(req, &data, "\"v1\"");
        if i == 0 { full.header("X-Note", "short").cut(Cut::CloseAfter(SIZE - 1)) } else { full }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.requests()[1].0.header("range"), Some(&*format!("bytes={}-", SIZE - 1)));
    s.assert_installed();
}

#[test]
fn endless_body_is_stopped_at_the_manifest_size() {
    let s = Setup::new();
    let mut big = s.data.clone();
    big.extend(payload(200_000, 9));
    let server = Server::start(move |_, _| Response::status(200).body(big.clone()).without_length());
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("larger than the manifest size"), "{}", out.stderr);
    s.assert_nothing_trusted();
    let partial = s.cache().join("partial").join(format!("{}.part", s.sha));
    assert!(!partial.exists(), "the oversized partial is discarded");
}

#[test]
fn ignored_range_restarts_from_zero() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |_, i| {
        let full = Response::status(200).header("ETag", "\"v1\"").body(data.clone());
        if i == 0 { full.cut(Cut::CloseAfter(120_000)) } else { full }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = server.requests();
    assert!(reqs[1].0.header("range").is_some(), "a resume was asked for");
    assert_eq!(reqs[1].1, 200, "and refused by the server");
    s.assert_installed();
}

#[test]
fn changed_etag_between_attempts_downloads_the_new_content_whole() {
    let s = Setup::new();
    let old = payload(SIZE, 99);
    let new = s.data.clone();
    let server = Server::start(move |req, i| {
        if i == 0 {
            serve_file(req, &old, "\"old\"").cut(Cut::CloseAfter(150_000))
        } else {
            serve_file(req, &new, "\"new\"")
        }
    });
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = server.requests();
    assert_eq!(reqs[1].0.header("if-range"), Some("\"old\""));
    assert_eq!(reqs[1].1, 200, "If-Range did not match: whole new file");
    s.assert_installed();
}

#[test]
fn wrong_content_is_never_installed() {
    let s = Setup::new();
    let wrong = payload(SIZE, 1234);
    let server = Server::start(move |req, _| serve_file(req, &wrong, "\"w\""));
    let out = s.provision(&s.manifest(1, &server.url("/m.onnx")));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);
    s.assert_nothing_trusted();
}

#[test]
fn mirror_is_tried_before_the_origin_and_failure_falls_through() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, _| {
        if req.path.starts_with("/mirror") { Response::status(404) } else { serve_file(req, &data, "\"v1\"") }
    });
    let text = format!(
        "version = 1\nallow_http = true\n[[models]]\nid = \"model\"\nsource = \"{}\"\nmirrors = [\"{}\"]\nsha256 = \"{}\"\nsize = {SIZE}\n",
        server.url("/origin/m.onnx"),
        server.url("/mirror/m.onnx"),
        s.sha
    );
    let out = s.provision(&s.sandbox.write("models.toml", &text));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let paths: Vec<String> = server.requests().into_iter().map(|(r, _)| r.path).collect();
    assert_eq!(paths, vec!["/mirror/m.onnx", "/origin/m.onnx"]);
    s.assert_installed();
}

#[test]
fn complete_cache_makes_no_request_while_the_server_is_up() {
    let s = Setup::new();
    let data = s.data.clone();
    let server = Server::start(move |req, _| serve_file(req, &data, "\"v1\""));
    let manifest = s.manifest(1, &server.url("/m.onnx"));
    assert_eq!(s.provision(&manifest).code, 0);
    let before = server.requests().len();
    let out = s.provision(&manifest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.requests().len(), before, "offline: zero requests with a complete cache");
    assert!(out.stderr.contains("no network needed"), "{}", out.stderr);
}

#[test]
fn api_key_in_a_source_url_never_reaches_output() {
    let s = Setup::new();
    let server = Server::start(|_, _| Response::status(500));
    let secret = "KEY_d5f1a0c9e7";
    let out = run(
        s.outpost()
            .args(["-vv", "provision", "--manifest"])
            .arg(s.manifest(1, &server.url(&format!("/m.onnx?api_key={secret}&device=x")))),
    );
    assert_eq!(out.code, 4);
    assert!(server.requests()[0].0.path.contains(secret), "the key is sent to the server");
    assert!(!support::leaks(&out.stderr, secret) && !support::leaks(&out.stdout, secret), "but never shown:\n{}", out.stderr);
    for entry in support::files_under(&s.cache()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{} holds the key", entry.display());
    }
}


#[test]
fn trickling_server_is_cut_by_the_overall_timeout_and_resumed() {
    let s = Setup::new();
    let data = s.data.clone();
    // Bytes keep coming (no read timeout fires) but far too slowly for the 2 s request budget.
    let server = Server::start(move |req, i| {
        let full = serve_file(req, &data, "\"v1\"");
        if i == 0 { full.throttled(2_000, Duration::from_millis(100)) } else { full }
    });
    let started = Instant::now();
    let mut cmd = s.outpost();
    cmd.env("OUTPOST_DOWNLOAD_OVERALL_TIMEOUT_SECS", "2").arg("provision").arg("--manifest").arg(s.manifest(1, &server.url("/m.onnx")));
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(12), "took {:?}", started.elapsed());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].0.header("range").is_some_and(|r| r != "bytes=0-"), "the second request resumes");
    s.assert_installed();
}
