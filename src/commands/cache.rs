//! `outpost cache ls|verify|gc|export|import`.

use crate::cli::{CacheCommand, Global, ProvisionArgs};
use crate::exit::{Exit, Failure};
use crate::provision::cache::{Cache, Trust};
use crate::provision::{bundle, maintain};
use crate::provision::progress::bytes;

pub fn run(global: &Global, cmd: &CacheCommand) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let cache = Cache::new(&loaded.config.cache_dir);
    // Maintenance never creates a cache: a mistyped cache.dir must not "verify" an empty folder.
    if matches!(cmd, CacheCommand::Verify { .. } | CacheCommand::Gc | CacheCommand::Export(_)) && !cache.root().is_dir() {
        return Err(Failure::new(
            Exit::Provisioning,
            format!(
                "there is no cache at {} (is cache.dir / --cache-dir right? `outpost provision` creates it)",
                cache.root().display()
            ),
        )
        .into());
    }
    match cmd {
        CacheCommand::Ls { json } => ls(&cache, *json),
        CacheCommand::Verify { repair } => {
            let report = {
                let _lock = cache.lock(loaded.config.provision.lock_wait)?;
                maintain::verify(&cache, *repair)?
            };
            outln!(
                "checked {} blob(s), {} in {}; generation {}",
                report.blobs_checked,
                bytes(report.bytes_checked),
                cache.root().display(),
                report.generation.map_or("none".into(), |g| g.to_string())
            )?;
            for sha in &report.corrupt {
                outln!("CORRUPT {sha}")?;
            }
            for (id, sha) in &report.missing {
                outln!("MISSING {id} {sha}")?;
            }
            if report.blobs_checked == 0 && report.generation.is_none() {
                return Err(Failure::new(
                    Exit::Provisioning,
                    format!("the cache {} is empty: nothing to verify (run `outpost provision`)", cache.root().display()),
                )
                .into());
            }
            if report.is_clean() {
                outln!("cache verified: every blob matches its digest")?;
                return Ok(());
            }
            if *repair {
                if let Some(generation) = report.generation {
                    return refetch(&loaded.config, &cache, generation, &report.corrupt);
                }
            }
            Err(Failure::new(
                Exit::Provisioning,
                format!(
                    "cache verification failed: {} corrupt, {} missing (run `outpost cache verify --repair`)",
                    report.corrupt.len(),
                    report.missing.len()
                ),
            )
            .into())
        }
        CacheCommand::Gc => {
            let _lock = cache.lock(loaded.config.provision.lock_wait)?;
            let r = maintain::gc(&cache)?;
            outln!(
                "removed {} blob(s), {} partial file(s), {} old generation(s), {} TensorRT engine(s); freed {}",
                r.blobs_removed,
                r.partials_removed,
                r.generations_removed.len(),
                r.tensorrt_engines_removed,
                bytes(r.bytes_freed)
            )?;
            Ok(())
        }
        CacheCommand::Export(path) => {
            let _lock = cache.lock(loaded.config.provision.lock_wait)?;
            let e = bundle::export(&cache, path)?;
            outln!(
                "exported generation {} to {}: {} blob(s), {}",
                e.generation,
                path.display(),
                e.blobs,
                bytes(e.bytes)
            )?;
            Ok(())
        }
        CacheCommand::Import { bundle: path, args } => {
            let opts = super::provision::options(&loaded.config, args);
            let i = bundle::import(&opts, path)?;
            outln!(
                "imported {} into generation {}: {} blob(s) added, {} already present",
                path.display(),
                i.generation,
                i.blobs,
                i.already_present
            )?;
            crate::models::engines::prepare_current(&loaded.config)?;
            Ok(())
        }
    }
}

/// `--repair`: fetch what is missing or corrupt again, from the manifest the current generation
/// was made of (its relative `file:` sources resolved where that manifest was). A corrupt blob
/// is replaced only once its replacement is verified: if the fetch fails, nothing is lost.
fn refetch(config: &crate::config::Config, cache: &Cache, generation: u64, corrupt: &[String]) -> anyhow::Result<()> {
    let manifest = cache.root().join(format!("generations/{generation}.manifest"));
    log::info!("repairing: provisioning again from {}", manifest.display());
    let args = ProvisionArgs { manifest: Some(manifest), ..ProvisionArgs::default() };
    let mut opts = super::provision::options(config, &args);
    opts.resolve_relative_to = cache.generation(generation)?.manifest_path;
    opts.refetch = corrupt.to_vec();
    // The stored manifest is the installed one: reinstalling it is never a rollback.
    let summary = crate::provision::provision(&opts)?;
    outln!("repaired: generation {} complete ({} fetched)", summary.generation, summary.fetched)?;
    Ok(())
}

fn ls(cache: &Cache, json: bool) -> anyhow::Result<()> {
    let Some(gen) = cache.current()? else {
        if json {
            outln!("{}", serde_json::json!({"generation": null, "models": []}))?;
        } else {
            outln!("no generation in {}: run `outpost provision`", cache.root().display())?;
        }
        return Ok(());
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&gen)?)?;
        return Ok(());
    }
    outln!(
        "generation {} (manifest version {}) in {}: {} model(s)",
        gen.generation,
        gen.manifest_version,
        cache.root().display(),
        gen.models.len()
    )?;
    let width = gen.models.iter().map(|m| m.id.len()).max().unwrap_or(2).max(2);
    outln!("{:<width$}  {:<20}  {:>9}  {:<64}  SOURCE", "ID", "TRUST", "SIZE", "SHA256")?;
    for m in &gen.models {
        let trust = match m.trust {
            Trust::Pinned => "pinned",
            Trust::TrustOnFirstUse => "trust-on-first-use",
        };
        outln!("{:<width$}  {trust:<20}  {:>9}  {}  {}", m.id, bytes(m.size), m.sha256, m.source)?;
    }
    tensorrt_engines(cache, &gen)
}

/// The TensorRT engines in the cache, with the model each was built from.
fn tensorrt_engines(cache: &Cache, gen: &crate::provision::cache::Generation) -> anyhow::Result<()> {
    let engines = crate::backend::engine_cache::list(cache.root())?;
    if engines.is_empty() {
        return Ok(());
    }
    outln!("TensorRT engines: {}", engines.len())?;
    for engine in engines {
        let Some(key) = engine.key else {
            outln!("  {} (no valid key.json: never used; `outpost cache gc` removes it)", engine.path.display())?;
            continue;
        };
        let model = gen.models.iter().find(|m| m.sha256 == key.model_sha256).map_or("(no model of this generation)", |m| m.id.as_str());
        outln!(
            "  {model}: {}x{} {} for TensorRT {} on {} (compute {}), {} in {}",
            key.input[0],
            key.input[1],
            key.precision,
            key.tensorrt,
            key.gpu,
            key.compute_capability,
            bytes(engine.bytes),
            engine.path.display()
        )?;
        if let Some(verdict) = engine.verdict {
            let outcome = if verdict.accepted { "accepted" } else { "refused, the f32 engine runs" };
            outln!("    fp16 accuracy gate: {outcome}: {}", verdict.reason)?;
        }
    }
    Ok(())
}
