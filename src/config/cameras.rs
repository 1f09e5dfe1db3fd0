//! `[[cameras]]` in the config file: several cameras in one `outpost run`. The layered keys hold
//! one value each, so this list is read from the file on its own and checked here: a name, a
//! source (as `run.source` spells it), and optionally the model, frame-rate cap and thresholds
//! that differ from `run.*`.
//!
//! ```toml
//! [[cameras]]
//! name = "gate"
//! source = "rtsp://viewer:secret@10.0.0.5/stream2"
//! model = "plates"
//! max_fps = 5
//! ```

use super::ConfigError;
use crate::redact::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct CameraEntry {
    pub name: String,
    /// As `run.source` spells it; may carry credentials, hence a [`Secret`].
    pub source: Secret,
    pub model: Option<String>,
    pub max_fps: Option<f64>,
    pub confidence: Option<f32>,
    pub iou: Option<f32>,
}

const KEYS: [&str; 6] = ["name", "source", "model", "max_fps", "confidence", "iou"];

/// Takes `cameras` out of a config file's table (so the layered keys never see it) and checks it.
pub fn take(table: &mut toml::Table, origin: &str) -> Result<Vec<CameraEntry>, ConfigError> {
    let Some(value) = table.remove("cameras") else {
        return Ok(Vec::new());
    };
    let wrong = |key: String, expected: &'static str| ConfigError::WrongType { origin: origin.to_string(), key, expected };
    let items = value.as_array().ok_or_else(|| wrong("cameras".into(), "an array of tables ([[cameras]])"))?;
    let mut cameras: Vec<CameraEntry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |key: &str| format!("cameras[{i}].{key}");
        let t = item.as_table().ok_or_else(|| wrong(format!("cameras[{i}]"), "a table"))?;
        if let Some(key) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey { origin: origin.to_string(), key: at(key), hint: None });
        }
        let text = |key: &str| -> Result<Option<String>, ConfigError> {
            match t.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(wrong(at(key), "a string")),
            }
        };
        let number = |key: &str, max: f64| -> Result<Option<f64>, ConfigError> {
            let n = match t.get(key) {
                None => return Ok(None),
                Some(toml::Value::Integer(n)) => *n as f64,
                Some(toml::Value::Float(f)) => *f,
                Some(_) => return Err(wrong(at(key), "a number")),
            };
            if !(0.0..=max).contains(&n) {
                return Err(invalid(origin, at(key), format!("must be in 0..={max}")));
            }
            Ok(Some(n))
        };
        let name = text("name")?.ok_or_else(|| invalid(origin, at("name"), "every camera needs a name".into()))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(invalid(origin, at("name"), "use letters, digits, `-`, `_` or `.`".into()));
        }
        if cameras.iter().any(|c| c.name == name) {
            return Err(invalid(origin, at("name"), format!("`{name}` names two cameras")));
        }
        let source = text("source")?.ok_or_else(|| invalid(origin, at("source"), "every camera needs a source".into()))?;
        // Checked as `run.source` is; the device fallback does not apply to a named camera.
        if source.trim().is_empty() {
            return Err(invalid(origin, at("source"), "must not be empty".into()));
        }
        crate::capture::SourceSpec::parse(&source, "").map_err(|m| invalid(origin, at("source"), m))?;
        cameras.push(CameraEntry {
            name,
            source: Secret::new(source),
            model: text("model")?.filter(|m| !m.is_empty()),
            max_fps: number("max_fps", 1000.0)?,
            confidence: number("confidence", 1.0)?.map(|v| v as f32),
            iou: number("iou", 1.0)?.map(|v| v as f32),
        });
    }
    Ok(cameras)
}

fn invalid(origin: &str, key: String, message: String) -> ConfigError {
    ConfigError::Invalid { key, source: origin.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<CameraEntry>, ConfigError> {
        let mut table: toml::Table = text.parse().unwrap();
        let cameras = take(&mut table, "outpost.toml")?;
        assert!(!table.contains_key("cameras"));
        Ok(cameras)
    }

    #[test]
    fn cameras_with_their_own_settings() {
        let cams = parse(
            "[[cameras]]\nname = \"gate\"\nsource = \"rtsp://u:pw@cam/live\"\nmodel = \"plates\"\nmax_fps = 5\n\
             [[cameras]]\nname = \"yard\"\nsource = \"dir:/srv/yard\"\nconfidence = 0.6\n",
        )
        .unwrap();
        assert_eq!(cams.len(), 2);
        assert_eq!(cams[0].model.as_deref(), Some("plates"));
        assert_eq!(cams[0].max_fps, Some(5.0));
        assert_eq!(cams[1].confidence, Some(0.6));
        assert!(!format!("{cams:?}").contains("pw"), "the source is a secret");
        assert!(parse("x = 1").unwrap().is_empty());
    }

    #[test]
    fn mistakes_name_the_camera_and_key() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(err("[[cameras]]\nsource = \"dir:/a\"").contains("cameras[0].name"));
        assert!(err("[[cameras]]\nname = \"a\"").contains("cameras[0].source"));
        assert!(err("[[cameras]]\nname = \"a\"\nsource = \"dir:/a\"\n[[cameras]]\nname = \"a\"\nsource = \"dir:/b\"")
            .contains("two cameras"));
        assert!(err("[[cameras]]\nname = \"a\"\nsource = \"ftp://x\"").contains("cameras[0].source"));
        assert!(err("[[cameras]]\nname = \"a\"\nsource = \"dir:/a\"\nfps = 3").contains("cameras[0].fps"));
        assert!(err("[[cameras]]\nname = \"a\"\nsource = \"dir:/a\"\nmax_fps = \"3\"").contains("a number"));
        assert!(err("cameras = 3").contains("array of tables"));
    }
}
