//! Classification heads: `[1, C]` logits or probabilities, into the top classes.

use crate::backend::Output;

/// `(class_id, confidence)` pairs, best first, at most `k`.
pub fn top(outputs: &[Output], k: usize) -> Result<Vec<(u32, f32)>, String> {
    let [out] = outputs else {
        return Err(format!("classification expects one output [1, C]; this model has {}", outputs.len()));
    };
    let [1, _] = out.shape[..] else {
        return Err(format!("classification expects an output [1, C]; this model gives {:?}", out.shape));
    };
    if out.data.iter().all(|v| v.is_nan()) {
        return Err(format!("classification output {} holds no number (all NaN)", out.name));
    }
    let probs = probabilities(&out.data);
    let mut ranked: Vec<(u32, f32)> = probs.into_iter().enumerate().map(|(i, p)| (i as u32, p)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    Ok(ranked)
}

/// Softmax, unless the values already are a distribution. NaN counts as no evidence (0); +Inf
/// logits share all the probability (softmax's limit).
fn probabilities(values: &[f32]) -> Vec<f32> {
    let infinite = values.iter().filter(|v| **v == f32::INFINITY).count();
    if infinite > 0 {
        return values.iter().map(|&v| if v == f32::INFINITY { 1.0 / infinite as f32 } else { 0.0 }).collect();
    }
    // Values all within 0..1 are probabilities already: a softmax head (its sum a little off 1
    // in fp16) or a multi-label sigmoid head (any sum). Softmaxing them again would flatten them.
    if values.iter().filter(|v| !v.is_nan()).all(|v| (0.0..=1.0).contains(v)) {
        return values.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
    }
    let max = values.iter().copied().filter(|v| !v.is_nan()).fold(f32::MIN, f32::max);
    let exps: Vec<f32> = values.iter().map(|&v| if v.is_nan() { 0.0 } else { (v - max).exp() }).collect();
    let total: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_are_softmaxed_probabilities_kept() {
        let out = Output { name: String::new(), shape: vec![1, 3], data: vec![1.0, 3.0, 2.0] };
        let top2 = top(&[out], 2).unwrap();
        assert_eq!(top2[0].0, 1);
        assert!((top2[0].1 - 0.665_240_9).abs() < 1e-5);
        let probs = Output { name: String::new(), shape: vec![1, 2], data: vec![0.25, 0.75] };
        assert_eq!(top(&[probs], 5).unwrap(), vec![(1, 0.75), (0, 0.25)]);
    }

    #[test]
    fn probabilities_are_kept_as_they_are() {
        let out = |data: Vec<f32>| Output { name: "p".into(), shape: vec![1, data.len()], data };
        // fp16 softmax summing to 0.996, and a multi-label sigmoid head.
        assert_eq!(top(&[out(vec![0.196, 0.8])], 1).unwrap(), vec![(1, 0.8)]);
        assert_eq!(top(&[out(vec![0.9, 0.7, 0.95])], 3).unwrap(), vec![(2, 0.95), (0, 0.9), (1, 0.7)]);
    }

    #[test]
    fn nan_and_infinite_logits_give_numbers() {
        let out = |data: Vec<f32>| Output { name: "p".into(), shape: vec![1, data.len()], data };
        let nan = top(&[out(vec![1.0, f32::NAN, 3.0])], 3).unwrap();
        assert_eq!(nan[0].0, 2);
        assert!(nan.iter().all(|(_, p)| p.is_finite()), "{nan:?}");
        assert_eq!(top(&[out(vec![1.0, f32::INFINITY, 3.0])], 1).unwrap(), vec![(1, 1.0)]);
        assert!(top(&[out(vec![f32::NAN; 3])], 1).unwrap_err().contains("NaN"));
    }
}
