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
    let probs = probabilities(&out.data);
    let mut ranked: Vec<(u32, f32)> = probs.into_iter().enumerate().map(|(i, p)| (i as u32, p)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    Ok(ranked)
}

/// Softmax, unless the values already are a distribution.
fn probabilities(values: &[f32]) -> Vec<f32> {
    let sum: f32 = values.iter().sum();
    if values.iter().all(|v| (0.0..=1.0).contains(v)) && (sum - 1.0).abs() < 1e-3 {
        return values.to_vec();
    }
    let max = values.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = values.iter().map(|v| (v - max).exp()).collect();
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
}
