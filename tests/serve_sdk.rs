//! The real, unmodified `inference-sdk` 1.8.3 client and `supervision` 0.30.9 (PyPI, pinned in
//! scripts/sdk/requirements.txt, installed by scripts/test.sh) against `outpost serve` on
//! 127.0.0.1: every client method the brief names, answers equal to `outpost detect` on the bytes
//! the client sent, errors through the client, both key transports. tests/sdk/check_client.py
//! holds the checks; this test starts the servers, runs it and checks the network stayed unused.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::serve::{roboflow_sandbox, roboflow_standin, with_roboflow, Serve};
use support::{device_tree, fixtures};

/// The SDK venv: `OUTPOST_SDK_VENV`, else scripts/.sdk-venv (both made by scripts/sdk/setup-venv.sh).
fn sdk_python() -> PathBuf {
    let venv = std::env::var_os("OUTPOST_SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/.sdk-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh` (or scripts/sdk/setup-venv.sh) to install inference-sdk",
        python.display()
    );
    python
}

#[test]
fn the_real_inference_sdk_client_works_unchanged() {
    let python = sdk_python();
    let rf = roboflow_standin();
    let sandbox = roboflow_sandbox(&rf);
    let key = "sk_outpost_SDK_0c9d";
    let mut keyless = Serve::start_with(with_roboflow(&sandbox, &rf), &[]);
    let mut keyed = Serve::start_with(with_roboflow(&sandbox, &rf), &[&format!("serve.api_keys={key}")]);
    let before = rf.requests().len();

    let work = sandbox.path().join("sdk-work");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/check_client.py"))
        .arg(keyless.addr.to_string())
        .arg(keyed.addr.to_string())
        .arg(key)
        .arg(fixtures().join("images"))
        .arg(&work)
        .arg(support::serve::ROBOFLOW_KEY)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sandbox.path())
        .env("OUTPOST_BIN", env!("CARGO_BIN_EXE_outpost"))
        .env("OUTPOST_SYSROOT", device_tree("x86-pc"))
        .env("OUTPOST_CONFIG", sandbox.path().join("outpost.toml"))
        .env("OUTPOST_BOARDS_DIR", sandbox.path().join("boards"))
        .env("OUTPOST_CACHE_DIR", sandbox.path().join("cache"))
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "check_client.py failed:\n{stdout}\n{stderr}\nkeyless server log:\n{}\nkeyed server log:\n{}", keyless.log(), keyed.log());
    assert!(stdout.contains("ok: all checks passed"), "{stdout}");
    // Cached models, loaded and used by the client: no request to the Roboflow API but the two
    // on-demand attempts for the uncached `no-such/9`.
    let api_calls: Vec<String> = rf.requests()[before..].iter().map(|(r, _)| r.path.split('?').next().unwrap_or("").to_string()).collect();
    assert_eq!(api_calls, ["/ort/no-such/9", "/ort/no-such/9"], "serve went to the network for cached models");
    keyless.assert_alive();
    keyed.assert_alive();
    assert!(!keyed.log().contains(key), "the key reached the log");
}
