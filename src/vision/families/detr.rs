//! DETR-family heads (RF-DETR and similar): boxes `[1, Q, 4]` as normalised cx, cy, w, h and class
//! logits `[1, Q, C]`. Sigmoid, then top-k over all query x class scores; no NMS.

use crate::backend::Output;
use crate::vision::detection::{Detections, Thresholds, MAX_DETECTIONS};

pub fn top_k(outputs: &[Output], input: (u32, u32), t: &Thresholds, out: &mut Detections) -> Result<(), String> {
    let (boxes, logits) = split(outputs)?;
    let [1, q, _] = boxes.shape[..] else { unreachable!("checked by split") };
    let classes = logits.shape[2];
    let (w, h) = (input.0 as f32, input.1 as f32);
    let k = t.max_detections.min(MAX_DETECTIONS);
    out.clear();
    // Keep the k best (query, class) pairs above the threshold, best first, by insertion.
    for qi in 0..q {
        for c in 0..classes {
            let score = sigmoid(logits.data[qi * classes + c]);
            // A NaN logit must be skipped explicitly: it passes every comparison below.
            if score.is_nan() || score <= t.confidence || (out.len() == k && out.last().is_some_and(|d| d.confidence >= score)) {
                continue;
            }
            let b = &boxes.data[qi * 4..qi * 4 + 4];
            let det = super::corners(b[0] * w, b[1] * h, b[2] * w, b[3] * h, score, c as u32);
            let finite = [det.x1, det.y1, det.x2, det.y2].iter().all(|v| v.is_finite());
            if !finite || det.x2 < det.x1 || det.y2 < det.y1 {
                continue;
            }
            let pos = out.iter().position(|d| d.confidence < score).unwrap_or(out.len());
            if out.len() == k {
                out.pop();
            }
            let _ = out.insert(pos, det);
        }
    }
    Ok(())
}

fn split(outputs: &[Output]) -> Result<(&Output, &Output), String> {
    let err = || {
        format!(
            "detr expects boxes [1, Q, 4] and logits [1, Q, C]; this model gives {:?}",
            outputs.iter().map(|o| &o.shape).collect::<Vec<_>>()
        )
    };
    let [a, b] = outputs else { return Err(err()) };
    let (boxes, logits) = if a.shape.last() == Some(&4) && b.shape.len() == 3 { (a, b) } else { (b, a) };
    match (&boxes.shape[..], &logits.shape[..]) {
        ([1, q, 4], [1, q2, c]) if q == q2 && *c > 0 => Ok((boxes, logits)),
        _ => Err(err()),
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_over_queries_and_classes() {
        let boxes = Output { name: "dets".into(), shape: vec![1, 2, 4], data: vec![0.5, 0.5, 0.2, 0.2, 0.25, 0.25, 0.1, 0.1] };
        // Query 0: class 1 strong; query 1: class 0 medium, class 1 weak.
        let logits = Output { name: "labels".into(), shape: vec![1, 2, 2], data: vec![-5.0, 3.0, 1.0, -1.0] };
        let mut out = Detections::new();
        top_k(&[boxes, logits], (100, 200), &Thresholds::default(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].confidence - sigmoid(3.0)).abs() < 1e-6);
        assert_eq!((out[0].x1, out[0].y1, out[0].x2, out[0].y2), (40.0, 80.0, 60.0, 120.0));
        assert_eq!(out[1].class_id, 0);
        let mut one = Detections::new();
        let t = Thresholds { max_detections: 1, ..Thresholds::default() };
        top_k(&[out_boxes(), out_logits()], (100, 100), &t, &mut one).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn nan_logits_and_boxes_are_skipped_not_a_panic() {
        let boxes = Output { name: String::new(), shape: vec![1, 4, 4], data: [[0.5, 0.5, 0.2, 0.2], [f32::NAN, 0.5, 0.1, 0.1], [0.5, 0.5, -0.2, 0.1], [0.3, 0.3, 0.1, 0.1]].concat() };
        let logits = Output { name: String::new(), shape: vec![1, 4, 2], data: vec![f32::NAN, 2.0, 3.0, 3.0, 4.0, 4.0, 1.0, f32::NAN] };
        for max_detections in [1, 2, 3, 300] {
            let t = Thresholds { max_detections, ..Thresholds::default() };
            let mut out = Detections::new();
            top_k(&[boxes.clone(), logits.clone()], (100, 100), &t, &mut out).unwrap();
            assert!(out.len() <= max_detections.min(2));
            assert!(out.iter().all(|d| d.confidence.is_finite() && d.x2 >= d.x1), "{out:?}");
        }
        let all_nan = Output { name: String::new(), shape: vec![1, 4, 2], data: vec![f32::NAN; 8] };
        let mut out = Detections::new();
        top_k(&[boxes, all_nan], (100, 100), &Thresholds::default(), &mut out).unwrap();
        assert!(out.is_empty());
    }

    fn out_boxes() -> Output {
        Output { name: String::new(), shape: vec![1, 2, 4], data: vec![0.5; 8] }
    }

    fn out_logits() -> Output {
        Output { name: String::new(), shape: vec![1, 2, 1], data: vec![2.0, 4.0] }
    }
}
