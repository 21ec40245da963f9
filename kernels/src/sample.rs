//! Choosing the next token from the last position's logits: greedy (argmax)
//! or nucleus (top-p) sampling with a temperature and a seeded [`Rng`].
//!
//! Both are deterministic: ties go to the lowest token id and NaN logits are
//! never chosen (an all-NaN row — what a plan that races on a slot produces
//! under adversarial replay — yields token 0), so two runs of the same plan
//! with the same seed give the same tokens, and a broken one fails the same way.

use crate::rng::Rng;

/// Index of the largest value; the first one on ties; NaN ignored; 0 if all are NaN or `x` is empty.
pub fn argmax_f32(x: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    let mut seen = false;
    for (i, &v) in x.iter().enumerate() {
        if !v.is_nan() && (!seen || v > best_v) {
            best = i;
            best_v = v;
            seen = true;
        }
    }
    best
}

/// Samples from `softmax(logits / temperature)` restricted to the smallest set
/// of most likely tokens whose probability reaches `top_p`. `temperature <= 0`
/// means greedy; `top_p >= 1` samples from the whole distribution.
pub fn sample_top_p_f32(logits: &[f32], temperature: f32, top_p: f32, rng: &mut Rng) -> usize {
    if temperature <= 0.0 || logits.is_empty() {
        return argmax_f32(logits);
    }
    let max = logits[argmax_f32(logits)];
    if !max.is_finite() {
        return argmax_f32(logits);
    }
    let mut probs: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, if l.is_nan() { 0.0 } else { ((l - max) / temperature).exp() }))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    // Most likely first; the lower id first among equals.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let target = top_p.clamp(0.0, 1.0) * total;
    let mut kept = 0;
    let mut mass = 0f32;
    for p in &probs {
        mass += p.1;
        kept += 1;
        if mass >= target {
            break;
        }
    }
    let r = rng.uniform() * mass;
    let mut acc = 0f32;
    for p in &probs[..kept] {
        acc += p.1;
        if r < acc {
            return p.0;
        }
    }
    probs[kept - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_ignores_nan() {
        assert_eq!(argmax_f32(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax_f32(&[f32::NAN, -5.0, f32::NAN, -4.0]), 3);
        assert_eq!(argmax_f32(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax_f32(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax_f32(&[]), 0);
    }

    #[test]
    fn zero_temperature_and_tiny_top_p_are_greedy() {
        let logits = [0.1, 2.0, 1.9, -3.0];
        let mut rng = Rng::new(1);
        assert_eq!(sample_top_p_f32(&logits, 0.0, 0.9, &mut rng), 1);
        for _ in 0..100 {
            assert_eq!(sample_top_p_f32(&logits, 1.0, 1e-6, &mut rng), 1);
        }
    }

    #[test]
    fn top_p_excludes_the_tail_and_frequencies_follow_the_distribution() {
        // Probabilities ∝ e^[ln 5, ln 3, ln 2, ln 0.01]: 0.497, 0.298, 0.199, 0.001.
        let logits = [5f32.ln(), 3f32.ln(), 2f32.ln(), 0.01f32.ln()];
        let mut rng = Rng::new(42);
        let mut counts = [0usize; 4];
        let n = 20000;
        for _ in 0..n {
            counts[sample_top_p_f32(&logits, 1.0, 0.7, &mut rng)] += 1;
        }
        // top_p 0.7 keeps {0, 1} (0.497 < 0.7 <= 0.795): renormalised 5/8 and 3/8.
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        let f0 = counts[0] as f64 / n as f64;
        assert!((f0 - 0.625).abs() < 0.02, "{counts:?}");
        let mut again = Rng::new(42);
        let first: Vec<usize> = (0..50).map(|_| sample_top_p_f32(&logits, 1.0, 0.7, &mut again)).collect();
        let mut same = Rng::new(42);
        assert_eq!(first, (0..50).map(|_| sample_top_p_f32(&logits, 1.0, 0.7, &mut same)).collect::<Vec<_>>());
    }
}
