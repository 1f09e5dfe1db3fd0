//! What an inference request asks for, read from the JSON body of `/infer/*` (v1) or the query
//! and body of the legacy `POST /{dataset}/{version}` (v0), and the image bytes it carries.
//! Every mistake is a 400 whose message names the field.

use base64::Engine as _;
use serde_json::Value;

use super::server::Request;
use crate::vision::detection::{Thresholds, MAX_DETECTIONS};
use crate::vision::image::RgbImage;

/// The Roboflow server's defaults (pydantic `ObjectDetectionInferenceRequest`).
const DEFAULT_CONFIDENCE: f32 = 0.4;
const DEFAULT_IOU: f32 = 0.3;
const DEFAULT_MAX_DETECTIONS: usize = 300;

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub thresholds: Thresholds,
    /// Only these class names, when set.
    pub class_filter: Option<Vec<String>>,
    /// Add the annotated image (`visualize_predictions`).
    pub visualize: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            thresholds: Thresholds {
                confidence: DEFAULT_CONFIDENCE,
                iou: DEFAULT_IOU,
                max_detections: DEFAULT_MAX_DETECTIONS,
                class_agnostic: false,
            },
            class_filter: None,
            visualize: false,
        }
    }
}

/// A parsed v1 request: the model, the images (one, or a list: answered with a list) and options.
pub struct V1 {
    pub model_id: String,
    pub images: Vec<Vec<u8>>,
    pub list: bool,
    pub options: Options,
}

pub fn parse_v1(body: &Value) -> Result<V1, String> {
    let obj = body.as_object().ok_or("the body must be a JSON object")?;
    let model_id = match obj.get("model_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(_) => return Err("`model_id` must be a non-empty string".into()),
        None => return Err("`model_id` is required".into()),
    };
    let (images, list) = match obj.get("image") {
        Some(Value::Array(items)) if items.is_empty() => return Err("`image` is an empty list".into()),
        Some(Value::Array(items)) => {
            let images = items
                .iter()
                .enumerate()
                .map(|(i, item)| image_bytes(item).map_err(|e| format!("`image[{i}]`: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            (images, true)
        }
        Some(item) => (vec![image_bytes(item).map_err(|e| format!("`image`: {e}"))?], false),
        None => return Err("`image` is required".into()),
    };
    let mut options = Options::default();
    let t = &mut options.thresholds;
    if let Some(v) = field(obj, "confidence") {
        t.confidence = match v {
            Value::String(s) if s == "best" || s == "default" => DEFAULT_CONFIDENCE,
            _ => unit_interval(v).ok_or("`confidence` must be a number from 0 to 1 (or \"default\")")?,
        };
    }
    if let Some(v) = field(obj, "iou_threshold") {
        t.iou = unit_interval(v).ok_or("`iou_threshold` must be a number from 0 to 1")?;
    }
    if let Some(v) = field(obj, "max_detections") {
        t.max_detections = count(v).ok_or("`max_detections` must be a positive integer")?;
    }
    if let Some(v) = field(obj, "class_agnostic_nms") {
        t.class_agnostic = v.as_bool().ok_or("`class_agnostic_nms` must be true or false")?;
    }
    if let Some(v) = field(obj, "class_filter") {
        let names = v
            .as_array()
            .and_then(|items| items.iter().map(|i| i.as_str().map(String::from)).collect::<Option<Vec<_>>>())
            .ok_or("`class_filter` must be a list of class names")?;
        options.class_filter = Some(names);
    }
    if let Some(v) = field(obj, "visualize_predictions") {
        options.visualize = v.as_bool().ok_or("`visualize_predictions` must be true or false")?;
    }
    Ok(V1 { model_id, images, list, options })
}

/// A present, non-null field (the client drops `None`s, but curl users send nulls).
fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn unit_interval(v: &Value) -> Option<f32> {
    v.as_f64().filter(|x| (0.0..=1.0).contains(x)).map(|x| x as f32)
}

fn count(v: &Value) -> Option<usize> {
    v.as_u64().filter(|&n| n >= 1).map(|n| (n as usize).min(MAX_DETECTIONS))
}

/// `{"type": "base64", "value": "..."}` (or a bare base64 string) to the image's bytes.
fn image_bytes(item: &Value) -> Result<Vec<u8>, String> {
    let (kind, value) = match item {
        Value::String(s) => ("base64", s.as_str()),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("base64");
            let value = o.get("value").and_then(Value::as_str).ok_or("`value` must be a string")?;
            (kind, value)
        }
        _ => return Err("must be an object {\"type\": \"base64\", \"value\": ...}".into()),
    };
    match kind {
        "base64" => decode_base64(value),
        "url" => Err("image URLs are not fetched (outpost runs offline): send the image as base64".into()),
        other => Err(format!("image type `{other}` is not supported: send {{\"type\": \"base64\", ...}}")),
    }
}

/// Standard or URL-safe base64, padded or not, with line breaks or a `data:` prefix tolerated.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let text = match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, data)| data),
        None => text,
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let standard = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    standard
        .decode(&clean)
        .or_else(|_| url_safe.decode(&clean))
        .map_err(|e| format!("not valid base64 ({e})"))
}

/// Image bytes to RGB, or the 400 message ("Could not load input image", as the real server).
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, String> {
    crate::vision::image::decode(bytes).map_err(|e| format!("Could not load input image. Cause: {e:#}"))
}

/// The legacy v0 request: options in the query (`confidence`, `overlap`, `max_detections`,
/// values >= 1 read as percent; booleans as Python writes them), the image as the body (base64
/// text, or a `file` part of a multipart form).
pub fn parse_v0(req: &Request) -> Result<(Vec<u8>, Options), String> {
    let mut options = Options::default();
    let t = &mut options.thresholds;
    if let Some(v) = req.query_param("confidence") {
        t.confidence = percent_or_fraction(&v).ok_or("query `confidence` must be a number (0-1, or a percentage)")?;
    }
    if let Some(v) = req.query_param("overlap") {
        t.iou = percent_or_fraction(&v).ok_or("query `overlap` must be a number (0-1, or a percentage)")?;
    }
    if let Some(v) = req.query_param("max_detections") {
        t.max_detections = v
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .map(|n| n.min(MAX_DETECTIONS))
            .ok_or("query `max_detections` must be a positive integer")?;
    }
    if let Some(format) = req.query_param("format") {
        if format != "json" {
            return Err(format!("query `format={format}` is not supported: use format=json"));
        }
    }
    if req.query_param("image").is_some() {
        return Err("query `image` (a URL) is not fetched (outpost runs offline): send the image in the body".into());
    }
    let content_type = req.header("content-type").ok_or("Content-Type header not provided")?;
    let bytes = if content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        multipart_file(content_type, &req.body)?
    } else {
        let text = std::str::from_utf8(&req.body).map_err(|_| "the body must be base64 text of the image")?;
        decode_base64(text.trim_matches('"'))?
    };
    Ok((bytes, options))
}

fn percent_or_fraction(text: &str) -> Option<f32> {
    let v: f64 = text.trim().parse().ok()?;
    let v = if v >= 1.0 { v / 100.0 } else { v };
    (0.0..=1.0).contains(&v).then_some(v as f32)
}

/// The raw bytes of the form part named `file`.
fn multipart_file(content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or("multipart body without a boundary")?;
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        let Some(head_end) = find(rest, b"\r\n\r\n") else { break };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
        let content = &rest[head_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes()).ok_or("multipart body is truncated")?;
        if head.contains("name=\"file\"") {
            return Ok(content[..end].to_vec());
        }
        rest = &content[end..];
    }
    Err("the multipart form has no part named `file`".into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_defaults_and_fields() {
        let v = parse_v1(&json!({"model_id": "coco/36", "image": {"type": "base64", "value": "aGk="}})).unwrap();
        assert_eq!((v.model_id.as_str(), v.images, v.list), ("coco/36", vec![b"hi".to_vec()], false));
        assert_eq!(v.options, Options::default());
        let v = parse_v1(&json!({
            "model_id": "m", "image": [{"type": "base64", "value": "aGk"}, "aGk="],
            "confidence": 0.25, "iou_threshold": 0.5, "max_detections": 7, "class_agnostic_nms": true,
            "class_filter": ["face"], "visualize_predictions": false, "api_key": null
        }))
        .unwrap();
        assert!(v.list);
        assert_eq!(v.images.len(), 2);
        assert_eq!(v.options.thresholds, Thresholds { confidence: 0.25, iou: 0.5, max_detections: 7, class_agnostic: true });
        assert_eq!(v.options.class_filter, Some(vec!["face".to_string()]));
    }

    #[test]
    fn v1_mistakes_name_the_field() {
        let err = |body| parse_v1(&body).err().unwrap();
        assert!(err(json!([1])).contains("JSON object"));
        assert!(err(json!({"image": "aGk="})).contains("`model_id` is required"));
        assert!(err(json!({"model_id": 3, "image": "aGk="})).contains("`model_id`"));
        assert!(err(json!({"model_id": "m"})).contains("`image` is required"));
        assert!(err(json!({"model_id": "m", "image": "***"})).contains("base64"));
        assert!(err(json!({"model_id": "m", "image": [], })).contains("empty list"));
        assert!(err(json!({"model_id": "m", "image": ["aGk=", 5]})).contains("`image[1]`"));
        assert!(err(json!({"model_id": "m", "image": {"type": "url", "value": "http://x"}})).contains("offline"));
        assert!(err(json!({"model_id": "m", "image": "aGk=", "confidence": "high"})).contains("`confidence`"));
        assert!(err(json!({"model_id": "m", "image": "aGk=", "confidence": 3})).contains("`confidence`"));
        assert!(err(json!({"model_id": "m", "image": "aGk=", "max_detections": -1})).contains("`max_detections`"));
        assert!(err(json!({"model_id": "m", "image": "aGk=", "class_filter": "face"})).contains("`class_filter`"));
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aG\nk=").unwrap(), b"hi");
        assert_eq!(decode_base64("_-8").unwrap(), vec![0xff, 0xef]);
    }

    #[test]
    fn multipart_file_part() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nnope\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\x00\x01\r\n\x02\r\n--XyZ--\r\n";
        assert_eq!(multipart_file("multipart/form-data; boundary=XyZ", body).unwrap(), b"\x00\x01\r\n\x02");
        assert!(multipart_file("multipart/form-data", body).is_err());
    }

    #[test]
    fn v0_percentages() {
        assert_eq!(percent_or_fraction("50"), Some(0.5));
        assert_eq!(percent_or_fraction("0.25"), Some(0.25));
        assert_eq!(percent_or_fraction("500"), None);
        assert_eq!(percent_or_fraction("x"), None);
    }
}
