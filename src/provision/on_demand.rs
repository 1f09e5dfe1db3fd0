//! One Roboflow model added to the cache while `serve` runs (`/model/add` of a model the cache
//! lacks): resolved, downloaded and verified exactly as `provision` does it, under the same lock,
//! then committed as a new generation = the current one's models plus the new one.
//!
//! The new generation keeps the current generation's manifest (same bytes, same version), so the
//! rollback floor is untouched and a restart with that manifest finds the cache complete and keeps
//! the addition. A later manifest version is provisioned from the manifest alone: on-demand models
//! last until the manifest changes (list them in it to keep them).

use std::path::Path;

use anyhow::Context;

use super::cache::Generation;
use super::manifest::Manifest;
use super::{commit_next, open_for_writing, sha256_hex, Options};
use crate::exit::{Exit, Failure};

/// What the cache holds for `requested` after the call: the manifest id of its record.
pub fn add_roboflow_model(opts: &Options, requested: &str) -> anyhow::Result<String> {
    let (dataset, version) = super::roboflow::dataset_version(requested).map_err(|e| Failure::new(Exit::Config, e))?;
    let (cache, _lock) = open_for_writing(opts)?;
    let current = cache.resolve_current().context("reading the cache's current generation")?.generation;
    if let Some(record) = current.as_ref().and_then(|g| crate::models::find(g, requested)) {
        return Ok(record.id.clone());
    }
    let id = free_id(current.as_ref(), &format!("{dataset}-{version}"));
    let entry = format!("[[models]]\nid = \"{id}\"\nsource = \"roboflow:{dataset}/{version}\"\n");

    // The base: the current generation's manifest; for an empty cache, a manifest (version 0,
    // so any real manifest supersedes it) of just this model. Plain HTTP is allowed there only
    // when the configured Roboflow API itself is plain HTTP (a local mirror).
    let (base_bytes, signature, origin) = match &current {
        Some(gen) => (
            cache.manifest_bytes(gen.generation)?,
            cache.signature_bytes(gen.generation)?,
            gen.manifest_path.clone().unwrap_or_else(|| cache.root().join("manifest.toml")),
        ),
        None => {
            let allow_http = opts.roboflow.api_base.starts_with("http://");
            let text = format!("# models added by `outpost serve` (/model/add) to an empty cache\nversion = 0\nallow_http = {allow_http}\n{entry}");
            (text.into_bytes(), None, cache.root().join("on-demand.toml"))
        }
    };
    let base = Manifest::parse(&origin, &base_bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The entry parsed by the manifest's own rules, with the base's version and HTTP policy.
    let entry_text = format!("version = {}\nallow_http = {}\n{entry}", base.version, base.allow_http);
    let entry = Manifest::parse(Path::new("(serve /model/add)"), entry_text.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let model = &entry.models[0];

    super::check_free_space(&cache, &[model])?;
    let downloader = super::downloader(opts, &base, std::time::Instant::now())?;
    let (record, fetched) = super::fetch_model(&cache, &downloader, model, &entry, &opts.roboflow)?;
    let mut records: Vec<_> = current.as_ref().map(|g| g.models.clone()).unwrap_or_default();
    records.push(record);
    let next = commit_next(&cache, &base, sha256_hex(&base_bytes), records, &base_bytes, signature.as_deref(), Some(&origin))?;
    log::info!(
        "added `{requested}` to the cache as `{id}` ({}, {}): generation {next}",
        super::progress::bytes(fetched.size),
        if fetched.sideloaded { "sideloaded" } else { "downloaded" }
    );
    Ok(id)
}

/// `wanted`, or `wanted-2`, `wanted-3`... when the generation already uses it.
fn free_id(current: Option<&Generation>, wanted: &str) -> String {
    let taken = |id: &str| current.is_some_and(|g| g.models.iter().any(|m| m.id == id));
    let clean: String = wanted.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    (1..).map(|n| if n == 1 { clean.clone() } else { format!("{clean}-{n}") }).find(|id| !taken(id)).unwrap_or(clean)
}
