//! Finding and opening `libonnxruntime.so`. ONNX Runtime is opened at run time, never linked: the
//! glibc build starts and runs tract on a machine without it. One library per process (ONNX
//! Runtime's API table is process-wide), so the first configured path wins.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The loaded ONNX Runtime.
pub struct Runtime {
    pub path: PathBuf,
    pub version: String,
    /// The execution providers compiled into this library, e.g. `TensorrtExecutionProvider`.
    pub providers: Vec<String>,
    pub environment: Environment,
}

impl Runtime {
    pub fn has(&self, provider: &str) -> bool {
        self.providers.iter().any(|p| p == provider)
    }
}

/// The runtime, loaded on first use from `configured` or the usual places.
pub fn load(configured: Option<&Path>) -> Result<&'static Runtime, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| open(configured))
        .as_ref()
        .map_err(Clone::clone)
}

fn open(configured: Option<&Path>) -> Result<Runtime, String> {
    let path = match configured {
        Some(path) if path.is_file() => path.to_path_buf(),
        Some(path) => {
            return Err(format!(
                "inference.onnxruntime_library = {}: no such file; point it at libonnxruntime.so (e.g. the onnxruntime \
                 Python package's onnxruntime/capi/libonnxruntime.so.1.*)",
                path.display()
            ))
        }
        None => find().map_err(|searched| {
            format!(
                "no ONNX Runtime library found (searched {}); install it (`pip install onnxruntime`, or onnxruntime-gpu \
                 for CUDA/TensorRT; on Jetson NVIDIA's onnxruntime-gpu wheel for your JetPack) or set \
                 inference.onnxruntime_library",
                searched.join(", ")
            )
        })?,
    };
    let builder =
        ort::init_from(&path).map_err(|e| match super::gpu::why_unloadable(&path) {
            Some(why) => format!("ONNX Runtime at {} cannot be loaded: {why}", path.display()),
            // ort's check of the library's API level ("expected version >= '1.17.x', but got ..."):
            // say what to install instead.
            None if e.to_string().contains("expected version") => format!(
                "ONNX Runtime at {}: {e}; outpost needs ONNX Runtime 1.17 or newer (on Jetson, JetPack 6 and NVIDIA's \
                 onnxruntime-gpu wheel for it; older JetPacks run the CPU backends)",
                path.display()
            ),
            None => format!("ONNX Runtime at {}: {e}", path.display()),
        })?;
    let environment = builder.with_name("outpost").build().map_err(|e| {
        format!(
            "ONNX Runtime at {}: cannot create its environment: {e}",
            path.display()
        )
    })?;
    let version = version(&path);
    let providers = providers();
    log::info!(
        "ONNX Runtime {version} from {} (providers: {})",
        path.display(),
        providers.join(", ")
    );
    Ok(Runtime {
        path,
        version,
        providers,
        environment,
    })
}

/// ONNX Runtime's own version string (ort has checked it is at least the API level we use).
fn version(path: &Path) -> String {
    // ort logs the version only; the build info string starts with it on every release since 1.14:
    // "ORT Build Info: git-branch=rel-1.20.1, ...".
    let info = ort::info();
    info.split("git-branch=rel-")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .map(str::to_string)
        .or_else(|| file_version(path))
        .unwrap_or_else(|| "(unknown version)".into())
}

/// `1.20.1` from `libonnxruntime.so.1.20.1`.
fn file_version(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("libonnxruntime.so.")
        .filter(|v| v.contains('.'))
        .map(str::to_string)
}

fn providers() -> Vec<String> {
    use ort::ep::ExecutionProvider;
    let mut found = Vec::new();
    for (name, available) in [
        (
            "TensorrtExecutionProvider",
            ort::ep::TensorRT::is_available(),
        ),
        ("CUDAExecutionProvider", ort::ep::CUDA::is_available()),
        ("CPUExecutionProvider", ort::ep::CPU::is_available()),
    ] {
        if available.unwrap_or(false) {
            found.push(name.to_string());
        }
    }
    found
}

/// The first library in the usual places, or every place searched.
fn find() -> Result<PathBuf, Vec<String>> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("ORT_DYLIB_PATH={}", path.display()));
    }
    for dir in candidate_dirs() {
        if let Some(found) = library_in(&dir) {
            return Ok(found);
        }
        searched.push(dir.display().to_string());
    }
    Err(searched)
}

/// System library folders, then the `onnxruntime` Python package's `capi/` under every Python's
/// site- and dist-packages (where `pip install onnxruntime-gpu` puts NVIDIA's Jetson wheel).
fn candidate_dirs() -> Vec<PathBuf> {
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else {
        "x86_64-linux-gnu"
    };
    let mut dirs: Vec<PathBuf> = [
        "/usr/local/lib".to_string(),
        format!("/usr/lib/{arch}"),
        "/usr/lib".into(),
        "/opt/onnxruntime/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    let mut python_roots = vec![PathBuf::from("/usr/local/lib"), PathBuf::from("/usr/lib")];
    if let Some(home) = std::env::var_os("HOME") {
        python_roots.push(Path::new(&home).join(".local/lib"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        python_roots.insert(0, Path::new(&venv).join("lib"));
    }
    for root in python_roots {
        for python in named_like(&root, "python3").into_iter().rev() {
            for packages in ["site-packages", "dist-packages"] {
                dirs.push(python.join(packages).join("onnxruntime").join("capi"));
            }
        }
    }
    dirs
}

/// `libonnxruntime.so`, or the one versioned file the Python wheels carry.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    named_like(dir, "libonnxruntime.so.").pop()
}

/// The entries of `dir` whose names start with `prefix`, sorted (none if it cannot be read).
fn named_like(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_wheels_versioned_library_is_found_and_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(library_in(dir.path()), None);
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(
            library_in(dir.path()),
            None,
            "the providers' helper is not ONNX Runtime"
        );
        std::fs::write(dir.path().join("libonnxruntime.so.1.20.1"), b"").unwrap();
        let found = library_in(dir.path()).unwrap();
        assert_eq!(file_version(&found).as_deref(), Some("1.20.1"));
        std::fs::write(dir.path().join("libonnxruntime.so"), b"").unwrap();
        assert_eq!(
            library_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so"))
        );
    }
}
