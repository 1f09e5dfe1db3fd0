//! YOLOv8/YOLO11-style heads: output `[1, 4 + C, N]` (or transposed `[1, N, 4 + C]` when
//! stated by family), rows cx, cy, w, h in input pixels then C class scores; no objectness.

use super::corners;
use crate::backend::Output;
use crate::vision::detection::{Detection, Thresholds};

/// Anchors a YOLOv8 head has at `input` (strides 8, 16 and 32): 8400 at 640x640.
pub fn anchor_count(input: (u32, u32)) -> usize {
    // Each stride-2 stage rounds up (3x3 conv, padding 1), as the network does.
    [8, 16, 32].iter().map(|s| input.0.div_ceil(*s) as usize * input.1.div_ceil(*s) as usize).sum()
}

/// `input` is the model input size (width, height), `classes` the class count when known.
pub fn candidates(
    out: &Output,
    input: (u32, u32),
    classes: Option<usize>,
    t: &Thresholds,
    work: &mut Vec<Detection>,
) -> Result<(), String> {
    let [1, a, b] = out.shape[..] else {
        return Err(format!("yolov8 expects an output [1, 4+C, N]; this model gives {:?}", out.shape));
    };
    let (channels, anchors, transposed) = layout(a, b, anchor_count(input), classes).ok_or_else(|| {
        format!(
            "yolov8 expects an output [1, 4+C, N] (or [1, N, 4+C]) with N = {} anchors at {}x{}{}; this model gives {:?}",
            anchor_count(input),
            input.0,
            input.1,
            classes.map_or(String::new(), |c| format!(" and C = {c} classes")),
            out.shape
        )
    })?;
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

/// (channels, anchors, transposed) for an output `[1, a, b]`: decided by the anchor count the
/// input size implies, else by the class count when known (names may be fewer or more than the
/// model's classes, so they only break a tie), never by which axis is larger (600 classes at
/// 160x160 is `[1, 604, 525]`). `None` when the shape fits neither way: a YOLOv5 head
/// `[1, 25200, 85]` read as YOLOv8 would turn objectness into class 0.
fn layout(a: usize, b: usize, anchors: usize, classes: Option<usize>) -> Option<(usize, usize, bool)> {
    let plain = (a >= 5).then_some((a, b, false));
    let transposed = (b >= 5).then_some((b, a, true));
    match (b == anchors, a == anchors) {
        (true, false) => plain,
        (false, true) => transposed,
        _ => match classes {
            Some(c) if a == 4 + c && b != 4 + c => plain,
            Some(c) if b == 4 + c && a != 4 + c => transposed,
            _ if a == b => plain,
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_anchors_and_classes_not_the_longer_axis() {
        assert_eq!(anchor_count((640, 640)), 8400);
        assert_eq!(anchor_count((160, 160)), 525);
        assert_eq!(anchor_count((32, 32)), 21);
        // 600 classes at 160x160: channels are the longer axis.
        assert_eq!(layout(604, 525, 525, Some(600)), Some((604, 525, false)));
        assert_eq!(layout(604, 525, 525, None), Some((604, 525, false)));
        // 80 classes at 32x32: [1, 84, 21].
        assert_eq!(layout(84, 21, 21, Some(80)), Some((84, 21, false)));
        assert_eq!(layout(84, 21, 21, None), Some((84, 21, false)));
        // Transposed export.
        assert_eq!(layout(8400, 84, 8400, None), Some((84, 8400, true)));
        // A yolov5 head [1, 25200, 85] does not fit, with or without a class count.
        assert_eq!(layout(25200, 85, 8400, Some(80)), None);
        assert_eq!(layout(25200, 85, 8400, None), None);
        // Unusual strides: the class count decides.
        assert_eq!(layout(84, 1000, 8400, Some(80)), Some((84, 1000, false)));
    }

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
        candidates(&out, (64, 64), Some(2), &Thresholds::default(), &mut work).unwrap();
        assert_eq!(work, vec![Detection { x1: 90.0, y1: 45.0, x2: 110.0, y2: 55.0, confidence: 0.9, class_id: 1 }]);
    }

    #[test]
    fn wrong_rank_is_an_error() {
        let out = Output { name: String::new(), shape: vec![1, 1000], data: vec![0.0; 1000] };
        assert!(candidates(&out, (640, 640), None, &Thresholds::default(), &mut Vec::new()).unwrap_err().contains("[1, 1000]"));
    }
}
