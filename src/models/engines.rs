//! Which engine runs a model. `inference.backend = "auto"` is settled per model by the measurement
//! that provisioning records ([`crate::backend::choice`]); this module makes that measurement for
//! each model of the current generation, and reads it back when a model is loaded. TensorRT
//! engines are built here too, at provision time, never on the way to the first frame.

use crate::backend::choice::{self, Measured};
use crate::backend::InputInfo;
use crate::cli::ModelArgs;
use crate::config::{BackendKind, Config, Precision};
use crate::detector::{Codec, Prepared, Spec};
use crate::provision::cache::Cache;
use crate::vision::families::Family;
use crate::vision::image::RgbImage;

use super::ResolvedModel;

/// The engines a model runs on, with "auto" resolved from provisioning's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Engines {
    pub preferred: BackendKind,
    /// Tried in order when the preferred one cannot run here.
    pub fallbacks: Vec<BackendKind>,
    /// f16 only where provisioning found the model's outputs survive it.
    pub precision: Precision,
}

/// The engines `config` asks for, with "auto" resolved for this model (the record is read, and
/// the choice logged, once), and the precision it runs at.
pub fn engines_for(config: &Config, model: &ResolvedModel) -> Engines {
    let inference = &config.inference;
    let threads = inference.threads;
    let measured = model.sha256.as_ref().and_then(|sha| choice::load(&config.cache_dir, sha, threads));
    // TensorRT settles f16 with its own gate (models::half_gate); tract's check speaks only
    // where tract is what was asked for.
    let tract_leads = !matches!(inference.backend, BackendKind::OnnxRuntime | BackendKind::Cuda | BackendKind::TensorRt);
    let precision = precision_for(inference.precision, model, measured.as_ref(), tract_leads);
    let wants_auto = inference.backend == BackendKind::Auto || inference.fallback.contains(&BackendKind::Auto);
    let auto = wants_auto.then(|| auto_engine(model, measured, precision, threads));
    let resolve = |kind: BackendKind| match (kind, auto) {
        (BackendKind::Auto, Some(engine)) => engine,
        (kind, _) => kind,
    };
    Engines {
        preferred: resolve(inference.backend),
        fallbacks: inference.fallback.iter().map(|&kind| resolve(kind)).collect(),
        precision,
    }
}

/// tract's precision for `model`; `speak`: say why f16 is not used.
fn precision_for(wanted: Precision, model: &ResolvedModel, measured: Option<&Measured>, speak: bool) -> Precision {
    let (precision, why) = match (wanted, measured) {
        (Precision::F32, _) => (Precision::F32, None),
        (Precision::F16, Some(Measured { f16: Some(half), .. })) if half.accepted => (Precision::F16, None),
        (Precision::F16, Some(Measured { f16: Some(half), .. })) => (
            Precision::F32,
            Some(format!(
                "{}'s outputs moved {:.1e} of their scale in f16 at provision (limit {:.0e}); running it in f32",
                model.path.display(),
                half.difference,
                choice::HALF_AGREEMENT
            )),
        ),
        (Precision::F16, _) if model.sha256.is_none() => {
            (Precision::F16, Some(format!("{} is a model file, run in f16 unchecked", model.path.display())))
        }
        (Precision::F16, _) => (
            Precision::F32,
            Some(format!("{} was not checked in f16 yet (run `outpost provision`); running it in f32", model.path.display())),
        ),
    };
    if let (Some(why), true) = (why, speak) {
        log::warn!("inference.precision = f16: {why}");
    }
    precision
}

/// What "auto" means for this model: the engine provisioning measured faster, else tract.
fn auto_engine(model: &ResolvedModel, measured: Option<Measured>, precision: Precision, threads: usize) -> BackendKind {
    if precision == Precision::F16 {
        // rten computes in f32 only; half precision is tract's.
        log::info!("{}: tract in f16 (accepted at provision)", model.path.display());
        return BackendKind::Tract;
    }
    match (&model.sha256, measured) {
        (None, _) => {
            log::info!(
                "inference.backend = auto: {} is not a cached model, so it was never measured; running it on tract \
                 (`outpost bench` compares the engines)",
                model.path.display()
            );
            BackendKind::Tract
        }
        (Some(_), None) => {
            log::info!(
                "{}: no engine measurement at {threads} thread(s) yet; tract until the next `outpost provision`",
                model.path.display()
            );
            BackendKind::Tract
        }
        (Some(_), Some(m)) => {
            log::info!("{}: engine {} ({}, at provision)", model.path.display(), m.engine, m.note);
            if m.engine == "rten" {
                BackendKind::Rten
            } else {
                BackendKind::Tract
            }
        }
    }
}

/// What provisioning does after the models are in the cache and before the service reports ready:
/// the engine measurement of "auto", and the TensorRT engines when `tensorrt` is configured.
pub fn prepare_current(config: &Config) -> anyhow::Result<()> {
    measure_current(config)?;
    build_tensorrt_engines(config)
}

/// Builds (or finds in the cache) the TensorRT engine of every model of the current generation
/// at the size it will run, by running it once. Minutes per model on a Jetson's first boot, so
/// each says so; a later boot finds every engine under its key and loads it in seconds. Where
/// TensorRT cannot run, nothing is built and the warning says why and what runs instead. Under
/// `inference.precision = "f16"` each model's fp16 engine goes through the accuracy gate here.
fn build_tensorrt_engines(config: &Config) -> anyhow::Result<()> {
    let inference = &config.inference;
    if inference.backend != BackendKind::TensorRt && !inference.fallback.contains(&BackendKind::TensorRt) {
        return Ok(());
    }
    let cache = Cache::new(&config.cache_dir);
    let Some(gen) = cache.current()? else { return Ok(()) };
    let settings = crate::backend::Settings::new(config, Precision::F32);
    if let Err(e) = crate::backend::choose(BackendKind::TensorRt, &[], &settings) {
        let instead: Vec<String> = inference.fallback.iter().filter(|k| **k != BackendKind::TensorRt).map(|k| k.name().to_string()).collect();
        log::warn!(
            "no TensorRT engines built: {e:#}; the models run on {}",
            if instead.is_empty() { "nothing (inference.fallback is empty)".to_string() } else { format!("the fallback ({})", instead.join(", ")) }
        );
        return Ok(());
    }
    let half = inference.precision == Precision::F16;
    if half && inference.calibration_image.is_none() {
        log::warn!(
            "inference.precision = f16: TensorRT's fp16 engines are accepted only where their boxes on a calibration image \
             match f32's, and inference.calibration_image is not set: building f32 engines (set it to a picture from this \
             camera that shows what the models detect)"
        );
    }
    for record in &gen.models {
        let args = ModelArgs { model: Some(record.id.clone()), ..Default::default() };
        let started = std::time::Instant::now();
        log::info!("building the TensorRT engine for `{}` (or finding it in the cache): takes minutes on a first boot", record.id);
        let built = super::resolve(config, &args).and_then(|model| {
            let family = model.family.unwrap_or(Family::Yolov8);
            let settings = crate::backend::Settings { half_gate: half.then(|| half_gate(config, &model)).flatten(), ..settings.clone() };
            let backend = crate::backend::choose(BackendKind::TensorRt, &[], &settings)?;
            let mut session = backend.prepare(&model.path)?;
            // At the size the camera's frames will run: an engine is built for one size.
            let frame = (config.camera.width, config.camera.height);
            let (input, height, width) = sample_input(family, model.input, session.input(), frame)?;
            session.run(&input, height, width).map(|_| (width, height))
        });
        match built {
            Ok((width, height)) => log::info!(
                "TensorRT engine for `{}` at {width}x{height} ready in {:.1}s",
                record.id,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => log::warn!("`{}`: no TensorRT engine ({e:#}); it runs on the fallback", record.id),
        }
    }
    Ok(())
}

/// The accuracy gate for `model`'s fp16 engines, when a calibration image is set and readable.
fn half_gate(config: &Config, model: &ResolvedModel) -> Option<std::sync::Arc<dyn crate::backend::HalfGate>> {
    let image = config.inference.calibration_image.as_deref()?;
    let spec = Spec {
        family: model.family,
        size: model.input,
        classes: model.classes.clone(),
        resize: model.resize,
        fixed: None,
    };
    match super::half_gate::Calibration::new(&model.path, spec, image, config.inference.threads) {
        Ok(calibration) => Some(std::sync::Arc::new(calibration)),
        Err(e) => {
            log::warn!("inference.precision = f16: {e:#}; TensorRT builds f32 engines");
            None
        }
    }
}

/// Measures both engines on every model of the current generation that has no record yet at
/// this thread count. Runs after provisioning, before the service reports ready; a model that
/// cannot be measured keeps tract and a warning. Nothing to do unless "auto" is configured.
pub fn measure_current(config: &Config) -> anyhow::Result<()> {
    let inference = &config.inference;
    if inference.backend != BackendKind::Auto && !inference.fallback.contains(&BackendKind::Auto) {
        return Ok(());
    }
    let cache = Cache::new(&config.cache_dir);
    let Some(gen) = cache.current()? else { return Ok(()) };
    for record in &gen.models {
        let recorded = choice::load(&config.cache_dir, &record.sha256, inference.threads);
        // A record made before f16 was asked for lacks the half-precision check: measure again.
        if recorded.is_some_and(|m| inference.precision == Precision::F32 || m.f16.is_some()) {
            continue;
        }
        log::info!("choosing the engine for `{}`: tract and rten, {} thread(s)", record.id, inference.threads);
        let args = ModelArgs { model: Some(record.id.clone()), ..Default::default() };
        let measured = super::resolve(config, &args).and_then(|model| {
            let family = model.family.unwrap_or(Family::Yolov8);
            let make_input = |info: &InputInfo| sample_input(family, model.input, info, (640, 480));
            choice::measure(&model.path, inference.threads, inference.precision == Precision::F16, &make_input)
        });
        match measured {
            Ok(m) => {
                log::info!("`{}`: {} ({}; input {}x{})", record.id, m.engine, m.note, m.input[0], m.input[1]);
                if let Some(half) = &m.f16 {
                    log::info!(
                        "`{}`: f16 {} (outputs within {:.1e} of f32, limit {:.0e}; tract f16 {:.1} ms)",
                        record.id,
                        if half.accepted { "accepted" } else { "refused: f32 it is" },
                        half.difference,
                        choice::HALF_AGREEMENT,
                        half.tract_f16_ms
                    );
                }
                if let Err(e) = choice::save(&config.cache_dir, &record.sha256, &m) {
                    log::warn!("`{}`: cannot record the engine choice: {e}", record.id);
                }
            }
            Err(e) => log::warn!("`{}`: engines not compared ({e:#}); it runs on tract", record.id),
        }
    }
    Ok(())
}

/// A mid-grey frame prepared as the detector would prepare a camera picture of `frame` (width, height).
fn sample_input(
    family: Family,
    size: Option<[u32; 2]>,
    info: &InputInfo,
    (width, height): (u32, u32),
) -> anyhow::Result<(Vec<f32>, u32, u32)> {
    let img = RgbImage::new(width, height, vec![114; width as usize * height as usize * 3]);
    let spec = Spec { family: Some(family), size, fixed: info.fixed_hw(), ..Spec::default() };
    let Prepared { data, meta } = Codec::new(spec).prepare(&img, family)?;
    let (width, height) = meta.input;
    Ok((data, height, width))
}
