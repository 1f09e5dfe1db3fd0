//! `outpost run`: the appliance's main job. Provisioning (blocking; no network when the cache is
//! complete) -> load the model -> capture -> infer -> sinks, until stopped. Under systemd it
//! speaks the notify protocol (see `scripts/outpost.service`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Global, RunArgs};
use crate::config::Config;
use crate::redact::Secret;
use crate::exit::{exit_for, Exit, Failure};
use crate::notify::Notifier;
use crate::models::registry::{LoadError, Registry};
use crate::pipeline::{self, Feed, Options};
use crate::provision::cache::Cache;
use crate::provision::rollback::Superseded;
use crate::vision::detection::Thresholds;

pub fn run(global: &Global, args: &RunArgs) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let config = &loaded.config;
    let mut notifier = Notifier::from_env();
    crate::capture::configured(config)?;

    // 1. Provisioning: the cache must hold the manifest's models before anything else runs.
    let opts = super::provision::options(config, &args.provision);
    let cache = Cache::new(&config.cache_dir);
    let stop = Arc::new(AtomicBool::new(false));
    let new_generation = Arc::new(AtomicBool::new(false));
    if !opts.manifest.exists() && cache.current()?.is_some() {
        log::warn!(
            "manifest {} does not exist; running the models already in the cache",
            opts.manifest.display()
        );
    } else {
        notifier.status(&format!(
            "provisioning models from {}",
            opts.manifest.display()
        ));
        match crate::provision::provision(&opts) {
            Ok(summary) => {
                log::info!("cache generation {}: {} model(s) ready", summary.generation, summary.models);
                crate::models::engines::prepare_current(config)?;
            }
            Err(e) if exit_for(&e) == Exit::Provisioning && !config.provision.require_complete => {
                let Some(current) = cache.current()? else {
                    return Err(e);
                };
                log::warn!(
                    "{e:#}; running the installed generation {} (manifest version {}) meanwhile, retrying in the \
                     background (provision.require_complete = true exits instead)",
                    current.generation,
                    current.manifest_version
                );
                crate::provision::retry::spawn(opts.clone(), config.provision.retry, new_generation.clone(), stop.clone());
            }
            Err(e) => run_installed_if_superseded(&cache, e)?,
        }
    }

    // 2. The cameras and their models (each model loaded once, whatever the number of cameras).
    let cameras = cameras(config)?;
    let generation = cache.current()?.map_or(0, |g| g.generation);
    let mut wanted: Vec<String> = Vec::new();
    for camera in &cameras {
        let model = match &camera.model {
            Some(model) => model.clone(),
            None => choose_model(&cache, &config.run.model)?,
        };
        if !wanted.contains(&model) {
            wanted.push(model);
        }
    }
    let registry = Registry::new(config.clone(), wanted.len(), cameras.len()).with_input(config.run.input);
    let mut loaded = Vec::new();
    for model in &wanted {
        notifier.status(&format!("loading model {model}"));
        let handle = registry.load(model, None).map_err(|e| match e {
            LoadError::Failed(e) => e,
            LoadError::Unknown(m) => Failure::new(Exit::Config, m).into(),
            other => anyhow::anyhow!("{other}"),
        })?;
        loaded.push((model.clone(), handle));
    }

    // 3. Sinks and sources: failures here are startup errors (configuration or hardware).
    let mut sinks =
        crate::sinks::open(config).map_err(|e| Failure::new(Exit::Config, format!("{e:#}")))?;
    let mut feeds = Vec::new();
    for camera in cameras {
        let source = match &camera.source {
            Some(text) => crate::capture::open_text(text.expose(), config)?,
            None => crate::capture::open(config)?,
        };
        let model_id = camera.model.clone().map_or_else(|| choose_model(&cache, &config.run.model), Ok)?;
        let model = loaded.iter().find(|(id, _)| *id == model_id).map(|(_, m)| m.clone()).expect("loaded above");
        log::info!("camera {}: {} -> model {}", camera.name, source.name(), model.id);
        feeds.push(Feed {
            camera: camera.name,
            source,
            model,
            thresholds: camera.thresholds,
            max_fps: camera.max_fps,
        });
    }
    let shown_sources: Vec<&str> = feeds.iter().map(|f| f.source.name()).collect();
    let live = crate::http::live::start(config, &wanted.join(", "), &shown_sources.join(", "), generation, stop.clone())?;
    if let Some(live) = &live {
        sinks.push(Box::new(crate::http::live::LiveSink(live.clone())));
    }

    // 4. Frames until stopped. Until here a signal ends the process at once (the cache is written
    // crash-safe, nothing else is open); from here it lets the current frames finish and the
    // sinks flush. A stop that outlasts the timeout (a frame stuck in a slow model)
    // ends the process anyway, after any JSON line being written is complete.
    // The guard answers a stop request (a signal) only: a run that ends by itself (run.frames
    // reached, a folder done) waits for its last frame however slow the model, or that frame's
    // answer would be lost (a 10 s frame on an emulated or small board was, with exit 0).
    let signalled = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&stop, &signalled)?;
    spawn_stop_guard(signalled, config.run.stop_timeout + Duration::from_secs(1));
    let pipeline_opts = Options {
        frames: config.run.frames,
        stats_interval: config.run.stats_interval,
        reopen: config.camera.reopen,
        stop_timeout: config.run.stop_timeout,
        fail_after: config.run.fail_after,
        overlap: config.run.overlap,
        publish: live.as_ref().map(|l| (l.stats.clone(), l.cameras.clone())),
    };
    let outcome = pipeline::run(feeds, sinks, &pipeline_opts, &stop, &mut notifier)?;
    if new_generation.load(Ordering::SeqCst) {
        restart_on_new_generation();
    }
    let stats = outcome.stats;
    // A requested stop is a clean end, whatever the frames did.
    if stats.processed == 0 && stats.frame_errors > 0 && !outcome.stop_requested {
        return Err(Failure::new(
            Exit::Runtime,
            format!(
                "no frame could be processed ({} failed)",
                stats.frame_errors
            ),
        )
        .into());
    }
    Ok(())
}

/// One camera of this run, its settings resolved against `run.*`.
struct CameraPlan {
    name: String,
    /// `None` = `run.source`.
    source: Option<Secret>,
    /// `None` = `run.model`, or the cache's only model.
    model: Option<String>,
    thresholds: Thresholds,
    max_fps: f64,
}

/// `[[cameras]]`, or the one camera of `run.source` (which wins when both are set: a
/// `--source` on the command line is for trying something).
fn cameras(config: &Config) -> anyhow::Result<Vec<CameraPlan>> {
    let thresholds = |confidence: Option<f32>, iou: Option<f32>| Thresholds {
        confidence: confidence.unwrap_or(config.run.confidence),
        iou: iou.unwrap_or(config.run.iou),
        max_detections: config.run.max_detections,
        ..Thresholds::default()
    };
    let single = CameraPlan {
        name: "default".into(),
        source: None,
        model: None,
        thresholds: thresholds(None, None),
        max_fps: config.run.max_fps,
    };
    if config.cameras.is_empty() {
        return Ok(vec![single]);
    }
    if !config.run.source.trim().is_empty() {
        log::warn!(
            "run.source is set: running it alone; the {} [[cameras]] of the config file are left out",
            config.cameras.len()
        );
        return Ok(vec![single]);
    }
    Ok(config
        .cameras
        .iter()
        .map(|c| CameraPlan {
            name: c.name.clone(),
            source: Some(c.source.clone()),
            model: c.model.clone().or_else(|| (!config.run.model.is_empty()).then(|| config.run.model.clone())),
            thresholds: thresholds(c.confidence, c.iou),
            max_fps: c.max_fps.unwrap_or(config.run.max_fps),
        })
        .collect())
}

/// Replaces this process with a fresh `outpost` with the same arguments (same PID, so systemd
/// keeps supervising it): the new generation is loaded the way a boot loads it.
fn restart_on_new_generation() {
    use std::os::unix::process::CommandExt;
    log::info!("restarting to load the new generation");
    let Ok(exe) = std::env::current_exe() else {
        log::error!("cannot find this executable to restart; the new generation is used from the next start");
        return;
    };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec();
    log::error!("restart failed: {err}; the new generation is used from the next start");
}

/// A seed manifest that a bundle import or a newer manifest has superseded must not stop the
/// appliance: the boot path runs the installed generation and says so (`provision` still refuses).
fn run_installed_if_superseded(cache: &Cache, err: anyhow::Error) -> anyhow::Result<()> {
    let Some(superseded) = err.downcast_ref::<Superseded>() else {
        return Err(err);
    };
    let Some(current) = cache.current()? else {
        return Err(err);
    };
    log::warn!(
        "{}; running the installed generation {} (manifest version {}) instead",
        superseded.problem,
        current.generation,
        current.manifest_version
    );
    Ok(())
}

/// `run.model`, or the only model of the current generation.
fn choose_model(cache: &Cache, wanted: &str) -> anyhow::Result<String> {
    if !wanted.is_empty() {
        return Ok(wanted.to_string());
    }
    let gen = cache
        .current()?
        .ok_or_else(|| Failure::new(Exit::Provisioning, "the cache has no models".to_string()))?;
    match gen.models.as_slice() {
        [only] => Ok(only.id.clone()),
        models => {
            let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            Err(Failure::new(
                Exit::Config,
                format!("run.model is not set and the cache holds {} models ({}): set run.model or pass --model", ids.len(), ids.join(", ")),
            )
            .into())
        }
    }
}

/// SIGTERM/SIGINT set `stop` and `signalled`; a second one while stopping ends the process at once
/// (exit 130).
fn install_signal_handlers(stop: &Arc<AtomicBool>, signalled: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, signalled.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
        signal_hook::flag::register(signal, signalled.clone())?;
    }
    Ok(())
}

fn spawn_stop_guard(signalled: Arc<AtomicBool>, timeout: Duration) {
    let _ = std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            while !signalled.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(timeout);
            log::warn!(
                "still busy {}s after the stop request (a frame in the model?); exiting",
                timeout.as_secs()
            );
            // Holding stdout's lock waits for a JSON line being written to finish.
            let _stdout = std::io::stdout().lock();
            std::process::exit(0);
        });
}
