//! `cache export` / `cache import`: carry a verified generation to an air-gapped unit.

mod support;

use std::path::{Path, PathBuf};

use support::http::{payload, serve_file, sha256_hex, Server};
use support::{run, Run, Unit};

impl Unit {
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

/// A signed version-3 bundle of one model (family yolov8, classes car/bus), and the trusted key.
fn signed_bundle() -> (Unit, PathBuf, String) {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let key = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).unwrap();
    let trusted: String = key.public_key().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let data = payload(30_000, 5);
    let unit = Unit::new();
    unit.sandbox.write("outpost.toml", &format!("[provision]\ntrusted_keys = [\"{trusted}\"]\n"));
    let blob = unit.sandbox.path().join("a.bin");
    std::fs::write(&blob, &data).unwrap();
    let text = format!(
        "version = 3\n[[models]]\nid = \"a\"\nsource = \"file://{}\"\nsha256 = \"{}\"\nsize = 30000\nfamily = \"yolov8\"\nclasses = [\"car\", \"bus\"]\n",
        blob.display(),
        sha256_hex(&data)
    );
    let manifest = unit.sandbox.write("models.toml", &text);
    std::fs::write(format!("{}.sig", manifest.display()), key.sign(text.as_bytes()).as_ref()).unwrap();
    assert_eq!(unit.cmd(&["provision", "--manifest"], &manifest).code, 0);
    let bundle = unit.sandbox.path().join("signed.tar");
    assert_eq!(unit.cmd(&["cache", "export"], &bundle).code, 0);
    (unit, bundle, trusted)
}

/// Rewrites `bundle` with `edit` applied to the bytes of the member `name`.
fn edit_member(bundle: &Path, name: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if path.to_str() == Some(name) {
            bytes = edit(bytes);
        }
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        out.append_data(&mut header, path, &bytes[..]).unwrap();
    }
    std::fs::write(bundle, out.into_inner().unwrap()).unwrap();
}

fn unit_trusting(trusted: &str) -> Unit {
    let unit = Unit::new();
    unit.sandbox.write("outpost.toml", &format!("[provision]\ntrusted_keys = [\"{trusted}\"]\n"));
    unit
}

#[test]
fn a_signed_bundle_whose_record_was_edited_is_refused() {
    let (_online, bundle, trusted) = signed_bundle();
    let edits: [(&str, fn(String) -> String); 3] = [
        ("classes", |t| t.replace("\"bus\"", "\"person\"")),
        ("family", |t| t.replace("\"yolov8\"", "\"yolov5\"")),
        ("input", |t| t.replace("\"input\": null", "\"input\": [32, 32]")),
    ];
    for (field, edit) in edits {
        let tampered = bundle.with_file_name(format!("tampered-{field}.tar"));
        std::fs::copy(&bundle, &tampered).unwrap();
        edit_member(&tampered, "generation.json", |b| edit(String::from_utf8(b).unwrap()).into_bytes());
        let unit = unit_trusting(&trusted);
        let out = unit.cmd(&["cache", "import"], &tampered);
        assert_eq!(out.code, 3, "{field}: {}", out.stderr);
        assert!(out.stderr.contains("differs from the manifest") && out.stderr.contains(field), "{field}: {}", out.stderr);
        assert!(!unit.sandbox.path().join("cache/current").exists());
    }
    // The untouched bundle imports.
    assert_eq!(unit_trusting(&trusted).cmd(&["cache", "import"], &bundle).code, 0);
}

#[test]
fn a_bundle_refused_for_its_signature_writes_no_blob() {
    let (_online, bundle, trusted) = signed_bundle();
    edit_member(&bundle, "manifest.toml", |b| [b, b"# edited after signing\n".to_vec()].concat());
    let unit = unit_trusting(&trusted);
    let out = unit.cmd(&["cache", "import"], &bundle);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let blobs = support::files_under(&unit.sandbox.path().join("cache"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("blobs") || p.to_string_lossy().contains("partial"))
        .count();
    assert_eq!(blobs, 0, "nothing was written before the signature was checked");
}
