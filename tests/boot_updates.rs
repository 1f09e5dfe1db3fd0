//! A unit updated past its seed manifest (a bundle from a USB stick, or another manifest) must
//! keep booting on what it installed; the rollback floor holds across local changes; the same
//! version with other bytes is refused.

mod support;

use std::path::{Path, PathBuf};

use support::http::{payload, sha256_hex};
use support::{fixtures, run, Run, Unit};

const CENTERFACE_SHA: &str = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc";

impl Unit {
    fn provision(&self, manifest: &Path, extra: &[&str]) -> Run {
        run(self.outpost().arg("provision").arg("--manifest").arg(manifest).args(extra))
    }

    /// A manifest of `version` holding the CenterFace fixture as `faces` (sideloaded); `note`
    /// changes the bytes without changing the models.
    fn faces_manifest(&self, name: &str, version: u64, note: &str) -> PathBuf {
        let text = format!(
            "# {note}\nversion = {version}\n[[models]]\nid = \"faces\"\nsource = \"file://{}\"\nsha256 = \"{CENTERFACE_SHA}\"\n\
             size = 7304518\nfamily = \"centerface\"\nclasses = [\"face\"]\n",
            fixtures().join("centerface.onnx").display()
        );
        self.sandbox.write(name, &text)
    }

    /// A manifest of `version` with one small sideloaded blob.
    fn blob_manifest(&self, name: &str, version: u64, seed: u64) -> PathBuf {
        let data = payload(5_000, seed);
        let blob = self.sandbox.write(&format!("{name}.bin"), "");
        std::fs::write(&blob, &data).unwrap();
        let text = format!(
            "version = {version}\n[[models]]\nid = \"m\"\nsource = \"file://{}\"\nsha256 = \"{}\"\nsize = {}\n",
            blob.display(),
            sha256_hex(&data),
            data.len()
        );
        self.sandbox.write(name, &text)
    }

    fn current(&self) -> String {
        std::fs::read_to_string(self.cache().join("current")).unwrap().trim().to_string()
    }
}

#[test]
fn a_unit_updated_by_a_bundle_boots_on_it_with_its_old_seed_manifest() {
    // The office machine provisions version 2 and exports it to a USB stick.
    let office = Unit::new();
    let v2 = office.faces_manifest("models-v2.toml", 2, "second release");
    assert_eq!(office.provision(&v2, &[]).code, 0);
    let bundle = office.sandbox.path().join("stick.tar");
    let out = run(office.outpost().args(["cache", "export"]).arg(&bundle));
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The unit was seeded with version 1, then updated from the stick; /etc's manifest stays v1.
    let unit = Unit::new();
    let seed = unit.faces_manifest("models.toml", 1, "seed");
    assert_eq!(unit.provision(&seed, &[]).code, 0);
    let out = run(unit.outpost().args(["cache", "import"]).arg(&bundle));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let updated = unit.current();

    // The explicit command still refuses the older manifest...
    let out = unit.provision(&seed, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("rollback"), "{}", out.stderr);

    // ...but the boot service runs the installed generation and says why, once.
    let images = fixtures().join("images");
    let out = run(unit
        .outpost()
        .args(["run", "--frames", "1", "--manifest"])
        .arg(&seed)
        .arg("--source")
        .arg(format!("dir:{}", images.display())));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "one JSON line:\n{}\n{}", out.stdout, out.stderr);
    let notes: Vec<&str> = out.stderr.lines().filter(|l| l.contains("running the installed generation")).collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(notes[0].contains("version 1") && notes[0].contains("installed version 2"), "{}", notes[0]);
    assert_eq!(unit.current(), updated, "the boot did not move `current`");
}

#[test]
fn the_same_version_with_other_bytes_is_refused() {
    let unit = Unit::new();
    assert_eq!(unit.provision(&unit.blob_manifest("a.toml", 4, 1), &[]).code, 0);
    let other = unit.blob_manifest("b.toml", 4, 2);
    let out = unit.provision(&other, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("version 4") && out.stderr.contains("different contents"), "{}", out.stderr);
    assert_eq!(unit.current(), "1");
    // Reinstalling the very same manifest is no change and is fine.
    assert_eq!(unit.provision(&unit.sandbox.path().join("a.toml"), &[]).code, 0);
    // An explicit override installs it.
    assert_eq!(unit.provision(&other, &["--allow-downgrade"]).code, 0);
    assert_eq!(unit.current(), "2");
}

#[test]
fn the_rollback_floor_survives_removing_the_newest_generation() {
    let unit = Unit::new();
    assert_eq!(unit.provision(&unit.blob_manifest("v1.toml", 1, 1), &[]).code, 0);
    assert_eq!(unit.provision(&unit.blob_manifest("v5.toml", 5, 5), &[]).code, 0);
    // Someone rolls the unit back by hand: generation 2 (version 5) removed, `current` -> 1.
    let gens = unit.cache().join("generations");
    for suffix in ["json", "manifest"] {
        std::fs::remove_file(gens.join(format!("2.{suffix}"))).unwrap();
    }
    std::fs::write(unit.cache().join("current"), "1\n").unwrap();
    // Version 3 is newer than what is current, but older than what this cache has verified.
    let out = unit.provision(&unit.blob_manifest("v3.toml", 3, 3), &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("version 3") && out.stderr.contains("installed version 5"), "{}", out.stderr);
    // The manifest of the generation that is current stays acceptable.
    let out = unit.provision(&unit.sandbox.path().join("v1.toml"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("no network needed"), "{}", out.stderr);
}

#[test]
fn a_current_naming_a_missing_or_garbled_generation_falls_back_and_is_repaired() {
    let unit = Unit::new();
    assert_eq!(unit.provision(&unit.blob_manifest("v1.toml", 1, 1), &[]).code, 0);
    let v2 = unit.blob_manifest("v2.toml", 2, 2);
    assert_eq!(unit.provision(&v2, &[]).code, 0);
    let gens = unit.cache().join("generations");
    for broken in [None, Some(""), Some("two\n")] {
        match broken {
            None => std::fs::remove_file(gens.join("2.json")).unwrap(),
            Some(text) => std::fs::write(unit.cache().join("current"), text).unwrap(),
        }
        // Every command still works, on the newest complete generation, and says why: first
        // generation 1 (2 is gone), later the generation 2 that provisioning wrote anew.
        let fallback = if broken.is_none() { "using generation 1" } else { "using generation 2" };
        for args in [&["cache", "ls"][..], &["cache", "verify"], &["cache", "gc"]] {
            let out = run(unit.outpost().args(args));
            assert_eq!(out.code, 0, "{args:?} with {broken:?}: {}", out.stderr);
            assert!(out.stderr.contains(fallback), "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(&unit.cache().join("current").display().to_string()), "names the path: {}", out.stderr);
        }
        let out = run(unit.outpost().arg("doctor"));
        assert_eq!(out.code, 1, "doctor flags it: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(fallback) || out.stderr.contains(fallback), "{}", out.stdout);
        // Provisioning rewrites `current`; afterwards nothing is reported.
        let out = unit.provision(&v2, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = run(unit.outpost().args(["cache", "ls"]));
        assert!(!out.stderr.contains("WARN"), "{}", out.stderr);
        assert_eq!(run(unit.outpost().arg("doctor")).code, 0);
    }
}

#[test]
fn a_newer_manifest_that_cannot_be_fetched_yet_runs_the_installed_generation_then_switches() {
    use support::http::{serve_file, Response, Server};
    let unit = Unit::new();
    let seed = unit.faces_manifest("seed.toml", 1, "seed");
    assert_eq!(unit.provision(&seed, &[]).code, 0);
    // Version 2 adds a model whose server is down at boot (first request) and back a second later.
    let extra = payload(5_000, 77);
    let served = extra.clone();
    let server = Server::start(move |req, n| if n == 0 { Response::status(503) } else { serve_file(req, &served, "\"x\"") });
    let seed_models = std::fs::read_to_string(&seed).unwrap().replace("version = 1", "version = 2");
    let v2 = unit.sandbox.write(
        "models.toml",
        &format!(
            "allow_http = true\n{seed_models}[[models]]\nid = \"extra\"\nsource = \"{}\"\nsha256 = \"{}\"\nsize = {}\n",
            server.url("/extra"),
            sha256_hex(&extra),
            extra.len()
        ),
    );
    let images = fixtures().join("images");
    let run_unit = || {
        run(unit
            .outpost()
            .env("OUTPOST_DOWNLOAD_RETRIES", "0")
            .env("OUTPOST_PROVISION_RETRY_SECS", "1")
            .args(["--set", "run.model=faces", "--set", "run.loop=true", "--set", "run.max_fps=2", "--set", "run.input=64x64"])
            .args(["run", "--frames", "6", "--manifest"])
            .arg(&v2)
            .arg("--source")
            .arg(format!("dir:{}", images.display())))
    };
    let out = run_unit();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("running the installed generation 1"), "{}", out.stderr);
    assert!(out.stderr.contains("restarting to load the new generation"), "{}", out.stderr);
    assert!(out.stdout.lines().count() >= 6, "inferred before and after the switch: {}", out.stdout);
    let ls = run(unit.outpost().args(["cache", "ls", "--json"]));
    let gen: serde_json::Value = serde_json::from_str(&ls.stdout).unwrap();
    assert_eq!(gen["manifest_version"], 2, "{}", ls.stdout);
}

#[test]
fn require_complete_keeps_a_unit_without_its_new_manifest_down() {
    use support::http::Server;
    let unit = Unit::new();
    assert_eq!(unit.provision(&unit.blob_manifest("v1.toml", 1, 1), &[]).code, 0);
    let server = Server::start(|_, _| support::http::Response::status(503));
    let v2 = unit.sandbox.write(
        "v2.toml",
        &format!("version = 2\nallow_http = true\n[[models]]\nid = \"m\"\nsource = \"{}\"\nsha256 = \"{}\"\nsize = 10\n", server.url("/m"), "ab".repeat(32)),
    );
    let out = run(unit
        .outpost()
        .env("OUTPOST_DOWNLOAD_RETRIES", "0")
        .env("OUTPOST_PROVISION_REQUIRE_COMPLETE", "true")
        .args(["run", "--frames", "1", "--manifest"])
        .arg(&v2)
        .arg("--source")
        .arg(format!("dir:{}", fixtures().join("images").display())));
    assert_eq!(out.code, 4, "{}", out.stderr);
}

#[test]
fn the_provision_summary_counts_sideloaded_bytes() {
    let unit = Unit::new();
    let out = unit.provision(&unit.faces_manifest("m.toml", 1, "sideload"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = out.stderr.lines().find(|l| l.contains("provisioned generation")).unwrap();
    assert!(summary.contains("0 B downloaded") && summary.contains("7.0 MiB sideloaded"), "{summary}");
}

#[test]
fn a_complete_cache_on_a_read_only_filesystem_still_boots() {
    let unit = Unit::new();
    let manifest = unit.faces_manifest("models.toml", 1, "ro");
    assert_eq!(unit.provision(&manifest, &[]).code, 0);
    let cache = unit.cache().display().to_string();
    // A private mount namespace with the cache bind-mounted read-only (a flash remounted ro).
    let read_only = |args: &[&str]| {
        let script = "mount --bind -o ro \"$0\" \"$0\" && exec \"$@\"";
        let mut cmd = unit.sandbox.outpost_via(&["unshare", "-m", "sh", "-c", script, cache.as_str()]);
        cmd.env("OUTPOST_BOARD", "x86_64-dev").env("OUTPOST_CACHE_DIR", unit.cache()).args(args);
        run(&mut cmd)
    };
    let manifest_arg = manifest.display().to_string();
    let out = read_only(&["provision", "--manifest", &manifest_arg]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("continuing read-only") && out.stderr.contains(&cache), "{}", out.stderr);
    let images = format!("dir:{}", fixtures().join("images").display());
    let out = read_only(&["run", "--frames", "1", "--manifest", &manifest_arg, "--source", &images]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
    // Something to fetch on a read-only cache: exit 4, naming the path.
    let other = unit.blob_manifest("v2.toml", 2, 9).display().to_string();
    let out = read_only(&["provision", "--manifest", &other]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains(&cache) && out.stderr.contains("Read-only"), "{}", out.stderr);
}
