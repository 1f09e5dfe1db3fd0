//! Rollback protection: a manifest older than the highest version this cache has ever verified
//! (its floor, see [`Cache::floor`]), or the same version with other bytes, is not installed.

use std::fmt;
use std::path::Path;

use super::cache::{Cache, Generation};
use super::manifest::Manifest;

/// The manifest is older than (or conflicts with) what the cache has verified. `provision` and
/// `cache import` exit 3 on it; the boot path (`run`) keeps running the installed generation.
#[derive(Debug)]
pub struct Superseded {
    /// What is wrong with the manifest, without the advice for `provision`.
    pub problem: String,
}

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; pass --allow-downgrade to install it anyway", self.problem)
    }
}

impl std::error::Error for Superseded {}

/// Whether `manifest` (whose bytes hash to `manifest_sha256`) may become the next generation.
/// The manifest the current generation was made from is always accepted: reinstalling it moves
/// nothing back.
pub fn check(
    cache: &Cache,
    manifest: &Manifest,
    manifest_sha256: &str,
    current: Option<&Generation>,
    path: &Path,
    allow_downgrade: bool,
) -> anyhow::Result<()> {
    if current.is_some_and(|g| g.manifest_sha256 == manifest_sha256) {
        return Ok(());
    }
    let Some(floor) = cache.floor()? else {
        return Ok(());
    };
    let installed = match current {
        Some(g) => format!("generation {} with version {} is current", g.generation, g.manifest_version),
        None => "no generation is current".to_string(),
    };
    let problem = if manifest.version < floor.version {
        format!(
            "manifest {} has version {}, lower than the installed version {} (the highest this cache has \
             verified; {installed}): refusing a rollback",
            path.display(),
            manifest.version,
            floor.version
        )
    } else if manifest.version == floor.version && manifest_sha256 != floor.manifest_sha256 {
        format!(
            "manifest {} has version {}, the version already installed, but different contents: refusing it \
             (give every change of a manifest a higher version)",
            path.display(),
            manifest.version
        )
    } else {
        return Ok(());
    };
    if !allow_downgrade {
        return Err(Superseded { problem }.into());
    }
    log::warn!("{problem}; allowed by --allow-downgrade");
    Ok(())
}
