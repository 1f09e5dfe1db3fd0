//! `outpost provision`: the blocking boot phase (see [`crate::provision`]).

use crate::cli::{Global, ProvisionArgs};
use crate::config::Config;
use crate::provision::{self, Options};

pub fn run(global: &Global, args: &ProvisionArgs) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let opts = options(&loaded.config, args);
    let summary = provision::provision(&opts)?;
    outln!(
        "generation {}: {} model(s) ready ({} from cache, {} fetched)",
        summary.generation, summary.models, summary.from_cache, summary.fetched
    )?;
    crate::models::engines::prepare_current(&loaded.config)?;
    Ok(())
}

pub fn options(config: &Config, args: &ProvisionArgs) -> Options {
    Options {
        // Absolute, so relative file: sources resolve the same from any working directory.
        manifest: args
            .manifest
            .as_ref()
            .map(|m| std::path::absolute(m).unwrap_or_else(|_| m.clone()))
            .unwrap_or_else(|| config.provision.manifest.clone()),
        cache_dir: config.cache_dir.clone(),
        allow_volatile_cache: args.allow_volatile_cache,
        allow_downgrade: args.allow_downgrade,
        lock_wait: config.provision.lock_wait,
        trusted_keys: config.provision.trusted_keys.clone(),
        roboflow: provision::RoboflowOptions {
            api_base: config.roboflow.api_base.clone(),
            api_key: config.roboflow.api_key.clone(),
            device: format!("outpost-{}", config.board),
        },
        download: config.download.clone(),
        resolve_relative_to: None,
        refetch: Vec::new(),
        deadline: config.provision.deadline,
    }
}
