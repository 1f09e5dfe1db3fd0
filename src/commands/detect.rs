//! `outpost detect IMAGE...`: one Roboflow-shaped JSON line per image.

use crate::cli::{DetectArgs, Global};
use crate::exit::{Exit, Failure};
use crate::models::load_detector;
use crate::vision::detection::Thresholds;
use crate::vision::image;

pub fn run(global: &Global, args: &DetectArgs) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let mut detector = load_detector(&loaded.config, &args.model)?;
    let defaults = Thresholds::default();
    detector.codec.thresholds = Thresholds {
        confidence: args.confidence.unwrap_or(defaults.confidence),
        iou: args.iou.unwrap_or(defaults.iou),
        max_detections: args.max_detections.unwrap_or(defaults.max_detections),
        class_agnostic: args.class_agnostic,
    };
    let mut failed = 0;
    for path in &args.images {
        let result = image::load(path).and_then(|img| {
            detector.infer(&img).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
        });
        match result {
            Ok(response) => outln!("{}", serde_json::to_string(&response)?)?,
            Err(e) => {
                log::error!("{e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::new(Exit::Runtime, format!("{failed} of {} image(s) failed", args.images.len())).into());
    }
    Ok(())
}
