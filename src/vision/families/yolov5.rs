//! YOLOv5/v7-style heads: output `[1, N, 5 + C]`, each row cx, cy, w, h, objectness, then C class
//! probabilities; confidence = objectness x class probability.

use super::corners;
use crate::backend::Output;
use crate::vision::detection::{Detection, Thresholds};

pub fn candidates(out: &Output, t: &Thresholds, work: &mut Vec<Detection>) -> Result<(), String> {
    let [1, n, row] = out.shape[..] else {
        return Err(format!("yolov5 expects an output [1, N, 5+C]; this model gives {:?}", out.shape));
    };
    if row < 6 {
        return Err(format!("yolov5 expects rows of 5 + classes values; output is {:?}", out.shape));
    }
    for r in out.data.chunks_exact(row).take(n) {
        let objectness = r[4];
        if objectness <= t.confidence {
            continue;
        }
        let (best, p) = r[5..].iter().enumerate().fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
        let confidence = objectness * p;
        if confidence > t.confidence {
            work.push(corners(r[0], r[1], r[2], r[3], confidence, best as u32));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_objectness_times_class_probability() {
        let rows = [
            [10.0, 10.0, 4.0, 4.0, 0.9, 0.1, 0.8], // 0.72, class 1
            [50.0, 50.0, 4.0, 4.0, 0.5, 0.7, 0.1], // 0.35 < 0.4
            [90.0, 90.0, 4.0, 4.0, 0.3, 1.0, 1.0], // objectness below threshold
        ];
        let out = Output { name: String::new(), shape: vec![1, 3, 7], data: rows.concat() };
        let mut work = Vec::new();
        candidates(&out, &Thresholds::default(), &mut work).unwrap();
        assert_eq!(work.len(), 1);
        assert!((work[0].confidence - 0.72).abs() < 1e-6 && work[0].class_id == 1);
        assert_eq!((work[0].x1, work[0].y2), (8.0, 12.0));
    }
}
