//! The model cache on flash: where bytes hit the disk, and the only code that moves them.
//!
//! ```text
//! <dir>/blobs/sha256/<hex>        immutable, content-addressed, only ever renamed in after its hash matched
//! <dir>/partial/<hex>.part        a download in progress (resumable); never referenced by a generation
//! <dir>/partial/<hex>.json        the server's validator (ETag / Last-Modified) for If-Range
//! <dir>/generations/<n>.json      a complete, verified set of models (what `run` loads)
//! <dir>/generations/<n>.manifest  the exact manifest bytes of generation n (+ .sig when signed)
//! <dir>/current                   "n": switched atomically after every blob of n is verified
//! <dir>/floor.json                the highest manifest version ever verified here (and its digest):
//!                                 the rollback floor, raised before `current` moves, never lowered
//! <dir>/.lock                     single writer (flock)
//! ```
//!
//! Every write that matters is: write temp, fsync, rename, fsync directory. A power cut at any
//! point leaves either the old or the new state, never a half-written file that is trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How a model's digest is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// The manifest gave the sha256.
    Pinned,
    /// Recorded at first download (Roboflow sources have no digest to pin).
    TrustOnFirstUse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: String,
    pub sha256: String,
    pub size: u64,
    /// The source as shown to people (secrets redacted).
    pub source: String,
    pub trust: Trust,
    pub family: Option<String>,
    pub classes: Option<Vec<String>>,
    pub input: Option<[u32; 2]>,
    pub environment_sha256: Option<String>,
    /// Where the environment came from (shown form), so a manifest that changes it fetches it
    /// again instead of reusing the old file. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub generation: u64,
    pub manifest_version: u64,
    pub manifest_sha256: String,
    pub created_unix: u64,
    pub models: Vec<ModelRecord>,
    /// Where the manifest was read from when this generation was provisioned: relative `file:`
    /// sources of the stored copy resolve against its folder (`cache verify --repair`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<std::path::PathBuf>,
}

/// The rollback floor: the highest manifest version this cache has ever verified, kept apart from
/// the generations so that removing or rolling back a generation locally cannot lower it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    pub version: u64,
    /// The manifest bytes' sha256 at that version: the same version with other bytes is refused.
    pub manifest_sha256: String,
}

/// See [`Cache::resolve_current`].
#[derive(Debug, Clone)]
pub struct ResolvedCurrent {
    pub generation: Option<Generation>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    fn generations_dir(&self) -> PathBuf {
        self.root.join("generations")
    }

    pub fn create_dirs(&self) -> io::Result<()> {
        for dir in [self.blobs_dir(), self.partial_dir(), self.generations_dir()] {
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs_dir().join(sha256)
    }

    pub fn partial_path(&self, sha256: &str) -> PathBuf {
        self.partial_dir().join(format!("{sha256}.part"))
    }

    pub fn partial_meta_path(&self, sha256: &str) -> PathBuf {
        self.partial_dir().join(format!("{sha256}.json"))
    }

    /// A blob is usable at boot when it exists with the recorded size (`cache verify` re-hashes).
    pub fn has_blob(&self, sha256: &str, size: u64) -> bool {
        fs::metadata(self.blob_path(sha256)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Moves a fully verified file into the blob store. The caller has checked its hash.
    pub fn install_blob(&self, verified: &Path, sha256: &str) -> io::Result<PathBuf> {
        File::open(verified)?.sync_all()?;
        let dest = self.blob_path(sha256);
        fs::rename(verified, &dest)?;
        sync_dir(&self.blobs_dir())?;
        Ok(dest)
    }

    /// The generation to run: the one `current` points to, or, when `current` is missing, empty,
    /// unparsable or names a generation whose record is gone, the newest complete generation
    /// (logged as a warning). `None` when the cache holds no usable generation.
    pub fn current(&self) -> io::Result<Option<Generation>> {
        let resolved = self.resolve_current()?;
        if let Some(problem) = &resolved.problem {
            // Said once per process: `run` asks several times on its way to the model.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!("{problem}");
            }
        }
        Ok(resolved.generation)
    }

    /// What `current` resolves to, and what was wrong with it (for `doctor` and repairs).
    pub fn resolve_current(&self) -> io::Result<ResolvedCurrent> {
        let path = self.root.join("current");
        let problem = match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) => match self.generation(n) {
                    Ok(gen) => return Ok(ResolvedCurrent { generation: Some(gen), problem: None }),
                    Err(e) => format!("{} names generation {n}, whose record is unusable ({e})", path.display()),
                },
                Err(_) => format!("{} does not hold a generation number ({:?})", path.display(), text.trim()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.generation_numbers()?.is_empty() {
                    return Ok(ResolvedCurrent { generation: None, problem: None });
                }
                format!("{} is missing although generation records exist", path.display())
            }
            Err(e) => return Err(with_path(e, &path)),
        };
        for n in self.generation_numbers()?.into_iter().rev() {
            if let Ok(gen) = self.generation(n) {
                if self.is_complete(&gen) {
                    let problem = Some(format!("{problem}; using generation {n}, the newest complete one"));
                    return Ok(ResolvedCurrent { generation: Some(gen), problem });
                }
            }
        }
        Ok(ResolvedCurrent { generation: None, problem: Some(format!("{problem}; no complete generation is left")) })
    }

    /// Whether every blob `gen` names is present with its recorded size.
    pub fn is_complete(&self, gen: &Generation) -> bool {
        gen.models.iter().all(|m| {
            self.has_blob(&m.sha256, m.size) && m.environment_sha256.as_ref().is_none_or(|env| self.blob_path(env).is_file())
        })
    }

    /// Points `current` at generation `n` again (after [`Cache::resolve_current`] found it broken).
    pub fn repair_current(&self, n: u64) -> io::Result<()> {
        write_atomic(&self.root, "current", format!("{n}\n").as_bytes()).map_err(|e| with_path(e, &self.root.join("current")))
    }

    pub fn generation(&self, n: u64) -> io::Result<Generation> {
        let path = self.generations_dir().join(format!("{n}.json"));
        let bytes = fs::read(&path).map_err(|e| with_path(e, &path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| invalid_data(&format!("{}: {e}", path.display())))
    }

    /// Numbers of all generation records on disk, ascending.
    pub fn generation_numbers(&self) -> io::Result<Vec<u64>> {
        let mut numbers = Vec::new();
        for entry in read_dir_if_exists(&self.generations_dir())? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".json").and_then(|s| s.parse().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    pub fn manifest_bytes(&self, n: u64) -> io::Result<Vec<u8>> {
        let path = self.generations_dir().join(format!("{n}.manifest"));
        fs::read(&path).map_err(|e| with_path(e, &path))
    }

    pub fn signature_bytes(&self, n: u64) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.generations_dir().join(format!("{n}.manifest.sig"))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records a generation (and its manifest) and then makes it current. Every blob it names
    /// must already be in place; this is checked, not assumed.
    pub fn commit(&self, gen: &Generation, manifest: &[u8], signature: Option<&[u8]>) -> io::Result<()> {
        for m in &gen.models {
            let env = m.environment_sha256.iter().map(|s| (s.as_str(), None));
            for (sha, size) in std::iter::once((m.sha256.as_str(), Some(m.size))).chain(env) {
                let present = match size {
                    Some(size) => self.has_blob(sha, size),
                    None => self.blob_path(sha).is_file(),
                };
                if !present {
                    return Err(invalid_data(&format!("model {}: blob {sha} is not in the cache", m.id)));
                }
            }
        }
        let dir = self.generations_dir();
        let n = gen.generation;
        write_atomic(&dir, &format!("{n}.manifest"), manifest)?;
        if let Some(sig) = signature {
            write_atomic(&dir, &format!("{n}.manifest.sig"), sig)?;
        }
        let json = serde_json::to_vec_pretty(gen).map_err(|e| invalid_data(&e.to_string()))?;
        write_atomic(&dir, &format!("{n}.json"), &json)?;
        // Floor first: a power cut between the two leaves the old generation current under a
        // floor that the new manifest (already recorded) still satisfies.
        self.raise_floor(gen)?;
        write_atomic(&self.root, "current", format!("{n}\n").as_bytes())
    }

    /// The rollback floor: `floor.json`, or for caches made before it existed (or a damaged one)
    /// the highest manifest version among the generation records on disk.
    pub fn floor(&self) -> io::Result<Option<Floor>> {
        let recorded = match fs::read(self.root.join("floor.json")) {
            Ok(bytes) => serde_json::from_slice::<Floor>(&bytes).ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(with_path(e, &self.root.join("floor.json"))),
        };
        let mut derived: Option<Floor> = None;
        for n in self.generation_numbers()? {
            if let Ok(gen) = self.generation(n) {
                if derived.as_ref().is_none_or(|f| gen.manifest_version >= f.version) {
                    derived = Some(Floor { version: gen.manifest_version, manifest_sha256: gen.manifest_sha256 });
                }
            }
        }
        Ok(match (recorded, derived) {
            (Some(r), Some(d)) if d.version > r.version => Some(d),
            (Some(r), _) => Some(r),
            (None, d) => d,
        })
    }

    /// Raises the floor to `gen`'s manifest (never lowers it; an equal version takes the new bytes,
    /// which only an explicit `--allow-downgrade` lets through).
    fn raise_floor(&self, gen: &Generation) -> io::Result<()> {
        if self.floor()?.is_some_and(|f| f.version > gen.manifest_version) {
            return Ok(());
        }
        let floor = Floor { version: gen.manifest_version, manifest_sha256: gen.manifest_sha256.clone() };
        let json = serde_json::to_vec_pretty(&floor).map_err(|e| invalid_data(&e.to_string()))?;
        write_atomic(&self.root, "floor.json", &json)
    }

    /// Takes the single-writer lock, waiting up to `wait` for another writer to finish.
    pub fn lock(&self, wait: Duration) -> io::Result<CacheLock> {
        fs::create_dir_all(&self.root)?;
        let path = self.root.join(".lock");
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        let deadline = Instant::now() + wait;
        let mut told = false;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            format!(
                                "the cache {} is locked by another outpost process (pid {}); waited {}s",
                                self.root.display(),
                                holder.trim(),
                                wait.as_secs()
                            ),
                        ));
                    }
                    if !told {
                        log::info!("cache is locked by pid {}; waiting up to {}s", holder.trim(), wait.as_secs());
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        Ok(CacheLock { _file: file })
    }

    /// Blob digests present in the store.
    pub fn blob_names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = read_dir_if_exists(&self.blobs_dir())?
            .into_iter()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn partial_files(&self) -> io::Result<Vec<PathBuf>> {
        Ok(read_dir_if_exists(&self.partial_dir())?.into_iter().map(|e| e.path()).collect())
    }

    /// Removes a generation's record and manifest (not its blobs; see gc).
    pub fn remove_generation(&self, n: u64) -> io::Result<()> {
        for suffix in ["json", "manifest", "manifest.sig"] {
            remove_if_exists(&self.generations_dir().join(format!("{n}.{suffix}")))?;
        }
        sync_dir(&self.generations_dir())
    }
}

/// Held while provisioning or maintaining the cache; released on drop (or process death).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let total = copy_hashing(&mut File::open(path)?, &mut io::sink(), &mut ctx)?;
    Ok((hex(ctx.finish().as_ref()), total))
}

/// Copies `from` into `to` while feeding every byte to `ctx`; returns the byte count. The one
/// loop behind hashing a file, a resumed prefix, a sideloaded file and a bundle blob.
pub fn copy_hashing(from: &mut dyn Read, to: &mut dyn Write, ctx: &mut ring::digest::Context) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        ctx.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write temp, fsync, rename over `name`, fsync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_dir_if_exists(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The same error, with the path in its message (io::Error alone never names one).
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid_data(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sha: &str, size: u64) -> ModelRecord {
        ModelRecord {
            id: "m".into(),
            sha256: sha.into(),
            size,
            source: "https://h/m".into(),
            trust: Trust::Pinned,
            family: None,
            classes: None,
            input: None,
            environment_sha256: None,
            environment_source: None,
        }
    }

    #[test]
    fn commit_refuses_a_generation_whose_blob_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache.create_dirs().unwrap();
        let gen = Generation {
            generation: 1,
            manifest_version: 1,
            manifest_sha256: "x".into(),
            created_unix: 0,
            models: vec![record(&"a".repeat(64), 3)],
            manifest_path: None,
        };
        assert!(cache.commit(&gen, b"m", None).is_err());
        assert!(cache.current().unwrap().is_none(), "current must not move");
    }

    #[test]
    fn install_then_commit_makes_generation_current() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache.create_dirs().unwrap();
        let part = cache.partial_path("p");
        fs::write(&part, b"abc").unwrap();
        let (sha, size) = hash_file(&part).unwrap();
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        cache.install_blob(&part, &sha).unwrap();
        assert!(cache.has_blob(&sha, size) && !cache.has_blob(&sha, size + 1));
        let gen = Generation {
            generation: 7,
            manifest_version: 3,
            manifest_sha256: "x".into(),
            created_unix: 0,
            models: vec![record(&sha, size)],
            manifest_path: None,
        };
        cache.commit(&gen, b"version = 3", None).unwrap();
        assert_eq!(cache.current().unwrap(), Some(gen));
        assert_eq!(cache.manifest_bytes(7).unwrap(), b"version = 3");
        assert_eq!(cache.generation_numbers().unwrap(), vec![7]);
    }

    #[test]
    fn second_lock_times_out_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let _held = cache.lock(Duration::ZERO).unwrap();
        // flock locks belong to the open file description, so a second open conflicts.
        let err = cache.lock(Duration::from_millis(200)).unwrap_err().to_string();
        assert!(err.contains("locked") && err.contains(&std::process::id().to_string()), "{err}");
    }
}
