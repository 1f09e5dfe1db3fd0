//! Configuration layers (defaults, board profile, file, environment, flags) and their merge.
//!
//! Each layer is a set of `key = value` pairs checked against [`super::keys::KEYS`] and tagged
//! with where it came from, so the merged result can say which layer set each value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::keys::{self, KeyDef, Kind};
use super::ConfigError;
use crate::redact::{Secret, MASK};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// A secret: its `Debug` is masked too, so a dumped `Settings` cannot leak it.
    Secret(Secret),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    /// Parses a command-line or environment string as a value of `kind`.
    /// Parses a flag's value (relative paths are taken from the working directory).
    pub fn parse_arg(kind: Kind, text: &str) -> Result<Value, String> {
        Ok(Value::parse(kind, text)?.absolutize(kind, std::env::current_dir().ok().as_deref()))
    }

    pub fn parse(kind: Kind, text: &str) -> Result<Value, String> {
        match kind {
            Kind::Str | Kind::Path => Ok(Value::Str(text.to_string())),
            Kind::Secret => Ok(Value::Secret(Secret::new(text))),
            Kind::Int => text
                .trim()
                .parse()
                .map(Value::Int)
                .map_err(|_| format!("`{text}` is not an integer")),
            Kind::Float => match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Value::Float(v)),
                _ => Err(format!("`{text}` is not a number")),
            },
            Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("`{text}` is not true or false")),
            },
            Kind::List => Ok(Value::List(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            )),
        }
    }

    /// A relative path is taken relative to `base` (the directory of the file or, for flags and
    /// environment, the working directory), as a person writing it means it.
    fn absolutize(self, kind: Kind, base: Option<&std::path::Path>) -> Value {
        match (self, kind, base) {
            (Value::Str(p), Kind::Path, Some(base)) if !p.is_empty() && std::path::Path::new(&p).is_relative() => {
                Value::Str(base.join(p).display().to_string())
            }
            (v, _, _) => v,
        }
    }

    fn from_toml(kind: Kind, value: &toml::Value) -> Option<Value> {
        match (kind, value) {
            (Kind::Str | Kind::Path, toml::Value::String(s)) => Some(Value::Str(s.clone())),
            (Kind::Secret, toml::Value::String(s)) => Some(Value::Secret(Secret::new(s.as_str()))),
            // A list of secrets (serve.api_keys) is held as one comma-separated secret.
            (Kind::Secret, toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::trim))
                .collect::<Option<Vec<_>>>()
                .map(|keys| Value::Secret(Secret::new(keys.join(",")))),
            (Kind::Int, toml::Value::Integer(i)) => Some(Value::Int(*i)),
            (Kind::Float, toml::Value::Float(f)) if f.is_finite() => Some(Value::Float(*f)),
            (Kind::Float, toml::Value::Integer(i)) => Some(Value::Float(*i as f64)),
            (Kind::Bool, toml::Value::Boolean(b)) => Some(Value::Bool(*b)),
            (Kind::List, toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .map(Value::List),
            _ => None,
        }
    }

    /// How the value is shown to a person; secrets are masked.
    pub fn display(&self) -> String {
        match self {
            Value::Secret(_) => MASK.to_string(),
            Value::Str(s) => shown(s),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => short_float(*f),
            Value::Bool(b) => b.to_string(),
            Value::List(items) => items.join(","),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Secret(_) => MASK.into(),
            Value::Str(s) => shown(s).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => (*f).into(),
            Value::Bool(b) => (*b).into(),
            Value::List(items) => items.clone().into(),
        }
    }
}

/// Shortest text that reads back as `f`, in exponent form when plain digits would run long
/// (`1e-320`, not 320 zeros).
pub fn short_float(f: f64) -> String {
    if f != 0.0 && !(1e-5..1e16).contains(&f.abs()) {
        format!("{f:e}")
    } else {
        f.to_string()
    }
}

/// A string value as shown to people: URLs (a webhook with `user:pass@` or `?token=`) go
/// through the same redaction as the logs.
fn shown(text: &str) -> String {
    if text.contains("://") {
        crate::redact::redact_url(text)
    } else {
        text.to_string()
    }
}

/// Where a value came from, as shown by `outpost config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// Board autodetection (only for `board`); the text says what matched.
    Detected(String),
    /// A board profile; `origin` is the embedded name or the file on disk.
    Board { name: String, origin: String },
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Detected(why) => write!(f, "detected: {why}"),
            Source::Board { name, origin } => write!(f, "board {name} ({origin})"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One layer's values, each tagged with its source (within the environment layer, each
/// variable is its own source).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub values: BTreeMap<&'static str, Entry>,
}

impl Layer {
    pub fn set(&mut self, key: &'static str, value: Value, source: Source) {
        self.values.insert(key, Entry { value, source });
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key).map(|e| &e.value)
    }

    pub fn defaults() -> Layer {
        let mut layer = Layer::default();
        for key in keys::KEYS {
            if let Some(text) = key.default {
                let value = Value::parse(key.kind, text).expect("built-in defaults parse");
                layer.set(key.name, value, Source::Default);
            }
        }
        layer
    }

    /// Reads the keys of a parsed TOML document. `origin` names the file in errors;
    /// `for_profile` applies the board-profile restrictions.
    pub fn from_toml(
        source: Source,
        origin: &str,
        table: &toml::Table,
        for_profile: bool,
    ) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        flatten_into(&mut layer, &source, origin, "", table, for_profile)?;
        Ok(layer)
    }

    /// Reads `OUTPOST_*` variables and the aliases of [`keys::KEYS`] from `env`.
    /// Unknown `OUTPOST_*` names are returned so the caller can warn about them.
    pub fn from_env(env: &[(String, String)]) -> Result<(Layer, Vec<String>), ConfigError> {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let mut layer = Layer::default();
        for key in keys::KEYS {
            let canonical = keys::env_var(key);
            let names = std::iter::once(canonical.as_str()).chain(key.env_aliases.iter().copied());
            // The canonical OUTPOST_* name wins over the aliases other tools use.
            if let Some((var, text)) = names.filter_map(|n| lookup(n).map(|v| (n, v))).next() {
                let value = Value::parse(key.kind, text)
                    .map_err(|message| ConfigError::Env { var: var.to_string(), message })?
                    .absolutize(key.kind, std::env::current_dir().ok().as_deref());
                layer.set(key.name, value, Source::Env(var.to_string()));
            }
        }
        let unknown = env
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("OUTPOST_"))
            .filter(|k| !keys::META_ENV.contains(&k.as_str()))
            .filter(|k| !keys::KEYS.iter().any(|key| keys::env_var(key) == **k))
            .cloned()
            .collect();
        Ok((layer, unknown))
    }
}

fn flatten_into(
    layer: &mut Layer,
    source: &Source,
    origin: &str,
    prefix: &str,
    table: &toml::Table,
    for_profile: bool,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let dotted = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let def = keys::lookup(&dotted);
        match (def, value) {
            (Some(def), value) => {
                check_allowed(def, origin, for_profile)?;
                let parsed = Value::from_toml(def.kind, value).ok_or_else(|| {
                    ConfigError::WrongType {
                        origin: origin.to_string(),
                        key: dotted.clone(),
                        expected: def.kind.describe(),
                    }
                })?;
                let base = match source {
                    Source::File(path) => path.parent(),
                    _ => None,
                };
                let parsed = parsed.absolutize(def.kind, base);
                layer.set(def.name, parsed, source.clone());
            }
            (None, toml::Value::Table(inner)) if is_section(&dotted) => {
                flatten_into(layer, source, origin, &dotted, inner, for_profile)?;
            }
            (None, _) => {
                return Err(ConfigError::UnknownKey {
                    origin: origin.to_string(),
                    key: dotted.clone(),
                    hint: keys::suggest(&dotted),
                })
            }
        }
    }
    Ok(())
}

fn is_section(prefix: &str) -> bool {
    let with_dot = format!("{prefix}.");
    keys::KEYS.iter().any(|k| k.name.starts_with(&with_dot))
}

fn check_allowed(def: &KeyDef, origin: &str, for_profile: bool) -> Result<(), ConfigError> {
    if for_profile && !def.in_profile {
        return Err(ConfigError::NotAllowed {
            origin: origin.to_string(),
            key: def.name.to_string(),
            why: "board profiles describe hardware; set it in the config file, environment or flags",
        });
    }
    Ok(())
}

/// One effective value and the layer it came from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    pub source: Source,
}

/// The merged configuration: every key that some layer set, with its source.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub entries: BTreeMap<&'static str, Entry>,
}

impl Settings {
    /// Applies `layer` over what is there (later layers win).
    pub fn merge(&mut self, layer: &Layer) {
        for (key, entry) in &layer.values {
            self.entries.insert(key, entry.clone());
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Layer, ConfigError> {
        let table: toml::Table = text.parse().unwrap();
        Layer::from_toml(Source::File("/x.toml".into()), "/x.toml", &table, false)
    }

    #[test]
    fn numbers_and_booleans_from_files_and_flags() {
        let layer = parse("[run]\nconfidence = 0.55\nmax_fps = 2\nloop = true\n").unwrap();
        assert_eq!(layer.value("run.confidence"), Some(&Value::Float(0.55)));
        assert_eq!(layer.value("run.max_fps"), Some(&Value::Float(2.0)), "an integer is a number too");
        assert_eq!(layer.value("run.loop"), Some(&Value::Bool(true)));
        assert!(parse("[run]\nloop = \"yes\"\n").is_err(), "a string is not a boolean in a file");
        assert_eq!(Value::parse(Kind::Bool, "off"), Ok(Value::Bool(false)));
        assert_eq!(Value::parse(Kind::Float, " 0.25 "), Ok(Value::Float(0.25)));
        assert!(Value::parse(Kind::Float, "NaN").is_err());
        assert!(Value::parse(Kind::Bool, "maybe").unwrap_err().contains("true or false"));
    }

    #[test]
    fn nested_tables_and_dotted_keys_flatten_the_same() {
        let a = parse("[camera]\nfps = 15\n").unwrap();
        let b = parse("camera.fps = 15\n").unwrap();
        assert_eq!(a.value("camera.fps"), b.value("camera.fps"));
        assert_eq!(a.value("camera.fps"), Some(&Value::Int(15)));
    }

    #[test]
    fn unknown_key_names_file_key_and_suggestion() {
        let err = parse("[inference]\nthread = 4\n").unwrap_err().to_string();
        assert!(err.contains("/x.toml"), "{err}");
        assert!(err.contains("inference.thread"), "{err}");
        assert!(err.contains("inference.threads"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[camara]\nfps = 15\n").unwrap_err().to_string();
        assert!(err.contains("camara"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse("camera.fps = \"fast\"\n").unwrap_err().to_string();
        assert!(err.contains("camera.fps") && err.contains("integer"), "{err}");
    }

    #[test]
    fn profiles_may_not_carry_secrets() {
        let table: toml::Table = "roboflow.api_key = \"k\"\n".parse().unwrap();
        let err = Layer::from_toml(Source::Default, "b.toml", &table, true).unwrap_err();
        assert!(err.to_string().contains("roboflow.api_key"));
    }

    #[test]
    fn canonical_env_name_beats_alias() {
        let env = vec![
            ("MODEL_CACHE_DIR".to_string(), "/alias".to_string()),
            ("OUTPOST_CACHE_DIR".to_string(), "/canonical".to_string()),
        ];
        let (layer, unknown) = Layer::from_env(&env).unwrap();
        assert_eq!(layer.value("cache.dir"), Some(&Value::Str("/canonical".into())));
        assert!(unknown.is_empty());
        let mut settings = Settings::default();
        settings.merge(&layer);
        assert_eq!(settings.get("cache.dir").unwrap().source, Source::Env("OUTPOST_CACHE_DIR".into()));
    }

    #[test]
    fn alias_alone_is_used_and_named() {
        let env = vec![("MODEL_CACHE_DIR".to_string(), "/alias".to_string())];
        let (layer, _) = Layer::from_env(&env).unwrap();
        let mut settings = Settings::default();
        settings.merge(&layer);
        let entry = settings.get("cache.dir").unwrap();
        assert_eq!(entry.value, Value::Str("/alias".into()));
        assert_eq!(entry.source, Source::Env("MODEL_CACHE_DIR".into()));
    }

    #[test]
    fn unknown_outpost_variables_are_reported() {
        let env = vec![("OUTPOST_CACHE_DIRR".to_string(), "/x".to_string())];
        let (_, unknown) = Layer::from_env(&env).unwrap();
        assert_eq!(unknown, vec!["OUTPOST_CACHE_DIRR".to_string()]);
    }

    #[test]
    fn bad_integer_in_env_names_the_variable() {
        let env = vec![("OUTPOST_INFERENCE_THREADS".to_string(), "many".to_string())];
        let err = Layer::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("OUTPOST_INFERENCE_THREADS") && err.contains("many"), "{err}");
    }

    #[test]
    fn lists_split_on_commas() {
        assert_eq!(
            Value::parse(Kind::List, "tensorrt, tract,").unwrap(),
            Value::List(vec!["tensorrt".into(), "tract".into()])
        );
    }
}
