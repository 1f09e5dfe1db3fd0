//! The rten backend (pure Rust, CPU; AVX2/AVX-512 and NEON kernels). rten refuses an input whose
//! shape differs from what the file declares, and some files declare a size they are not run at
//! (CenterFace says 32x32 and runs at the image's size): so, as tract fixes its input fact per
//! size, a model is loaded once per input size with the input's dimensions rewritten to it. It
//! runs on its own thread pool of `inference.threads`, beside tract's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rten::{DataType, Dimension, Model, ModelOptions, RunOptions, ThreadPool, ValueType};
use rten_tensor::prelude::*;
use rten_tensor::{NdTensorView, Tensor};

use super::{Backend, InputInfo, Output, Session};

pub struct Rten {
    threads: usize,
}

impl Rten {
    pub fn new(threads: usize) -> Rten {
        Rten { threads: threads.max(1) }
    }
}

impl Backend for Rten {
    fn name(&self) -> &'static str {
        "rten"
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn prepare(&self, model: &Path) -> anyhow::Result<Box<dyn Session>> {
        let started = Instant::now();
        // From bytes, not the path: rten picks the format by file extension, and cache blobs have none.
        let bytes = std::fs::read(model).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        let graph = load(bytes, model)?;
        let input = input_info(&graph).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        super::check_input(&input).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        log::info!(
            "loaded {} into rten in {:.2}s (input {} {:?}); {} thread(s)",
            model.display(),
            started.elapsed().as_secs_f64(),
            input.name,
            input.dims,
            self.threads
        );
        let pool = Arc::new(ThreadPool::with_num_threads(self.threads));
        Ok(Box::new(RtenSession { path: model.to_path_buf(), base: graph, input, pool, sized: HashMap::new() }))
    }
}

fn load(bytes: Vec<u8>, path: &Path) -> anyhow::Result<Model> {
    let options = ModelOptions::with_all_ops();
    match options.load(bytes.clone()) {
        Ok(model) => Ok(model),
        // rten 0.27 reads repeated numbers only unpacked (see onnx_wire): CenterFace's file, and
        // any file prost wrote (onnx_input::with_input_dims), need rewriting first.
        Err(first) => {
            let unpacked = super::onnx_wire::unpack_repeated(&bytes).map_err(|e| {
                anyhow::anyhow!("{}: rten cannot load this model: {first} (nor read it as protobuf: {e})", path.display())
            })?;
            options.load(unpacked).map_err(|e| anyhow::anyhow!("{}: rten cannot load this model: {e}", path.display()))
        }
    }
}

fn input_info(graph: &Model) -> Result<InputInfo, String> {
    let id = *graph.input_ids().first().ok_or("the model has no input")?;
    let info = graph.node_info(id).ok_or("the model's input is missing")?;
    let name = info.name().unwrap_or("input").to_string();
    if let Some(ValueType::Tensor(dt)) = info.dtype() {
        if dt != DataType::Float {
            return Err(format!(
                "input `{name}` takes {dt:?} values; outpost feeds float32 images (re-export the model with a float input)"
            ));
        }
    }
    let dims = info
        .shape()
        .ok_or_else(|| format!("input `{name}` declares no shape"))?
        .into_iter()
        .map(|d| match d {
            Dimension::Fixed(n) => Some(n),
            Dimension::Symbolic(_) => None,
        })
        .collect();
    Ok(InputInfo { name, dims })
}

struct RtenSession {
    path: PathBuf,
    /// The model as the file declares it, used wherever the run's size fits that declaration.
    base: Model,
    input: InputInfo,
    pool: Arc<ThreadPool>,
    /// Reloaded with the input fixed to another size, per `(height, width)`.
    sized: HashMap<(u32, u32), Model>,
}

impl RtenSession {
    fn graph(&mut self, height: u32, width: u32) -> anyhow::Result<&Model> {
        let fits = self.input.dims.iter().zip([1, 3, height as usize, width as usize]).all(|(d, n)| d.is_none_or(|d| d == n));
        if fits {
            return Ok(&self.base);
        }
        if !self.sized.contains_key(&(height, width)) {
            let started = Instant::now();
            let bytes = std::fs::read(&self.path).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
            let bytes = super::onnx_input::with_input_dims(&bytes, [1, 3, height as usize, width as usize])
                .map_err(|e| anyhow::anyhow!("{}: fixing the input size: {e}", self.path.display()))?;
            self.sized.insert((height, width), load(bytes, &self.path)?);
            log::info!(
                "rten: {} loaded for input {}x{} in {:.2}s",
                self.path.display(),
                width,
                height,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(&self.sized[&(height, width)])
    }
}

impl Session for RtenSession {
    fn input(&self) -> &InputInfo {
        &self.input
    }

    fn run(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>> {
        let shape = [1usize, 3, height as usize, width as usize];
        let tensor = NdTensorView::from_data(shape, data);
        let options = RunOptions::default().with_thread_pool(Some(self.pool.clone()));
        let path = self.path.clone();
        let graph = self.graph(height, width)?;
        let input_id = graph.input_ids()[0];
        let output_ids = graph.output_ids().to_vec();
        let values = graph
            .run(vec![(input_id, tensor.into())], &output_ids, Some(options))
            .map_err(|e| anyhow::anyhow!("{}: inference failed (rten): {e}", path.display()))?;
        output_ids
            .iter()
            .zip(values)
            .map(|(id, value)| {
                let name = graph.node_info(*id).and_then(|i| i.name().map(str::to_string)).unwrap_or_default();
                let dtype = value.dtype();
                let tensor: Tensor<f32> = value
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("output `{name}` holds {dtype:?} values; outpost reads float outputs"))?;
                let shape = tensor.shape().to_vec();
                Ok(Output { name, shape, data: tensor.to_vec() })
            })
            .collect()
    }
}
