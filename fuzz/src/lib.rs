//! What the fuzz targets share: a scratch folder of this process, and outpost's default config.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A folder for files a target must hand over by path (bundles, video files, config files).
pub fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("outpost-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch folder");
        dir
    })
}

/// outpost's configuration with no file and no environment: the built-in defaults.
pub fn default_config() -> &'static outpost::config::Config {
    static CONFIG: OnceLock<outpost::config::Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        outpost::config::load(&outpost::config::LoadOptions::default()).expect("the default config loads").config
    })
}
