//! The cache as a field unit relies on it: persistent storage only, rollback protection, one
//! writer at a time, early free-space refusal, verify/repair/gc, sideloading, and power loss at
//! any moment never leaving a corrupt model that is later trusted.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::http::{payload, serve_file, sha256_hex, Server};
use support::{run, Run, Sandbox};

struct Setup {
    sandbox: Sandbox,
    data: Vec<u8>,
    sha: String,
}

impl Setup {
    fn new(size: usize) -> Setup {
        let data = payload(size, 11);
        let sha = sha256_hex(&data);
        Setup { sandbox: Sandbox::new(), data, sha }
    }

    fn cache(&self) -> PathBuf {
        self.sandbox.path().join("cache")
    }

    fn manifest_with(&self, version: u64, id: &str, source: &str) -> PathBuf {
        let text = format!(
            "version = {version}\nallow_http = true\n[[models]]\nid = \"{id}\"\nsource = \"{source}\"\nsha256 = \"{}\"\nsize = {}\n",
            self.sha,
            self.data.len()
        );
        self.sandbox.write(&format!("models-v{version}.toml"), &text)
    }

    fn outpost(&self) -> Command {
        let mut cmd = self.sandbox.outpost();
        cmd.env("OUTPOST_BOARD", "x86_64-dev")
            .env("OUTPOST_CACHE_DIR", self.cache())
            .env("OUTPOST_DOWNLOAD_BACKOFF_MS", "20")
            .env("OUTPOST_DOWNLOAD_READ_TIMEOUT_SECS", "2");
        cmd
    }

    fn provision(&self, manifest: &Path, extra: &[&str]) -> Run {
        run(self.outpost().arg("provision").arg("--manifest").arg(manifest).args(extra))
    }

    fn verify(&self) -> Run {
        run(self.outpost().args(["cache", "verify"]))
    }
}

fn file_server(data: &[u8]) -> Server {
    let data = data.to_vec();
    Server::start(move |req, _| serve_file(req, &data, "\"e1\""))
}

#[test]
fn cache_on_tmpfs_is_refused_with_an_explanation() {
    if !Path::new("/dev/shm").is_dir() {
        return;
    }
    let s = Setup::new(1000);
    let server = file_server(&s.data);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let manifest = s.manifest_with(1, "m", &server.url("/m"));
    let mut cmd = s.outpost();
    cmd.env("OUTPOST_CACHE_DIR", shm.path().join("cache")).arg("provision").arg("--manifest").arg(&manifest);
    let out = run(&mut cmd);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("tmpfs") && out.stderr.contains("reboot"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-volatile-cache"), "{}", out.stderr);
    assert!(server.requests().is_empty(), "refused before any download");

    let mut cmd = s.outpost();
    cmd.env("OUTPOST_CACHE_DIR", shm.path().join("cache"))
        .args(["provision", "--allow-volatile-cache", "--manifest"])
        .arg(&manifest);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("WARN") && out.stderr.contains("tmpfs"), "{}", out.stderr);
}

#[test]
fn rolled_back_manifest_is_refused_unless_allowed() {
    let s = Setup::new(1000);
    let server = file_server(&s.data);
    assert_eq!(s.provision(&s.manifest_with(5, "m", &server.url("/m")), &[]).code, 0);
    let old = s.manifest_with(4, "m", &server.url("/m"));
    let out = s.provision(&old, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("version 4") && out.stderr.contains("installed version 5"), "{}", out.stderr);
    let out = s.provision(&old, &["--allow-downgrade"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn path_traversal_in_a_model_id_is_refused() {
    let s = Setup::new(1000);
    let manifest = s.manifest_with(1, "../../etc", "https://127.0.0.1:9/m");
    let out = s.provision(&manifest, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("../../etc") && out.stderr.contains("`id`"), "{}", out.stderr);
    assert!(!s.cache().join("current").exists());
}

#[test]
fn insufficient_free_space_is_refused_before_downloading() {
    let s = Setup::new(1000);
    let server = file_server(&s.data);
    let text = format!(
        "version = 1\nallow_http = true\n[[models]]\nid = \"huge\"\nsource = \"{}\"\nsha256 = \"{}\"\nsize = {}\n",
        server.url("/huge"),
        s.sha,
        1u64 << 50
    );
    let out = s.provision(&s.sandbox.write("m.toml", &text), &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("not enough free space"), "{}", out.stderr);
    assert!(server.requests().is_empty(), "no byte fetched");
}

#[test]
fn a_second_provisioning_run_waits_for_or_refuses_the_lock() {
    let s = Setup::new(400_000);
    let data = s.data.clone();
    // Slow: ~2 s for the whole file, so the first run holds the lock a while.
    let server = Server::start(move |req, _| serve_file(req, &data, "\"e1\"").throttled(20_000, Duration::from_millis(100)));
    let manifest = s.manifest_with(1, "m", &server.url("/m"));
    let mut first = s.outpost();
    first.arg("provision").arg("--manifest").arg(&manifest).stdout(Stdio::null()).stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let mut refuse = s.outpost();
    refuse.env("OUTPOST_PROVISION_LOCK_WAIT_SECS", "0").arg("provision").arg("--manifest").arg(&manifest);
    let out = run(&mut refuse);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("locked by another outpost process"), "{}", out.stderr);

    let mut wait = s.outpost();
    wait.env("OUTPOST_PROVISION_LOCK_WAIT_SECS", "60").arg("provision").arg("--manifest").arg(&manifest);
    let out = run(&mut wait);
    assert!(first.wait().unwrap().success());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("waiting"), "{}", out.stderr);
    assert_eq!(server.requests().len(), 1, "the waiting run found the cache complete");
}

#[test]
fn verify_detects_corruption_and_repair_refetches() {
    let s = Setup::new(50_000);
    let server = file_server(&s.data);
    assert_eq!(s.provision(&s.manifest_with(1, "m", &server.url("/m")), &[]).code, 0);
    let blob = s.cache().join("blobs/sha256").join(&s.sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1234] ^= 0x40; // one flipped bit, same size: boot's size check cannot see it
    std::fs::write(&blob, &bytes).unwrap();

    let out = s.verify();
    assert_eq!(out.code, 4, "{}", out.stdout);
    assert!(out.stdout.contains(&format!("CORRUPT {}", s.sha)), "{}", out.stdout);

    let out = run(s.outpost().args(["cache", "verify", "--repair"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(std::fs::read(&blob).unwrap(), s.data);
    assert_eq!(s.verify().code, 0);
    assert_eq!(server.requests().len(), 2, "repair fetched the model again");
}

#[test]
fn gc_keeps_current_and_previous_generation_only() {
    let s = Setup::new(20_000);
    let other = payload(30_000, 5);
    let (data_a, data_b) = (s.data.clone(), other.clone());
    let server = Server::start(move |req, _| {
        if req.path == "/a" { serve_file(req, &data_a, "\"a\"") } else { serve_file(req, &data_b, "\"b\"") }
    });
    assert_eq!(s.provision(&s.manifest_with(1, "m", &server.url("/a")), &[]).code, 0);
    let text = format!(
        "version = 2\nallow_http = true\n[[models]]\nid = \"m\"\nsource = \"{}\"\nsha256 = \"{}\"\nsize = 30000\n",
        server.url("/b"),
        sha256_hex(&other)
    );
    for v in [2, 3] {
        let out = s.provision(&s.sandbox.write(&format!("v{v}.toml"), &text.replace("version = 2", &format!("version = {v}"))), &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    std::fs::write(s.cache().join("partial/stale.part"), b"x").unwrap();
    let out = run(s.outpost().args(["cache", "gc"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("removed 1 blob(s), 1 partial file(s), 1 old generation(s)"), "{}", out.stdout);
    assert!(!s.cache().join("blobs/sha256").join(&s.sha).exists(), "generation 1's blob is gone");
    assert!(s.cache().join("generations/2.json").exists() && s.cache().join("generations/3.json").exists());
    assert_eq!(s.verify().code, 0);
}

#[test]
fn sideloaded_file_source_is_verified_and_cached() {
    let s = Setup::new(10_000);
    let usb = s.sandbox.write("usb/model.onnx", "");
    std::fs::write(&usb, &s.data).unwrap();
    let manifest = s.manifest_with(1, "m", &format!("file://{}", usb.display()));
    let out = s.provision(&manifest, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ls = run(s.outpost().args(["cache", "ls"]));
    assert!(ls.stdout.contains("pinned") && ls.stdout.contains(&s.sha), "{}", ls.stdout);

    // A tampered stick is refused.
    let mut bad = s.data.clone();
    bad[0] ^= 1;
    std::fs::write(&usb, &bad).unwrap();
    let fresh = Setup { sandbox: Sandbox::new(), data: s.data.clone(), sha: s.sha.clone() };
    let out = fresh.provision(&fresh.manifest_with(1, "m", &format!("file://{}", usb.display())), &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);
}

#[test]
fn power_loss_at_random_moments_never_leaves_a_trusted_corrupt_model() {
    let s = Setup::new(20 << 20);
    let data = s.data.clone();
    // ~2.5 MiB/s: 50 short runs cannot finish 20 MiB, so every kill lands mid-download.
    let server = Server::start(move |req, _| serve_file(req, &data, "\"e1\"").throttled(64 * 1024, Duration::from_millis(25)));
    let manifest = s.manifest_with(1, "m", &server.url("/big"));
    let mut seed: u64 = 0x5eed_0f_0u64;
    for iteration in 0..50 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(30 + (seed >> 33) % 250);
        let mut child = s.outpost();
        child.arg("provision").arg("--manifest").arg(&manifest).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = child.spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        let out = s.verify();
        // Killed before the first blob was installed: the cache holds only partials ("empty"), or,
        // killed before it was even created (slow emulated runs), there is none: exit 4 either way.
        let nothing_yet = out.stderr.contains("is empty") || out.stderr.contains("there is no cache");
        let empty = out.code == 4 && nothing_yet && !s.cache().join("current").exists();
        assert!(out.code == 0 || empty, "iteration {iteration} (kill after {delay:?}): {}{}", out.stdout, out.stderr);
        let installed = s.cache().join("blobs/sha256").join(&s.sha);
        if installed.exists() {
            assert_eq!(std::fs::read(&installed).unwrap(), s.data, "iteration {iteration}: installed blob is exact");
        }
    }
    let out = s.provision(&manifest, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.verify().code, 0);
    let reqs = server.requests();
    let resumed = reqs.iter().filter(|(r, status)| r.header("range").is_some() && *status == 206).count();
    // Under qemu-user (the aarch64 run) most kills land before the slow-starting process has
    // sent a request, so how many resumed is left to the host run; the integrity checks above
    // hold on both.
    if support::foreign_runner().is_none() {
        assert!(resumed * 2 >= reqs.len() - 1, "later attempts resume ({resumed} of {} requests)", reqs.len());
    }
}

#[test]
fn repair_resolves_relative_sources_where_the_manifest_was_and_keeps_the_bad_blob_until_replaced() {
    let s = Setup::new(30_000);
    let stick = s.sandbox.path().join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    std::fs::write(stick.join("model.bin"), &s.data).unwrap();
    let manifest = stick.join("models.toml");
    std::fs::write(
        &manifest,
        format!("version = 1\n[[models]]\nid = \"m\"\nsource = \"file:model.bin\"\nsha256 = \"{}\"\nsize = {}\n", s.sha, s.data.len()),
    )
    .unwrap();
    assert_eq!(s.provision(&manifest, &[]).code, 0);
    let blob = s.cache().join("blobs/sha256").join(&s.sha);
    let corrupt = |blob: &Path| {
        let mut bytes = std::fs::read(blob).unwrap();
        bytes[100] ^= 1;
        std::fs::write(blob, &bytes).unwrap();
        bytes
    };

    // The source is gone (stick removed): repair fails, and the blob is still there.
    let bad = corrupt(&blob);
    std::fs::rename(stick.join("model.bin"), stick.join("away.bin")).unwrap();
    let out = run(s.outpost().args(["cache", "verify", "--repair"]));
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert_eq!(std::fs::read(&blob).unwrap(), bad, "nothing deleted before a replacement exists");

    // Back: the relative source resolves against the stick, not the cache's generations/.
    std::fs::rename(stick.join("away.bin"), stick.join("model.bin")).unwrap();
    let out = run(s.outpost().args(["cache", "verify", "--repair"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(std::fs::read(&blob).unwrap(), s.data);
    assert_eq!(s.verify().code, 0);
}
