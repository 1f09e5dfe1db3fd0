//! ONNX Runtime as a backend (feature `onnxruntime`, glibc builds): its CPU, CUDA and TensorRT
//! execution providers, through a `libonnxruntime.so` opened at run time ([`library`]).
//!
//! `inference.backend = "tensorrt"` registers TensorRT, then CUDA, and ONNX Runtime runs what
//! neither takes on its CPU provider. A TensorRT engine is built for one input size: sessions are
//! made per size, like tract's plans, and each builds into or loads from its keyed directory in
//! the outpost cache ([`super::engine_cache`]), so that `outpost provision` builds the engines
//! once and the first frame after a reboot finds them. `inference.precision = "f16"` builds fp16
//! engines only through the accuracy gate ([`super::HalfGate`]), at provision; an engine it
//! refused, or one never checked, leaves the model on its f32 engine.

pub mod gpu;
pub mod library;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::ep;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session as OrtSession;
use ort::value::TensorRef;

use super::engine_cache::{self, EngineKey, HalfVerdict};
use super::{Backend, HalfGate, InputInfo, Output, Session};
use crate::config::{BackendKind, Precision};

/// Which of ONNX Runtime's execution providers leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

impl Provider {
    /// The provider that leads for `kind`, if ONNX Runtime runs it.
    pub fn for_kind(kind: BackendKind) -> Option<Provider> {
        match kind {
            BackendKind::OnnxRuntime => Some(Provider::Cpu),
            BackendKind::Cuda => Some(Provider::Cuda),
            BackendKind::TensorRt => Some(Provider::TensorRt),
            BackendKind::Auto | BackendKind::Tract | BackendKind::Rten => None,
        }
    }

    /// The backend's name, as `inference.backend` spells it.
    pub fn backend_name(self) -> &'static str {
        match self {
            Provider::Cpu => "onnxruntime",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }
}

pub struct OnnxRuntime {
    provider: Provider,
    library: Option<PathBuf>,
    settings: SessionSettings,
}

impl OnnxRuntime {
    pub fn new(provider: Provider, settings: &super::Settings) -> OnnxRuntime {
        OnnxRuntime {
            provider,
            library: settings.onnxruntime_library.clone(),
            settings: SessionSettings {
                threads: settings.threads.max(1),
                precision: settings.requested_precision,
                half_gate: settings.half_gate.clone(),
                cache_root: settings.cache_root.clone(),
            },
        }
    }
}

/// Why the provider cannot run here, if it cannot: the library, the provider compiled into it,
/// the NVIDIA pieces it needs, in that order.
pub fn provider_unavailable(provider: Provider, library: Option<&Path>) -> Option<String> {
    let runtime = match library::load(library) {
        Ok(runtime) => runtime,
        Err(why) => return Some(why),
    };
    let lacks = |name: &str, install: &str| {
        format!(
            "the ONNX Runtime {} at {} has no {name} (it has: {}); {install}",
            runtime.version,
            runtime.path.display(),
            runtime.providers.join(", ")
        )
    };
    let gpu_needed = |what: &str| match gpu::gpu() {
        Ok(_) => None,
        Err(why) => Some(format!("{what} needs an NVIDIA GPU: {why}")),
    };
    match provider {
        Provider::Cpu => None,
        Provider::Cuda if !runtime.has("CUDAExecutionProvider") => Some(lacks(
            "CUDA execution provider",
            "install onnxruntime-gpu (on Jetson: NVIDIA's wheel for your JetPack) and point inference.onnxruntime_library at its library",
        )),
        Provider::Cuda => gpu_needed("CUDA"),
        Provider::TensorRt if !runtime.has("TensorrtExecutionProvider") => Some(lacks(
            "TensorRT execution provider",
            "install onnxruntime-gpu built with TensorRT (on Jetson: NVIDIA's wheel for your JetPack) and point \
             inference.onnxruntime_library at its library",
        )),
        Provider::TensorRt => gpu_needed("TensorRT").or_else(|| gpu::tensorrt().clone().err()),
    }
}

impl Backend for OnnxRuntime {
    fn name(&self) -> &'static str {
        self.provider.backend_name()
    }

    fn unavailable(&self) -> Option<String> {
        provider_unavailable(self.provider, self.library.as_deref())
    }

    fn prepare(&self, model: &Path) -> anyhow::Result<Box<dyn Session>> {
        let runtime = library::load(self.library.as_deref()).map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        // The input is read from a CPU session without graph optimisation: cheap, and what the
        // file declares.
        let probe = builder(runtime, self.settings.threads)?
            .with_optimization_level(GraphOptimizationLevel::Disable)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .commit_from_file(model)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a loadable ONNX model for ONNX Runtime: {e}",
                    model.display()
                )
            })?;
        let input = input_info(&probe).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        super::check_input(&input).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        drop(probe);
        log::info!(
            "loaded {} into ONNX Runtime {} ({}) in {:.2}s (input {} {:?}); {} thread(s)",
            model.display(),
            runtime.version,
            self.provider.backend_name(),
            started.elapsed().as_secs_f64(),
            input.name,
            input.dims,
            self.settings.threads
        );
        let mut session = RuntimeSession {
            runtime,
            provider: self.provider,
            path: model.to_path_buf(),
            input,
            sessions: HashMap::new(),
            settings: self.settings.clone(),
        };
        // CPU and CUDA load the declared size now, so that a provider that cannot take the model
        // says so at load; TensorRT builds engines only for sizes that run (provision runs them).
        if let (Some((height, width)), false) = (
            session.input.fixed_hw(),
            self.provider == Provider::TensorRt,
        ) {
            session.session_for(height, width)?;
        }
        Ok(Box::new(session))
    }
}

fn builder(
    runtime: &library::Runtime,
    threads: usize,
) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    OrtSession::builder(&runtime.environment)
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .map_err(|e| anyhow::anyhow!("ONNX Runtime session options: {e}"))
}

/// Where a TensorRT session keeps its engine, and the one size it runs.
struct EngineSetup<'a> {
    dir: &'a Path,
    input: &'a InputInfo,
    height: u32,
    width: u32,
}

/// A session with `provider` leading, on the model's bytes; TensorRT needs its [`EngineSetup`].
fn make_session(
    runtime: &library::Runtime,
    model: &Path,
    bytes: &[u8],
    provider: Provider,
    threads: usize,
    precision: Precision,
    engine: Option<EngineSetup>,
) -> anyhow::Result<OrtSession> {
    let mut providers = Vec::new();
    if let (Provider::TensorRt, Some(engine)) = (provider, engine) {
        let dir = engine.dir.display().to_string();
        let mut trt = ep::TensorRT::default()
            .with_fp16(precision == Precision::F16)
            .with_engine_cache(true)
            .with_engine_cache_path(&dir)
            .with_timing_cache(true)
            .with_timing_cache_path(&dir);
        if engine.input.fixed_hw().is_none() {
            // The file leaves the size open: one optimisation profile at exactly this size.
            let shape = format!(
                "{}:1x3x{}x{}",
                engine.input.name, engine.height, engine.width
            );
            trt = trt
                .with_profile_min_shapes(&shape)
                .with_profile_opt_shapes(&shape)
                .with_profile_max_shapes(&shape);
        }
        providers.push(trt.build().error_on_failure());
    }
    if matches!(provider, Provider::TensorRt | Provider::Cuda) {
        providers.push(ep::CUDA::default().build().error_on_failure());
    }
    builder(runtime, threads)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_execution_providers(providers)
        .map_err(|e| anyhow::anyhow!("ONNX Runtime {}: {e}", provider.backend_name()))?
        .commit_from_memory(bytes)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: ONNX Runtime ({}) cannot load it: {e}",
                model.display(),
                provider.backend_name()
            )
        })
}

fn input_info(session: &OrtSession) -> Result<InputInfo, String> {
    let [input] = session.inputs() else {
        return Err(format!("the model has {} inputs; outpost feeds one image input", session.inputs().len()));
    };
    let name = input.name();
    let dtype = input.dtype();
    match dtype.tensor_type() {
        Some(ort::value::TensorElementType::Float32) => {}
        Some(other) => {
            return Err(format!(
                "input `{name}` takes {other:?} values; outpost feeds float32 images (re-export the model with a float input)"
            ))
        }
        None => return Err(format!("input `{name}` is not a tensor")),
    }
    let shape = dtype.tensor_shape().ok_or_else(|| format!("input `{name}` is not a tensor"))?;
    let dims = shape.iter().map(|&d| usize::try_from(d).ok().filter(|&d| d > 0)).collect();
    Ok(InputInfo { name: name.to_string(), dims })
}

#[derive(Clone)]
struct SessionSettings {
    threads: usize,
    /// As configured: TensorRT's fp16 engines still pass the gate.
    precision: Precision,
    half_gate: Option<std::sync::Arc<dyn HalfGate>>,
    cache_root: PathBuf,
}

struct RuntimeSession {
    runtime: &'static library::Runtime,
    provider: Provider,
    path: PathBuf,
    input: InputInfo,
    /// A session per `(height, width)`: ONNX Runtime holds a run to the declared size, and a
    /// TensorRT engine is built for one size.
    sessions: HashMap<(u32, u32), OrtSession>,
    settings: SessionSettings,
}

impl RuntimeSession {
    fn session_for(&mut self, height: u32, width: u32) -> anyhow::Result<&mut OrtSession> {
        if !self.sessions.contains_key(&(height, width)) {
            let started = Instant::now();
            let file = std::fs::read(&self.path).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
            let bytes = super::onnx_input::for_onnxruntime(&file, [1, 3, height as usize, width as usize]).map_err(|e| {
                anyhow::anyhow!("{}: fixing the input size to {width}x{height}: {e}", self.path.display())
            })?;
            let session = match self.provider {
                // The engine's key holds the file's digest, not the rewritten bytes'.
                Provider::TensorRt => {
                    let sha256 = crate::provision::sha256_hex(&file);
                    drop(file);
                    self.tensorrt_session(&sha256, &bytes, height, width)?
                }
                provider => {
                    let settings = &self.settings;
                    make_session(
                        self.runtime,
                        &self.path,
                        &bytes,
                        provider,
                        settings.threads,
                        Precision::F32,
                        None,
                    )?
                }
            };
            log::info!(
                "ONNX Runtime ({}): {} ready for input {width}x{height} in {:.2}s",
                self.provider.backend_name(),
                self.path.display(),
                started.elapsed().as_secs_f64()
            );
            self.sessions.insert((height, width), session);
        }
        Ok(self
            .sessions
            .get_mut(&(height, width))
            .expect("inserted above"))
    }

    /// The engine for this size: fp16 where the gate accepted it, else f32; from the cache, or
    /// built into it (minutes on a Jetson).
    fn tensorrt_session(&self, model_sha256: &str, bytes: &[u8], height: u32, width: u32) -> anyhow::Result<OrtSession> {
        if self.settings.precision == Precision::F16 {
            if let Some(session) = self.half_engine(model_sha256, bytes, height, width)? {
                return Ok(session);
            }
        }
        let key = engine_key(model_sha256, Precision::F32, [width, height]).map_err(anyhow::Error::msg)?;
        if let Some(dir) = engine_cache::find(&self.settings.cache_root, &key) {
            log::info!("TensorRT engine for {} at {width}x{height}: cached in {}", self.path.display(), dir.display());
            return self.engine_session(&dir, bytes, height, width, Precision::F32);
        }
        let started = Instant::now();
        let building = self.start_build(&key, "")?;
        let mut session = self.engine_session(building.dir(), bytes, height, width, Precision::F32)?;
        // The engine is built on the first run at a fixed size: run once before calling it done.
        let zeros = vec![0f32; 3 * height as usize * width as usize];
        run(&mut session, &self.input.name, &zeros, height, width)?;
        let dir = building.finish().map_err(|e| anyhow::anyhow!("TensorRT engine cache: {e}"))?;
        log::info!("TensorRT engine built in {:.0}s: {}", started.elapsed().as_secs_f64(), dir.display());
        Ok(session)
    }

    /// The fp16 engine where the accuracy gate accepts it (checked now when provisioning passed a
    /// gate and no verdict on its calibration image exists); `None` = f32, the log says why.
    fn half_engine(&self, model_sha256: &str, bytes: &[u8], height: u32, width: u32) -> anyhow::Result<Option<OrtSession>> {
        let key = engine_key(model_sha256, Precision::F16, [width, height]).map_err(anyhow::Error::msg)?;
        let found = engine_cache::find(&self.settings.cache_root, &key);
        let recorded = found.as_deref().and_then(engine_cache::verdict);
        let gate = self.settings.half_gate.as_deref();
        let model = self.path.display();
        match half_plan(recorded.as_ref(), gate.map(|g| g.calibration_sha256())) {
            HalfPlan::Run => {
                let dir = found.expect("a verdict comes from a found engine");
                log::info!("TensorRT fp16 engine for {model} at {width}x{height} (accepted: {})", recorded.expect("found").reason);
                self.engine_session(&dir, bytes, height, width, Precision::F16).map(Some)
            }
            HalfPlan::F32(why) => {
                log::warn!("inference.precision = f16: {model} runs TensorRT's f32 engine: {why}");
                Ok(None)
            }
            HalfPlan::Check => {
                let gate = gate.expect("a check needs the gate");
                let started = Instant::now();
                let building = self.start_build(&key, ", then checking its boxes against f32's")?;
                let checked = self.engine_session(building.dir(), bytes, height, width, Precision::F16).and_then(|mut session| {
                    let verdict = gate.check(&mut Candidate { session: &mut session, input: &self.input }, height, width)?;
                    Ok((session, verdict))
                });
                let (session, verdict) = match checked {
                    Ok(checked) => checked,
                    Err(e) => {
                        building.abandon();
                        log::warn!("inference.precision = f16: {model}: fp16 engine not checked ({e:#}); its f32 engine runs");
                        return Ok(None);
                    }
                };
                engine_cache::record_verdict(building.dir(), &verdict)
                    .and_then(|()| building.finish())
                    .map_err(|e| anyhow::anyhow!("TensorRT engine cache: {e}"))?;
                let took = started.elapsed().as_secs_f64();
                if verdict.accepted {
                    log::info!("TensorRT fp16 engine for {model} accepted in {took:.0}s: {}", verdict.reason);
                    Ok(Some(session))
                } else {
                    log::warn!("inference.precision = f16: {model}: fp16 engine refused ({}); its f32 engine runs", verdict.reason);
                    Ok(None)
                }
            }
        }
    }

    fn start_build(&self, key: &EngineKey, then: &str) -> anyhow::Result<engine_cache::Building> {
        let [width, height] = key.input;
        log::info!(
            "building the TensorRT {} engine for {} at {width}x{height} (TensorRT {}, {}){then}: takes minutes on a Jetson",
            key.precision,
            self.path.display(),
            key.tensorrt,
            key.gpu
        );
        engine_cache::start(&self.settings.cache_root, key)
            .map_err(|e| anyhow::anyhow!("TensorRT engine cache {}: {e}", self.settings.cache_root.display()))
    }

    /// A TensorRT session keeping its engine in `dir`.
    fn engine_session(&self, dir: &Path, bytes: &[u8], height: u32, width: u32, precision: Precision) -> anyhow::Result<OrtSession> {
        let engine = EngineSetup { dir, input: &self.input, height, width };
        make_session(self.runtime, &self.path, bytes, Provider::TensorRt, self.settings.threads, precision, Some(engine))
    }
}

/// What to do about an fp16 engine, from the verdict kept with it and the gate provisioning passed.
#[derive(Debug, PartialEq)]
enum HalfPlan {
    Run,
    /// Run f32, because of this.
    F32(String),
    /// Build (or rebuild) the fp16 engine and check it.
    Check,
}

fn half_plan(recorded: Option<&HalfVerdict>, gate: Option<&str>) -> HalfPlan {
    match (recorded, gate) {
        (Some(verdict), Some(calibration)) if verdict.calibration_sha256 != calibration => HalfPlan::Check,
        (Some(verdict), _) if verdict.accepted => HalfPlan::Run,
        (Some(verdict), _) => HalfPlan::F32(format!("its fp16 engine was refused at provision: {}", verdict.reason)),
        (None, Some(_)) => HalfPlan::Check,
        (None, None) => HalfPlan::F32(
            "no fp16 engine was checked against f32 for it yet (`outpost provision` does, with inference.calibration_image set)".into(),
        ),
    }
}

/// The engine being checked, as the gate runs it: one session at the one size it was built for.
struct Candidate<'a> {
    session: &'a mut OrtSession,
    input: &'a InputInfo,
}

impl Session for Candidate<'_> {
    fn input(&self) -> &InputInfo {
        self.input
    }

    fn run(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>> {
        run(self.session, &self.input.name, data, height, width)
    }
}

/// The key of the engine this machine would build now, or what is missing to build one.
pub fn engine_key(
    model_sha256: &str,
    precision: Precision,
    input: [u32; 2],
) -> Result<EngineKey, String> {
    let gpu = gpu::gpu().clone()?;
    let tensorrt = gpu::tensorrt().clone()?;
    Ok(EngineKey {
        model_sha256: model_sha256.to_string(),
        tensorrt,
        gpu: gpu.name,
        compute_capability: gpu.compute_capability,
        precision: match precision {
            Precision::F32 => "fp32".into(),
            Precision::F16 => "fp16".into(),
        },
        input,
    })
}

impl Session for RuntimeSession {
    fn input(&self) -> &InputInfo {
        &self.input
    }

    fn run(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>> {
        let name = self.input.name.clone();
        let session = self.session_for(height, width)?;
        run(session, &name, data, height, width)
    }
}

fn run(
    session: &mut OrtSession,
    input: &str,
    data: &[f32],
    height: u32,
    width: u32,
) -> anyhow::Result<Vec<Output>> {
    let expected = 3 * height as usize * width as usize;
    anyhow::ensure!(
        data.len() == expected,
        "input has {} values, [1, 3, {height}, {width}] needs {expected}",
        data.len()
    );
    let tensor = TensorRef::from_array_view(([1usize, 3, height as usize, width as usize], data))
        .map_err(|e| anyhow::anyhow!("ONNX Runtime input: {e}"))?;
    let outputs = session
        .run(ort::inputs![input => tensor])
        .map_err(|e| anyhow::anyhow!("ONNX Runtime run at {width}x{height}: {e}"))?;
    let mut copied = Vec::with_capacity(outputs.len());
    for (name, value) in outputs.iter() {
        let (shape, values) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("output `{name}`: outpost reads f32 outputs: {e}"))?;
        copied.push(Output {
            name: name.to_string(),
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: values.to_vec(),
        });
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(accepted: bool, calibration: &str) -> HalfVerdict {
        HalfVerdict { accepted, reason: "3 of f32's 3 boxes matched".into(), calibration_sha256: calibration.into() }
    }

    #[test]
    fn fp16_runs_only_with_an_accepted_verdict_and_is_checked_only_at_provision() {
        // At run time (no gate): the verdict decides; without one, f32.
        assert_eq!(half_plan(Some(&verdict(true, "a")), None), HalfPlan::Run);
        let HalfPlan::F32(why) = half_plan(Some(&verdict(false, "a")), None) else { panic!() };
        assert!(why.contains("refused at provision: 3 of f32's"), "{why}");
        let HalfPlan::F32(why) = half_plan(None, None) else { panic!() };
        assert!(why.contains("inference.calibration_image"), "{why}");
        // At provision: a verdict on this picture stands, another picture or none is checked.
        assert_eq!(half_plan(Some(&verdict(true, "a")), Some("a")), HalfPlan::Run);
        assert!(matches!(half_plan(Some(&verdict(false, "a")), Some("a")), HalfPlan::F32(_)));
        assert_eq!(half_plan(Some(&verdict(false, "a")), Some("b")), HalfPlan::Check);
        assert_eq!(half_plan(Some(&verdict(true, "a")), Some("b")), HalfPlan::Check);
        assert_eq!(half_plan(None, Some("b")), HalfPlan::Check);
    }
}
