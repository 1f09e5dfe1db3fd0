//! `cache export` / `cache import`: carry a verified generation to an air-gapped unit.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::http::{payload, serve_file, sha256_hex, Server};
use support::{run, Run, Sandbox};

struct Unit {
    sandbox: Sandbox,
}

impl Unit {
    fn new() -> Unit {
        Unit { sandbox: Sandbox::new() }
    }

    fn outpost(&self) -> Command {
        let mut cmd = self.sandbox.outpost();
        cmd.env("OUTPOST_BOARD", "x86_64-dev").env("OUTPOST_CACHE_DIR", self.sandbox.path().join("cache"));
        cmd
    }

    fn cmd(&self, args: &[&str], path: &Path) -> Run {
        run(self.outpost().args(args).arg(path))
    }
}

fn online_unit_with_two_models() -> (Unit, Server, PathBuf) {
    let (a, b) = (payload(40_000, 1), payload(60_000, 2));
    let text = format!(
        "version = 3\nallow_http = true\n[[models]]\nid = \"a\"\nsource = \"SRV/a\"\nsha256 = \"{}\"\nsize = 40000\n\
         [[models]]\nid = \"b\"\nsource = \"SRV/b\"\nsha256 = \"{}\"\nsize = 60000\n",
        sha256_hex(&a),
        sha256_hex(&b)
    );
    let server = Server::start(move |req, _| if req.path == "/a" { serve_file(req, &a, "\"a\"") } else { serve_file(req, &b, "\"b\"") });
    let unit = Unit::new();
    let manifest = unit.sandbox.write("models.toml", &text.replace("SRV", &server.url("")));
    let out = unit.cmd(&["provision", "--manifest"], &manifest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (unit, server, manifest)
}

#[test]
fn export_then_import_into_an_empty_cache_uses_no_network() {
    let (online, server, manifest) = online_unit_with_two_models();
    let bundle = online.sandbox.path().join("models.bundle.tar");
    let out = online.cmd(&["cache", "export"], &bundle);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("2 blob(s)"), "{}", out.stdout);
    let requests = server.requests().len();

    let offline = Unit::new();
    let out = offline.cmd(&["cache", "import"], &bundle);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("2 blob(s) added"), "{}", out.stdout);
    let verify = run(offline.outpost().args(["cache", "verify"]));
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let ls = run(offline.outpost().args(["cache", "ls", "--json"]));
    let gen: serde_json::Value = serde_json::from_str(&ls.stdout).unwrap();
    assert_eq!(gen["manifest_version"], 3);
    assert_eq!(gen["models"].as_array().unwrap().len(), 2);
    // Booting the unit with the same manifest needs nothing more.
    let out = offline.cmd(&["provision", "--manifest"], &manifest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("no network needed"), "{}", out.stderr);
    assert_eq!(server.requests().len(), requests, "no request from export, import or the offline boot");
}

#[test]
fn corrupt_blob_in_a_bundle_activates_nothing() {
    let (online, _server, _) = online_unit_with_two_models();
    let bundle = online.sandbox.path().join("b.tar");
    assert_eq!(online.cmd(&["cache", "export"], &bundle).code, 0);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let len = bytes.len();
    bytes[len - 2048 - 30_000] ^= 0x01; // inside the last blob's data
    std::fs::write(&bundle, &bytes).unwrap();

    let offline = Unit::new();
    let out = offline.cmd(&["cache", "import"], &bundle);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
    assert!(!offline.sandbox.path().join("cache/current").exists(), "no generation activated");
}

#[test]
fn unexpected_entries_are_refused() {
    let (online, _server, _) = online_unit_with_two_models();
    let bundle = online.sandbox.path().join("b.tar");
    assert_eq!(online.cmd(&["cache", "export"], &bundle).code, 0);
    // Append an extra member by rewriting the archive with the tar crate.
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(std::fs::File::open(&bundle).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        out.append_data(&mut header, path, &mut entry).unwrap();
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(3);
    out.append_data(&mut header, "etc/cron.d/evil", &b"x\n\n"[..]).unwrap();
    std::fs::write(&bundle, out.into_inner().unwrap()).unwrap();

    let offline = Unit::new();
    let out = offline.cmd(&["cache", "import"], &bundle);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("unexpected entry `etc/cron.d/evil`"), "{}", out.stderr);
    assert!(!offline.sandbox.path().join("cache/current").exists());
}
