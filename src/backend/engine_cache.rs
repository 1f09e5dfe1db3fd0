//! TensorRT engines in the outpost cache, beside the blobs they were built from.
//!
//! An engine is only valid for the TensorRT release, the GPU (name and compute capability), the
//! precision and the input shape it was built for, and for the model's bytes. All of these are
//! the key: `engines/tensorrt/<model sha256>-<key digest>/` holds what ONNX Runtime's TensorRT
//! provider wrote (engine, profile, timing cache) and `key.json`. A JetPack upgrade or another GPU
//! misses the key and builds anew; the superseded engines of that model are removed once the new
//! one is complete. A build happens in `.building-<name>-<pid>/` and is renamed into place only
//! after every file in it is synced: a power cut leaves the old engine or none, never half a one.
//! An fp16 engine also keeps the accuracy gate's verdict ([`HalfVerdict`]).
//! Compiled into every build, so that the static binary's `cache ls`/`gc` handle a shared cache.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything an engine depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineKey {
    pub model_sha256: String,
    /// TensorRT's version, e.g. `10.3.0`.
    pub tensorrt: String,
    pub gpu: String,
    /// e.g. `8.7` (Orin).
    pub compute_capability: String,
    /// `fp32` or `fp16`.
    pub precision: String,
    /// `[width, height]` of the `[1, 3, height, width]` input.
    pub input: [u32; 2],
}

impl EngineKey {
    /// The directory's name: the model's digest (for `gc`) and a digest of everything else.
    pub fn dir_name(&self) -> String {
        let rest = format!(
            "tensorrt={}\ngpu={}\ncc={}\nprecision={}\ninput={}x{}\n",
            self.tensorrt,
            self.gpu,
            self.compute_capability,
            self.precision,
            self.input[0],
            self.input[1]
        );
        let digest = crate::provision::sha256_hex(rest.as_bytes());
        format!("{}-{}", self.model_sha256, &digest[..16])
    }

    /// Same model, shape and precision: an engine for another TensorRT or GPU that this one replaces.
    fn supersedes(&self, other: &EngineKey) -> bool {
        self != other
            && self.model_sha256 == other.model_sha256
            && self.input == other.input
            && self.precision == other.precision
    }
}

/// What the accuracy gate found for an fp16 engine (`models::half_gate`), kept in the engine's
/// directory as `fp16-gate.json`. A refused engine's files are removed; the verdict stays, so the
/// next boot runs f32 without building and checking fp16 again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HalfVerdict {
    pub accepted: bool,
    /// What was compared and found, in a sentence.
    pub reason: String,
    /// The calibration image's sha256: a verdict on another picture is checked again at provision.
    pub calibration_sha256: String,
}

const KEY_FILE: &str = "key.json";
const VERDICT_FILE: &str = "fp16-gate.json";

/// The gate's verdict kept in an engine directory, if it has one.
pub fn verdict(dir: &Path) -> Option<HalfVerdict> {
    serde_json::from_slice(&fs::read(dir.join(VERDICT_FILE)).ok()?).ok()
}

/// Keeps `verdict` in `dir` (written atomically); a refused engine's files go, the key stays.
pub fn record_verdict(dir: &Path, verdict: &HalfVerdict) -> io::Result<()> {
    if !verdict.accepted {
        for path in entries(dir)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name != KEY_FILE && name != VERDICT_FILE {
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(verdict).map_err(io::Error::other)?;
    crate::provision::cache::write_atomic(dir, VERDICT_FILE, &bytes)
}
const BUILDING: &str = ".building-";

pub fn root(cache_root: &Path) -> PathBuf {
    cache_root.join("engines").join("tensorrt")
}

/// The complete engine directory for `key`, if one was built.
pub fn find(cache_root: &Path, key: &EngineKey) -> Option<PathBuf> {
    let dir = root(cache_root).join(key.dir_name());
    (read_key(&dir).as_ref() == Some(key)).then_some(dir)
}

fn read_key(dir: &Path) -> Option<EngineKey> {
    serde_json::from_slice(&fs::read(dir.join(KEY_FILE)).ok()?).ok()
}

/// An engine being built: ONNX Runtime writes into [`Building::dir`], [`Building::finish`] puts it in place.
#[derive(Debug)]
pub struct Building {
    dir: PathBuf,
    key: EngineKey,
    cache_root: PathBuf,
}

/// Starts a build for `key` in a fresh staging directory (a leftover of this process is removed).
pub fn start(cache_root: &Path, key: &EngineKey) -> io::Result<Building> {
    let parent = root(cache_root);
    fs::create_dir_all(&parent)?;
    let dir = parent.join(format!(
        "{BUILDING}{}-{}",
        key.dir_name(),
        std::process::id()
    ));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir(&dir)?;
    Ok(Building {
        dir,
        key: key.clone(),
        cache_root: cache_root.to_path_buf(),
    })
}

impl Building {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Drops what was built (a build that failed or was refused before it was finished).
    pub fn abandon(self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            log::warn!("cannot remove {}: {e} (`outpost cache gc` will)", self.dir.display());
        }
    }

    /// Syncs what was built, adds `key.json`, renames the directory into place and removes the
    /// engines this one supersedes. Returns the final directory.
    pub fn finish(self) -> io::Result<PathBuf> {
        let bytes = serde_json::to_vec_pretty(&self.key).map_err(io::Error::other)?;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_file() {
                fs::File::open(&path)?.sync_all()?;
            }
        }
        crate::provision::cache::write_atomic(&self.dir, KEY_FILE, &bytes)?;
        let parent = root(&self.cache_root);
        let target = parent.join(self.key.dir_name());
        if target.exists() {
            fs::remove_dir_all(&target)?;
        }
        fs::rename(&self.dir, &target)?;
        fs::File::open(&parent)?.sync_all()?;
        for engine in list(&self.cache_root)? {
            if engine
                .key
                .as_ref()
                .is_some_and(|old| self.key.supersedes(old))
            {
                log::info!(
                    "removing the superseded TensorRT engine {}",
                    engine.path.display()
                );
                fs::remove_dir_all(&engine.path)?;
            }
        }
        Ok(target)
    }
}

/// An engine directory in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    pub path: PathBuf,
    /// `None` for a directory without a readable `key.json` (never used; removed by `gc`).
    pub key: Option<EngineKey>,
    /// An fp16 engine's accuracy verdict.
    pub verdict: Option<HalfVerdict>,
    pub bytes: u64,
}

/// The complete engines in the cache (staging directories are not listed).
pub fn list(cache_root: &Path) -> io::Result<Vec<Engine>> {
    let mut engines = Vec::new();
    for path in entries(&root(cache_root))? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(BUILDING) || !path.is_dir() {
            continue;
        }
        let key = read_key(&path).filter(|key| key.dir_name() == name);
        engines.push(Engine {
            bytes: dir_bytes(&path),
            key,
            verdict: verdict(&path),
            path,
        });
    }
    engines.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(engines)
}

/// What [`gc`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub engines: usize,
    pub bytes: u64,
}

/// Removes the engines of models no generation references, directories without a valid key, and
/// the staging directories of builds whose process is gone (a cut or a crash).
pub fn gc(cache_root: &Path, referenced: &HashSet<String>) -> io::Result<Removed> {
    let mut removed = Removed::default();
    for path in entries(&root(cache_root))? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let stale = match name.strip_prefix(BUILDING) {
            Some(rest) => !rest
                .rsplit_once('-')
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
                .is_some_and(process_alive),
            None => match read_key(&path).filter(|key| key.dir_name() == name) {
                Some(key) => !referenced.contains(&key.model_sha256),
                None => true,
            },
        };
        if stale {
            removed.bytes += dir_bytes(&path);
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            removed.engines += 1;
        }
    }
    Ok(removed)
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EngineKey {
        EngineKey {
            model_sha256: "ab".repeat(32),
            tensorrt: "10.3.0".into(),
            gpu: "Orin".into(),
            compute_capability: "8.7".into(),
            precision: "fp32".into(),
            input: [640, 640],
        }
    }

    fn build(cache: &Path, key: &EngineKey, bytes: &[u8]) -> PathBuf {
        let building = start(cache, key).unwrap();
        fs::write(building.dir().join("model.engine"), bytes).unwrap();
        assert!(
            find(cache, key).is_none(),
            "a build in progress is not an engine"
        );
        building.finish().unwrap()
    }

    #[test]
    fn every_part_of_the_key_names_another_engine() {
        let base = key();
        let mut names = HashSet::from([base.dir_name()]);
        let variants = [
            EngineKey {
                tensorrt: "10.4.0".into(),
                ..base.clone()
            },
            EngineKey {
                gpu: "NVIDIA H200".into(),
                ..base.clone()
            },
            EngineKey {
                compute_capability: "9.0".into(),
                ..base.clone()
            },
            EngineKey {
                precision: "fp16".into(),
                ..base.clone()
            },
            EngineKey {
                input: [512, 640],
                ..base.clone()
            },
            EngineKey {
                model_sha256: "cd".repeat(32),
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert!(
                names.insert(variant.dir_name()),
                "{variant:?} shares a name"
            );
        }
        assert!(base.dir_name().starts_with(&base.model_sha256));
        assert_eq!(base.dir_name(), key().dir_name(), "the name is stable");
    }

    #[test]
    fn a_finished_build_is_found_and_a_new_tensorrt_replaces_it() {
        let cache = tempfile::tempdir().unwrap();
        let old = key();
        let dir = build(cache.path(), &old, b"engine for 10.3");
        assert_eq!(find(cache.path(), &old), Some(dir.clone()));
        assert_eq!(
            fs::read(dir.join("model.engine")).unwrap(),
            b"engine for 10.3"
        );
        // Another shape of the same model is another engine, kept beside it.
        let other_shape = EngineKey {
            input: [320, 320],
            ..old.clone()
        };
        build(cache.path(), &other_shape, b"320");
        // A JetPack upgrade: the old key misses, the new build replaces the old engine.
        let upgraded = EngineKey {
            tensorrt: "10.7.0".into(),
            ..old.clone()
        };
        assert!(find(cache.path(), &upgraded).is_none());
        build(cache.path(), &upgraded, b"engine for 10.7");
        assert!(
            find(cache.path(), &old).is_none(),
            "the superseded engine is gone"
        );
        let keys: Vec<_> = list(cache.path())
            .unwrap()
            .into_iter()
            .map(|e| e.key.unwrap())
            .collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&upgraded) && keys.contains(&other_shape));
    }

    #[test]
    fn a_key_file_that_does_not_match_its_directory_is_not_trusted() {
        let cache = tempfile::tempdir().unwrap();
        let k = key();
        let dir = build(cache.path(), &k, b"x");
        let other = EngineKey {
            gpu: "another".into(),
            ..k.clone()
        };
        fs::write(dir.join(KEY_FILE), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(find(cache.path(), &k).is_none());
        assert!(find(cache.path(), &other).is_none());
        assert_eq!(list(cache.path()).unwrap()[0].key, None);
    }

    #[test]
    fn a_refused_fp16_engine_keeps_its_verdict_and_loses_its_files() {
        let cache = tempfile::tempdir().unwrap();
        let half = EngineKey {
            precision: "fp16".into(),
            ..key()
        };
        let building = start(cache.path(), &half).unwrap();
        fs::write(building.dir().join("model.engine"), b"fp16 engine").unwrap();
        let accepted = HalfVerdict {
            accepted: true,
            reason: "3 of f32's 3 boxes matched".into(),
            calibration_sha256: "12".repeat(32),
        };
        record_verdict(building.dir(), &accepted).unwrap();
        let dir = building.finish().unwrap();
        assert_eq!(verdict(&dir), Some(accepted.clone()));
        assert!(dir.join("model.engine").exists());
        let refused = HalfVerdict {
            accepted: false,
            reason: "f32's `person` has no fp16 box".into(),
            ..accepted
        };
        record_verdict(&dir, &refused).unwrap();
        assert!(!dir.join("model.engine").exists(), "a refused engine is not kept");
        assert_eq!(find(cache.path(), &half), Some(dir.clone()), "its key still answers");
        let listed = &list(cache.path()).unwrap()[0];
        assert_eq!(listed.verdict, Some(refused));
        // A JetPack upgrade supersedes the verdict with the engine: the new TensorRT is checked anew.
        let upgraded = EngineKey {
            tensorrt: "10.7.0".into(),
            ..half
        };
        build(cache.path(), &upgraded, b"new fp16 engine");
        assert!(!dir.exists());
        assert_eq!(verdict(&find(cache.path(), &upgraded).unwrap()), None);
    }

    #[test]
    fn gc_removes_unreferenced_models_broken_and_abandoned_builds() {
        let cache = tempfile::tempdir().unwrap();
        let kept = key();
        let dropped = EngineKey {
            model_sha256: "cd".repeat(32),
            ..key()
        };
        build(cache.path(), &kept, b"kept");
        build(cache.path(), &dropped, b"dropped");
        // A build cut by power loss (its process is gone) and one still running (this process).
        let cut = root(cache.path()).join(format!("{BUILDING}{}-999999999", kept.dir_name()));
        fs::create_dir_all(&cut).unwrap();
        fs::write(cut.join("half.engine"), b"half").unwrap();
        let running = start(
            cache.path(),
            &EngineKey {
                input: [1, 1],
                ..kept.clone()
            },
        )
        .unwrap();
        fs::create_dir_all(root(cache.path()).join("no-key")).unwrap();
        let removed = gc(cache.path(), &HashSet::from([kept.model_sha256.clone()])).unwrap();
        assert_eq!(removed.engines, 3, "{removed:?}");
        assert!(
            removed.bytes > (b"dropped".len() + b"half".len()) as u64,
            "{removed:?}"
        );
        assert!(find(cache.path(), &kept).is_some());
        assert!(running.dir().exists(), "a live build is left alone");
        assert!(!cut.exists());
    }
}
