//! What NVIDIA software and hardware this machine has, asked of the libraries themselves: the
//! CUDA driver (`libcuda.so.1`: its version, the first GPU's name and compute capability) and
//! TensorRT (`libnvinfer.so.*`: its version). These name TensorRT engines in the cache and tell
//! `doctor` and the fallback warnings what is missing. Nothing is linked: both are opened with
//! dlopen, so the glibc build runs on machines without them.

// FFI: the one place outpost calls C itself (every block carries its SAFETY argument).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::OnceLock;

use libloading::{Library, Symbol};

/// The first CUDA device, as its driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub name: String,
    /// `major.minor`, e.g. `8.7` for Orin.
    pub compute_capability: String,
    /// The driver's CUDA version, e.g. `12.6`.
    pub driver_cuda: String,
}

const CUDA_LIBRARIES: &[&str] = &["libcuda.so.1", "libcuda.so"];
/// TensorRT 10 (JetPack 6.1+), 8 (JetPack 5, 6.0), 7 (JetPack 4).
const TENSORRT_LIBRARIES: &[&str] = &[
    "libnvinfer.so.10",
    "libnvinfer.so.8",
    "libnvinfer.so.7",
    "libnvinfer.so",
];

// CUdevice_attribute values from cuda.h.
const COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const COMPUTE_CAPABILITY_MINOR: c_int = 76;

/// The GPU, or why none can be used (no driver, no device, an error from the driver).
pub fn gpu() -> &'static Result<Gpu, String> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(probe_gpu)
}

/// TensorRT's version (`10.3.0`), or why it cannot be loaded.
pub fn tensorrt() -> &'static Result<String, String> {
    static TENSORRT: OnceLock<Result<String, String>> = OnceLock::new();
    TENSORRT.get_or_init(probe_tensorrt)
}

/// The first of `names` that loads, or every loader error.
fn open_first(names: &[&str]) -> Result<Library, String> {
    let mut errors = Vec::new();
    for name in names {
        // SAFETY: loading runs the library's initialisers; these are NVIDIA's driver and TensorRT
        // libraries, whose initialisers have no preconditions on the caller.
        match unsafe { Library::new(*name) } {
            Ok(library) => return Ok(library),
            Err(e) => errors.push(loader_error(&e)),
        }
    }
    // The first name is the one a current install has; the older ones' errors add only noise.
    Err(errors.into_iter().next().unwrap_or_default())
}

/// The dynamic loader's own words (libloading's Display says only "dlopen failed").
pub fn loader_error(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    }
}

/// Why `path` cannot be opened as a library, in the loader's words; `None` if it can.
pub fn why_unloadable(path: &std::path::Path) -> Option<String> {
    // SAFETY: as in `open_first`: the library is ONNX Runtime, the one the caller is about to load
    // anyway; its initialisers have no preconditions on the caller.
    unsafe { Library::new(path) }.err().map(|e| loader_error(&e))
}

type CuResult = c_int;

fn probe_gpu() -> Result<Gpu, String> {
    let library = open_first(CUDA_LIBRARIES)
        .map_err(|e| format!("no CUDA driver ({e}); install the NVIDIA driver (on Jetson: JetPack)"))?;
    // SAFETY: the signatures are those of cuda.h's driver API (CUDA_API_VERSION >= 3020, unchanged
    // since), called in the documented order: cuInit before any other call; every out-pointer is
    // a live local of the declared type; the name buffer's length is passed with it.
    unsafe {
        let init: Symbol<unsafe extern "C" fn(c_uint) -> CuResult> = symbol(&library, b"cuInit\0")?;
        let driver_version: Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> =
            symbol(&library, b"cuDriverGetVersion\0")?;
        let count: Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> =
            symbol(&library, b"cuDeviceGetCount\0")?;
        let device_get: Symbol<unsafe extern "C" fn(*mut c_int, c_int) -> CuResult> =
            symbol(&library, b"cuDeviceGet\0")?;
        let name: Symbol<unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult> =
            symbol(&library, b"cuDeviceGetName\0")?;
        let attribute: Symbol<unsafe extern "C" fn(*mut c_int, c_int, c_int) -> CuResult> =
            symbol(&library, b"cuDeviceGetAttribute\0")?;
        check(init(0), "cuInit")?;
        let mut version = 0;
        check(driver_version(&mut version), "cuDriverGetVersion")?;
        let mut devices = 0;
        check(count(&mut devices), "cuDeviceGetCount")?;
        if devices < 1 {
            return Err("the CUDA driver sees no GPU".into());
        }
        let mut device = 0;
        check(device_get(&mut device, 0), "cuDeviceGet")?;
        let mut buffer = [0 as c_char; 256];
        check(
            name(buffer.as_mut_ptr(), buffer.len() as c_int - 1, device),
            "cuDeviceGetName",
        )?;
        let (mut major, mut minor) = (0, 0);
        check(
            attribute(&mut major, COMPUTE_CAPABILITY_MAJOR, device),
            "cuDeviceGetAttribute",
        )?;
        check(
            attribute(&mut minor, COMPUTE_CAPABILITY_MINOR, device),
            "cuDeviceGetAttribute",
        )?;
        Ok(Gpu {
            name: CStr::from_ptr(buffer.as_ptr())
                .to_string_lossy()
                .trim()
                .to_string(),
            compute_capability: format!("{major}.{minor}"),
            driver_cuda: format!("{}.{}", version / 1000, version % 1000 / 10),
        })
    }
}

fn probe_tensorrt() -> Result<String, String> {
    let library = open_first(TENSORRT_LIBRARIES)
        .map_err(|e| format!("TensorRT is not installed ({e}); on Jetson it comes with JetPack"))?;
    // SAFETY: `getInferLibVersion` is NvInferRuntime.h's `extern "C" int32_t getInferLibVersion()`,
    // without arguments or preconditions.
    let version = unsafe {
        let get: Symbol<unsafe extern "C" fn() -> i32> = symbol(&library, b"getInferLibVersion\0")?;
        get()
    };
    Ok(tensorrt_version(version))
}

/// TensorRT encodes its version as major*1000 + minor*100 + patch up to 9.x and as major*10000 +
/// minor*100 + patch from 10.0.
fn tensorrt_version(v: i32) -> String {
    if v >= 100_000 {
        format!("{}.{}.{}", v / 10_000, v % 10_000 / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, v % 1000 / 100, v % 100)
    }
}

/// SAFETY (callers): `T` must be the symbol's real type.
unsafe fn symbol<'l, T>(library: &'l Library, name: &[u8]) -> Result<Symbol<'l, T>, String> {
    // SAFETY: the caller names the symbol's true signature (see above).
    unsafe { library.get(name) }.map_err(|e| format!("{e}"))
}

fn check(result: CuResult, call: &str) -> Result<(), String> {
    match result {
        0 => Ok(()),
        // CUDA_ERROR_NO_DEVICE, CUDA_ERROR_INSUFFICIENT_DRIVER
        100 => Err(format!("{call}: no CUDA-capable GPU is present")),
        35 => Err(format!(
            "{call}: the NVIDIA driver is older than this CUDA runtime needs"
        )),
        code => Err(format!("{call} failed (CUDA error {code})")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tensorrt_versions_decode_in_both_encodings() {
        assert_eq!(super::tensorrt_version(8601), "8.6.1");
        assert_eq!(super::tensorrt_version(8502), "8.5.2");
        assert_eq!(super::tensorrt_version(100300), "10.3.0");
        assert_eq!(super::tensorrt_version(101302), "10.13.2");
    }
}
