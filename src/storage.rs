//! What kind of storage a path lives on: persistent flash or memory that a reboot wipes.
//!
//! Decided by the filesystem type from `statfs(2)`, not by the path: `/var/lib/x` can be a
//! tmpfs mount, and `/tmp` can be on disk.

use std::path::{Path, PathBuf};

const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volatility {
    Persistent,
    /// tmpfs or ramfs: contents vanish on reboot. The name is the filesystem type.
    Volatile(&'static str),
}

/// The storage kind of `path`, or of its nearest existing ancestor when it does not exist yet
/// (the directory will be created on that filesystem). Returns the path actually examined.
pub fn volatility(path: &Path) -> std::io::Result<(Volatility, PathBuf)> {
    let mut probe = path.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            probe = PathBuf::from("/");
            break;
        }
    }
    let stat = rustix::fs::statfs(&probe)?;
    // f_type's integer type differs between architectures.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let fs_type = stat.f_type as u64 & 0xffff_ffff;
    let kind = match fs_type {
        TMPFS_MAGIC => Volatility::Volatile("tmpfs"),
        RAMFS_MAGIC => Volatility::Volatile("ramfs"),
        _ => Volatility::Persistent,
    };
    Ok((kind, probe))
}

/// Whether files can be created in `dir` (an existing directory), by creating and removing one.
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".outpost-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_shm_is_volatile() {
        if Path::new("/dev/shm").is_dir() {
            let (kind, probed) = volatility(Path::new("/dev/shm/outpost-not-created/cache")).unwrap();
            assert_eq!(kind, Volatility::Volatile("tmpfs"));
            assert_eq!(probed, Path::new("/dev/shm"));
        }
    }
}
