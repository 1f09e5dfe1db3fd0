//! Runs bindgen over `<linux/videodev2.h>` exactly as the crates.io `v4l2-sys-mit` 0.3.0 build
//! script does, once per shipped architecture, and writes the result into the vendored crate
//! (`vendor/v4l2-sys-mit/src/bindings/<arch>.rs`). With `--check` it writes nothing and fails
//! when a committed file differs from a fresh run (CI runs this).
//!
//! Why committed bindings: bindgen needs libclang and kernel headers, which a newcomer's machine
//! (rustup and a C compiler) lacks; the default build must not need them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// (file stem, clang target, extra include directory holding that target's kernel headers)
const TARGETS: [(&str, &str, Option<&str>); 2] = [
    ("x86_64", "x86_64-unknown-linux-gnu", None),
    // Debian's linux-libc-dev-arm64-cross + libc6-dev-arm64-cross: the same layouts as musl's.
    ("aarch64", "aarch64-unknown-linux-musl", Some("/usr/aarch64-linux-gnu/include")),
];

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vendor/v4l2-sys-mit/src/bindings");
    let mut stale = Vec::new();
    for (stem, target, include) in TARGETS {
        let mut builder = bindgen::Builder::default()
            .header_contents("wrapper.h", "#include <linux/videodev2.h>\n")
            .clang_arg(format!("--target={target}"));
        if let Some(dir) = include {
            builder = builder.clang_arg(format!("-I{dir}"));
        }
        let text = match builder.generate() {
            Ok(bindings) => bindings.to_string(),
            Err(e) => {
                eprintln!("v4l2-bindgen: bindgen failed for {target}: {e} (are libclang-dev and the kernel headers installed? see scripts/setup-debian.sh)");
                return ExitCode::FAILURE;
            }
        };
        let path: PathBuf = out_dir.join(format!("{stem}.rs"));
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != text {
                stale.push(path.display().to_string());
            } else {
                println!("v4l2-bindgen: {} matches a fresh bindgen run for {target}", path.display());
            }
        } else if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("v4l2-bindgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("v4l2-bindgen: wrote {} ({target})", path.display());
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "v4l2-bindgen: committed bindings differ from a fresh bindgen run: {}; regenerate with \
             `cargo run --manifest-path scripts/v4l2-bindgen/Cargo.toml` and commit",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
