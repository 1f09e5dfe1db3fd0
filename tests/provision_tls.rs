//! Provisioning from a real nginx over TLS with a CA made at test time: full download, resumed
//! download (206 in nginx's own access log), offline reboot with nginx stopped, wrong CA refused,
//! and the clock floor for boards that boot in 1970.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::nginx::{Nginx, Pki};
use support::{fixtures, run, Run, Sandbox};

/// These tests are about fetching; `auto` would time both engines on every model provisioned,
/// minutes under qemu-aarch64 (CI runs this file there). tests/engines_cli.rs covers `auto`.
const ONE_ENGINE: &str = "[inference]\nbackend = \"tract\"\n";

const FIXTURES: &[(&str, &str, u64)] = &[
    ("faces", "centerface.onnx", 7_304_518),
    ("layout", "layout_cdla.onnx", 7_423_528),
    ("yolo", "yolov8n_random.onnx", 12_730_365),
];

fn sha_of(file: &str) -> String {
    let sums = std::fs::read_to_string(fixtures().join("SHA256SUMS")).unwrap();
    sums.lines().find(|l| l.ends_with(&format!("  {file}"))).unwrap()[..64].to_string()
}

fn manifest(sandbox: &Sandbox, base: &str, models: &[(&str, &str, u64)]) -> PathBuf {
    let mut text = String::from("version = 1\n");
    for (id, file, size) in models {
        text.push_str(&format!(
            "[[models]]\nid = \"{id}\"\nsource = \"{base}/{file}\"\nsha256 = \"{}\"\nsize = {size}\n",
            sha_of(file)
        ));
    }
    sandbox.write("models.toml", &text)
}

fn outpost(sandbox: &Sandbox, ca: &Path, wrapper: &[&str]) -> Command {
    let mut cmd = sandbox.outpost_via(wrapper);
    cmd.env("OUTPOST_BOARD", "x86_64-dev")
        .env("OUTPOST_CACHE_DIR", sandbox.path().join("cache"))
        .env("OUTPOST_DOWNLOAD_CA_FILE", ca)
        .env("OUTPOST_DOWNLOAD_RETRIES", "1")
        .env("OUTPOST_DOWNLOAD_BACKOFF_MS", "50");
    cmd
}

fn provision(sandbox: &Sandbox, ca: &Path, manifest: &Path) -> Run {
    run(outpost(sandbox, ca, &[]).arg("provision").arg("--manifest").arg(manifest))
}

#[test]
fn full_download_over_tls_then_offline_with_nginx_stopped() {
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", ONE_ENGINE);
    let pki = Pki::create(sandbox.path(), "lab");
    let mut nginx = Nginx::start(sandbox.path(), &fixtures(), &pki);
    let m = manifest(&sandbox, &nginx.url(""), FIXTURES);
    let out = provision(&sandbox, &pki.ca(), &m);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(nginx.access_log().lines().filter(|l| l.contains("\" 200 ")).count(), 3, "{}", nginx.access_log());

    nginx.stop();
    let out = provision(&sandbox, &pki.ca(), &m);
    assert_eq!(out.code, 0, "boots offline: {}", out.stderr);
    assert!(out.stderr.contains("no network needed"), "{}", out.stderr);
    let verify = run(outpost(&sandbox, &pki.ca(), &[]).args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert!(verify.stdout.contains("checked 3 blob(s)"), "{}", verify.stdout);
}

#[test]
fn interrupted_download_resumes_with_206_from_nginx() {
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", ONE_ENGINE);
    let pki = Pki::create(sandbox.path(), "lab");
    let nginx = Nginx::start(sandbox.path(), &fixtures(), &pki);
    // 12.7 MB at 4 MiB/s: about 3 s; interrupt it after one.
    let m = manifest(&sandbox, &nginx.url("/slow"), &FIXTURES[2..]);
    let mut child = outpost(&sandbox, &pki.ca(), &[]);
    child.arg("provision").arg("--manifest").arg(&m).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = child.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = sandbox.path().join("cache/partial").join(format!("{}.part", sha_of("yolov8n_random.onnx")));
    let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    assert!(have > 0 && have < 12_730_365, "a partial download is left ({have} bytes)");

    let out = provision(&sandbox, &pki.ca(), &m);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = nginx.access_log();
    assert!(log.lines().any(|l| l.contains("\" 206 ")), "nginx served a range:\n{log}");
    assert!(out.stderr.contains("1 resumed"), "{}", out.stderr);
}

#[test]
fn server_signed_by_another_ca_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", ONE_ENGINE);
    let pki = Pki::create(sandbox.path(), "lab");
    let stranger = Pki::create(sandbox.path(), "stranger");
    let nginx = Nginx::start(sandbox.path(), &fixtures(), &pki);
    let m = manifest(&sandbox, &nginx.url(""), &FIXTURES[..1]);
    let out = provision(&sandbox, &stranger.ca(), &m);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("TLS") && out.stderr.contains("CA"), "{}", out.stderr);
    assert!(!nginx.access_log().contains("GET"), "no request got through: {}", nginx.access_log());
    assert!(!sandbox.path().join("cache/current").exists());
}

#[test]
fn clock_in_1970_still_validates_tls_from_the_build_date() {
    if support::foreign_runner().is_some() || Command::new("faketime").arg("--version").output().is_err() {
        // faketime preloads into a dynamically linked process; qemu-user-static is not one.
        eprintln!("skipped: needs faketime and a native binary");
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.write("outpost.toml", ONE_ENGINE);
    let pki = Pki::create(sandbox.path(), "lab");
    let nginx = Nginx::start(sandbox.path(), &fixtures(), &pki);
    let m = manifest(&sandbox, &nginx.url(""), &FIXTURES[..1]);
    let out = run(outpost(&sandbox, &pki.ca(), &["faketime", "1970-01-02 00:00:00"]).arg("provision").arg("--manifest").arg(&m));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("earlier than this binary's build date"), "{}", out.stderr);

    // The clock is consulted: a date after the certificate's expiry fails.
    let late = Sandbox::new();
    late.write("outpost.toml", ONE_ENGINE);
    let m = manifest(&late, &nginx.url(""), &FIXTURES[..1]);
    let out = run(outpost(&late, &pki.ca(), &["faketime", "-f", "+10d"]).arg("provision").arg("--manifest").arg(&m));
    assert_eq!(out.code, 4, "{}", out.stderr);
}
