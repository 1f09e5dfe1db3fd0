//! The fp16 accuracy gate on real models and real pictures. TensorRT's fp16 engine is the
//! candidate on a GPU; no GPU here, so tract in half precision stands in as the candidate: the
//! gate (calibration image prepared at the engine's size, tract f32 as the reference, both
//! decoded, boxes paired) is the same code either way.

mod support;

use outpost::backend::{Backend, HalfGate};
use outpost::config::Precision;
use outpost::detector::Spec;
use outpost::models::half_gate::Calibration;
use outpost::vision::families::Family;
use support::fixtures;

fn calibration(model: &str, family: Family, image: &str) -> Calibration {
    let spec = Spec { family: Some(family), classes: family.default_classes(), ..Spec::default() };
    Calibration::new(&fixtures().join(model), spec, &fixtures().join("images").join(image), 2).unwrap()
}

fn half(model: &str) -> Box<dyn outpost::backend::Session> {
    outpost::backend::tract::Tract::new(2).with_precision(Precision::F16).prepare(&fixtures().join(model)).unwrap()
}

#[test]
fn centerface_keeps_its_faces_in_half_precision() {
    let gate = calibration("centerface.onnx", Family::CenterFace, "astronaut.png");
    let verdict = gate.check(half("centerface.onnx").as_mut(), 512, 512).unwrap();
    assert!(verdict.accepted, "{verdict:?}");
    assert!(verdict.reason.contains("1 of f32's 1 boxes matched (same classes, IoU >= 0.9"), "{verdict:?}");
    assert!(verdict.reason.contains("astronaut.png at 512x512"), "{verdict:?}");
    let sha = support::http::sha256_hex(&std::fs::read(fixtures().join("images/astronaut.png")).unwrap());
    assert_eq!(verdict.calibration_sha256, sha);
    assert_eq!(gate.calibration_sha256(), sha);
}

#[test]
fn rfdetr_loses_its_boxes_in_half_precision_and_is_refused() {
    // RF-DETR is known to lose accuracy in fp16; this random-weight one does on every picture.
    let gate = calibration("rfdetr_random.onnx", Family::Detr, "coffee.png");
    let verdict = gate.check(half("rfdetr_random.onnx").as_mut(), 384, 384).unwrap();
    assert!(!verdict.accepted, "{verdict:?}");
    assert!(verdict.reason.contains("coffee.png at 384x384"), "{verdict:?}");
    assert!(verdict.reason.contains("IoU >= 0.9") || verdict.reason.contains("that f32 does not"), "{verdict:?}");
}

#[test]
fn the_f32_engine_itself_passes_and_a_picture_without_detections_proves_nothing() {
    // The refusal above is the gate's judgement, not a rubber stamp turned over: the same model
    // in f32 as the candidate passes on the same picture.
    let gate = calibration("rfdetr_random.onnx", Family::Detr, "coffee.png");
    let mut same = outpost::backend::tract::Tract::new(2).prepare(&fixtures().join("rfdetr_random.onnx")).unwrap();
    let verdict = gate.check(same.as_mut(), 384, 384).unwrap();
    assert!(verdict.accepted, "{verdict:?}");
    // A face detector calibrated on a cup of coffee: no face in f32, so nothing is accepted.
    let coffee = calibration("centerface.onnx", Family::CenterFace, "coffee.png");
    let verdict = coffee.check(half("centerface.onnx").as_mut(), 512, 512).unwrap();
    assert!(!verdict.accepted && verdict.reason.contains("nothing to compare"), "{verdict:?}");
}

#[test]
fn a_calibration_image_that_cannot_be_read_is_named() {
    let spec = Spec { family: Some(Family::CenterFace), ..Spec::default() };
    let missing = fixtures().join("images/no-such-picture.jpg");
    let err = Calibration::new(&fixtures().join("centerface.onnx"), spec.clone(), &missing, 1).err().unwrap().to_string();
    assert!(err.contains("inference.calibration_image") && err.contains("no-such-picture.jpg"), "{err}");
    let not_an_image = fixtures().join("README.md");
    let err = Calibration::new(&fixtures().join("centerface.onnx"), spec, &not_an_image, 1).err().unwrap().to_string();
    assert!(err.contains("inference.calibration_image") && err.contains("README.md"), "{err}");
}
