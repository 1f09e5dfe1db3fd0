//! Layered configuration: built-in defaults < board profile < config file < environment < flags.
//!
//! [`load`] reads every layer, picks the board (autodetected unless a layer names one), merges,
//! and validates into a typed [`Config`]. The merged [`Settings`] keep each value's source so
//! `outpost config` can show where it came from.

mod cameras;
mod error;
pub mod keys;
pub mod layer;
mod typed;

use std::path::{Path, PathBuf};

pub use cameras::CameraEntry;
pub use error::ConfigError;
pub use layer::{Layer, Settings, Source, Value};
pub use typed::{
    parse_size, Annotate, BackendKind, Camera, Precision, Config, Download, Inference, Memory, PixelFormat, Provision, Roboflow, Run, Serve,
    ServeProvision, Http, Sinks,
    Webhook,
};

use crate::boards::detect::{self, DeviceTree};
use crate::boards::{Catalog, DEFAULT_BOARDS_DIR};

/// The config file read when neither `--config` nor `OUTPOST_CONFIG` names one (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/outpost/outpost.toml";

/// A setting given on the command line: the flag as typed, the key, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSetting {
    pub flag: String,
    pub key: String,
    pub value: String,
}

/// Everything loading depends on, gathered up front so tests can pass their own environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub config_file: Option<PathBuf>,
    pub boards_dir: Option<PathBuf>,
    pub flags: Vec<FlagSetting>,
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options with this process's environment.
    pub fn with_process_env(self) -> LoadOptions {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        LoadOptions { env, ..self }
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Root below which `/proc/device-tree` is read (`OUTPOST_SYSROOT`, default `/`).
    pub fn sysroot(&self) -> PathBuf {
        PathBuf::from(self.env_var("OUTPOST_SYSROOT").unwrap_or("/"))
    }

    pub fn boards_dir(&self) -> PathBuf {
        self.boards_dir
            .clone()
            .or_else(|| self.env_var("OUTPOST_BOARDS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BOARDS_DIR))
    }

    /// The config file to read, and whether it must exist (it must when named explicitly).
    fn config_file(&self) -> Option<(PathBuf, bool)> {
        if let Some(path) = &self.config_file {
            return Some((path.clone(), true));
        }
        if let Some(path) = self.env_var("OUTPOST_CONFIG") {
            return Some((PathBuf::from(path), true));
        }
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        default.exists().then_some((default, false))
    }
}

/// The result of loading: the typed config plus what `outpost config` and `doctor` report.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub settings: Settings,
    pub catalog: Catalog,
    pub config_file: Option<PathBuf>,
    pub board_source: Source,
}

pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let catalog = Catalog::load(Some(&opts.boards_dir()))?;
    let file = opts.config_file();
    let (file_layer, cameras) = match &file {
        Some((path, _)) => read_config_file(path)?,
        None => (Layer::default(), Vec::new()),
    };
    let (env_layer, unknown_env) = Layer::from_env(&opts.env)?;
    for var in unknown_env {
        log::warn!("environment variable {var} is not a known outpost setting; ignored");
    }
    let flag_layer = flag_layer(&opts.flags)?;

    // The board decides which profile layer sits under the file, env and flag layers.
    let mut chosen = Settings::default();
    for layer in [&Layer::defaults(), &file_layer, &env_layer, &flag_layer] {
        chosen.merge(layer);
    }
    let board_entry = chosen.get("board").expect("board has a default").clone();
    let (board, board_source) = match &board_entry.value {
        Value::Str(name) if name == "auto" => {
            let sysroot = opts.sysroot();
            let found = detect::detect(&catalog, &DeviceTree::read(&sysroot), &detect::machine_arch(&sysroot))?;
            (found.profile, Source::Detected(found.reason.to_string()))
        }
        Value::Str(name) => (name.clone(), board_entry.source.clone()),
        _ => unreachable!("board is a string key"),
    };

    let mut settings = Settings::default();
    settings.merge(&Layer::defaults());
    for profile in catalog.chain(&board)? {
        settings.merge(&profile.layer);
    }
    for layer in [&file_layer, &env_layer, &flag_layer] {
        settings.merge(layer);
    }
    let mut board_layer = Layer::default();
    board_layer.set("board", Value::Str(board), board_source.clone());
    settings.merge(&board_layer);

    // Whether cache.dir is on volatile storage is decided by statfs where it matters
    // (provisioning, doctor), not by its path here.
    let mut config = Config::from_settings(&settings)?;
    config.cameras = cameras;
    Ok(Loaded { config, settings, catalog, config_file: file.map(|(p, _)| p), board_source })
}

/// The file's layer of keys, and its `[[cameras]]`.
fn read_config_file(path: &Path) -> Result<(Layer, Vec<CameraEntry>), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let origin = path.display().to_string();
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse { origin: origin.clone(), message: e.to_string() })?;
    let cameras = cameras::take(&mut table, &origin)?;
    Ok((Layer::from_toml(Source::File(path.to_path_buf()), &origin, &table, false)?, cameras))
}

fn flag_layer(flags: &[FlagSetting]) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for f in flags {
        let def = keys::lookup(&f.key).ok_or_else(|| ConfigError::Flag {
            flag: f.flag.clone(),
            message: match keys::suggest(&f.key) {
                Some(hint) => format!("unknown key `{}` (did you mean `{hint}`?)", f.key),
                None => format!("unknown key `{}`", f.key),
            },
        })?;
        let value = Value::parse_arg(def.kind, &f.value)
            .map_err(|message| ConfigError::Flag { flag: f.flag.clone(), message })?;
        layer.set(def.name, value, Source::Flag(f.flag.clone()));
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(env: &[(&str, &str)], flags: &[(&str, &str, &str)]) -> LoadOptions {
        LoadOptions {
            config_file: None,
            boards_dir: Some(PathBuf::from("/nonexistent-outpost-boards")),
            flags: flags
                .iter()
                .map(|(f, k, v)| FlagSetting { flag: f.to_string(), key: k.to_string(), value: v.to_string() })
                .collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn layers_apply_in_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("outpost.toml");
        std::fs::write(&file, "board = \"jetson-nano\"\n[inference]\nthreads = 3\n[camera]\nfps = 12\n").unwrap();
        let mut o = opts(
            &[("OUTPOST_CAMERA_FPS", "20"), ("MODEL_CACHE_DIR", "/data/models")],
            &[("--cache-dir", "cache.dir", "/flash/models")],
        );
        o.config_file = Some(file.clone());
        let loaded = load(&o).unwrap();
        let s = &loaded.settings;
        assert_eq!(loaded.config.board, "jetson-nano");
        assert_eq!(s.get("board").unwrap().source, Source::File(file.clone()));
        // Profile value where nothing above sets it.
        assert!(matches!(&s.get("camera.width").unwrap().source, Source::Board { name, .. } if name == "jetson-nano"));
        assert!(matches!(&s.get("camera.device").unwrap().source, Source::Board { name, .. } if name == "generic-aarch64"));
        // File beats profile.
        assert_eq!(loaded.config.inference.threads, 3);
        assert_eq!(s.get("inference.threads").unwrap().source, Source::File(file));
        // Env beats file.
        assert_eq!(loaded.config.camera.fps, 20);
        // Flag beats env alias.
        assert_eq!(loaded.config.cache_dir, PathBuf::from("/flash/models"));
        assert_eq!(s.get("cache.dir").unwrap().source, Source::Flag("--cache-dir".into()));
    }

    #[test]
    fn out_of_range_value_names_key_and_source() {
        let err = load(&opts(&[("OUTPOST_BOARD", "x86_64-dev"), ("OUTPOST_CAMERA_FPS", "0")], &[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("camera.fps") && text.contains("OUTPOST_CAMERA_FPS"), "{text}");
    }

    #[test]
    fn unknown_set_key_is_refused_with_hint() {
        let err = load(&opts(&[("OUTPOST_BOARD", "x86_64-dev")], &[("--set", "camera.fsp", "5")])).unwrap_err();
        assert!(err.to_string().contains("camera.fps"), "{err}");
    }

    #[test]
    fn api_key_from_roboflow_variable_is_kept_secret() {
        let loaded = load(&opts(&[("OUTPOST_BOARD", "x86_64-dev"), ("ROBOFLOW_API_KEY", "rf_live_123")], &[])).unwrap();
        let key = loaded.config.roboflow.api_key.unwrap();
        assert_eq!(key.expose(), "rf_live_123");
        assert!(!format!("{:?}", loaded.settings).contains("rf_live_123"));
        assert_eq!(format!("{key}"), "***");
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let mut o = opts(&[("OUTPOST_BOARD", "x86_64-dev")], &[]);
        o.config_file = Some(PathBuf::from("/nonexistent/outpost.toml"));
        let err = load(&o).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/outpost.toml"), "{err}");
    }
}
