//! Board profiles: the `boards/*.toml` files embedded at build time, overridable by files on disk.
//!
//! A profile describes a kind of board (match rules for autodetection, cache location, camera,
//! threads, backend, memory) and may `inherit` another. Match rules and the description are the
//! profile's own; every other key is inherited unless the profile sets it.

pub mod detect;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::layer::{Layer, Source, Value};
use crate::config::ConfigError;

/// The profiles compiled into the binary. A test checks this matches the `boards/` folder.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("generic-aarch64", include_str!("../../boards/generic-aarch64.toml")),
    ("jetson-agx-orin", include_str!("../../boards/jetson-agx-orin.toml")),
    ("jetson-nano", include_str!("../../boards/jetson-nano.toml")),
    ("jetson-orin-nano", include_str!("../../boards/jetson-orin-nano.toml")),
    ("jetson-orin-nx", include_str!("../../boards/jetson-orin-nx.toml")),
    ("jetson-xavier-nx", include_str!("../../boards/jetson-xavier-nx.toml")),
    ("raspberry-pi-4", include_str!("../../boards/raspberry-pi-4.toml")),
    ("raspberry-pi-5", include_str!("../../boards/raspberry-pi-5.toml")),
    ("x86_64-dev", include_str!("../../boards/x86_64-dev.toml")),
];

/// Where on-disk profiles are looked for when neither `--boards-dir` nor `OUTPOST_BOARDS_DIR` is set.
pub const DEFAULT_BOARDS_DIR: &str = "/etc/outpost/boards";

/// Autodetection rules: device-tree `compatible` patterns (`*` matches any run of characters),
/// substrings of the device-tree `model`, and CPU architectures (the last resort).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    #[serde(default)]
    pub compatible: Vec<String>,
    #[serde(default)]
    pub model: Vec<String>,
    #[serde(default)]
    pub arch: Vec<String>,
}

/// The parts of a profile that are not configuration keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileHeader {
    description: String,
    inherit: Option<String>,
    #[serde(rename = "match", default)]
    rules: MatchRules,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// `embedded boards/NAME.toml` or the path of the file on disk.
    pub origin: String,
    pub description: String,
    pub inherit: Option<String>,
    pub rules: MatchRules,
    /// This profile's own settings, tagged with this profile as their source.
    pub layer: Layer,
}

impl Profile {
    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Profile, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::Parse { origin: origin.to_string(), message: e.message().to_string() }
        })?;
        let header_keys = ["description", "inherit", "match"];
        let mut header = toml::Table::new();
        for key in header_keys {
            if let Some(v) = table.remove(key) {
                header.insert(key.to_string(), v);
            }
        }
        let header: ProfileHeader = header.try_into().map_err(|e: toml::de::Error| {
            ConfigError::Parse { origin: origin.to_string(), message: e.message().to_string() }
        })?;
        let source = Source::Board { name: name.to_string(), origin: origin.to_string() };
        let layer = Layer::from_toml(source, origin, &table, true)?;
        if let Some(Value::Str(dir)) = layer.value("cache.dir") {
            check_persistent_cache_dir(origin, dir)?;
        }
        Ok(Profile {
            name: name.to_string(),
            origin: origin.to_string(),
            description: header.description,
            inherit: header.inherit,
            rules: header.rules,
            layer,
        })
    }
}

/// A profile's cache must survive a reboot: refuse the usual volatile mount points outright.
/// (Provisioning also checks the filesystem type of the real directory.)
fn check_persistent_cache_dir(origin: &str, dir: &str) -> Result<(), ConfigError> {
    let path = Path::new(dir);
    let volatile = ["/tmp", "/dev/shm", "/run", "/var/tmp"];
    // `/var/../tmp/x` and `/var/run/x` (a symlink into /run) are the same places.
    let resolved = resolve_existing_prefix(&normalise(path));
    let under_volatile = |p: &Path| volatile.iter().any(|v| p.starts_with(v));
    if !path.is_absolute() || under_volatile(&normalise(path)) || under_volatile(&resolved) {
        return Err(ConfigError::NotAllowed {
            origin: origin.to_string(),
            key: "cache.dir".to_string(),
            why: "a board profile's cache must be an absolute path on persistent storage \
                  (not under /tmp, /var/tmp, /run or /dev/shm)",
        });
    }
    Ok(())
}

/// `.` and `..` removed lexically (`/var/../tmp` is `/tmp`).
fn normalise(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The path with its longest existing prefix resolved through symlinks (the rest, not created
/// yet, appended as written).
fn resolve_existing_prefix(path: &Path) -> std::path::PathBuf {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                missing.push(name.to_owned());
                existing.pop();
            }
            None => break,
        }
    }
    let mut real = existing.canonicalize().unwrap_or(existing);
    real.extend(missing.iter().rev());
    real
}

/// All known profiles, by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    profiles: BTreeMap<String, Profile>,
}

impl Catalog {
    /// The embedded profiles, replaced or extended by `*.toml` files in `boards_dir`.
    /// A missing `boards_dir` is fine; a broken file in it is an error.
    pub fn load(boards_dir: Option<&Path>) -> Result<Catalog, ConfigError> {
        let mut profiles = BTreeMap::new();
        for (name, text) in EMBEDDED {
            let origin = format!("embedded boards/{name}.toml");
            profiles.insert(name.to_string(), Profile::parse(name, &origin, text)?);
        }
        if let Some(dir) = boards_dir {
            for (name, path) in disk_profiles(dir)? {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let origin = path.display().to_string();
                if profiles.contains_key(&name) {
                    log::debug!("board profile {name}: {origin} replaces the embedded one");
                }
                profiles.insert(name.clone(), Profile::parse(&name, &origin, &text)?);
            }
        }
        let catalog = Catalog { profiles };
        for name in catalog.profiles.keys() {
            catalog.chain(name)?;
        }
        Ok(catalog)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    pub fn get(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles.get(name).ok_or_else(|| ConfigError::UnknownBoard {
            name: name.to_string(),
            known: self.profiles.keys().cloned().collect(),
        })
    }

    /// The inheritance chain of `name`, base first, ending with `name` itself.
    pub fn chain(&self, name: &str) -> Result<Vec<&Profile>, ConfigError> {
        let mut chain: Vec<&Profile> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(current) = next {
            if chain.iter().any(|p| p.name == current) {
                let mut names: Vec<String> = chain.iter().map(|p| p.name.clone()).collect();
                names.push(current);
                return Err(ConfigError::InheritCycle { chain: names });
            }
            let profile = self.get(&current)?;
            next = profile.inherit.clone();
            chain.push(profile);
        }
        chain.reverse();
        Ok(chain)
    }
}

fn disk_profiles(dir: &Path) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir.to_path_buf(), source }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| ConfigError::Read { path: dir.to_path_buf(), source })?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                found.push((stem.to_string(), path.clone()));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_boards_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
        let on_disk: Vec<String> = disk_profiles(&dir).unwrap().into_iter().map(|(n, _)| n).collect();
        let embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn embedded_profiles_parse_and_set_the_required_keys() {
        let catalog = Catalog::load(None).unwrap();
        let required = [
            "cache.dir",
            "camera.device",
            "camera.format",
            "camera.width",
            "camera.height",
            "camera.fps",
            "inference.threads",
            "inference.backend",
            "inference.fallback",
            "memory.notes",
        ];
        for profile in catalog.profiles() {
            let chain = catalog.chain(&profile.name).unwrap();
            for key in required {
                assert!(
                    chain.iter().any(|p| p.layer.value(key).is_some()),
                    "{} does not set {key}",
                    profile.name
                );
            }
            let has_rules = |p: &Profile| {
                !(p.rules.compatible.is_empty() && p.rules.model.is_empty() && p.rules.arch.is_empty())
            };
            assert!(has_rules(profile), "{} has no match rules", profile.name);
        }
    }

    #[test]
    fn inherit_cycle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = "description = \"a\"\ninherit = \"b\"\n";
        let b = "description = \"b\"\ninherit = \"a\"\n";
        std::fs::write(dir.path().join("a.toml"), a).unwrap();
        std::fs::write(dir.path().join("b.toml"), b).unwrap();
        let err = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("a -> b -> a") || err.contains("b -> a -> b"), "{err}");
    }

    #[test]
    fn disk_profile_replaces_embedded_one() {
        let dir = tempfile::tempdir().unwrap();
        let text = "description = \"mine\"\ninherit = \"generic-aarch64\"\n[inference]\nthreads = 1\n";
        std::fs::write(dir.path().join("jetson-nano.toml"), text).unwrap();
        let catalog = Catalog::load(Some(dir.path())).unwrap();
        let profile = catalog.get("jetson-nano").unwrap();
        assert_eq!(profile.description, "mine");
        assert!(profile.origin.ends_with("jetson-nano.toml") && !profile.origin.starts_with("embedded"));
    }

    #[test]
    fn profile_cache_under_tmp_is_refused() {
        let text = "description = \"x\"\ncache.dir = \"/tmp/models\"\n";
        let err = Profile::parse("x", "x.toml", text).unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("cache.dir"), "{err}");
    }

    #[test]
    fn unknown_header_key_names_file() {
        let text = "description = \"x\"\n[match]\ncompatibel = [\"a\"]\n";
        let err = Profile::parse("x", "boards/x.toml", text).unwrap_err().to_string();
        assert!(err.contains("boards/x.toml") && err.contains("compatibel"), "{err}");
    }
}
