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

/// How the next token is chosen, in the order Hugging Face's `generate`
/// applies these processors: the repetition penalty on the logits of tokens
/// already in the sequence, then the temperature, top-k, top-p and min-p.
/// `temperature <= 0` is greedy (after the penalty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches this; 1: all.
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens; 0: all.
    pub top_k: usize,
    /// Keep tokens at least this fraction as likely as the most likely one; 0: all.
    pub min_p: f32,
    /// Divide a seen token's positive logit by this, multiply a negative one; 1: none.
    pub repetition_penalty: f32,
}

impl SampleParams {
    pub const GREEDY: SampleParams =
        SampleParams { temperature: 0.0, top_p: 1.0, top_k: 0, min_p: 0.0, repetition_penalty: 1.0 };
}

/// The next token for `logits` given the tokens `seen` so far (prompt and
/// generated), under `p`. Ties go to the lower id; NaN logits are never chosen.
pub fn sample_f32(logits: &[f32], p: &SampleParams, seen: &[u32], rng: &mut Rng) -> usize {
    let penalised;
    let logits = if p.repetition_penalty != 1.0 && !seen.is_empty() {
        let mut l = logits.to_vec();
        let mut done = vec![false; l.len()];
        for &t in seen {
            let t = t as usize;
            if t < l.len() && !done[t] {
                done[t] = true;
                l[t] = if l[t] > 0.0 { l[t] / p.repetition_penalty } else { l[t] * p.repetition_penalty };
            }
        }
        penalised = l;
        &penalised[..]
    } else {
        logits
    };
    if p.temperature <= 0.0 || logits.is_empty() {
        return argmax_f32(logits);
    }
    let max = logits[argmax_f32(logits)];
    if !max.is_finite() {
        return argmax_f32(logits);
    }
    let mut probs: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, if l.is_nan() { 0.0 } else { ((l - max) / p.temperature).exp() }))
        .collect();
    // Most likely first; the lower id first among equals.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if p.top_k > 0 {
        probs.truncate(p.top_k);
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let target = p.top_p.clamp(0.0, 1.0) * total;
    let mut kept = 0;
    let mut mass = 0f32;
    for q in &probs {
        mass += q.1;
        kept += 1;
        if mass >= target {
            break;
        }
    }
    probs.truncate(kept.max(1));
    if p.min_p > 0.0 {
        let floor = p.min_p * probs[0].1;
        let keep = probs.iter().take_while(|q| q.1 >= floor).count().max(1);
        probs.truncate(keep);
    }
    let mass: f32 = probs.iter().map(|q| q.1).sum();
    let r = rng.uniform() * mass;
    let mut acc = 0f32;
    for q in &probs {
        acc += q.1;
        if r < acc {
            return q.0;
        }
    }
    probs[probs.len() - 1].0
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

    fn top_p(temperature: f32, top_p: f32) -> SampleParams {
        SampleParams { temperature, top_p, ..SampleParams::GREEDY }
    }

    fn sample_top_p_f32(logits: &[f32], temperature: f32, p: f32, rng: &mut Rng) -> usize {
        sample_f32(logits, &top_p(temperature, p), &[], rng)
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

    #[test]
    fn top_k_and_min_p_cut_the_tail() {
        // Probabilities ∝ 5, 3, 2, 1 (0.45, 0.27, 0.18, 0.09).
        let logits = [5f32.ln(), 3f32.ln(), 2f32.ln(), 1f32.ln()];
        let mut rng = Rng::new(7);
        let mut seen = [false; 4];
        for _ in 0..5000 {
            seen[sample_f32(&logits, &SampleParams { top_k: 2, ..top_p(1.0, 1.0) }, &[], &mut rng)] = true;
        }
        assert_eq!(seen, [true, true, false, false], "top-k 2 keeps the two most likely");
        let mut seen = [false; 4];
        for _ in 0..5000 {
            // min-p 0.5: at least half as likely as the 5: keeps 5 and 3.
            seen[sample_f32(&logits, &SampleParams { min_p: 0.5, ..top_p(1.0, 1.0) }, &[], &mut rng)] = true;
        }
        assert_eq!(seen, [true, true, false, false], "min-p 0.5");
        assert_eq!(sample_f32(&logits, &SampleParams { top_k: 1, ..top_p(1.0, 1.0) }, &[], &mut rng), 0);
    }

    #[test]
    fn the_repetition_penalty_demotes_seen_tokens_even_when_greedy() {
        let logits = [2.0f32, 1.5, -1.0, -1.2];
        let mut rng = Rng::new(1);
        let pen = |r: f32| SampleParams { repetition_penalty: r, ..SampleParams::GREEDY };
        assert_eq!(sample_f32(&logits, &pen(1.0), &[0], &mut rng), 0, "no penalty");
        // 2.0 / 1.5 = 1.33 < 1.5: token 1 wins once token 0 was seen.
        assert_eq!(sample_f32(&logits, &pen(1.5), &[0, 0, 0], &mut rng), 1);
        // A negative logit is multiplied: -1.0 * 1.5 = -1.5 < -1.2.
        let neg = [-1.0f32, -1.2];
        assert_eq!(sample_f32(&neg, &pen(1.5), &[0], &mut rng), 1);
        // Ids outside the vocabulary are ignored.
        assert_eq!(sample_f32(&logits, &pen(1.5), &[99], &mut rng), 0);
    }
}
