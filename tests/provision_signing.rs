//! Signed manifests: with trusted keys configured, only a manifest whose detached ed25519
//! signature verifies is provisioned — and a signed older version is still a rollback.

mod support;

use std::path::PathBuf;

use ring::signature::{Ed25519KeyPair, KeyPair};
use support::http::{payload, serve_file, sha256_hex, Server};
use support::{run, Run, Sandbox};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Setup {
    sandbox: Sandbox,
    server: Server,
    key: Ed25519KeyPair,
    sha: String,
}

impl Setup {
    fn new() -> Setup {
        let data = payload(20_000, 3);
        let sha = sha256_hex(&data);
        let server = Server::start(move |req, _| serve_file(req, &data, "\"s\""));
        let key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let sandbox = Sandbox::new();
        let trusted = hex(key.public_key().as_ref());
        sandbox.write("outpost.toml", &format!("[provision]\ntrusted_keys = [\"{trusted}\"]\n"));
        Setup { sandbox, server, key, sha }
    }

    fn manifest_text(&self, version: u64) -> String {
        format!(
            "version = {version}\nallow_http = true\n[[models]]\nid = \"m\"\nsource = \"{}\"\nsha256 = \"{}\"\nsize = 20000\n",
            self.server.url("/m"),
            self.sha
        )
    }

    /// Writes the manifest and, if `signer` is given, its signature.
    fn write(&self, name: &str, text: &str, signer: Option<&Ed25519KeyPair>) -> PathBuf {
        let path = self.sandbox.write(name, text);
        if let Some(kp) = signer {
            std::fs::write(format!("{}.sig", path.display()), kp.sign(text.as_bytes()).as_ref()).unwrap();
        }
        path
    }

    fn provision(&self, manifest: &PathBuf) -> Run {
        let mut cmd = self.sandbox.outpost();
        cmd.env("OUTPOST_BOARD", "x86_64-dev")
            .env("OUTPOST_CACHE_DIR", self.sandbox.path().join("cache"))
            .arg("provision")
            .arg("--manifest")
            .arg(manifest);
        run(&mut cmd)
    }
}

#[test]
fn signed_manifest_is_provisioned() {
    let s = Setup::new();
    let m = s.write("m.toml", &s.manifest_text(1), Some(&s.key));
    let out = s.provision(&m);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("signature verified"), "{}", out.stderr);
    let sig = s.sandbox.path().join("cache/generations/1.manifest.sig");
    assert!(sig.exists(), "the signature is kept with the generation for export");
}

#[test]
fn tampered_manifest_is_refused_before_any_download() {
    let s = Setup::new();
    let text = s.manifest_text(1);
    let m = s.write("m.toml", &text, Some(&s.key));
    std::fs::write(&m, text.replace("version = 1", "version = 9")).unwrap();
    let out = s.provision(&m);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("refused") && out.stderr.contains("signature does not verify"), "{}", out.stderr);
    assert!(s.server.requests().is_empty());
}

#[test]
fn unsigned_manifest_is_refused() {
    let s = Setup::new();
    let m = s.write("m.toml", &s.manifest_text(1), None);
    let out = s.provision(&m);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(".sig"), "{}", out.stderr);
    assert!(s.server.requests().is_empty());
}

#[test]
fn manifest_signed_by_an_untrusted_key_is_refused() {
    let s = Setup::new();
    let stranger = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
    let m = s.write("m.toml", &s.manifest_text(1), Some(&stranger));
    assert_eq!(s.provision(&m).code, 3);
}

#[test]
fn signed_rollback_is_still_refused() {
    let s = Setup::new();
    assert_eq!(s.provision(&s.write("v2.toml", &s.manifest_text(2), Some(&s.key))).code, 0);
    let out = s.provision(&s.write("v1.toml", &s.manifest_text(1), Some(&s.key)));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("rollback"), "{}", out.stderr);
}

#[test]
fn a_signed_manifest_must_pin_its_environment_and_the_pin_is_enforced() {
    let s = Setup::new();
    let env = br#"{"CLASS_MAP": {"0": "car"}}"#;
    let env_path = s.sandbox.path().join("environment.json");
    std::fs::write(&env_path, env).unwrap();
    let with_env = |pin: &str| format!("{}environment = \"file://{}\"\n{pin}", s.manifest_text(1), env_path.display());

    let unpinned = s.write("unpinned.toml", &with_env(""), Some(&s.key));
    let out = s.provision(&unpinned);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("must pin its environment"), "{}", out.stderr);

    let wrong = format!("environment_sha256 = \"{}\"\nenvironment_size = {}\n", "0".repeat(64), env.len());
    let out = s.provision(&s.write("wrong.toml", &with_env(&wrong), Some(&s.key)));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);

    let right = format!("environment_sha256 = \"{}\"\nenvironment_size = {}\n", sha256_hex(env), env.len());
    let out = s.provision(&s.write("right.toml", &with_env(&right), Some(&s.key)));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gen = std::fs::read_to_string(s.sandbox.path().join("cache/generations/1.json")).unwrap();
    assert!(gen.contains(&sha256_hex(env)), "{gen}");
}
