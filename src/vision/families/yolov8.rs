//! YOLOv8/YOLO11-style heads: output `[1, 4 + C, N]` (or transposed `[1, N, 4 + C]` when
//! stated by family), rows cx, cy, w, h in input pixels then C class scores; no objectness.

use super::corners;
use crate::backend::Output;
use crate::vision::detection::{Detection, Thresholds};

pub fn candidates(out: &Output, t: &Thresholds, work: &mut Vec<Detection>) -> Result<(), String> {
    let [1, a, b] = out.shape[..] else {
        return Err(format!("yolov8 expects an output [1, 4+C, N]; this model gives {:?}", out.shape));
    };
    // Channels are the short axis: [1, 84, 8400] or, transposed, [1, 8400, 84].
    let (channels, anchors, transposed) = if a <= b { (a, b, false) } else { (b, a, true) };
    if channels < 5 {
        return Err(format!("yolov8 expects 4 box rows and at least one class row; output is {:?}", out.shape));
    }
    let d = &out.data;
    let at = |c: usize, i: usize| if transposed { d[i * channels + c] } else { d[c * anchors + i] };
    for i in 0..anchors {
        let (mut best, mut score) = (0usize, f32::MIN);
        for c in 4..channels {
            let s = at(c, i);
            if s > score {
                (best, score) = (c - 4, s);
            }
        }
        if score > t.confidence {
            work.push(corners(at(0, i), at(1, i), at(2, i), at(3, i), score, best as u32));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_built_head() {
        // 2 classes, 8 anchors: anchor 1 is class 1 at 0.9; the others are below threshold.
        let (ch, n) = (6, 8);
        let mut data = vec![0.0; ch * n];
        let mut set = |c: usize, i: usize, v: f32| data[c * n + i] = v;
        set(0, 1, 100.0);
        set(1, 1, 50.0);
        set(2, 1, 20.0);
        set(3, 1, 10.0);
        set(5, 1, 0.9);
        set(4, 0, 0.2);
        let out = Output { name: "output0".into(), shape: vec![1, ch, n], data };
        let mut work = Vec::new();
        candidates(&out, &Thresholds::default(), &mut work).unwrap();
        assert_eq!(work, vec![Detection { x1: 90.0, y1: 45.0, x2: 110.0, y2: 55.0, confidence: 0.9, class_id: 1 }]);
    }

    #[test]
    fn wrong_rank_is_an_error() {
        let out = Output { name: String::new(), shape: vec![1, 1000], data: vec![0.0; 1000] };
        assert!(candidates(&out, &Thresholds::default(), &mut Vec::new()).unwrap_err().contains("[1, 1000]"));
    }
}
