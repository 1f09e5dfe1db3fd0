//! Cache maintenance: verify (re-hash everything), gc (unreferenced blobs, old generations,
//! stale partials). Both hold the cache lock so they never race a provisioning run.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use super::cache::{hash_file, Cache};

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub generation: Option<u64>,
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    /// Blobs whose content does not hash to their name.
    pub corrupt: Vec<String>,
    /// `(model id, digest)` referenced by the current generation but absent or the wrong size.
    pub missing: Vec<(String, String)>,
    /// Corrupt blobs removed by `--repair`.
    pub removed: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

/// Re-hashes every blob and checks that the current generation's models are all present.
/// With `repair`, corrupt blobs that no generation references are deleted; referenced ones stay
/// until a replacement is fetched over them (see `cache verify --repair`).
pub fn verify(cache: &Cache, repair: bool) -> io::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for name in cache.blob_names()? {
        let path = cache.blob_path(&name);
        let (sha, size) = hash_file(&path)?;
        report.blobs_checked += 1;
        report.bytes_checked += size;
        if sha != name {
            log::error!("blob {name} is corrupt: its content hashes to {sha}");
            report.corrupt.push(name.clone());
        }
    }
    let current = cache.current()?;
    if repair {
        let referenced = |sha: &str| {
            current.iter().flat_map(|g| &g.models).any(|m| m.sha256 == sha || m.environment_sha256.as_deref() == Some(sha))
        };
        for name in report.corrupt.iter().filter(|n| !referenced(n)) {
            fs::remove_file(cache.blob_path(name))?;
            report.removed.push(name.clone());
        }
    }
    if let Some(gen) = current {
        report.generation = Some(gen.generation);
        for m in &gen.models {
            let ok = cache.has_blob(&m.sha256, m.size) && !report.corrupt.contains(&m.sha256);
            if !ok {
                report.missing.push((m.id.clone(), m.sha256.clone()));
            }
            if let Some(env) = &m.environment_sha256 {
                if !cache.blob_path(env).is_file() || report.corrupt.contains(env) {
                    report.missing.push((format!("{}.environment", m.id), env.clone()));
                }
            }
        }
    }
    Ok(report)
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub generations_removed: Vec<u64>,
    pub blobs_removed: usize,
    pub partials_removed: usize,
    /// Engine measurements (`inference.backend = "auto"`) of models no kept generation holds.
    pub engine_records_removed: usize,
    /// TensorRT engines of models no kept generation holds, and abandoned engine builds.
    pub tensorrt_engines_removed: usize,
    pub bytes_freed: u64,
}

/// Keeps the current generation and the one before it (the last known-good fallback); removes
/// older generation records, every blob neither references, and all partial downloads.
pub fn gc(cache: &Cache) -> io::Result<GcReport> {
    let mut report = GcReport::default();
    let numbers = cache.generation_numbers()?;
    let current = cache.current()?.map(|g| g.generation);
    let keep: Vec<u64> = match current {
        Some(cur) => {
            let previous = numbers.iter().copied().filter(|n| *n < cur).max();
            std::iter::once(cur).chain(previous).collect()
        }
        None => numbers.clone(),
    };
    let mut referenced = BTreeSet::new();
    for n in &keep {
        let gen = cache.generation(*n)?;
        for m in gen.models {
            referenced.insert(m.sha256);
            referenced.extend(m.environment_sha256);
        }
    }
    for n in numbers.into_iter().filter(|n| !keep.contains(n)) {
        cache.remove_generation(n)?;
        report.generations_removed.push(n);
    }
    for name in cache.blob_names()? {
        if !referenced.contains(&name) {
            let path = cache.blob_path(&name);
            report.bytes_freed += fs::metadata(&path).map_or(0, |m| m.len());
            fs::remove_file(&path)?;
            report.blobs_removed += 1;
        }
    }
    for (sha, path) in crate::backend::choice::recorded(cache.root())? {
        if !referenced.contains(&sha) {
            fs::remove_file(&path)?;
            report.engine_records_removed += 1;
        }
    }
    let referenced: std::collections::HashSet<String> = referenced.into_iter().collect();
    let engines = crate::backend::engine_cache::gc(cache.root(), &referenced)?;
    report.tensorrt_engines_removed = engines.engines;
    report.bytes_freed += engines.bytes;
    for path in cache.partial_files()? {
        report.bytes_freed += fs::metadata(&path).map_or(0, |m| m.len());
        fs::remove_file(&path)?;
        report.partials_removed += 1;
    }
    Ok(report)
}
