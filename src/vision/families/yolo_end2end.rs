//! End-to-end YOLO heads (YOLOv10, YOLO26 and Roboflow's exports of them): output `[1, N, 6]`,
//! each row x1, y1, x2, y2 (input pixels), score, class id; already one box per object, so no NMS.

use crate::backend::Output;
use crate::vision::detection::{Detection, Thresholds};

pub fn candidates(out: &Output, t: &Thresholds, work: &mut Vec<Detection>) -> Result<(), String> {
    let [1, n, 6] = out.shape[..] else {
        return Err(format!("an end-to-end YOLO head is [1, N, 6] (x1, y1, x2, y2, score, class); this model gives {:?}", out.shape));
    };
    for r in out.data.chunks_exact(6).take(n) {
        let (score, class) = (r[4], r[5]);
        if !(score > t.confidence) {
            continue;
        }
        if !class.is_finite() || class < 0.0 || class.fract() != 0.0 || class > u32::MAX as f32 {
            return Err(format!("an end-to-end YOLO head's 6th column is a class id; this model gives {class}"));
        }
        work.push(Detection { x1: r[0], y1: r[1], x2: r[2], y2: r[3], confidence: score, class_id: class as u32 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_corner_boxes_with_score_and_class() {
        let data = vec![10.0, 20.0, 50.0, 60.0, 0.9, 3.0, 0.0, 0.0, 5.0, 5.0, 0.1, 1.0];
        let out = Output { name: "output0".into(), shape: vec![1, 2, 6], data };
        let mut work = Vec::new();
        candidates(&out, &Thresholds::default(), &mut work).unwrap();
        assert_eq!(work, vec![Detection { x1: 10.0, y1: 20.0, x2: 50.0, y2: 60.0, confidence: 0.9, class_id: 3 }]);
        let bad = Output { name: String::new(), shape: vec![1, 1, 6], data: vec![0.0, 0.0, 1.0, 1.0, 0.9, 2.5] };
        assert!(candidates(&bad, &Thresholds::default(), &mut Vec::new()).is_err());
    }
}
