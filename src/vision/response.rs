//! Results in the JSON shapes Roboflow's servers answer, so existing clients parse them as is.

use serde::{Deserialize, Serialize};

use super::detection::Detection;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxPrediction {
    /// Box centre, in original-image pixels.
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub confidence: f32,
    pub class: String,
    pub class_id: u32,
    pub detection_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectDetectionResponse {
    pub inference_id: String,
    /// Seconds spent on this image (preprocess, inference, decode).
    pub time: f64,
    pub image: ImageSize,
    pub predictions: Vec<BoxPrediction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPrediction {
    pub class: String,
    pub class_id: u32,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationResponse {
    pub inference_id: String,
    pub time: f64,
    pub image: ImageSize,
    pub predictions: Vec<ClassPrediction>,
    pub top: String,
    pub confidence: f32,
}

/// The class name for an id: from the model's class list, else the id itself.
pub fn class_name(classes: &[String], id: u32) -> String {
    classes.get(id as usize).cloned().unwrap_or_else(|| id.to_string())
}

pub fn box_prediction(d: &Detection, classes: &[String]) -> BoxPrediction {
    BoxPrediction {
        x: (d.x1 + d.x2) / 2.0,
        y: (d.y1 + d.y2) / 2.0,
        width: d.x2 - d.x1,
        height: d.y2 - d.y1,
        confidence: d.confidence,
        class: class_name(classes, d.class_id),
        class_id: d.class_id,
        detection_id: uuid_v4(),
    }
}

/// A random (version 4) UUID, as Roboflow uses for inference and detection ids.
pub fn uuid_v4() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // The system RNG failing is not worth failing an inference over; the id stays unique enough.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        b = nanos.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_is_centre_and_size() {
        let d = Detection { x1: 10.0, y1: 20.0, x2: 30.0, y2: 60.0, confidence: 0.5, class_id: 2 };
        let p = box_prediction(&d, &["a".into(), "b".into()]);
        assert_eq!((p.x, p.y, p.width, p.height), (20.0, 40.0, 20.0, 40.0));
        assert_eq!(p.class, "2", "no name for id 2: the id stands in");
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let (a, b) = (uuid_v4(), uuid_v4());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
