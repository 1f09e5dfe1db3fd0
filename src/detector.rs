//! One model ready to turn images into predictions: an engine session, and the [`Codec`] around
//! it (input plan, preprocessing, decoding, the per-frame buffers), which can run on another
//! thread than the engine.

use std::time::{Duration, Instant};

use crate::backend::{Output, Session};
use crate::vision::detection::{Detection, Detections, Thresholds};
use crate::vision::families::{classification, Family};
use crate::vision::image::RgbImage;
use crate::vision::preprocess::{Geometry, Preprocessor, Resize};
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

/// Everything of a model but the engine, as plain data: its family, input size, class names and
/// resize mode. Each thread that prepares images or decodes outputs makes its own [`Codec`] from it.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub family: Option<Family>,
    /// Explicit input `[width, height]` (manifest `input`, `--input`).
    pub size: Option<[u32; 2]>,
    pub classes: Vec<String>,
    /// The resize mode the model was trained with (environment.json), over the family default.
    pub resize: Option<Resize>,
    /// `(height, width)` the model file fixes.
    pub fixed: Option<(u32, u32)>,
}

impl Spec {
    /// `[width, height]` every image is resized to, when that does not depend on the image
    /// (manifest, environment, the file, or the family's default); `None` for CenterFace, which
    /// runs at each image's own size.
    pub fn input_size(&self) -> Option<[u32; 2]> {
        match self.family {
            Some(Family::CenterFace) => self.size,
            Some(family) => {
                let plan = family.input_plan(self.size, self.fixed, &RgbImage::new(1, 1, vec![0; 3]));
                Some([plan.width, plan.height])
            }
            None => self.size.or(self.fixed.map(|(h, w)| [w, h])),
        }
    }
}

/// What decoding needs to know about a prepared image.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub family: Family,
    /// The model input's `(width, height)`.
    pub input: (u32, u32),
    pub geo: Geometry,
    /// The original image.
    pub image: ImageSize,
    /// When preparing began (the answer's `time` counts from here).
    pub started: Instant,
    pub preprocess: Duration,
}

/// One image as the engine takes it: `[1, 3, height, width]` f32.
pub struct Prepared {
    pub data: Vec<f32>,
    pub meta: Meta,
}

/// The per-image work around the engine: images to input tensors, output tensors to answers,
/// with reusable buffers. Runs on whichever thread holds it, so preparing the next image and
/// decoding the last can overlap the engine's run.
pub struct Codec {
    pub spec: Spec,
    pub thresholds: Thresholds,
    pre: Preprocessor,
    /// Input buffers handed back after a run, reused by the next [`Codec::prepare`].
    spare: Vec<Vec<f32>>,
    work: Vec<Detection>,
    dets: Detections,
}

impl Codec {
    pub fn new(spec: Spec) -> Codec {
        Codec {
            spec,
            thresholds: Thresholds::default(),
            pre: Preprocessor::default(),
            spare: Vec::new(),
            work: Vec::new(),
            dets: Detections::new(),
        }
    }

    /// `img` prepared as `family` expects.
    pub fn prepare(&mut self, img: &RgbImage, family: Family) -> anyhow::Result<Prepared> {
        let started = Instant::now();
        let mut plan = family.input_plan(self.spec.size, self.spec.fixed, img);
        if let Some(resize) = self.spec.resize {
            plan.resize = resize;
        }
        let mut data = self.spare.pop().unwrap_or_default();
        let geo = match self.pre.run(img, plan.width, plan.height, plan.resize, plan.norm, &mut data) {
            Ok(geo) => geo,
            Err(e) => {
                self.spare.push(data);
                return Err(e);
            }
        };
        let meta = Meta {
            family,
            input: (plan.width, plan.height),
            geo,
            image: ImageSize { width: img.width, height: img.height },
            started,
            preprocess: started.elapsed(),
        };
        Ok(Prepared { data, meta })
    }

    /// Takes back an input buffer the engine is done with. Two are kept: one in the engine, one
    /// being filled.
    pub fn recycle(&mut self, data: Vec<f32>) {
        if self.spare.len() < 2 && data.capacity() > 0 {
            self.spare.push(data);
        }
    }

    /// How many classes the model has, when its names say (manifest, environment, family).
    fn class_count(&self) -> Option<usize> {
        (!self.spec.classes.is_empty()).then_some(self.spec.classes.len())
    }

    /// Model outputs to the Roboflow-shaped answer.
    pub fn decode(&mut self, meta: &Meta, outputs: &[Output]) -> anyhow::Result<Response> {
        let (family, image, started) = (meta.family, meta.image, meta.started);
        if family == Family::Classification {
            let ranked = classification::top(outputs, self.thresholds.max_detections).map_err(anyhow::Error::msg)?;
            let predictions: Vec<ClassPrediction> = ranked
                .iter()
                .map(|&(id, confidence)| ClassPrediction {
                    class: class_name(&self.spec.classes, id),
                    class_id: id,
                    confidence,
                })
                .collect();
            let (top, confidence) =
                predictions.first().map_or((String::new(), 0.0), |p| (p.class.clone(), p.confidence));
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
            .detect(
                outputs,
                &meta.geo,
                meta.input,
                self.class_count(),
                &self.thresholds,
                &mut self.work,
                &mut self.dets,
            )
            .map_err(|e| anyhow::anyhow!("model outputs do not fit family {family}: {e}"))?;
        Ok(Response::Detection(ObjectDetectionResponse {
            inference_id: uuid_v4(),
            time: started.elapsed().as_secs_f64(),
            image,
            predictions: self.dets.iter().map(|d| box_prediction(d, &self.spec.classes)).collect(),
        }))
    }
}

/// One model ready to turn images into predictions on the calling thread: an engine session
/// and its [`Codec`] (for `detect`; `run` and `serve` split the two, see `models::registry`).
pub struct Detector {
    session: Box<dyn Session>,
    pub codec: Codec,
    pub last: StageTimes,
}

impl Detector {
    pub fn new(session: Box<dyn Session>, mut spec: Spec) -> Detector {
        spec.fixed = session.input().fixed_hw();
        Detector { session, codec: Codec::new(spec), last: StageTimes::default() }
    }

    pub fn family(&self) -> Option<Family> {
        self.codec.spec.family
    }

    pub fn input_size(&self) -> Option<[u32; 2]> {
        self.codec.spec.input_size()
    }

    /// The engine's outputs for `img` prepared as `family` expects.
    fn raw(&mut self, img: &RgbImage, family: Family) -> anyhow::Result<(Vec<Output>, Meta)> {
        let prepared = self.codec.prepare(img, family)?;
        let running = Instant::now();
        let (w, h) = prepared.meta.input;
        let outputs = self.session.run(&prepared.data, h, w);
        self.last.preprocess = prepared.meta.preprocess;
        self.last.infer = running.elapsed();
        self.codec.recycle(prepared.data);
        Ok((outputs?, prepared.meta))
    }

    /// Settles the family of a model that the manifest does not name: one run with a YOLO-style
    /// input shows its outputs.
    pub fn settle_family(&mut self, img: &RgbImage) -> anyhow::Result<Family> {
        if let Some(f) = self.codec.spec.family {
            return Ok(f);
        }
        let (outputs, _) = self.raw(img, Family::Yolov8)?;
        let f = Family::infer(&outputs).map_err(anyhow::Error::msg)?;
        log::info!("model family inferred from its outputs: {f}");
        self.codec.spec.family = Some(f);
        if self.codec.spec.classes.is_empty() {
            self.codec.spec.classes = f.default_classes();
        }
        Ok(f)
    }

    pub fn infer(&mut self, img: &RgbImage) -> anyhow::Result<Response> {
        let family = self.settle_family(img)?;
        let (outputs, meta) = self.raw(img, family)?;
        let decoding = Instant::now();
        let response = self.codec.decode(&meta, &outputs);
        self.last.postprocess = decoding.elapsed();
        response
    }

    /// Runs an input another thread prepared with a [`Codec`] of this model's [`Spec`].
    pub fn run_prepared(&mut self, data: &[f32], height: u32, width: u32) -> anyhow::Result<Vec<Output>> {
        self.session.run(data, height, width)
    }
}
