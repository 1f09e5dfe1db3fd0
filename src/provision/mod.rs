//! The provisioning phase: make every model of the manifest present and verified in the cache,
//! then switch the cache's current generation to it. Blocking, run once at boot; with a complete
//! cache it makes no network request at all.

pub mod bundle;
pub mod cache;
pub mod download;
pub mod maintain;
pub mod on_demand;
pub mod manifest;
pub mod progress;
pub mod retry;
pub mod roboflow;
pub mod rollback;
pub mod signature;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::exit::{Exit, Failure};
use crate::storage::{volatility, Volatility};
use cache::{Cache, Generation, ModelRecord, Trust};
use download::{Downloader, Wanted};
use manifest::{Manifest, Model, Source};

#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    pub cache_dir: PathBuf,
    pub allow_volatile_cache: bool,
    pub allow_downgrade: bool,
    pub lock_wait: Duration,
    /// ed25519 public keys (hex); when non-empty the manifest must be signed by one of them.
    pub trusted_keys: Vec<String>,
    pub roboflow: RoboflowOptions,
    pub download: download::Settings,
    /// Relative `file:` sources resolve against this file's folder instead of the manifest's own
    /// (repair provisions from the stored copy of a manifest that lived elsewhere).
    pub resolve_relative_to: Option<PathBuf>,
    /// Blobs to fetch again although present (found corrupt): the replacement is fetched and
    /// renamed over the bad file, which stays until then.
    pub refetch: Vec<String>,
    /// Longest this provisioning run may take, waits included (`provision.deadline_secs`).
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct RoboflowOptions {
    pub api_base: String,
    pub api_key: Option<crate::redact::Secret>,
    /// Sent as `device=`: identifies this unit to Roboflow.
    pub device: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub generation: u64,
    pub models: usize,
    pub from_cache: usize,
    pub fetched: usize,
    pub bytes_fetched: u64,
    pub bytes_sideloaded: u64,
    pub resumed: usize,
}

/// Runs the provisioning phase. Errors carry their exit code (see [`crate::exit`]).
pub fn provision(opts: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let manifest_bytes = std::fs::read(&opts.manifest)
        .map_err(|e| Failure::new(Exit::Config, format!("cannot read manifest {}: {e}", opts.manifest.display())))?;
    let signature = read_optional(&sig_path(&opts.manifest))?;
    let origin = opts.resolve_relative_to.as_deref().unwrap_or(&opts.manifest);
    let manifest = trusted_manifest(origin, &manifest_bytes, signature.as_deref(), &opts.trusted_keys)?;
    let manifest_sha = sha256_hex(&manifest_bytes);
    let (cache, _lock) = match open_for_writing(opts) {
        Ok(opened) => opened,
        Err(e) => return complete_read_only(opts, &manifest, &manifest_sha, e),
    };
    let resolved = cache.resolve_current().context("reading the cache's current generation")?;
    if let Some(problem) = &resolved.problem {
        log::warn!("{problem}");
    }
    let current = resolved.generation;
    rollback::check(&cache, &manifest, &manifest_sha, current.as_ref(), &opts.manifest, opts.allow_downgrade)?;

    let mut records = Vec::new();
    let mut missing = Vec::new();
    for model in &manifest.models {
        let distrusted = |r: &ModelRecord| {
            opts.refetch.contains(&r.sha256) || r.environment_sha256.as_ref().is_some_and(|e| opts.refetch.contains(e))
        };
        match reusable(&cache, current.as_ref(), model).filter(|r| !distrusted(r)) {
            Some(record) => records.push(record),
            None => missing.push(model),
        }
    }
    let mut summary = Summary { models: manifest.models.len(), from_cache: records.len(), ..Summary::default() };
    if missing.is_empty() {
        if let Some(cur) = &current {
            if cur.manifest_sha256 == manifest_sha {
                if resolved.problem.is_some() {
                    cache.repair_current(cur.generation)?;
                    log::warn!("cache: `current` points at generation {} again", cur.generation);
                }
                log::info!(
                    "cache complete: {} model(s) verified present in generation {}; no network needed",
                    records.len(),
                    cur.generation
                );
                summary.generation = cur.generation;
                return Ok(summary);
            }
        }
    }

    check_free_space(&cache, &missing)?;
    let downloader = downloader(opts, &manifest, started)?;
    let mut failed = Vec::new();
    for model in &missing {
        match fetch_model(&cache, &downloader, model, &manifest, &opts.roboflow) {
            Ok((record, fetched)) => {
                summary.fetched += 1;
                summary.bytes_fetched += fetched.transferred;
                summary.bytes_sideloaded += if fetched.sideloaded { fetched.size } else { 0 };
                summary.resumed += usize::from(fetched.resumed);
                records.push(record);
            }
            // A bad environment.json is the manifest's problem: no retry at the next boot helps.
            Err(e) if crate::exit::exit_for(&e) == Exit::Config => return Err(e),
            Err(e) => {
                log::error!("{}: {e:#}", model.id);
                failed.push(model.id.clone());
            }
        }
    }
    if !failed.is_empty() {
        let kept = current.as_ref().map_or("none".to_string(), |g| g.generation.to_string());
        return Err(Failure::new(
            Exit::Provisioning,
            format!(
                "provisioning incomplete: {} of {} model(s) could not be fetched ({}); the cache still \
                 holds generation {kept}",
                failed.len(),
                manifest.models.len(),
                failed.join(", ")
            ),
        )
        .into());
    }

    // Keep the manifest's order in the record.
    records.sort_by_key(|r| manifest.models.iter().position(|m| m.id == r.id));
    let next = commit_next(&cache, &manifest, manifest_sha, records, &manifest_bytes, signature.as_deref(), Some(origin))?;
    summary.generation = next;
    log::info!(
        "provisioned generation {next}: {} model(s), {} from cache, {} fetched ({} downloaded, {} sideloaded, {} resumed) in {:.1}s",
        summary.models,
        summary.from_cache,
        summary.fetched,
        progress::bytes(summary.bytes_fetched),
        progress::bytes(summary.bytes_sideloaded),
        summary.resumed,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// A cache that cannot be written (read-only filesystem, a lock file of another user) is no
/// reason to stop a unit whose models are all there: when the current generation is this
/// manifest's and complete, provisioning succeeds read-only, with a warning. Else `err` stands.
fn complete_read_only(opts: &Options, manifest: &Manifest, manifest_sha: &str, err: anyhow::Error) -> anyhow::Result<Summary> {
    check_persistent(&opts.cache_dir, opts.allow_volatile_cache)?;
    let cache = Cache::new(&opts.cache_dir);
    match cache.current() {
        Ok(Some(gen)) if gen.manifest_sha256 == manifest_sha && cache.is_complete(&gen) => {
            log::warn!(
                "{err:#}; the cache is complete for {} (generation {}), continuing read-only",
                opts.manifest.display(),
                gen.generation
            );
            Ok(Summary { generation: gen.generation, models: manifest.models.len(), from_cache: gen.models.len(), ..Summary::default() })
        }
        _ => Err(err),
    }
}

/// The manifest, once its signature (when keys are configured) verified and it parsed.
pub fn trusted_manifest(path: &Path, bytes: &[u8], sig: Option<&[u8]>, keys: &[String]) -> anyhow::Result<Manifest> {
    let signed = match signature::verify(bytes, sig, keys) {
        Ok(true) => {
            log::info!("manifest {}: signature verified ({} trusted key(s))", path.display(), keys.len());
            true
        }
        Ok(false) => {
            log::info!("manifest {}: 0 trusted keys configured, signature not required", path.display());
            false
        }
        Err(why) => return Err(Failure::new(Exit::Config, format!("manifest {} refused: {why}", path.display())).into()),
    };
    let manifest = Manifest::parse(path, bytes).map_err(|e| Failure::new(Exit::Config, e.to_string()))?;
    // A signature that covers the weights but not the environment would let the server decide
    // preprocessing and class names.
    if signed {
        if let Some(m) = manifest.models.iter().find(|m| m.environment.is_some() && m.environment_pin.is_none()) {
            return Err(Failure::new(
                Exit::Config,
                format!(
                    "manifest {}, model `{}`: a signed manifest must pin its environment (environment_sha256 and \
                     environment_size)",
                    path.display(),
                    m.id
                ),
            )
            .into());
        }
    }
    Ok(manifest)
}

/// Checks the storage, creates the cache and takes its single-writer lock.
pub fn open_for_writing(opts: &Options) -> anyhow::Result<(Cache, cache::CacheLock)> {
    check_persistent(&opts.cache_dir, opts.allow_volatile_cache)?;
    let cache = Cache::new(&opts.cache_dir);
    cache
        .create_dirs()
        .with_context(|| format!("creating the cache in {}", opts.cache_dir.display()))
        .map_err(|e| Failure::new(Exit::Provisioning, format!("{e:#}")))?;
    let lock = cache
        .lock(opts.lock_wait)
        .map_err(|e| Failure::new(Exit::Provisioning, format!("locking {}: {e}", opts.cache_dir.join(".lock").display())))?;
    Ok((cache, lock))
}

/// The downloader for `manifest`'s models: its HTTP policy, the download settings, and the
/// provisioning deadline counted from `started`.
pub(crate) fn downloader(opts: &Options, manifest: &Manifest, started: Instant) -> anyhow::Result<Downloader> {
    Ok(Downloader::new(opts.download.clone(), !manifest.allow_http)
        .map_err(|e| Failure::new(Exit::Config, format!("{e:#}")))?
        .with_deadline(started + opts.deadline))
}

/// Records a new generation after the newest one and makes it current.
pub fn commit_next(
    cache: &Cache,
    manifest: &Manifest,
    manifest_sha256: String,
    models: Vec<ModelRecord>,
    manifest_bytes: &[u8],
    signature: Option<&[u8]>,
    manifest_path: Option<&Path>,
) -> anyhow::Result<u64> {
    let next = cache.generation_numbers()?.last().copied().unwrap_or(0) + 1;
    let generation = Generation {
        generation: next,
        manifest_version: manifest.version,
        manifest_sha256,
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        models,
        manifest_path: manifest_path.map(Path::to_path_buf),
    };
    cache.commit(&generation, manifest_bytes, signature).context("switching to the new generation")?;
    Ok(next)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    cache::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Largest signature file read: an ed25519 signature is 64 bytes (128 as hex, plus a newline).
const MAX_SIGNATURE_BYTES: u64 = 1024;

fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() > MAX_SIGNATURE_BYTES {
            return Err(Failure::new(
                Exit::Config,
                format!("{} is {} bytes; an ed25519 signature is 64 bytes (or 128 hex digits)", path.display(), meta.len()),
            )
            .into());
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::new(Exit::Config, format!("cannot read {}: {e}", path.display())).into()),
    }
}

pub fn sig_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Refuses a cache on tmpfs/ramfs: the weights would vanish at the next reboot.
pub fn check_persistent(dir: &Path, allow_volatile: bool) -> anyhow::Result<()> {
    let (kind, probed) = volatility(dir).with_context(|| format!("examining the cache directory {}", dir.display()))?;
    if let Volatility::Volatile(fs) = kind {
        let explanation = format!(
            "the cache directory {} is on {fs} ({} is on a {fs} mount): its contents vanish at every reboot, \
             so the device would download every model again at each boot and could not start offline",
            dir.display(),
            probed.display()
        );
        if !allow_volatile {
            return Err(Failure::new(
                Exit::Config,
                format!(
                    "{explanation}. Point cache.dir (--cache-dir, OUTPOST_CACHE_DIR) at persistent storage \
                     such as /var/lib/outpost/cache, or pass --allow-volatile-cache if this is intended"
                ),
            )
            .into());
        }
        log::warn!("{explanation}; continuing because --allow-volatile-cache was given");
    }
    Ok(())
}

/// The model's record when its blob is already in the cache (no network needed).
fn reusable(cache: &Cache, current: Option<&Generation>, model: &Model) -> Option<ModelRecord> {
    // Each file is reused on its own: the weights by digest (or, unpinned, by source), the
    // environment only when the manifest still names the same one.
    let prior = current.and_then(|g| g.models.iter().find(|r| r.id == model.id));
    let env = match &model.environment {
        // A Roboflow model's environment comes from the API answer: it goes with the weights.
        None if matches!(model.source, Source::Roboflow(_)) => prior
            .filter(|r| r.source == model.source.to_string())
            .and_then(|r| r.environment_sha256.clone()),
        None => None,
        Some(source) => {
            let sha = match &model.environment_pin {
                // Pinned: the digest names the file; any generation's copy will do.
                Some((sha, size)) => cache.has_blob(sha, *size).then(|| sha.clone()),
                None => prior
                    .filter(|r| r.environment_source.as_deref() == Some(source.to_string().as_str()))
                    .and_then(|r| r.environment_sha256.clone())
                    .filter(|sha| cache.blob_path(sha).is_file()),
            };
            Some(sha?)
        }
    };
    if let (Some(sha), Some(size)) = (&model.sha256, model.size) {
        if !cache.has_blob(sha, size) {
            return None;
        }
        return Some(record(model, sha, size, Trust::Pinned, env));
    }
    // Trust-on-first-use: reuse the weights the current generation recorded for the same source;
    // what the manifest says now (family, classes, input) wins over what was recorded then.
    let prior = prior.filter(|r| r.source == model.source.to_string())?;
    if !cache.has_blob(&prior.sha256, prior.size) {
        return None;
    }
    let mut rec = record(model, &prior.sha256, prior.size, Trust::TrustOnFirstUse, env);
    if model.environment.is_none() {
        rec.environment_source = prior.environment_source.clone();
    }
    rec.family = model.family.clone().or(prior.family.clone());
    rec.classes = model.classes.clone().or(prior.classes.clone());
    Some(rec)
}

fn record(model: &Model, sha: &str, size: u64, trust: Trust, environment_sha256: Option<String>) -> ModelRecord {
    ModelRecord {
        id: model.id.clone(),
        sha256: sha.to_string(),
        size,
        source: model.source.to_string(),
        trust,
        family: model.family.clone(),
        classes: model.classes.clone(),
        input: model.input,
        environment_source: environment_sha256.as_ref().and(model.environment.as_ref()).map(|s| s.to_string()),
        environment_sha256,
    }
}

pub(crate) fn fetch_model(
    cache: &Cache,
    downloader: &Downloader,
    model: &Model,
    manifest: &Manifest,
    rf: &RoboflowOptions,
) -> anyhow::Result<(ModelRecord, download::Fetched)> {
    let mut candidates = model.candidates.clone();
    let mut environment = model.environment.clone();
    let mut record_extra = (model.family.clone(), model.classes.clone());
    if let Source::Roboflow(id) = &model.source {
        let api = roboflow::Api {
            agent: downloader.agent(),
            base: &rf.api_base,
            key: rf.api_key.as_ref(),
            device: &rf.device,
            attempts: downloader.attempts(),
            backoff: Duration::from_millis(500),
            allow_http: manifest.allow_http,
        };
        // Kept as its own error under the context, so `serve` can tell a key problem (401/403).
        let ort = api.resolve(id).map_err(|e| anyhow::Error::new(e).context(format!("model {}", model.id)))?;
        let resolved = |url: &str| -> anyhow::Result<Source> {
            if url.starts_with("https://") || (manifest.allow_http && url.starts_with("http://")) {
                Ok(Source::Url(url.to_string()))
            } else {
                anyhow::bail!("model {}: Roboflow answered a non-https URL {}", model.id, crate::redact::redact_url(url))
            }
        };
        let origin = resolved(&ort.model)?;
        candidates = candidates.into_iter().map(|c| if c == model.source { origin.clone() } else { c }).collect();
        if environment.is_none() {
            environment = ort.environment.as_deref().map(resolved).transpose()?;
        }
        record_extra = (record_extra.0.or(ort.model_type), record_extra.1.or(ort.classes));
    }
    let caps = downloader.settings();
    let wanted = Wanted { id: &model.id, sha256: model.sha256.as_deref(), size: model.size, cap: caps.max_unpinned };
    let fetched = downloader.fetch(cache, &wanted, &candidates)?;
    cache.install_blob(&fetched.path, &fetched.sha256)?;
    let env = match &environment {
        Some(source) => {
            let env_id = format!("{}.environment", model.id);
            let (sha256, size) = match &model.environment_pin {
                Some((sha, size)) => (Some(sha.as_str()), Some(*size)),
                None => (None, None),
            };
            let env_wanted = Wanted { id: &env_id, sha256, size, cap: caps.max_environment };
            let env = downloader.fetch(cache, &env_wanted, std::slice::from_ref(source))?;
            check_environment(&env.path, &model.id, source)?;
            cache.install_blob(&env.path, &env.sha256)?;
            Some((env.sha256, source.to_string()))
        }
        None => None,
    };
    let trust = if model.sha256.is_some() { Trust::Pinned } else { Trust::TrustOnFirstUse };
    let (env_sha, env_source) = env.unzip();
    let mut rec = record(model, &fetched.sha256, fetched.size, trust, env_sha);
    rec.environment_source = env_source;
    (rec.family, rec.classes) = record_extra;
    Ok((rec, fetched))
}

/// An environment.json that would fail every model load is refused at provision (exit 3), not
/// discovered by a restart loop later.
fn check_environment(path: &Path, id: &str, source: &Source) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match crate::vision::environment::parse(&bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(Failure::new(Exit::Config, format!("model {id}: {e} (from {source})")).into())
        }
    }
}

/// Fails early when the missing models cannot fit, instead of filling the disk halfway.
pub(crate) fn check_free_space(cache: &Cache, missing: &[&Model]) -> anyhow::Result<()> {
    let needed: u64 = missing
        .iter()
        .filter_map(|m| {
            let size = m.size?;
            let have = m.sha256.as_ref().and_then(|s| std::fs::metadata(cache.partial_path(s)).ok()).map_or(0, |md| md.len());
            Some(size.saturating_sub(have))
        })
        .sum();
    if needed == 0 {
        return Ok(());
    }
    let margin = needed / 20 + 8 * 1024 * 1024;
    let stat = rustix::fs::statvfs(cache.root()).with_context(|| format!("statvfs {}", cache.root().display()))?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed + margin {
        return Err(Failure::new(
            Exit::Provisioning,
            format!(
                "not enough free space in {}: the missing models need {} (plus {} margin), {} is available; \
                 free space (e.g. `outpost cache gc`) or choose a larger cache.dir",
                cache.root().display(),
                progress::bytes(needed),
                progress::bytes(margin),
                progress::bytes(available)
            ),
        )
        .into());
    }
    Ok(())
}
