//! Models held in memory for `serve` and for `run`'s cameras: loaded from the
//! cache's current generation on first use, addressed by any spelling of their id, at most
//! `max_loaded` at once (the least recently used is unloaded), one inference at a time per model
//! with a bounded queue in front of it. Different models run in parallel.
//!
//! Each model runs on its own worker thread, which owns its detector: requests hand it their
//! image and wait for the answer. The backend's working memory (tensors of tens of MB) is then
//! allocated by one thread per model, not by every connection thread in turn: with per-thread
//! allocator arenas the latter grew a 16-client server past 1.3 GB. `run`'s workers instead
//! prepare and decode on their own thread with a [`Codec`] and hand the worker only the input
//! tensor ([`LoadedModel::submit`]), so their next frame is prepared while the model runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::Output;
use crate::cli::ModelArgs;
use crate::config::Config;
use crate::detector::{Codec, Detector, Meta, Prepared, Response, Spec, StageTimes};
use crate::provision::cache::Cache;
use crate::provision::roboflow::ResolveError;
use crate::vision::detection::Thresholds;
use crate::vision::families::Family;
use crate::vision::image::RgbImage;

/// What a model does, spelled as the Roboflow API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    ObjectDetection,
    Classification,
}

impl Task {
    pub fn wire_name(self) -> &'static str {
        match self {
            Task::ObjectDetection => "object-detection",
            Task::Classification => "classification",
        }
    }
}

/// One model in memory.
pub struct LoadedModel {
    /// The manifest id.
    pub id: String,
    pub task: Task,
    /// `[width, height]` the model takes, when fixed (for clients that downsize before sending).
    pub input: Option<[u32; 2]>,
    pub load_time: Duration,
    /// The model's family (settled by the first run) and input plan, for callers that prepare
    /// images and decode outputs on their own thread ([`LoadedModel::codec`]).
    spec: Spec,
    family: Family,
    /// The worker's inbox; it ends when the last handle to the model goes.
    jobs: mpsc::Sender<Job>,
    /// Requests running or waiting on this model.
    in_flight: AtomicUsize,
    queue: usize,
}

#[derive(Debug)]
pub enum InferError {
    /// More than `serve.queue` requests already wait for this model.
    QueueFull,
    Failed(anyhow::Error),
}

impl LoadedModel {
    /// Runs one image with `thresholds`, waiting behind at most `queue` others; hands the
    /// image back with the answer.
    pub fn infer(&self, img: RgbImage, thresholds: Thresholds) -> Result<(Response, RgbImage), InferError> {
        let (result, img) = self.infer_timed(img, thresholds);
        result.map(|(response, _)| (response, img))
    }

    /// [`LoadedModel::infer`] with where the time went; the image always comes back (a camera's
    /// frame buffer is reused whatever the outcome), unless the worker died. The whole image's
    /// work runs on the model's thread, so its buffers exist once per model, not per client.
    pub fn infer_timed(
        &self,
        img: RgbImage,
        thresholds: Thresholds,
    ) -> (Result<(Response, StageTimes), InferError>, RgbImage) {
        let _leave = match self.enter() {
            Ok(leave) => leave,
            Err(e) => return (Err(e), img),
        };
        let (reply, answer) = mpsc::channel();
        if let Err(mpsc::SendError(Job::Image { img, .. })) = self.jobs.send(Job::Image { img, thresholds, reply }) {
            return (Err(self.stopped()), img);
        }
        match answer.recv() {
            Ok((result, img)) => (result.map_err(InferError::Failed), img),
            Err(_) => (Err(self.stopped()), RgbImage::new(0, 0, Vec::new())),
        }
    }

    /// A [`Codec`] for this model, to prepare images and decode outputs on the caller's thread
    /// around [`LoadedModel::submit`].
    pub fn codec(&self) -> Codec {
        Codec::new(self.spec.clone())
    }

    /// The family images are prepared for ([`Codec::prepare`]).
    pub fn family(&self) -> Family {
        self.family
    }

    /// Hands a prepared input to the model and returns at once; [`Pending::wait`] gives the
    /// outputs. Counts against the queue like [`LoadedModel::infer`]. On refusal the input's
    /// buffer comes back.
    pub fn submit(&self, prepared: Prepared) -> Result<Pending<'_>, (InferError, Vec<f32>)> {
        let leave = match self.enter() {
            Ok(leave) => leave,
            Err(e) => return Err((e, prepared.data)),
        };
        let (reply, answer) = mpsc::channel();
        let Prepared { data, meta } = prepared;
        let (width, height) = meta.input;
        if let Err(mpsc::SendError(Job::Tensor { data, .. })) =
            self.jobs.send(Job::Tensor { data, width, height, reply })
        {
            return Err((self.stopped(), data));
        }
        Ok(Pending { model: self, answer, meta, _leave: leave })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Takes a place in the queue, or says it is full.
    fn enter(&self) -> Result<Leave<'_>, InferError> {
        let ahead = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let leave = Leave(&self.in_flight);
        // `ahead` counts the running request too: the queue is what waits behind it.
        if ahead > self.queue {
            return Err(InferError::QueueFull);
        }
        Ok(leave)
    }

    fn stopped(&self) -> InferError {
        InferError::Failed(anyhow::anyhow!("model `{}`: its worker thread stopped", self.id))
    }
}

/// A prepared input the model is running or will run next.
pub struct Pending<'a> {
    model: &'a LoadedModel,
    answer: mpsc::Receiver<Ran>,
    pub meta: Meta,
    _leave: Leave<'a>,
}

/// A submitted input's outputs, and how long the engine took.
pub type Outputs = Result<(Vec<Output>, Duration), InferError>;

/// The engine's answer to a [`Job::Tensor`]: its outputs, the input's buffer (for reuse) and how
/// long the engine took.
type Ran = (anyhow::Result<Vec<Output>>, Vec<f32>, Duration);

impl Pending<'_> {
    /// Waits for the outputs; the input buffer comes back either way (empty if the worker died).
    pub fn wait(self) -> (Outputs, Vec<f32>, Meta) {
        match self.answer.recv() {
            Ok((outputs, data, took)) => (outputs.map(|o| (o, took)).map_err(InferError::Failed), data, self.meta),
            Err(_) => (Err(self.model.stopped()), Vec::new(), self.meta),
        }
    }
}

enum Job {
    /// An image, prepared, run and decoded on the model's thread.
    Image {
        img: RgbImage,
        thresholds: Thresholds,
        reply: mpsc::Sender<(anyhow::Result<(Response, StageTimes)>, RgbImage)>,
    },
    /// An input the caller prepared: only the engine runs here.
    Tensor { data: Vec<f32>, width: u32, height: u32, reply: mpsc::Sender<Ran> },
}

/// What the worker reports once its first run is done.
struct Warmed {
    task: Task,
    input: Option<[u32; 2]>,
    spec: Spec,
    family: Family,
}

/// Starts `id`'s worker: one run on a grey image first (it settles the family when the manifest
/// does not name it and builds the backend's plan, so the first client pays for neither), then
/// one job after another until the inbox closes.
fn spawn_worker(id: &str, mut detector: Detector) -> anyhow::Result<(mpsc::Sender<Job>, Warmed)> {
    let (jobs, inbox) = mpsc::channel::<Job>();
    let (ready, warmed) = mpsc::channel();
    let name = id.to_string();
    std::thread::Builder::new().name(format!("model {id}")).spawn(move || {
        let [w, h] = detector.input_size().unwrap_or([640, 640]);
        let first = detector.infer(&RgbImage::new(w, h, vec![114; w as usize * h as usize * 3]));
        let report = first.and_then(|_| {
            let family = detector.family().ok_or_else(|| anyhow::anyhow!("the model's family is not settled"))?;
            let task = match family {
                Family::Classification => Task::Classification,
                _ => Task::ObjectDetection,
            };
            Ok(Warmed { task, input: detector.input_size(), spec: detector.codec.spec.clone(), family })
        });
        let failed = report.is_err();
        let _ = ready.send(report.map_err(|e| anyhow::anyhow!("model `{name}`: first run failed: {e:#}")));
        if failed {
            return;
        }
        for job in inbox {
            match job {
                Job::Image { img, thresholds, reply } => {
                    detector.codec.thresholds = thresholds;
                    let result = detector.infer(&img).map(|r| (r, detector.last));
                    let _ = reply.send((result, img));
                }
                Job::Tensor { data, width, height, reply } => {
                    let started = Instant::now();
                    let outputs = detector.run_prepared(&data, height, width);
                    let _ = reply.send((outputs, data, started.elapsed()));
                }
            }
        }
    })?;
    let warmed =
        warmed.recv().map_err(|_| anyhow::anyhow!("model `{id}`: its worker thread stopped while loading"))??;
    Ok((jobs, warmed))
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub enum LoadError {
    /// Not in the cache: the message names the id and how to add it.
    Unknown(String),
    /// Another request is loading it right now.
    Loading(String),
    /// Provisioning it needs a Roboflow API key and none was given.
    KeyRequired(String),
    /// Roboflow refused the key.
    KeyRejected(String),
    Failed(anyhow::Error),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unknown(m) | LoadError::Loading(m) | LoadError::KeyRequired(m) | LoadError::KeyRejected(m) => {
                f.write_str(m)
            }
            LoadError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// A row of the registry as clients see it: one per spelling a client used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub id: String,
    pub task: Task,
    pub input: Option<[u32; 2]>,
}

/// Adds a model the cache lacks (`serve.provision = "on-demand"`): `(requested id, the client's
/// Roboflow key)`; the cache holds it afterwards, or the error says why not.
pub type Provisioner = Box<dyn Fn(&str, Option<&str>) -> anyhow::Result<()> + Send + Sync>;

pub struct Registry {
    config: Config,
    /// Input size for every model (`run.input`); `None` = each model's own.
    input: Option<[u32; 2]>,
    provisioner: Option<Provisioner>,
    cache: Cache,
    max_loaded: usize,
    queue: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Least recently used first.
    entries: Vec<Entry>,
    /// Manifest ids being loaded now.
    loading: Vec<String>,
}

impl State {
    /// Marks entry `at` as just used (it moves to the end), adding a new spelling for it.
    fn touch(&mut self, at: usize, new_name: Option<&str>) -> Arc<LoadedModel> {
        let mut entry = self.entries.remove(at);
        entry.names.extend(new_name.map(String::from));
        let model = entry.model.clone();
        self.entries.push(entry);
        model
    }
}

struct Entry {
    model: Arc<LoadedModel>,
    /// The spellings clients used for it, in order of first use.
    names: Vec<String>,
}

impl Registry {
    pub fn new(config: Config, max_loaded: usize, queue: usize) -> Registry {
        let cache = Cache::new(&config.cache_dir);
        Registry {
            config,
            input: None,
            provisioner: None,
            cache,
            max_loaded: max_loaded.max(1),
            queue,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs every model at this input size (`run.input`).
    pub fn with_input(mut self, input: Option<[u32; 2]>) -> Registry {
        self.input = input;
        self
    }

    /// Models not in the cache are provisioned by `provisioner` instead of being a 404.
    pub fn with_provisioner(mut self, provisioner: Provisioner) -> Registry {
        self.provisioner = Some(provisioner);
        self
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loaded model a client's id names, marked as just used; `None` when not loaded.
    pub fn get(&self, requested: &str) -> Option<Arc<LoadedModel>> {
        let mut state = self.state();
        let at = state.entries.iter().position(|e| e.names.iter().any(|n| n == requested))?;
        Some(state.touch(at, None))
    }

    /// The model a client's id names, loaded from the cache's current generation if it is not
    /// in memory yet (no network), or first provisioned into the cache when the registry has a
    /// provisioner and the id is a Roboflow one. The registry's lock is not held while a model
    /// loads: the listing and other models stay available; the same model asked for meanwhile
    /// is [`LoadError::Loading`].
    pub fn load(&self, requested: &str, client_key: Option<&str>) -> Result<Arc<LoadedModel>, LoadError> {
        if let Some(model) = self.get(requested) {
            return Ok(model);
        }
        let id = match (self.resolve(requested), &self.provisioner) {
            (Err(LoadError::Unknown(why)), Some(provision))
                if crate::provision::roboflow::dataset_version(requested).is_ok() =>
            {
                self.provision(requested, client_key, provision, &why)?;
                self.resolve(requested)?
            }
            (resolved, _) => resolved?,
        };
        {
            let mut state = self.state();
            if let Some(at) = state.entries.iter().position(|e| e.model.id == id) {
                return Ok(state.touch(at, Some(requested)));
            }
            if state.loading.contains(&id) {
                return Err(LoadError::Loading(format!("model `{requested}` is still loading; retry shortly")));
            }
            state.loading.push(id.clone());
        }
        let loaded = self.load_from_cache(&id);
        let mut state = self.state();
        state.loading.retain(|l| *l != id);
        let model = Arc::new(loaded.map_err(LoadError::Failed)?);
        log::info!("model `{id}` ({}) loaded in {:.2}s", model.task.wire_name(), model.load_time.as_secs_f64());
        state.entries.push(Entry { model: model.clone(), names: vec![requested.to_string()] });
        while state.entries.len() > self.max_loaded {
            let evicted = state.entries.remove(0);
            log::info!("model `{}` unloaded: serve.max_loaded_models = {} reached", evicted.model.id, self.max_loaded);
        }
        Ok(model)
    }

    fn provision(
        &self,
        requested: &str,
        key: Option<&str>,
        provision: &Provisioner,
        why: &str,
    ) -> Result<(), LoadError> {
        let marker = format!("provisioning:{requested}");
        {
            let mut state = self.state();
            if state.loading.contains(&marker) {
                return Err(LoadError::Loading(format!("model `{requested}` is being downloaded; retry shortly")));
            }
            state.loading.push(marker.clone());
        }
        log::info!("model `{requested}` is not in the cache: provisioning it (serve.provision = on-demand)");
        let result = provision(requested, key);
        self.state().loading.retain(|l| *l != marker);
        result.map_err(|e| {
            let cause = format!("{e:#}");
            log::warn!("model `{requested}`: {cause}");
            match e.downcast_ref::<ResolveError>() {
                Some(ResolveError::KeyMissing) => {
                    LoadError::KeyRequired(format!("model `{requested}` is not in the cache and {cause}"))
                }
                Some(ResolveError::KeyRejected { .. }) => LoadError::KeyRejected(format!(
                    "model `{requested}` is not in the cache and Roboflow rejected the API key"
                )),
                _ => LoadError::Unknown(format!("{why}; provisioning it failed: {cause}")),
            }
        })
    }

    /// The manifest id for a client's spelling, from the cache's current generation.
    fn resolve(&self, requested: &str) -> Result<String, LoadError> {
        let gen = self.cache.current().map_err(|e| LoadError::Failed(e.into()))?;
        let how = "add it to the manifest (provision.manifest) and run `outpost provision`, or import a bundle \
                   (`outpost cache import`)";
        let Some(gen) = gen else {
            return Err(LoadError::Unknown(format!(
                "model `{requested}` is not in the cache {} (it holds no models yet): {how}",
                self.cache.root().display()
            )));
        };
        match super::find(&gen, requested) {
            Some(record) => Ok(record.id.clone()),
            None => {
                let ids: Vec<&str> = gen.models.iter().map(|m| m.id.as_str()).collect();
                Err(LoadError::Unknown(format!(
                    "model `{requested}` is not in the cache (generation {} holds: {}): {how}",
                    gen.generation,
                    ids.join(", ")
                )))
            }
        }
    }

    fn load_from_cache(&self, id: &str) -> anyhow::Result<LoadedModel> {
        let started = Instant::now();
        let args = ModelArgs { model: Some(id.to_string()), input: self.input, ..ModelArgs::default() };
        let detector = super::load_detector(&self.config, &args)?;
        let (jobs, warmed) = spawn_worker(id, detector)?;
        Ok(LoadedModel {
            id: id.to_string(),
            task: warmed.task,
            input: warmed.input,
            load_time: started.elapsed(),
            spec: warmed.spec,
            family: warmed.family,
            jobs,
            in_flight: AtomicUsize::new(0),
            queue: self.queue,
        })
    }

    /// Unloads the model a client's id names; `false` when it was not loaded (not an error).
    pub fn remove(&self, requested: &str) -> bool {
        let mut state = self.state();
        let before = state.entries.len();
        state.entries.retain(|e| !e.names.iter().any(|n| n == requested));
        before != state.entries.len()
    }

    pub fn clear(&self) {
        self.state().entries.clear();
    }

    /// Every spelling of every loaded model, least recently used first.
    pub fn list(&self) -> Vec<Listed> {
        let state = self.state();
        state
            .entries
            .iter()
            .flat_map(|e| {
                e.names.iter().map(|name| Listed {
                    name: name.clone(),
                    id: e.model.id.clone(),
                    task: e.model.task,
                    input: e.model.input,
                })
            })
            .collect()
    }

    /// Loaded models (not spellings).
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.state().entries.iter().map(|e| e.model.clone()).collect()
    }
}
