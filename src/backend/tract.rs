//! The tract backend (pure Rust, CPU). Loads the ONNX graph once; for each input size it fixes
//! the input fact, optimises and makes a plan (measured: symbolic sizes run ~6x slower).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::strided_conv::lower_strided_convs;
use super::strided_softmax::replace_strided_softmax;
use super::{Backend, InputInfo, OpTime, Output, Session};
use crate::config::Precision;

pub struct Tract {
    threads: usize,
    precision: Precision,
}

impl Tract {
    pub fn new(threads: usize) -> Tract {
        Tract { threads: threads.max(1), precision: Precision::F32 }
    }

    /// `f16`: the typed graph is translated to half precision before codegen (tract's
    /// `f32_to_f16`); inputs are cast on the way in, outputs read back as f32.
    pub fn with_precision(mut self, precision: Precision) -> Tract {
        self.precision = precision;
        self
    }
}

impl Backend for Tract {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn prepare(&self, model: &Path) -> anyhow::Result<Box<dyn Session>> {
        let started = Instant::now();
        let graph = tract_onnx::onnx()
            .model_for_path(model)
            .map_err(|e| anyhow::anyhow!("{}: not a loadable ONNX model: {e}", model.display()))?;
        let input = input_info(&graph).with_context(|| format!("{}: reading the input", model.display()))?;
        super::check_input(&input).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        log::info!(
            "loaded {} in {:.2}s (input {} {:?}); {} thread(s)",
            model.display(),
            started.elapsed().as_secs_f64(),
            input.name,
            input.dims,
            self.threads
        );
        use_threads(self.threads);
        let precision = self.precision;
        Ok(Box::new(TractSession { path: model.to_path_buf(), graph, input, precision, plans: HashMap::new() }))
    }
}

/// tract's executor is process-wide: set on every load, so a one-thread session after a
/// multi-thread one (`outpost bench`'s speed-up figure) really runs on one thread.
#[cfg(feature = "multithread")]
fn use_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(if threads > 1 { Executor::multithread(threads) } else { Executor::SingleThread });
}

#[cfg(not(feature = "multithread"))]
fn use_threads(threads: usize) {
    if threads > 1 {
        log::info!(
            "inference.threads = {threads}, but this build lacks the `multithread` feature: running on one thread"
        );
    }
}

fn input_info(graph: &InferenceModel) -> TractResult<InputInfo> {
    let outlet = graph.input_outlets()?[0];
    let fact = graph.outlet_fact(outlet)?;
    // outpost feeds float32 pixels; a uint8-input model would be fed 0..1 floats into bytes.
    if let Some(dt) = fact.datum_type.concretize() {
        if dt != f32::datum_type() {
            anyhow::bail!(
                "input `{}` takes {dt:?} values; outpost feeds float32 images (re-export the model with a float input)",
                graph.node(outlet.node).name
            );
        }
    }
    let dims = fact.shape.dims().map(|d| d.concretize().and_then(|d| d.as_i64()).map(|d| d as usize)).collect();
    Ok(InputInfo { name: graph.node(outlet.node).name.clone(), dims })
}

type Plan = Arc<TypedRunnableModel>;

/// `inference.plan_timeout_secs`, process-wide like tract's executor; set once the configuration
/// is loaded.
static PLAN_TIMEOUT_SECS: AtomicU64 = AtomicU64::new(600);

pub fn set_plan_timeout(timeout: Duration) {
    PLAN_TIMEOUT_SECS.store(timeout.as_secs().max(1), Ordering::Relaxed);
}

/// [`optimise`] on a thread of its own, given up after `inference.plan_timeout_secs`: a damaged
/// graph can send tract's declutter pass into a loop that never ends (a bit flipped in a Conv
/// attribute of CenterFace did), and a model that hangs `detect`, `run` or `serve` is worse than
/// one refused. The abandoned thread cannot be stopped; it spins until the process exits.
fn optimise_within_deadline(graph: InferenceModel, shape: [usize; 4], precision: Precision) -> anyhow::Result<(Plan, usize, usize)> {
    let timeout = Duration::from_secs(PLAN_TIMEOUT_SECS.load(Ordering::Relaxed));
    let (tx, rx) = mpsc::channel();
    // The stack of a main thread: optimising recurses through the graph.
    std::thread::Builder::new().name("tract-plan".into()).stack_size(8 << 20).spawn(move || {
        let _ = tx.send(optimise(graph, shape, precision));
    })?;
    match rx.recv_timeout(timeout) {
        Ok(planned) => planned,
        Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!(
            "optimising did not finish in {}s (inference.plan_timeout_secs): tract's optimiser is stuck on \
             this graph, which happens with damaged model files; check the file's sha256 against its source",
            timeout.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("optimising failed (the optimiser thread ended without an answer)"),
    }
}

/// tract's own passes, with outpost's two rewrites between declutter and codegen; the plan and
/// how many strided softmaxes and convolutions were rewritten.
fn optimise(graph: InferenceModel, shape: [usize; 4], precision: Precision) -> TractResult<(Plan, usize, usize)> {
    let (mut replaced, mut lowered) = (0, 0);
    let plan = graph
        .with_input_fact(0, f32::fact(shape).into())
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .and_then(|mut m| {
            if precision == Precision::F16 {
                half_precision(&mut m)?;
            }
            replaced = replace_strided_softmax(&mut m)?;
            lowered = lower_strided_convs(&mut m)?;
            m.into_optimized()
        })
        .and_then(|m| m.into_runnable())?;
    Ok((plan, replaced, lowered))
}

struct TractSession {
    path: PathBuf,
    graph: InferenceModel,
    input: InputInfo,
    plans: HashMap<(u32, u32), Plan>,
    precision: Precision,
}

impl TractSession {
    /// The NCHW input as the plan takes it: f32, or f16 under `inference.precision = "f16"`.
    fn input_tensor(&self, shape: &[usize], data: &[f32]) -> anyhow::Result<Tensor> {
        let tensor = Tensor::from_shape(shape, data).map_err(|e| anyhow::anyhow!("input tensor: {e}"))?;
        match self.precision {
            Precision::F32 => Ok(tensor),
            Precision::F16 => Ok(tensor.cast_to::<f16>().map_err(|e| anyhow::anyhow!("input tensor: {e}"))?.into_owned()),
        }
    }
    fn plan(&mut self, height: u32, width: u32) -> anyhow::Result<Plan> {
        if let Some(plan) = self.plans.get(&(height, width)) {
            return Ok(plan.clone());
        }
        let started = Instant::now();
        let shape = [1usize, 3, height as usize, width as usize];
        let (plan, replaced, lowered) = optimise_within_deadline(self.graph.clone(), shape, self.precision)
            .map_err(|e| anyhow::anyhow!("{}: cannot run at input {shape:?}: {e}", self.path.display()))?;
        log::info!(
            "optimised {} for input {shape:?} in {:.2}s ({replaced} strided softmax replaced, {lowered} strided convs to im2col)",
            self.path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy()),
            started.elapsed().as_secs_f64()
        );
        self.plans.insert((height, width), plan.clone());
        Ok(plan)
    }
}

impl Session for TractSession {
    fn input(&self) -> &InputInfo {
        &self.input
    }

    fn profile(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Option<Vec<OpTime>>> {
        let plan = self.plan(height, width)?;
        let shape = [1usize, 3, height as usize, width as usize];
        let tensor = self.input_tensor(&shape, data)?;
        let mut state = TypedSimpleState::new(&plan).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut times = Vec::new();
        state
            .run_plan_with_eval(tvec!(tensor.into()), |ctx, op_state, node, inputs| {
                let started = Instant::now();
                let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                times.push(OpTime { node: node.name.clone(), op: node.op().name().to_string(), ms });
                outputs
            })
            .map_err(|e| anyhow::anyhow!("{}: inference failed: {e}", self.path.display()))?;
        Ok(Some(times))
    }

    fn run(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>> {
        let plan = self.plan(height, width)?;
        let shape = [1usize, 3, height as usize, width as usize];
        let tensor = self.input_tensor(&shape, data)?;
        let outputs = plan.run(tvec!(tensor.into())).map_err(|e| anyhow::anyhow!("{}: inference failed: {e}", self.path.display()))?;
        let names = plan.model().output_outlets().map_err(|e| anyhow::anyhow!("{e}"))?.to_vec();
        outputs
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let name = names.get(i).map(|o| plan.model().node(o.node).name.clone()).unwrap_or_default();
                let tensor = value.into_tensor();
                // float16/float64 outputs are read as f32; anything else is not a score or a box.
                let tensor = match tensor.datum_type() {
                    DatumType::F16 | DatumType::F32 | DatumType::F64 => tensor
                        .cast_to::<f32>()
                        .map_err(|e| anyhow::anyhow!("output `{name}`: {e}"))?
                        .into_owned(),
                    other => anyhow::bail!("output `{name}` holds {other:?} values; outpost reads float outputs"),
                };
                let view = tensor.to_plain_array_view::<f32>().map_err(|e| anyhow::anyhow!("output `{name}`: {e}"))?;
                Ok(Output { name, shape: view.shape().to_vec(), data: view.iter().copied().collect() })
            })
            .collect()
    }
}

/// tract's own f32 → f16 translation of the typed graph (weights, sources, element-wise ops).
fn half_precision(model: &mut TypedModel) -> TractResult<()> {
    let transform = tract_onnx::tract_core::transform::get_transform("f32_to_f16")?
        .ok_or_else(|| anyhow::anyhow!("this tract has no f32_to_f16 transform"))?;
    transform.transform(model)
}
