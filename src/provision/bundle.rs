//! `cache export` / `cache import`: a tar bundle of the current generation (manifest, signature,
//! record and blobs) to carry models to air-gapped units on a USB stick.
//!
//! ```text
//! generation.json          the exported generation's record (models, digests, trust)
//! manifest.toml            the manifest's exact bytes
//! manifest.toml.sig        its signature, when it had one
//! blobs/sha256/<hex>       every blob the generation references
//! ```
//!
//! Import streams each blob into the cache's partial area while hashing it, installs only blobs
//! whose content matches their name, checks the manifest like provisioning does (signature,
//! rollback), and only then switches to a new generation. It never touches the network.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use anyhow::{bail, Context};

use super::cache::{Cache, Generation};
use super::{commit_next, open_for_writing, sha256_hex, trusted_manifest, Options};
use crate::exit::{Exit, Failure};

const RECORD: &str = "generation.json";
const MANIFEST: &str = "manifest.toml";
const SIGNATURE: &str = "manifest.toml.sig";
const BLOBS: &str = "blobs/sha256/";

#[derive(Debug)]
pub struct Exported {
    pub generation: u64,
    pub blobs: usize,
    pub bytes: u64,
}

/// Writes the current generation to `bundle` (atomically: a temp file renamed into place).
pub fn export(cache: &Cache, bundle: &Path) -> anyhow::Result<Exported> {
    let gen = cache
        .current()?
        .ok_or_else(|| Failure::new(Exit::Provisioning, "the cache has no generation to export: run `outpost provision`"))?;
    let tmp = bundle.with_extension("partial");
    let mut tar = tar::Builder::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let mut add = |name: &str, bytes: &[u8]| append(&mut tar, name, bytes.len() as u64, &mut &bytes[..]);
    add(RECORD, &serde_json::to_vec_pretty(&gen)?)?;
    add(MANIFEST, &cache.manifest_bytes(gen.generation)?)?;
    if let Some(sig) = cache.signature_bytes(gen.generation)? {
        add(SIGNATURE, &sig)?;
    }
    let mut exported = Exported { generation: gen.generation, blobs: 0, bytes: 0 };
    for sha in referenced(&gen) {
        let path = cache.blob_path(&sha);
        let mut file = File::open(&path).with_context(|| format!("blob {sha} is missing from the cache"))?;
        let len = file.metadata()?.len();
        append(&mut tar, &format!("{BLOBS}{sha}"), len, &mut file)?;
        exported.blobs += 1;
        exported.bytes += len;
    }
    let file = tar.into_inner()?;
    file.sync_all()?;
    fs::rename(&tmp, bundle).with_context(|| format!("renaming into {}", bundle.display()))?;
    Ok(exported)
}

fn append(tar: &mut tar::Builder<File>, name: &str, len: u64, data: &mut dyn Read) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(len);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data).with_context(|| format!("writing {name} to the bundle"))
}

fn referenced(gen: &Generation) -> Vec<String> {
    let mut shas: Vec<String> = gen
        .models
        .iter()
        .flat_map(|m| std::iter::once(m.sha256.clone()).chain(m.environment_sha256.clone()))
        .collect();
    shas.sort();
    shas.dedup();
    shas
}

#[derive(Debug)]
pub struct Imported {
    pub generation: u64,
    pub blobs: usize,
    pub already_present: usize,
}

/// Imports `bundle` into the cache of `opts` (its manifest path is not used).
pub fn import(opts: &Options, bundle: &Path) -> anyhow::Result<Imported> {
    let (cache, _lock) = open_for_writing(opts)?;
    let file = File::open(bundle).map_err(|e| Failure::new(Exit::Config, format!("cannot read bundle {}: {e}", bundle.display())))?;
    let mut record = None;
    let mut manifest_bytes = None;
    let mut signature = None;
    let mut imported = Imported { generation: 0, blobs: 0, already_present: 0 };
    let mut signature_checked = false;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().with_context(|| format!("reading bundle {}", bundle.display()))? {
        let mut entry = entry.with_context(|| format!("reading bundle {}", bundle.display()))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        match name.as_str() {
            RECORD => record = Some(read_small(&mut entry, &name)?),
            MANIFEST => manifest_bytes = Some(read_small(&mut entry, &name)?),
            SIGNATURE => signature = Some(read_small(&mut entry, &name)?),
            _ => match name.strip_prefix(BLOBS).filter(|sha| is_digest(sha)) {
                Some(sha) => {
                    // Signed manifests are checked before the first blob touches the flash, so a
                    // refused bundle leaves nothing behind (export writes them first).
                    if !opts.trusted_keys.is_empty() && !signature_checked {
                        let bytes = manifest_bytes.as_deref().ok_or_else(|| {
                            Failure::new(Exit::Config, format!("bundle {}: blobs come before {MANIFEST}; refusing it", bundle.display()))
                        })?;
                        trusted_manifest(&bundle.join(MANIFEST), bytes, signature.as_deref(), &opts.trusted_keys)?;
                        signature_checked = true;
                    }
                    if import_blob(&cache, sha, &mut entry)? {
                        imported.blobs += 1;
                    } else {
                        imported.already_present += 1;
                    }
                }
                None => bail!("bundle {}: unexpected entry `{name}`; refusing it", bundle.display()),
            },
        }
    }
    let missing = |what: &str| Failure::new(Exit::Config, format!("bundle {} has no {what}", bundle.display()));
    let record: Generation = serde_json::from_slice(&record.ok_or_else(|| missing(RECORD))?)
        .with_context(|| format!("bundle {}: {RECORD}", bundle.display()))?;
    let manifest_bytes = manifest_bytes.ok_or_else(|| missing(MANIFEST))?;
    let label = bundle.join(MANIFEST);
    let manifest = trusted_manifest(&label, &manifest_bytes, signature.as_deref(), &opts.trusted_keys)?;
    let manifest_sha = sha256_hex(&manifest_bytes);
    super::rollback::check(&cache, &manifest, &manifest_sha, cache.current()?.as_ref(), &label, opts.allow_downgrade)?;
    if record.manifest_sha256 != manifest_sha {
        bail!("bundle {}: {RECORD} was not made from the bundled manifest", bundle.display());
    }
    check_record(&manifest, &record).map_err(|why| Failure::new(Exit::Config, format!("bundle {}: {why}; refusing it", bundle.display())))?;
    imported.generation = commit_next(&cache, &manifest, manifest_sha, record.models, &manifest_bytes, signature.as_deref(), None)
        .map_err(|e| Failure::new(Exit::Provisioning, format!("bundle {}: {e:#}", bundle.display())))?;
    Ok(imported)
}

/// The bundle's record may only repeat what the (signed) manifest says: the same models, and for
/// each the pinned digest and size, family, classes and input. Anything else in it could have
/// been edited after signing. (A Roboflow model's family and classes from the API are not in the
/// manifest and are kept as recorded.)
fn check_record(manifest: &super::manifest::Manifest, record: &Generation) -> Result<(), String> {
    if let Some(extra) = record.models.iter().find(|r| !manifest.models.iter().any(|m| m.id == r.id)) {
        return Err(format!("{RECORD} lists model `{}`, which the manifest does not", extra.id));
    }
    for model in &manifest.models {
        let rec = record
            .models
            .iter()
            .find(|r| r.id == model.id)
            .ok_or_else(|| format!("model `{}` of the manifest is not in {RECORD}", model.id))?;
        let from_api = matches!(model.source, super::manifest::Source::Roboflow(_));
        let differs = |field: &str| format!("{RECORD} differs from the manifest in model `{}`'s {field}", model.id);
        if model.sha256.as_ref().is_some_and(|pinned| *pinned != rec.sha256) {
            return Err(differs("sha256"));
        }
        if model.size.is_some_and(|size| size != rec.size) {
            return Err(differs("size"));
        }
        if rec.input != model.input {
            return Err(differs("input"));
        }
        if (model.family.is_some() || !from_api) && rec.family != model.family {
            return Err(differs("family"));
        }
        if (model.classes.is_some() || !from_api) && rec.classes != model.classes {
            return Err(differs("classes"));
        }
        if let Some((sha, _)) = &model.environment_pin {
            if rec.environment_sha256.as_ref() != Some(sha) {
                return Err(differs("environment_sha256"));
            }
        }
    }
    Ok(())
}

/// Streams one blob into the partial area, hashing it; installs it only if it matches its name.
/// Returns false when the cache already had it.
fn import_blob(cache: &Cache, sha: &str, data: &mut dyn Read) -> anyhow::Result<bool> {
    if cache.blob_path(sha).is_file() {
        io::copy(data, &mut io::sink())?;
        return Ok(false);
    }
    let part = cache.partial_path(&format!("import-{sha}"));
    let mut out = File::create(&part)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    super::cache::copy_hashing(data, &mut out, &mut ctx)?;
    drop(out);
    let actual = super::cache::hex(ctx.finish().as_ref());
    if actual != sha {
        let _ = fs::remove_file(&part);
        return Err(Failure::new(
            Exit::Provisioning,
            format!("bundle blob {sha} is corrupt (its content hashes to {actual}); nothing was activated"),
        )
        .into());
    }
    cache.install_blob(&part, sha)?;
    Ok(true)
}

fn read_small(entry: &mut dyn Read, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(16 << 20).read_to_end(&mut bytes).with_context(|| format!("reading {name}"))?;
    Ok(bytes)
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
