//! Models from the cache to ready detectors: a cache id (or a model file) resolved to its blob,
//! family, classes, input size and environment.json, then loaded into a backend session. Shared by
//! `detect`, `bench`, `run` and `serve`; [`registry`] keeps several loaded at once.

pub mod engines;
pub mod half_gate;
pub mod registry;

use std::path::PathBuf;

use crate::backend;
use crate::cli::ModelArgs;
use crate::config::Config;
use crate::detector::{Detector, Spec};
use crate::exit::{Exit, Failure};
use crate::provision::cache::{Cache, Generation, ModelRecord};
use crate::vision::environment;
use crate::vision::families::Family;

/// A model file with what is known about it.
pub struct ResolvedModel {
    pub path: PathBuf,
    pub family: Option<Family>,
    pub input: Option<[u32; 2]>,
    pub classes: Vec<String>,
    pub resize: Option<crate::vision::preprocess::Resize>,
    /// The blob's digest, for a cached model.
    pub sha256: Option<String>,
}

/// Finds the model: `--model-file` directly, or `--model ID` in the cache's current generation.
pub fn resolve(config: &Config, args: &ModelArgs) -> anyhow::Result<ResolvedModel> {
    let family = |name: Option<&str>| -> anyhow::Result<Option<Family>> {
        name.map(|n| Family::parse(n).map_err(|e| Failure::new(Exit::Usage, e).into())).transpose()
    };
    if let Some(path) = &args.model_file {
        if !path.is_file() {
            return Err(Failure::new(Exit::Config, format!("model file {} does not exist", path.display())).into());
        }
        let family = family(args.family.as_deref())?;
        let classes = family.map(Family::default_classes).unwrap_or_default();
        return Ok(ResolvedModel { path: path.clone(), family, input: args.input, classes, resize: None, sha256: None });
    }
    let id = args.model.as_deref().unwrap_or_default();
    let cache = Cache::new(&config.cache_dir);
    let gen = cache.current()?.ok_or_else(|| {
        Failure::new(Exit::Provisioning, format!("the cache {} has no models: run `outpost provision`", config.cache_dir.display()))
    })?;
    let record = find(&gen, id).ok_or_else(|| {
        let ids: Vec<&str> = gen.models.iter().map(|m| m.id.as_str()).collect();
        Failure::new(Exit::Config, format!("no model `{id}` in cache generation {} (it has: {})", gen.generation, ids.join(", ")))
    })?;
    let path = cache.blob_path(&record.sha256);
    if !cache.has_blob(&record.sha256, record.size) {
        return Err(Failure::new(Exit::Provisioning, format!("model `{id}`: its blob is missing or truncated: run `outpost cache verify --repair`")).into());
    }
    let family = match (args.family.as_deref(), record.family.as_deref()) {
        (Some(name), _) => family(Some(name))?,
        (None, Some(name)) => Family::parse(name).map_err(|e| log::warn!("model `{id}`: {e}; inferring it")).ok(),
        (None, None) => None,
    };
    let env = match &record.environment_sha256 {
        Some(sha) => {
            let bytes = std::fs::read(cache.blob_path(sha)).map_err(|e| anyhow::anyhow!("model `{id}` environment: {e}"))?;
            environment::parse(&bytes).map_err(|e| anyhow::anyhow!("model `{id}`: {e}"))?
        }
        None => environment::Environment::default(),
    };
    let classes = record.classes.clone().or(env.classes).unwrap_or_else(|| family.map(Family::default_classes).unwrap_or_default());
    let input = args.input.or(record.input).or(env.size);
    Ok(ResolvedModel { path, family, input, classes, resize: env.resize, sha256: Some(record.sha256.clone()) })
}

pub fn load_detector(config: &Config, args: &ModelArgs) -> anyhow::Result<Detector> {
    let model = resolve(config, args)?;
    let engines = engines::engines_for(config, &model);
    let settings = backend::Settings::new(config, engines.precision);
    let backend = backend::choose(engines.preferred, &engines.fallbacks, &settings)?;
    let session = backend.prepare(&model.path)?;
    let spec = Spec { family: model.family, size: model.input, classes: model.classes, resize: model.resize, fixed: None };
    Ok(Detector::new(session, spec))
}

/// The record a client's model id names: the manifest id (`faces`), or for a `roboflow:` source
/// any spelling of it: the alias (`rfdetr-base`) or the `dataset/version` that `inference-sdk`
/// sends after de-aliasing (`coco/36`).
pub fn find<'g>(gen: &'g Generation, requested: &str) -> Option<&'g ModelRecord> {
    gen.models.iter().find(|m| m.id == requested).or_else(|| {
        let wanted = crate::provision::roboflow::dataset_version(requested).ok()?;
        gen.models.iter().find(|m| {
            m.source
                .strip_prefix("roboflow:")
                .and_then(|id| crate::provision::roboflow::dataset_version(id).ok())
                .is_some_and(|dv| dv == wanted)
        })
    })
}
