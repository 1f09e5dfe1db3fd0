//! Detections, non-maximum suppression and the fixed-capacity buffers that keep the per-frame
//! path free of per-detection allocation.

/// Upper bound for `max_detections`: the output buffer's fixed capacity.
pub const MAX_DETECTIONS: usize = 1000;

/// A box in pixel coordinates (x1, y1) top-left to (x2, y2) bottom-right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub confidence: f32,
    pub class_id: u32,
}

impl Detection {
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    pub fn iou(&self, other: &Detection) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// The detections of one frame: fixed capacity, no allocation.
pub type Detections = heapless::Vec<Detection, MAX_DETECTIONS>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub confidence: f32,
    pub iou: f32,
    pub max_detections: usize,
    pub class_agnostic: bool,
}

impl Default for Thresholds {
    /// Roboflow's server defaults.
    fn default() -> Self {
        Thresholds { confidence: 0.4, iou: 0.3, max_detections: 300, class_agnostic: false }
    }
}

/// Greedy NMS: highest confidence first (ties keep the earlier candidate), a box is dropped when
/// its IoU with a kept box of the same class (any class if `class_agnostic`) exceeds `iou`.
/// `candidates` is reordered in place; the survivors go to `out`, at most `max_detections`.
pub fn nms(candidates: &mut [Detection], t: &Thresholds, out: &mut Detections) {
    out.clear();
    candidates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let limit = t.max_detections.min(MAX_DETECTIONS);
    for cand in candidates.iter() {
        if out.len() >= limit {
            break;
        }
        let suppressed = out
            .iter()
            .any(|kept| (t.class_agnostic || kept.class_id == cand.class_id) && kept.iou(cand) > t.iou);
        if !suppressed {
            // Cannot fail: len < limit <= capacity.
            let _ = out.push(*cand);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, confidence: f32, class_id: u32) -> Detection {
        Detection { x1, y1, x2, y2, confidence, class_id }
    }

    fn t(iou: f32, agnostic: bool) -> Thresholds {
        Thresholds { confidence: 0.0, iou, max_detections: 300, class_agnostic: agnostic }
    }

    #[test]
    fn overlapping_boxes_of_one_class_collapse_to_the_best() {
        let mut c = [det(0., 0., 10., 10., 0.8, 0), det(1., 1., 11., 11., 0.9, 0), det(50., 50., 60., 60., 0.5, 0)];
        let mut out = Detections::new();
        nms(&mut c, &t(0.3, false), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].confidence, 0.9);
        assert_eq!(out[1].confidence, 0.5);
    }

    #[test]
    fn per_class_keeps_overlaps_of_other_classes_agnostic_does_not() {
        let mut c = [det(0., 0., 10., 10., 0.9, 0), det(0., 0., 10., 10., 0.8, 1)];
        let mut out = Detections::new();
        nms(&mut c.clone(), &t(0.3, false), &mut out);
        assert_eq!(out.len(), 2);
        nms(&mut c, &t(0.3, true), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 0);
    }

    #[test]
    fn ties_keep_the_earlier_candidate() {
        let mut c = [det(0., 0., 10., 10., 0.7, 3), det(0., 0., 10., 10., 0.7, 4)];
        let mut out = Detections::new();
        nms(&mut c, &t(0.3, true), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 3, "stable order among equal confidences");
    }

    #[test]
    fn zero_area_boxes_never_suppress_or_divide_by_zero() {
        let zero = det(5., 5., 5., 5., 0.9, 0);
        assert_eq!(zero.iou(&zero), 0.0);
        let mut c = [zero, det(0., 0., 10., 10., 0.8, 0)];
        let mut out = Detections::new();
        nms(&mut c, &t(0.3, false), &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn iou_exactly_at_the_threshold_is_kept() {
        // Two 10x10 boxes overlapping by half: IoU = 50 / 150 = 1/3.
        let a = det(0., 0., 10., 10., 0.9, 0);
        let b = det(5., 0., 15., 10., 0.8, 0);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        let mut out = Detections::new();
        nms(&mut [a, b], &t(1.0 / 3.0, false), &mut out);
        assert_eq!(out.len(), 2, "suppression needs IoU above the threshold");
    }

    #[test]
    fn max_detections_caps_the_output() {
        let mut c: Vec<Detection> = (0..50).map(|i| det(i as f32 * 20., 0., i as f32 * 20. + 10., 10., 0.5, 0)).collect();
        let mut out = Detections::new();
        nms(&mut c, &Thresholds { max_detections: 7, ..t(0.3, false) }, &mut out);
        assert_eq!(out.len(), 7);
    }
}
