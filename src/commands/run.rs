//! `outpost run`: the appliance's main job. Provisioning (blocking; no network when the cache is
//! complete) -> load the model -> capture -> infer -> sinks, until stopped. Under systemd it
//! speaks the notify protocol (see `scripts/outpost.service`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Global, ModelArgs, RunArgs};
use crate::exit::{exit_for, Exit, Failure};
use crate::notify::Notifier;
use crate::pipeline::{self, Options};
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
            Ok(summary) => log::info!(
                "cache generation {}: {} model(s) ready",
                summary.generation,
                summary.models
            ),
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

    // 2. The model.
    let model = choose_model(&cache, &config.run.model)?;
    notifier.status(&format!("loading model {model}"));
    let loading = Instant::now();
    let model_args = ModelArgs {
        model: Some(model.clone()),
        input: config.run.input,
        ..ModelArgs::default()
    };
    let mut detector = crate::models::load_detector(config, &model_args)?;
    detector.thresholds = Thresholds {
        confidence: config.run.confidence,
        iou: config.run.iou,
        max_detections: config.run.max_detections,
        ..Thresholds::default()
    };
    log::info!(
        "model {model} loaded in {:.2}s",
        loading.elapsed().as_secs_f64()
    );

    // 3. Sinks and source: failures here are startup errors (configuration or hardware).
    let mut sinks =
        crate::sinks::open(config).map_err(|e| Failure::new(Exit::Config, format!("{e:#}")))?;
    let source = crate::capture::open(config)?;
    log::info!("source {}", source.name());
    let generation = cache.current()?.map_or(0, |g| g.generation);
    let live = crate::http::live::start(config, &model, source.name(), generation, stop.clone())?;
    if let Some(live) = &live {
        sinks.push(Box::new(crate::http::live::LiveSink(live.clone())));
    }

    // 4. Frames until stopped. Until here a signal ends the process at once (the cache is written
    // crash-safe, nothing else is open); from here it lets the current frame finish and the
    // sinks flush. A stop that outlasts the timeout (a frame stuck in a slow model)
    // ends the process anyway, after any JSON line being written is complete.
    install_signal_handlers(&stop)?;
    spawn_stop_guard(
        stop.clone(),
        config.run.stop_timeout + Duration::from_secs(1),
    );
    let pipeline_opts = Options {
        max_fps: config.run.max_fps,
        frames: config.run.frames,
        stats_interval: config.run.stats_interval,
        reopen: config.camera.reopen,
        stop_timeout: config.run.stop_timeout,
        fail_after: config.run.fail_after,
        publish: live.as_ref().map(|l| l.stats.clone()),
    };
    let outcome = pipeline::run(
        source,
        &mut detector,
        &mut sinks,
        &pipeline_opts,
        &stop,
        &mut notifier,
    )?;
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

/// SIGTERM/SIGINT set `stop`; a second one while stopping ends the process at once (exit 130).
fn install_signal_handlers(stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(())
}

fn spawn_stop_guard(stop: Arc<AtomicBool>, timeout: Duration) {
    let _ = std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
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
