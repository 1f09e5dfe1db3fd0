//! Board autodetection from the device tree, falling back to the CPU architecture.
//!
//! Order of preference: the device tree's `compatible` entries (most specific first, as the
//! kernel lists them, so a module SKU such as `nvidia,p3767-0005` decides), then a substring of
//! the `model` string, then the architecture. Everything is read below a sysroot so tests can
//! feed real strings from fixture trees.

use std::fmt;
use std::path::Path;

use super::{Catalog, Profile};
use crate::config::ConfigError;

/// What the device tree says about the machine. Both fields are empty on boards without one
/// (x86 PCs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceTree {
    pub compatible: Vec<String>,
    pub model: Option<String>,
}

impl DeviceTree {
    /// Reads `proc/device-tree/{compatible,model}` below `sysroot`; missing files mean empty.
    pub fn read(sysroot: &Path) -> DeviceTree {
        let dt = sysroot.join("proc/device-tree");
        let compatible = read_bytes(&dt.join("compatible"))
            .map(|bytes| nul_separated(&bytes))
            .unwrap_or_default();
        let model = read_bytes(&dt.join("model"))
            .and_then(|bytes| nul_separated(&bytes).into_iter().next());
        DeviceTree { compatible, model }
    }
}

fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            log::debug!("device tree: {}: {e}", path.display());
            None
        }
    }
}

/// Device-tree string lists are NUL-terminated and NUL-separated.
fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The machine's architecture as the kernel reports it (`proc/sys/kernel/arch` below the
/// sysroot), else the architecture this binary was built for.
pub fn machine_arch(sysroot: &Path) -> String {
    std::fs::read_to_string(sysroot.join("proc/sys/kernel/arch"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Compatible { entry: String, rule: String },
    Model { model: String, rule: String },
    Arch { arch: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Compatible { entry, rule } if entry == rule => {
                write!(f, "device-tree compatible \"{entry}\"")
            }
            Reason::Compatible { entry, rule } => {
                write!(f, "device-tree compatible \"{entry}\" (rule \"{rule}\")")
            }
            Reason::Model { model, rule } => write!(f, "device-tree model \"{model}\" (contains \"{rule}\")"),
            Reason::Arch { arch } => write!(f, "architecture {arch} (no more specific rule matched)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub profile: String,
    pub reason: Reason,
}

/// Picks the profile for a machine, or says why none fits.
pub fn detect(catalog: &Catalog, dt: &DeviceTree, arch: &str) -> Result<Detection, ConfigError> {
    for entry in &dt.compatible {
        let best = catalog
            .profiles()
            .flat_map(|p| p.rules.compatible.iter().map(move |rule| (p, rule)))
            .filter(|(_, rule)| glob_match(rule, entry))
            .max_by_key(|(_, rule)| specificity(rule));
        if let Some((profile, rule)) = best {
            return Ok(found(profile, Reason::Compatible { entry: entry.clone(), rule: rule.clone() }));
        }
    }
    if let Some(model) = &dt.model {
        let lower = model.to_lowercase();
        let best = catalog
            .profiles()
            .flat_map(|p| p.rules.model.iter().map(move |rule| (p, rule)))
            .filter(|(_, rule)| lower.contains(&rule.to_lowercase()))
            .max_by_key(|(_, rule)| rule.len());
        if let Some((profile, rule)) = best {
            return Ok(found(profile, Reason::Model { model: model.clone(), rule: rule.clone() }));
        }
    }
    let by_arch = catalog.profiles().find(|p| p.rules.arch.iter().any(|a| a == arch));
    match by_arch {
        Some(profile) => Ok(found(profile, Reason::Arch { arch: arch.to_string() })),
        None => Err(ConfigError::NoBoardMatch {
            arch: arch.to_string(),
            model: dt.model.clone(),
            compatible: dt.compatible.clone(),
        }),
    }
}

fn found(profile: &Profile, reason: Reason) -> Detection {
    log::debug!("board {}: {reason}", profile.name);
    Detection { profile: profile.name.clone(), reason }
}

/// Literal characters in a pattern: an exact SKU beats a family wildcard.
fn specificity(rule: &str) -> usize {
    rule.chars().filter(|c| *c != '*').count()
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(compatible: &[&str], model: Option<&str>) -> DeviceTree {
        DeviceTree {
            compatible: compatible.iter().map(|s| s.to_string()).collect(),
            model: model.map(String::from),
        }
    }

    fn detect_name(d: &DeviceTree, arch: &str) -> String {
        detect(&Catalog::load(None).unwrap(), d, arch).unwrap().profile
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("nvidia,p3509-0000+p3668-*", "nvidia,p3509-0000+p3668-0001"));
        assert!(!glob_match("nvidia,p3509-0000+p3668-*", "nvidia,p3509-0000"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exact2"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn nul_terminated_strings_are_split_and_stripped() {
        let parsed = nul_separated(b"nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0");
        assert_eq!(parsed, vec!["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"]);
    }

    #[test]
    fn orin_skus_pick_nano_or_nx() {
        for sku in ["0003", "0004", "0005"] {
            let entry = format!("nvidia,p3767-{sku}");
            assert_eq!(detect_name(&dt(&[&entry, "nvidia,tegra234"], None), "aarch64"), "jetson-orin-nano");
        }
        for sku in ["0000", "0001"] {
            let entry = format!("nvidia,p3767-{sku}");
            assert_eq!(detect_name(&dt(&[&entry, "nvidia,tegra234"], None), "aarch64"), "jetson-orin-nx");
        }
    }

    #[test]
    fn jetson_families() {
        assert_eq!(detect_name(&dt(&["nvidia,p3450-0000", "nvidia,tegra210"], None), "aarch64"), "jetson-nano");
        let xavier = dt(&["nvidia,p3509-0000+p3668-0001", "nvidia,tegra194"], None);
        assert_eq!(detect_name(&xavier, "aarch64"), "jetson-xavier-nx");
        let agx = dt(&["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"], None);
        assert_eq!(detect_name(&agx, "aarch64"), "jetson-agx-orin");
    }

    #[test]
    fn model_string_is_the_second_choice() {
        let d = dt(&["vendor,unknown"], Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(detect_name(&d, "aarch64"), "raspberry-pi-4");
    }

    #[test]
    fn architecture_is_the_last_resort() {
        let d = dt(&["pine64,rockpro64", "rockchip,rk3399"], Some("Pine64 RockPro64 v2.1"));
        assert_eq!(detect_name(&d, "aarch64"), "generic-aarch64");
        assert_eq!(detect_name(&DeviceTree::default(), "x86_64"), "x86_64-dev");
    }

    #[test]
    fn unknown_architecture_is_a_clear_error() {
        let err = detect(&Catalog::load(None).unwrap(), &DeviceTree::default(), "riscv64").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("riscv64") && text.contains("--board"), "{text}");
    }
}
