//! Resolving Roboflow model ids (`roboflow:<dataset>/<version>`, or aliases such as
//! `yolov8n-640` and `rfdetr-base`) to download URLs through Roboflow's API.
//!
//! `GET {api_base}/ort/{dataset}/{version}?api_key=...&device=...&nocache=true&dynamic=true`
//! answers JSON whose `ort` object names the weights (`model`), the `environment` file, `classes`,
//! `modelType` and `type`. The API key travels only in that request: it is redacted from every
//! message and never written to the cache.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::redact::{redact_url, Secret};

/// Roboflow's public aliases for detection models (inference_sdk's REGISTERED_ALIASES and
/// RF-DETR aliases).
const ALIASES: &[(&str, &str)] = &[
    ("yolov8n-640", "coco/3"),
    ("yolov8n-1280", "coco/9"),
    ("yolov8s-640", "coco/6"),
    ("yolov8s-1280", "coco/10"),
    ("yolov8m-640", "coco/8"),
    ("yolov8m-1280", "coco/11"),
    ("yolov8l-640", "coco/7"),
    ("yolov8l-1280", "coco/12"),
    ("yolov8x-640", "coco/5"),
    ("yolov8x-1280", "coco/13"),
    ("yolo-nas-s-640", "coco/14"),
    ("yolo-nas-m-640", "coco/15"),
    ("yolo-nas-l-640", "coco/16"),
    ("yolov10n-640", "coco/19"),
    ("yolov10s-640", "coco/20"),
    ("yolov10m-640", "coco/21"),
    ("yolov10b-640", "coco/22"),
    ("yolov10l-640", "coco/23"),
    ("yolov10x-640", "coco/24"),
    ("rfdetr-base", "coco/36"),
    ("rfdetr-nano", "coco/38"),
    ("rfdetr-small", "coco/39"),
    ("rfdetr-medium", "coco/40"),
    ("rfdetr-large", "coco/50"),
];

/// `dataset/version` for an id or alias, or an error naming the known aliases.
pub fn dataset_version(id: &str) -> Result<(String, String), String> {
    let resolved = ALIASES.iter().find(|(alias, _)| *alias == id).map_or(id, |(_, target)| target);
    match resolved.split_once('/') {
        Some((dataset, version)) if !dataset.is_empty() && !version.is_empty() => {
            Ok((dataset.to_string(), version.to_string()))
        }
        _ => Err(format!(
            "`{id}` is neither <dataset>/<version> nor a known alias ({})",
            ALIASES.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[derive(Debug, Clone, Deserialize)]
struct OrtResponse {
    ort: Ort,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ort {
    /// URL of the ONNX weights (often pre-signed, with its own short-lived token).
    pub model: String,
    pub environment: Option<String>,
    pub classes: Option<Vec<String>>,
    pub model_type: Option<String>,
    #[serde(rename = "type")]
    pub task: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Api<'a> {
    pub agent: &'a ureq::Agent,
    pub base: &'a str,
    pub key: Option<&'a Secret>,
    pub device: &'a str,
    pub attempts: u32,
    pub backoff: Duration,
    /// The manifest's `allow_http`: without it an http:// `api_base` is refused (the key would
    /// travel in cleartext).
    pub allow_http: bool,
}

/// Why the API could not resolve an id. The key problems are their own kinds, so callers (a
/// server answering 401 or 403) need not read messages.
#[derive(Debug)]
pub enum ResolveError {
    /// No API key was configured or given.
    KeyMissing,
    /// The API answered 401 or 403; `shown` is the request with the key masked.
    KeyRejected { shown: String, status: u16 },
    Other(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::KeyMissing => f.write_str(
                "roboflow sources need an API key: set roboflow.api_key or ROBOFLOW_API_KEY (it is never logged)",
            ),
            ResolveError::KeyRejected { shown, status } => write!(f, "{shown}: HTTP {status}: the API key was rejected"),
            ResolveError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ResolveError {}

impl From<String> for ResolveError {
    fn from(message: String) -> ResolveError {
        ResolveError::Other(message)
    }
}

impl Api<'_> {
    /// Asks the API where `id`'s weights are. Retries transient failures; a rejected key or an
    /// unknown model fails at once.
    pub fn resolve(&self, id: &str) -> Result<Ort, ResolveError> {
        let (dataset, version) = dataset_version(id)?;
        let key = self.key.ok_or(ResolveError::KeyMissing)?;
        if self.base.starts_with("http://") {
            if !self.allow_http {
                return Err(ResolveError::Other(format!(
                    "roboflow.api_base {} is plain http: the API key would travel in cleartext; use https, or set \
                     allow_http = true in the manifest for a lab network",
                    redact_url(self.base)
                )));
            }
            log::warn!("roboflow.api_base {} is plain http: the API key travels in cleartext (allow_http = true)", redact_url(self.base));
        }
        let url = format!(
            "{}/ort/{}/{}?api_key={}&device={}&nocache=true&dynamic=true",
            self.base,
            encode(&dataset),
            encode(&version),
            encode(key.expose()),
            encode(self.device)
        );
        let shown = redact_url(&url);
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            match self.agent.get(&url).header("Accept-Encoding", "identity").call() {
                Ok(mut response) => {
                    super::download::log_redirect(id, &url, &response);
                    let status = response.status().as_u16();
                    match status {
                        200 => {
                            let body = response
                                .body_mut()
                                .with_config()
                                .limit(1 << 20)
                                .read_to_string()
                                .map_err(|e| format!("{shown}: reading the answer: {e}"))?;
                            return parse_ort_answer(&body).map_err(|e| format!("{shown}: {e}").into());
                        }
                        401 | 403 => return Err(ResolveError::KeyRejected { shown, status }),
                        404 => return Err(format!("{shown}: HTTP 404: no such model `{dataset}/{version}`").into()),
                        _ => last = format!("{shown}: HTTP {status}"),
                    }
                }
                Err(e) => last = crate::redact::redact_text(&format!("{shown}: {e}")),
            }
            if attempt < self.attempts {
                log::warn!("{last} (attempt {attempt}/{}); retrying", self.attempts);
                std::thread::sleep(self.backoff * attempt);
            }
        }
        Err(last.into())
    }
}

/// The body of Roboflow's `/ort/` answer. Public for the fuzz target `roboflow_api`.
pub fn parse_ort_answer(body: &str) -> Result<Ort, String> {
    let parsed: OrtResponse = serde_json::from_str(body).map_err(|e| format!("unexpected answer ({e})"))?;
    Ok(parsed.ort)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a key with a space, `&`
/// or `#` is sent whole and masked whole.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("ab c#d&e=f"), "ab%20c%23d%26e%3Df");
        assert_eq!(encode("rf_live-1.2~"), "rf_live-1.2~");
    }

    #[test]
    fn aliases_and_ids_resolve() {
        assert_eq!(dataset_version("yolov8n-640").unwrap(), ("coco".into(), "3".into()));
        assert_eq!(dataset_version("rfdetr-base").unwrap(), ("coco".into(), "36".into()));
        assert_eq!(dataset_version("cars-xyz/7").unwrap(), ("cars-xyz".into(), "7".into()));
        let err = dataset_version("nonsense").unwrap_err();
        assert!(err.contains("yolov8n-640"), "{err}");
    }

    #[test]
    fn ort_answer_parses() {
        let json = r#"{"ort":{"model":"https://s/w.onnx?X-Amz-Signature=abc","environment":"https://s/e.json",
            "classes":["car","bus"],"modelType":"yolov8n","type":"object-detection"}}"#;
        let ort: OrtResponse = serde_json::from_str(json).unwrap();
        assert_eq!(ort.ort.classes.unwrap(), vec!["car", "bus"]);
        assert_eq!(ort.ort.model_type.as_deref(), Some("yolov8n"));
        assert_eq!(ort.ort.task.as_deref(), Some("object-detection"));
    }
}
