//! Shared helpers for integration tests: run the real `outpost` binary in a clean environment.
#![allow(dead_code)]

pub mod http;
pub mod nginx;
pub mod rtsp_faults;
pub mod serve;
pub mod video;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn device_tree(board: &str) -> PathBuf {
    fixtures().join("device-trees").join(board)
}

/// A scratch directory with an empty config file, so no test reads the host's /etc/outpost.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("outpost.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("boards")).unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `outpost` with only the variables a test sets: sysroot = an x86 PC without device tree.
    pub fn outpost(&self) -> Command {
        self.outpost_via(&[])
    }

    /// `outpost` started through a wrapper command such as `faketime DATE`.
    pub fn outpost_via(&self, wrapper: &[&str]) -> Command {
        let mut argv: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        argv.extend(foreign_runner().map(String::from));
        argv.push(env!("CARGO_BIN_EXE_outpost").to_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.env_clear()
            .env("OUTPOST_SYSROOT", device_tree("x86-pc"))
            .env("OUTPOST_CONFIG", self.path().join("outpost.toml"))
            .env("OUTPOST_BOARDS_DIR", self.path().join("boards"))
            .current_dir(self.path());
        cmd
    }
}

/// When these tests were cross-built for aarch64 and run under qemu-user on an x86_64 host, the
/// binary they spawn needs qemu too (no binfmt_misc here). The host kernel's own arch file tells.
pub fn foreign_runner() -> Option<&'static str> {
    let kernel_arch = std::fs::read_to_string("/proc/sys/kernel/arch").unwrap_or_default();
    (cfg!(target_arch = "aarch64") && kernel_arch.trim() == "x86_64").then_some("qemu-aarch64-static")
}

/// A unit as the cache tests see it: a sandbox on the x86_64-dev board whose cache is
/// `<sandbox>/cache`. Test files add their own helpers (`impl Unit` there).
pub struct Unit {
    pub sandbox: Sandbox,
}

impl Unit {
    pub fn new() -> Unit {
        Unit { sandbox: Sandbox::new() }
    }

    pub fn cache(&self) -> PathBuf {
        self.sandbox.path().join("cache")
    }

    pub fn outpost(&self) -> Command {
        let mut cmd = self.sandbox.outpost();
        cmd.env("OUTPOST_BOARD", "x86_64-dev").env("OUTPOST_CACHE_DIR", self.cache());
        cmd
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("outpost runs");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Whether `output` shows any 8-character piece of `secret`, as text or as hex bytes (as a
/// wire dump would): redaction must hide fragments too, not only the whole.
pub fn leaks(output: &str, secret: &str) -> bool {
    let squeezed: String = output.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    let bytes = secret.as_bytes();
    bytes.windows(8.min(bytes.len())).any(|w| {
        let text = String::from_utf8_lossy(w).to_lowercase();
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        output.contains(&*String::from_utf8_lossy(w)) || squeezed.contains(&text) || squeezed.contains(&hex)
    })
}

/// Every file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// ONNX Runtime's CPU library for the `onnxruntime` backend's tests: scripts/test.sh fetches the
/// pinned PyPI wheel's (scripts/onnxruntime/fetch-library.sh) and names it here.
#[cfg(feature = "onnxruntime")]
pub fn onnxruntime_library() -> PathBuf {
    let path = std::env::var_os("OUTPOST_TEST_ONNXRUNTIME").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "OUTPOST_TEST_ONNXRUNTIME is not set: the onnxruntime feature's tests need ONNX Runtime's library \
             (run them through scripts/test.sh, or export OUTPOST_TEST_ONNXRUNTIME=$(scripts/onnxruntime/fetch-library.sh | tail -1))"
        )
    });
    assert!(path.is_file(), "OUTPOST_TEST_ONNXRUNTIME={}: no such file", path.display());
    path
}

/// ONNX Runtime 1.16.3, older than the API level outpost needs (scripts/onnxruntime/fetch-library.sh old).
#[cfg(feature = "onnxruntime")]
pub fn old_onnxruntime_library() -> PathBuf {
    let path = std::env::var_os("OUTPOST_TEST_ONNXRUNTIME_OLD").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "OUTPOST_TEST_ONNXRUNTIME_OLD is not set (run the tests through scripts/test.sh, or export \
             OUTPOST_TEST_ONNXRUNTIME_OLD=$(scripts/onnxruntime/fetch-library.sh old | tail -1))"
        )
    });
    assert!(path.is_file(), "OUTPOST_TEST_ONNXRUNTIME_OLD={}: no such file", path.display());
    path
}
