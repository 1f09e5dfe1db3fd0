//! Inference backends behind one trait, so TensorRT can slot in beside tract. A backend prepares
//! a model file into a [`Session`]; a session runs NCHW f32 input and returns plain tensors.

pub mod choice;
pub mod engine_cache;
#[cfg(any(feature = "rten", feature = "onnxruntime"))]
mod onnx_input;
#[cfg(feature = "rten")]
mod onnx_wire;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
mod strided_conv;
mod strided_softmax;
#[cfg(feature = "rten")]
pub mod rten;
pub mod tract;

use std::path::{Path, PathBuf};

use crate::config::{BackendKind, Precision};

/// A model output, copied out of the backend so decoders never see backend types.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What the model says about its input, before any shape is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputInfo {
    pub name: String,
    /// `[n, c, h, w]` where the file fixes them; `None` for symbolic dimensions.
    pub dims: Vec<Option<usize>>,
}

impl InputInfo {
    /// `(height, width)` when the file declares a concrete NCHW shape.
    pub fn fixed_hw(&self) -> Option<(u32, u32)> {
        match self.dims.as_slice() {
            [_, _, Some(h), Some(w)] => Some((*h as u32, *w as u32)),
            _ => None,
        }
    }
}

/// A prepared model. One concrete plan per input size: the first run at a new size optimises it.
pub trait Session: Send {
    fn input(&self) -> &InputInfo;
    /// Runs `data` shaped `[1, 3, height, width]`.
    fn run(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>>;
    /// Runs like [`Session::run`] while timing every operation, in execution order (for
    /// `outpost bench --profile`); `None` from a backend that cannot say.
    fn profile(&mut self, _data: &[f32], _height: u32, _width: u32) -> anyhow::Result<Option<Vec<OpTime>>> {
        Ok(None)
    }
}

/// One operation's share of a profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The node's name in the optimised graph.
    pub node: String,
    /// The operation, as the backend names it.
    pub op: String,
    pub ms: f64,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Why this backend cannot run here, if it cannot.
    fn unavailable(&self) -> Option<String>;
    fn prepare(&self, model: &Path) -> anyhow::Result<Box<dyn Session>>;
}

/// The one input layout outpost feeds: NCHW float with 3 channels, sides within range where the
/// file fixes them. Checked at load, so a hostile declared shape never reaches an allocation.
pub(crate) fn check_input(input: &InputInfo) -> Result<(), String> {
    let [_, c, h, w] = input.dims[..] else {
        return Err(format!("input `{}` has {} dimensions; outpost feeds NCHW images [1, 3, H, W]", input.name, input.dims.len()));
    };
    if c.is_some_and(|c| c != 3) {
        return Err(format!(
            "input `{}` is {:?}: outpost feeds NCHW images [1, 3, H, W] (an NHWC model [1, H, W, 3] needs re-exporting)",
            input.name, input.dims
        ));
    }
    if let (Some(h), Some(w)) = (h, w) {
        crate::vision::preprocess::check_input_size(w as u64, h as u64)
            .map_err(|e| format!("input `{}` declared as {:?}: {e}", input.name, input.dims))?;
    } else if let Some(side) = h.or(w) {
        crate::vision::preprocess::check_input_size(side as u64, side as u64)
            .map_err(|e| format!("input `{}` declared as {:?}: {e}", input.name, input.dims))?;
    }
    Ok(())
}

/// Whether an fp16 TensorRT engine may run: compares its answer at one input size with f32's
/// (`models::half_gate` holds the calibration image and the decoding this needs).
pub trait HalfGate: Send + Sync {
    /// The calibration image's digest: a verdict reached on another picture is checked again.
    fn calibration_sha256(&self) -> &str;
    fn check(&self, candidate: &mut dyn Session, height: u32, width: u32) -> anyhow::Result<engine_cache::HalfVerdict>;
}

impl std::fmt::Debug for dyn HalfGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HalfGate(calibration {})", self.calibration_sha256())
    }
}

/// What every backend is made with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub threads: usize,
    /// tract's precision: f16 only where provisioning accepted it for the model.
    pub precision: Precision,
    /// `inference.precision` as configured: TensorRT's engines settle it with their own gate.
    pub requested_precision: Precision,
    /// The gate that accepts or refuses fp16 TensorRT engines; only provisioning passes one, so
    /// that no engine is built, and no model checked, on the way to the first frame.
    pub half_gate: Option<std::sync::Arc<dyn HalfGate>>,
    /// `inference.onnxruntime_library`.
    pub onnxruntime_library: Option<PathBuf>,
    /// The outpost cache, where TensorRT engines are kept.
    pub cache_root: PathBuf,
}

impl Settings {
    pub fn new(config: &crate::config::Config, precision: Precision) -> Settings {
        Settings {
            threads: config.inference.threads,
            precision,
            requested_precision: config.inference.precision,
            half_gate: None,
            onnxruntime_library: config.inference.onnxruntime_library.clone(),
            cache_root: config.cache_dir.clone(),
        }
    }

    /// The same at another thread count (`outpost bench`'s one-thread figure).
    pub fn with_threads(&self, threads: usize) -> Settings {
        Settings { threads, ..self.clone() }
    }
}

/// The first available backend among the preferred one and its fallbacks. A fallback is logged
/// as a warning naming each backend passed over and why (the library searched, the provider
/// missing from it, no GPU) with what to install.
pub fn choose(preferred: BackendKind, fallback: &[BackendKind], settings: &Settings) -> anyhow::Result<Box<dyn Backend>> {
    let (threads, precision) = (settings.threads, settings.precision);
    let mut reasons = Vec::new();
    for kind in std::iter::once(preferred).chain(fallback.iter().copied()) {
        let backend: Box<dyn Backend> = match kind {
            // "auto" names no engine by itself: models::engine_for resolves it from the choice
            // recorded at provision time, and a model never measured runs on tract.
            BackendKind::Tract | BackendKind::Auto => Box::new(tract::Tract::new(threads).with_precision(precision)),
            #[cfg(feature = "rten")]
            BackendKind::Rten => {
                if precision == Precision::F16 {
                    log::warn!("inference.precision = f16 is tract's: rten computes in f32");
                }
                Box::new(rten::Rten::new(threads))
            }
            #[cfg(not(feature = "rten"))]
            BackendKind::Rten => Box::new(Unavailable {
                name: "rten",
                why: "rten is not compiled into this build (cargo feature `rten`)",
            }),
            #[cfg(feature = "onnxruntime")]
            BackendKind::OnnxRuntime | BackendKind::Cuda | BackendKind::TensorRt => {
                use onnxruntime::{OnnxRuntime, Provider};
                let provider = Provider::for_kind(kind).expect("an ONNX Runtime kind");
                Box::new(OnnxRuntime::new(provider, settings))
            }
            #[cfg(not(feature = "onnxruntime"))]
            BackendKind::OnnxRuntime | BackendKind::Cuda | BackendKind::TensorRt => Box::new(Unavailable {
                name: match kind {
                    BackendKind::Cuda => "cuda",
                    BackendKind::TensorRt => "tensorrt",
                    _ => "onnxruntime",
                },
                why: "ONNX Runtime (which drives CUDA and TensorRT) is not compiled into this build: it needs the glibc \
                      build (`cargo build --release --features onnxruntime`, scripts/build-gnu.sh)",
            }),
        };
        match backend.unavailable() {
            None => {
                if !reasons.is_empty() {
                    log::warn!("using backend {} ({})", backend.name(), reasons.join("; "));
                }
                return Ok(backend);
            }
            Some(why) => reasons.push(format!("{}: {why}", backend.name())),
        }
    }
    anyhow::bail!("no inference backend available: {}", reasons.join("; "))
}

/// A backend that is known but cannot run in this build.
#[cfg(not(all(feature = "rten", feature = "onnxruntime")))]
struct Unavailable {
    name: &'static str,
    why: &'static str,
}

#[cfg(not(all(feature = "rten", feature = "onnxruntime")))]
impl Backend for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }

    fn unavailable(&self) -> Option<String> {
        Some(self.why.to_string())
    }

    fn prepare(&self, _: &Path) -> anyhow::Result<Box<dyn Session>> {
        anyhow::bail!("{}: {}", self.name, self.why)
    }
}

// The static build's answer to an accelerated backend; the glibc build's is tests/onnxruntime_cli.rs.
#[cfg(all(test, not(feature = "onnxruntime")))]
mod tests {
    use super::*;

    #[test]
    fn tensorrt_falls_back_to_tract() {
        let settings = Settings {
            threads: 1,
            precision: Precision::F32,
            requested_precision: Precision::F32,
            half_gate: None,
            onnxruntime_library: None,
            cache_root: PathBuf::new(),
        };
        let backend = choose(BackendKind::TensorRt, &[BackendKind::Tract], &settings).unwrap();
        assert_eq!(backend.name(), "tract");
        let err = choose(BackendKind::TensorRt, &[], &settings).err().unwrap().to_string();
        assert!(err.contains("tensorrt: ONNX Runtime (which drives CUDA and TensorRT) is not compiled into this build"), "{err}");
    }
}
