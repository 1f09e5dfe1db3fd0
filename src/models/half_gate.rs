//! The accuracy gate of `inference.precision = "f16"` for TensorRT: an fp16 engine runs only
//! where its decoded answer on a calibration image (`inference.calibration_image`, a picture from
//! the camera showing what the model detects) matches tract's f32 answer: every box paired with
//! one of the same class at IoU >= [`MIN_IOU`]. fp16 engines are fast but not always faithful
//! (RF-DETR is known to lose its boxes in fp16), and a box that moves is a wrong answer the user
//! never sees; the boxes, not raw tensors, are what the user relies on, so the boxes are compared.

use std::path::{Path, PathBuf};

use crate::backend::engine_cache::HalfVerdict;
use crate::backend::{Backend, HalfGate, Session};
use crate::detector::{Codec, Response, Spec};
use crate::vision::detection::Thresholds;
use crate::vision::families::Family;
use crate::vision::image::RgbImage;
use crate::vision::response::BoxPrediction;

/// A box of the fp16 engine must overlap f32's box of the same object at least this much.
pub const MIN_IOU: f32 = 0.9;
/// Boxes are compared down to this confidence: the lowest threshold clients commonly ask for.
pub const CONFIDENCE: f32 = 0.25;
/// A box this close above [`CONFIDENCE`] may be missing on the other side: its partner can
/// legitimately fall just under the threshold.
pub const MARGIN: f32 = 0.05;
/// A classifier's top class must keep its confidence within this.
pub const CLASS_CONFIDENCE: f32 = 0.05;

/// One model's calibration: the picture, how the model reads it, and the f32 reference engine.
pub struct Calibration {
    model: PathBuf,
    spec: Spec,
    image: RgbImage,
    image_path: PathBuf,
    image_sha256: String,
    threads: usize,
}

impl Calibration {
    /// `image` read now, so that a missing or broken file is reported once, at provision.
    pub fn new(model: &Path, spec: Spec, image: &Path, threads: usize) -> anyhow::Result<Calibration> {
        let bytes = std::fs::read(image)
            .map_err(|e| anyhow::anyhow!("inference.calibration_image {}: cannot read: {e}", image.display()))?;
        let decoded = crate::vision::image::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("inference.calibration_image {}: {e}", image.display()))?;
        Ok(Calibration {
            model: model.to_path_buf(),
            spec,
            image: decoded,
            image_path: image.to_path_buf(),
            image_sha256: crate::provision::sha256_hex(&bytes),
            threads,
        })
    }

    /// The answers of tract in f32 and of `candidate` on the calibration image prepared for an
    /// input of exactly `width` x `height` (the size the candidate's engine was built for).
    fn answers(&self, candidate: &mut dyn Session, height: u32, width: u32) -> anyhow::Result<(Response, Response)> {
        let mut reference = crate::backend::tract::Tract::new(self.threads).prepare(&self.model)?;
        let spec = Spec { size: Some([width, height]), fixed: reference.input().fixed_hw(), ..self.spec.clone() };
        let family = match spec.family {
            Some(family) => family,
            None => {
                let mut probe = Codec::new(spec.clone());
                let prepared = probe.prepare(&self.image, Family::Yolov8)?;
                let (w, h) = prepared.meta.input;
                Family::infer(&reference.run(&prepared.data, h, w)?).map_err(anyhow::Error::msg)?
            }
        };
        let mut codec = Codec::new(Spec { family: Some(family), ..spec });
        codec.thresholds = Thresholds { confidence: CONFIDENCE, ..Thresholds::default() };
        let prepared = codec.prepare(&self.image, family)?;
        anyhow::ensure!(
            prepared.meta.input == (width, height),
            "the calibration image prepares to {}x{}, the engine is for {width}x{height}",
            prepared.meta.input.0,
            prepared.meta.input.1
        );
        let expected = reference.run(&prepared.data, height, width)?;
        let got = candidate.run(&prepared.data, height, width)?;
        Ok((codec.decode(&prepared.meta, &expected)?, codec.decode(&prepared.meta, &got)?))
    }
}

impl HalfGate for Calibration {
    fn calibration_sha256(&self) -> &str {
        &self.image_sha256
    }

    fn check(&self, candidate: &mut dyn Session, height: u32, width: u32) -> anyhow::Result<HalfVerdict> {
        let (expected, got) = self.answers(candidate, height, width)?;
        let (accepted, finding) = compare(&expected, &got);
        Ok(HalfVerdict {
            accepted,
            reason: format!("{finding} on {} at {width}x{height}", self.image_path.display()),
            calibration_sha256: self.image_sha256.clone(),
        })
    }
}

/// Whether `got` (fp16) gives `expected`'s (f32) answer, and what was found, in a sentence.
pub fn compare(expected: &Response, got: &Response) -> (bool, String) {
    match (expected, got) {
        (Response::Detection(e), Response::Detection(g)) => compare_boxes(&e.predictions, &g.predictions),
        (Response::Classification(e), Response::Classification(g)) => {
            if e.top != g.top {
                (false, format!("fp16's top class is `{}` ({:.3}), f32's `{}` ({:.3})", g.top, g.confidence, e.top, e.confidence))
            } else if (e.confidence - g.confidence).abs() > CLASS_CONFIDENCE {
                (false, format!("top class `{}` at {:.3} in fp16, {:.3} in f32", e.top, g.confidence, e.confidence))
            } else {
                (true, format!("top class `{}` kept ({:.3} in fp16, {:.3} in f32)", e.top, g.confidence, e.confidence))
            }
        }
        _ => (false, "fp16 and f32 answers are of different kinds".to_string()),
    }
}

fn compare_boxes(expected: &[BoxPrediction], got: &[BoxPrediction]) -> (bool, String) {
    if expected.is_empty() {
        return (
            false,
            format!(
                "f32 finds nothing at confidence >= {CONFIDENCE}, so there is nothing to compare \
                 (set inference.calibration_image to a picture showing what the model detects)"
            ),
        );
    }
    let sure = |b: &BoxPrediction| b.confidence >= CONFIDENCE + MARGIN;
    let mut paired = vec![false; got.len()];
    let mut worst_iou = 1f32;
    // Most confident first, so that a sure box takes its partner before a borderline one does.
    let mut order: Vec<&BoxPrediction> = expected.iter().collect();
    order.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    for want in order {
        let best = got
            .iter()
            .enumerate()
            .filter(|(i, g)| !paired[*i] && g.class_id == want.class_id)
            .map(|(i, g)| (i, iou(want, g)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, overlap)) if overlap >= MIN_IOU => {
                paired[i] = true;
                worst_iou = worst_iou.min(overlap);
            }
            _ if !sure(want) => {}
            best => {
                let best = best.map_or("none of its class".to_string(), |(_, o)| format!("best IoU {o:.2}"));
                return (false, format!("f32's {} has no fp16 box at IoU >= {MIN_IOU} ({best})", describe(want)));
            }
        }
    }
    if let Some(extra) = got.iter().zip(&paired).find(|(g, p)| !**p && sure(g)).map(|(g, _)| g) {
        return (false, format!("fp16 finds {} that f32 does not", describe(extra)));
    }
    let matched = paired.iter().filter(|p| **p).count();
    (true, format!("{matched} of f32's {} boxes matched (same classes, IoU >= {worst_iou:.3})", expected.len()))
}

fn describe(b: &BoxPrediction) -> String {
    format!("`{}` {:.2} at ({:.0}, {:.0}) {:.0}x{:.0}", b.class, b.confidence, b.x, b.y, b.width, b.height)
}

/// Intersection over union. A box flattened to no area (clamped at the picture's edge) has no
/// overlap to measure: it pairs with a box whose corners are within a pixel of its own.
fn iou(a: &BoxPrediction, b: &BoxPrediction) -> f32 {
    let corners = |p: &BoxPrediction| crate::vision::families::corners(p.x, p.y, p.width, p.height, p.confidence, p.class_id);
    let (a, b) = (corners(a), corners(b));
    if a.area() <= 0.0 || b.area() <= 0.0 {
        let near = [(a.x1, b.x1), (a.y1, b.y1), (a.x2, b.x2), (a.y2, b.y2)].iter().all(|(p, q)| (p - q).abs() <= 1.0);
        return if near { 1.0 } else { 0.0 };
    }
    a.iou(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::response::{ClassPrediction, ClassificationResponse, ImageSize, ObjectDetectionResponse};

    fn boxed(class_id: u32, confidence: f32, x: f32) -> BoxPrediction {
        BoxPrediction {
            x,
            y: 50.0,
            width: 40.0,
            height: 40.0,
            confidence,
            class: format!("c{class_id}"),
            class_id,
            detection_id: String::new(),
        }
    }

    fn detections(boxes: Vec<BoxPrediction>) -> Response {
        Response::Detection(ObjectDetectionResponse {
            inference_id: String::new(),
            time: 0.0,
            image: ImageSize { width: 100, height: 100 },
            predictions: boxes,
        })
    }

    #[test]
    fn the_same_boxes_slightly_moved_pass() {
        let expected = detections(vec![boxed(0, 0.9, 20.0), boxed(1, 0.8, 70.0)]);
        let got = detections(vec![boxed(1, 0.79, 70.5), boxed(0, 0.91, 20.4)]);
        let (ok, why) = compare(&expected, &got);
        assert!(ok, "{why}");
        assert!(why.contains("2 of f32's 2 boxes matched"), "{why}");
    }

    #[test]
    fn a_moved_box_another_class_or_an_extra_box_fail() {
        let expected = detections(vec![boxed(0, 0.9, 20.0)]);
        // 40 px wide boxes 3 px apart: IoU 0.86.
        let (ok, why) = compare(&expected, &detections(vec![boxed(0, 0.9, 23.0)]));
        assert!(!ok && why.contains("has no fp16 box at IoU >= 0.9 (best IoU 0.86)"), "{why}");
        let (ok, why) = compare(&expected, &detections(vec![boxed(2, 0.9, 20.0)]));
        assert!(!ok && why.contains("none of its class"), "{why}");
        let (ok, why) = compare(&expected, &detections(vec![boxed(0, 0.9, 20.0), boxed(0, 0.6, 80.0)]));
        assert!(!ok && why.contains("fp16 finds `c0` 0.60 at (80, 50)"), "{why}");
        let (ok, why) = compare(&expected, &detections(vec![]));
        assert!(!ok, "{why}");
    }

    #[test]
    fn borderline_boxes_may_lack_a_partner() {
        let expected = detections(vec![boxed(0, 0.9, 20.0), boxed(0, CONFIDENCE + 0.01, 80.0)]);
        let got = detections(vec![boxed(0, 0.9, 20.0), boxed(1, CONFIDENCE + 0.02, 50.0)]);
        let (ok, why) = compare(&expected, &got);
        assert!(ok, "{why}");
        assert!(why.contains("1 of f32's 2 boxes matched"), "{why}");
    }

    #[test]
    fn boxes_flattened_at_the_edge_pair_by_their_corners() {
        let flat = |x: f32| BoxPrediction { height: 0.0, ..boxed(0, 0.9, x) };
        assert!(compare(&detections(vec![flat(20.0)]), &detections(vec![flat(20.5)])).0);
        assert!(!compare(&detections(vec![flat(20.0)]), &detections(vec![flat(25.0)])).0);
        assert!(!compare(&detections(vec![flat(20.0)]), &detections(vec![boxed(0, 0.9, 20.0)])).0);
    }

    #[test]
    fn nothing_found_in_f32_proves_nothing() {
        let (ok, why) = compare(&detections(vec![]), &detections(vec![]));
        assert!(!ok);
        assert!(why.contains("nothing to compare") && why.contains("inference.calibration_image"), "{why}");
    }

    #[test]
    fn a_classifier_keeps_its_top_class_and_confidence() {
        let answer = |top: &str, confidence: f32| {
            Response::Classification(ClassificationResponse {
                inference_id: String::new(),
                time: 0.0,
                image: ImageSize { width: 1, height: 1 },
                predictions: vec![ClassPrediction { class: top.into(), class_id: 0, confidence }],
                top: top.into(),
                confidence,
            })
        };
        assert!(compare(&answer("cat", 0.8), &answer("cat", 0.78)).0);
        assert!(!compare(&answer("cat", 0.8), &answer("cat", 0.7)).0);
        assert!(!compare(&answer("cat", 0.8), &answer("dog", 0.8)).0);
        assert!(!compare(&answer("cat", 0.8), &detections(vec![])).0);
    }
}
