//! Roboflow's environment.json: how the model was trained to see its input (resize mode and
//! size) and its class names. `PREPROCESSING` is itself a JSON document inside a string.

use serde::Deserialize;

use super::preprocess::Resize;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment {
    pub resize: Option<Resize>,
    /// `[width, height]`.
    pub size: Option<[u32; 2]>,
    pub classes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "PREPROCESSING")]
    preprocessing: Option<serde_json::Value>,
    #[serde(rename = "CLASS_MAP")]
    class_map: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ResizeStep {
    format: Option<String>,
    width: Option<serde_json::Value>,
    height: Option<serde_json::Value>,
    enabled: Option<bool>,
}

pub fn parse(bytes: &[u8]) -> Result<Environment, String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("environment.json: {e}"))?;
    let mut env = Environment::default();
    if let Some(pre) = raw.preprocessing {
        // Usually a string holding JSON; accept an object as well.
        let pre = match pre {
            serde_json::Value::String(s) => serde_json::from_str(&s).map_err(|e| format!("environment.json PREPROCESSING: {e}"))?,
            other => other,
        };
        if let Some(step) = pre.get("resize") {
            let step: ResizeStep = serde_json::from_value(step.clone()).map_err(|e| format!("environment.json resize: {e}"))?;
            if step.enabled != Some(false) {
                env.resize = step.format.as_deref().map(resize_mode).transpose()?;
                let dim = |v: Option<serde_json::Value>| match v {
                    Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
                    Some(serde_json::Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                if let (Some(w), Some(h)) = (dim(step.width), dim(step.height)) {
                    env.size = Some([w, h]);
                }
            }
        }
    }
    if let Some(map) = raw.class_map {
        let mut pairs: Vec<(u32, String)> = map.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect();
        pairs.sort();
        env.classes = Some(pairs.into_iter().map(|(_, v)| v).collect());
    }
    Ok(env)
}

/// Roboflow's resize formats: "Stretch to", "Fit (black|grey|white edges) in".
fn resize_mode(format: &str) -> Result<Resize, String> {
    let f = format.to_ascii_lowercase();
    if f.starts_with("stretch") {
        Ok(Resize::Stretch)
    } else if f.contains("black edges") {
        Ok(Resize::Letterbox { pad: 0 })
    } else if f.contains("white edges") {
        Ok(Resize::Letterbox { pad: 255 })
    } else if f.contains("grey edges") || f.contains("gray edges") {
        Ok(Resize::Letterbox { pad: 114 })
    } else {
        Err(format!("environment.json: unknown resize format `{format}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roboflow_environment_parses() {
        let json = br#"{"PREPROCESSING": "{\"auto-orient\": {\"enabled\": true}, \"resize\": {\"width\": 640, \"height\": 480, \"enabled\": true, \"format\": \"Fit (black edges) in\"}}",
                        "CLASS_MAP": {"1": "bus", "0": "car", "10": "van"}}"#;
        let env = parse(json).unwrap();
        assert_eq!(env.resize, Some(Resize::Letterbox { pad: 0 }));
        assert_eq!(env.size, Some([640, 480]));
        assert_eq!(env.classes.unwrap(), vec!["car", "bus", "van"]);
    }

    #[test]
    fn formats() {
        assert_eq!(resize_mode("Stretch to").unwrap(), Resize::Stretch);
        assert_eq!(resize_mode("Fit (grey edges) in").unwrap(), Resize::Letterbox { pad: 114 });
        assert_eq!(resize_mode("Fit (white edges) in").unwrap(), Resize::Letterbox { pad: 255 });
        assert!(resize_mode("Fill (center crop) in").is_err());
    }
}
