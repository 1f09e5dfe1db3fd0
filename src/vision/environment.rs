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
struct ResizeStep {
    format: Option<String>,
    width: Option<serde_json::Value>,
    height: Option<serde_json::Value>,
    enabled: Option<bool>,
}

pub fn parse(bytes: &[u8]) -> Result<Environment, String> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("environment.json: not JSON: {e}"))?;
    let raw = raw.as_object().ok_or("environment.json: expected an object at the top level")?;
    let mut env = Environment::default();
    if let Some(pre) = raw.get("PREPROCESSING").cloned() {
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
                    Some(serde_json::Value::Number(n)) => n.as_u64(),
                    Some(serde_json::Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                if let (Some(w), Some(h)) = (dim(step.width), dim(step.height)) {
                    super::preprocess::check_input_size(w, h).map_err(|e| format!("environment.json resize: {e}"))?;
                    env.size = Some([w as u32, h as u32]);
                }
            }
        }
    }
    if let Some(map) = raw.get("CLASS_MAP") {
        let map = serde_json::from_value(map.clone())
            .map_err(|e| format!("environment.json CLASS_MAP: must map class ids to names, as {{\"0\": \"car\"}} ({e})"))?;
        env.classes = Some(class_list(map)?);
    }
    Ok(env)
}

/// Largest class id a CLASS_MAP may name (the list is indexed by id).
const MAX_CLASS_ID: u32 = 65_535;

/// CLASS_MAP `{"0": "cat", "2": "dog"}` as a list indexed by class id; an id without a name
/// is named by its number, as for models without class names.
fn class_list(map: std::collections::BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let mut pairs = Vec::with_capacity(map.len());
    for (key, name) in map {
        let id: u32 = key
            .trim()
            .parse()
            .ok()
            .filter(|id| *id <= MAX_CLASS_ID)
            .ok_or_else(|| format!("environment.json CLASS_MAP: key `{key}` is not a class id (0..={MAX_CLASS_ID})"))?;
        pairs.push((id, name));
    }
    let len = pairs.iter().map(|(id, _)| *id as usize + 1).max().unwrap_or(0);
    let mut classes: Vec<String> = (0..len).map(|id| id.to_string()).collect();
    for (id, name) in pairs {
        classes[id as usize] = name;
    }
    Ok(classes)
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
        let classes = env.classes.unwrap();
        assert_eq!((classes.len(), &classes[..2], &classes[10]), (11, &["car".to_string(), "bus".to_string()][..], &"van".to_string()));
    }

    #[test]
    fn class_map_with_gaps_is_keyed_not_positional() {
        let env = parse(br#"{"CLASS_MAP": {"0": "cat", "2": "dog", "3": "fox"}}"#).unwrap();
        assert_eq!(env.classes.unwrap(), vec!["cat", "1", "dog", "fox"]);
        let err = parse(br#"{"CLASS_MAP": {"0": "cat", "one": "dog"}}"#).unwrap_err();
        assert!(err.contains("CLASS_MAP") && err.contains("`one`"), "{err}");
        assert!(parse(br#"{"CLASS_MAP": {"99999999": "x"}}"#).is_err());
    }

    #[test]
    fn resize_sizes_out_of_range_are_errors() {
        for (w, h) in [(100000, 640), (640, 0), (0, 0)] {
            let json = format!(r#"{{"PREPROCESSING": {{"resize": {{"width": {w}, "height": {h}, "format": "Stretch to"}}}}}}"#);
            let err = parse(json.as_bytes()).unwrap_err();
            assert!(err.contains("out of range") && err.contains("resize"), "{err}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(resize_mode("Stretch to").unwrap(), Resize::Stretch);
        assert_eq!(resize_mode("Fit (grey edges) in").unwrap(), Resize::Letterbox { pad: 114 });
        assert_eq!(resize_mode("Fit (white edges) in").unwrap(), Resize::Letterbox { pad: 255 });
        assert!(resize_mode("Fill (center crop) in").is_err());
    }
}
