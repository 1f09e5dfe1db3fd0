//! Which engine runs a model. `inference.backend = "auto"` is settled per model by the measurement
//! that provisioning records ([`crate::backend::choice`]); this module makes that measurement for
//! each model of the current generation, and reads it back when a model is loaded.

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
    let precision = precision_for(inference.precision, model, measured.as_ref());
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

fn precision_for(wanted: Precision, model: &ResolvedModel, measured: Option<&Measured>) -> Precision {
    match (wanted, measured) {
        (Precision::F32, _) => Precision::F32,
        (Precision::F16, Some(Measured { f16: Some(half), .. })) if half.accepted => Precision::F16,
        (Precision::F16, Some(Measured { f16: Some(half), .. })) => {
            log::warn!(
                "inference.precision = f16: {}'s outputs moved {:.1e} of their scale in f16 at provision (limit {:.0e}); \
                 running it in f32",
                model.path.display(),
                half.difference,
                choice::HALF_AGREEMENT
            );
            Precision::F32
        }
        (Precision::F16, _) if model.sha256.is_none() => {
            log::warn!("inference.precision = f16: {} is a model file, run in f16 unchecked", model.path.display());
            Precision::F16
        }
        (Precision::F16, _) => {
            log::warn!(
                "inference.precision = f16: {} was not checked in f16 yet (run `outpost provision`); running it in f32",
                model.path.display()
            );
            Precision::F32
        }
    }
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
            let make_input = |info: &InputInfo| sample_input(family, model.input, info);
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

/// A mid-grey frame prepared as the detector would prepare a 640x480 camera picture.
fn sample_input(family: Family, size: Option<[u32; 2]>, info: &InputInfo) -> anyhow::Result<(Vec<f32>, u32, u32)> {
    let img = RgbImage::new(640, 480, vec![114; 640 * 480 * 3]);
    let spec = Spec { family: Some(family), size, fixed: info.fixed_hw(), ..Spec::default() };
    let Prepared { data, meta } = Codec::new(spec).prepare(&img, family)?;
    let (width, height) = meta.input;
    Ok((data, height, width))
}
