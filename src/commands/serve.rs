//! `outpost serve`: the Roboflow Inference HTTP API on this device (see [`crate::http::api`]),
//! answering from the persistent cache. A manifest, when there is one, is provisioned first, as
//! `run` does; a failure there does not keep the server down while the cache holds models.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cli::{Global, ServeArgs};
use crate::config::ServeProvision;
use crate::exit::{exit_for, Exit};
use crate::http::{self, api::Api};
use crate::models::registry::Registry;
use crate::notify::Notifier;
use crate::provision::cache::Cache;

pub fn run(global: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let config = loaded.config;
    let mut notifier = Notifier::from_env();

    let opts = super::provision::options(&config, &args.provision);
    let cache = Cache::new(&config.cache_dir);
    if opts.manifest.exists() {
        notifier.status(&format!("provisioning models from {}", opts.manifest.display()));
        match crate::provision::provision(&opts) {
            Ok(s) => {
                log::info!("cache generation {}: {} model(s) ready", s.generation, s.models);
                crate::models::engines::prepare_current(&config)?;
            }
            Err(e) if exit_for(&e) == Exit::Config && cache.current()?.is_none() => return Err(e),
            Err(e) => log::warn!("{e:#}; serving the models already in the cache"),
        }
    } else if args.provision.manifest.is_some() {
        return Err(crate::exit::Failure::new(Exit::Config, format!("manifest {} does not exist", opts.manifest.display())).into());
    }

    let (listener, addr) = http::bind(&config.serve.listen, "serve.listen")?;
    if !addr.ip().is_loopback() && config.serve.api_keys.is_empty() {
        log::warn!(
            "serving on {addr}, beyond this machine, without API keys: anyone on the network can use it \
             (set serve.api_keys)"
        );
    }
    let mut registry = Registry::new(config.clone(), config.serve.max_loaded_models, config.serve.queue);
    if config.serve.provision == ServeProvision::OnDemand {
        let (config, args) = (config.clone(), args.provision.clone());
        registry = registry.with_provisioner(Box::new(move |requested, client_key| {
            let mut opts = super::provision::options(&config, &args);
            if let Some(key) = client_key {
                opts.roboflow.api_key = Some(crate::redact::Secret::new(key));
            }
            crate::provision::on_demand::add_roboflow_model(&opts, requested)?;
            // The model entered the cache: choose its engine now, as `provision` would, so it
            // does not run on tract by default until the next provision. Not measured is not
            // fatal: the model runs, on tract, and the log says why.
            if let Err(e) = crate::models::engines::prepare_current(&config) {
                log::warn!("model `{requested}`: engines not measured: {e:#}");
            }
            Ok(())
        }));
    }
    let registry = Arc::new(registry);
    let api = Arc::new(Api::new(registry, &config.serve.api_keys));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let watcher_stop = stop.clone();
    std::thread::Builder::new().name("stop-watch".into()).spawn(move || {
        while crate::pause::sleep_unless(&watcher_stop, std::time::Duration::from_secs(3600)) {}
        http::server::wake(addr);
    })?;
    log::info!("serving the Roboflow Inference API on http://{addr} (cache {})", config.cache_dir.display());
    notifier.ready(&format!("serving on {addr}"));
    http::server::serve(listener, api, http::limits(&config), stop)?;
    notifier.stopping("stopping");
    log::info!("stopped");
    Ok(())
}
