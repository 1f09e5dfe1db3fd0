//! Configuration errors: each names the file (or variable, or flag) and the key, and says what
//! to do about it.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, source: std::io::Error },
    Parse { origin: String, message: String },
    UnknownKey { origin: String, key: String, hint: Option<&'static str> },
    WrongType { origin: String, key: String, expected: &'static str },
    NotAllowed { origin: String, key: String, why: &'static str },
    Invalid { key: String, source: String, message: String },
    Env { var: String, message: String },
    Flag { flag: String, message: String },
    UnknownBoard { name: String, known: Vec<String> },
    InheritCycle { chain: Vec<String> },
    NoBoardMatch { arch: String, model: Option<String>, compatible: Vec<String> },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            ConfigError::Parse { origin, message } => {
                write!(f, "{origin}: not valid TOML: {}", message.trim_end())
            }
            ConfigError::UnknownKey { origin, key, hint } => {
                write!(f, "{origin}: unknown key `{key}`")?;
                match hint {
                    Some(h) => write!(f, " (did you mean `{h}`?)"),
                    None => write!(f, " (see `outpost config` for the known keys)"),
                }
            }
            ConfigError::WrongType { origin, key, expected } => {
                write!(f, "{origin}: key `{key}` must be {expected}")
            }
            ConfigError::NotAllowed { origin, key, why } => write!(f, "{origin}: key `{key}`: {why}"),
            ConfigError::Invalid { key, source, message } => {
                write!(f, "{key} (from {source}): {message}")
            }
            ConfigError::Env { var, message } => write!(f, "environment variable {var}: {message}"),
            ConfigError::Flag { flag, message } => write!(f, "{flag}: {message}"),
            ConfigError::UnknownBoard { name, known } => write!(
                f,
                "unknown board profile `{name}`; known profiles: {} (or add {}/{name}.toml)",
                known.join(", "),
                crate::boards::DEFAULT_BOARDS_DIR
            ),
            ConfigError::InheritCycle { chain } => {
                write!(f, "board profiles inherit in a cycle: {}", chain.join(" -> "))
            }
            ConfigError::NoBoardMatch { arch, model, compatible } => {
                write!(f, "no board profile matches this machine (architecture {arch}")?;
                if let Some(model) = model {
                    write!(f, ", model \"{model}\"")?;
                }
                if !compatible.is_empty() {
                    write!(f, ", compatible \"{}\"", compatible.join("\", \""))?;
                }
                write!(f, "); choose one with --board NAME (see `outpost board list`)")
            }
        }
    }
}

// The io error is already part of the message, so `source()` stays empty (no repeated text).
impl std::error::Error for ConfigError {}
