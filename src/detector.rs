//! One model ready to turn images into predictions: a backend session, its family, the input
//! plan, and the reusable buffers of the per-frame path.

use std::time::{Duration, Instant};

use crate::backend::{Output, Session};
use crate::vision::detection::{Detection, Detections, Thresholds};
use crate::vision::families::{classification, Family};
use crate::vision::image::RgbImage;
use crate::vision::preprocess::Preprocessor;
use crate::vision::response::{
    box_prediction, class_name, uuid_v4, ClassPrediction, ClassificationResponse, ImageSize, ObjectDetectionResponse,
};

/// The JSON answer for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    Detection(ObjectDetectionResponse),
    Classification(ClassificationResponse),
}

/// Where the last frame's time went (for the pipeline's stage timings).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub preprocess: Duration,
    pub infer: Duration,
    pub postprocess: Duration,
}

pub struct Detector {
    session: Box<dyn Session>,
    family: Option<Family>,
    /// Explicit input `[width, height]` (manifest `input`, `--input`).
    size: Option<[u32; 2]>,
    classes: Vec<String>,
    /// The resize mode the model was trained with (environment.json), over the family default.
    pub resize: Option<crate::vision::preprocess::Resize>,
    pub thresholds: Thresholds,
    pre: Preprocessor,
    input: Vec<f32>,
    work: Vec<Detection>,
    dets: Detections,
    pub last: StageTimes,
}

impl Detector {
    pub fn new(session: Box<dyn Session>, family: Option<Family>, size: Option<[u32; 2]>, classes: Vec<String>) -> Detector {
        Detector {
            session,
            family,
            size,
            classes,
            resize: None,
            thresholds: Thresholds::default(),
            pre: Preprocessor::default(),
            input: Vec::new(),
            work: Vec::new(),
            dets: Detections::new(),
            last: StageTimes::default(),
        }
    }

    /// How many classes the model has, when its names say (manifest, environment, family).
    fn class_count(&self) -> Option<usize> {
        (!self.classes.is_empty()).then_some(self.classes.len())
    }

    pub fn family(&self) -> Option<Family> {
        self.family
    }

    /// `[width, height]` every image is resized to, when that does not depend on the image
    /// (manifest, environment, the file, or the family's default); `None` for CenterFace, which
    /// runs at each image's own size.
    pub fn input_size(&self) -> Option<[u32; 2]> {
        let fixed = self.session.input().fixed_hw();
        match self.family {
            Some(Family::CenterFace) => self.size,
            Some(family) => {
                let plan = family.input_plan(self.size, fixed, &RgbImage::new(1, 1, vec![0; 3]));
                Some([plan.width, plan.height])
            }
            None => self.size.or(fixed.map(|(h, w)| [w, h])),
        }
    }

    /// Raw outputs for `img` prepared as `family` expects (for parity checks and benchmarks).
    pub fn raw(&mut self, img: &RgbImage, family: Family) -> anyhow::Result<(Vec<Output>, crate::vision::preprocess::Geometry, (u32, u32))> {
        let mut plan = family.input_plan(self.size, self.session.input().fixed_hw(), img);
        if let Some(resize) = self.resize {
            plan.resize = resize;
        }
        let started = Instant::now();
        let geo = self.pre.run(img, plan.width, plan.height, plan.resize, plan.norm, &mut self.input)?;
        let prepared = Instant::now();
        let outputs = self.session.run(&self.input, plan.height, plan.width)?;
        self.last.preprocess = prepared - started;
        self.last.infer = prepared.elapsed();
        Ok((outputs, geo, (plan.width, plan.height)))
    }

    pub fn infer(&mut self, img: &RgbImage) -> anyhow::Result<Response> {
        let started = Instant::now();
        let family = match self.family {
            Some(f) => f,
            None => {
                // Run once with a YOLO-style input to see the outputs, then settle the family.
                let (outputs, _, _) = self.raw(img, Family::Yolov8)?;
                let f = Family::infer(&outputs).map_err(anyhow::Error::msg)?;
                log::info!("model family inferred from its outputs: {f}");
                self.family = Some(f);
                if self.classes.is_empty() {
                    self.classes = f.default_classes();
                }
                f
            }
        };
        let (outputs, geo, input) = self.raw(img, family)?;
        let decoding = Instant::now();
        let response = self.decode(family, &outputs, &geo, input, img, started);
        self.last.postprocess = decoding.elapsed();
        response
    }

    /// Model outputs to the Roboflow-shaped answer.
    fn decode(
        &mut self,
        family: Family,
        outputs: &[Output],
        geo: &crate::vision::preprocess::Geometry,
        input: (u32, u32),
        img: &RgbImage,
        started: Instant,
    ) -> anyhow::Result<Response> {
        let image = ImageSize { width: img.width, height: img.height };
        if family == Family::Classification {
            let ranked = classification::top(outputs, self.thresholds.max_detections).map_err(anyhow::Error::msg)?;
            let predictions: Vec<ClassPrediction> = ranked
                .iter()
                .map(|&(id, confidence)| ClassPrediction { class: class_name(&self.classes, id), class_id: id, confidence })
                .collect();
            let (top, confidence) = predictions.first().map_or((String::new(), 0.0), |p| (p.class.clone(), p.confidence));
            return Ok(Response::Classification(ClassificationResponse {
                inference_id: uuid_v4(),
                time: started.elapsed().as_secs_f64(),
                image,
                predictions,
                top,
                confidence,
            }));
        }
        family
            .detect(outputs, geo, input, self.class_count(), &self.thresholds, &mut self.work, &mut self.dets)
            .map_err(|e| anyhow::anyhow!("model outputs do not fit family {family}: {e}"))?;
        Ok(Response::Detection(ObjectDetectionResponse {
            inference_id: uuid_v4(),
            time: started.elapsed().as_secs_f64(),
            image,
            predictions: self.dets.iter().map(|d| box_prediction(d, &self.classes)).collect(),
        }))
    }
}
