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
/// A `temperature` that is not > 0 (0, negative, NaN) is greedy (after the penalty).
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

/// Vocabularies up to this size: the fixed-point masses ([`sample_fix`]) of
/// this many tokens, each at most 2^40, sum without overflowing a `u64`.
pub const SAMPLE_MAX_VOCAB: usize = 1 << 24;

/// `e^x` for the probabilities `exp((l - max) / T)`, in f32 operations that
/// round the same on every machine: Cephes' `expf` (range reduction by
/// `ln 2` in two parts, a degree-6 polynomial), with no fused multiply-add,
/// so `sample.cu` (which spells each operation as an `__f*_rn` intrinsic)
/// computes the same bits as this twin. Within 1 ulp of `e^x` and monotone;
/// `x > 0` is taken as 0 (the probabilities never exceed 1: the most likely
/// token's is exactly 1), and below -87 (or NaN) it is 0, so no result is
/// subnormal.
pub fn sample_exp(x: f32) -> f32 {
    if x.is_nan() || x < -87.0 {
        return 0.0;
    }
    let x = if x > 0.0 { 0.0 } else { x };
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - k * 0.693_359_4_f32;
    let r = r - k * -2.121_944_4e-4_f32;
    let z = r * r;
    let mut y = 1.987_569_1e-4_f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 0.166_666_65;
    y = y * r + 0.5;
    let y = y * z + r + 1.0;
    y * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// A probability in fixed point, `floor(p · 2^40)`: sums of these are exact
/// and do not depend on the order they are added in, so the sorted twin and
/// the kernel's block-wide reductions keep the same tokens. A token below
/// 2^-40 (about 1e-12) of the most likely one carries no mass and is never chosen.
#[inline]
pub fn sample_fix(p: f32) -> u64 {
    (p * 1_099_511_627_776.0) as u64
}

/// The next token for `logits` given the tokens `seen` so far (prompt and
/// generated), under `p`: [`sample_f32_with`] with one uniform drawn from
/// `rng`. The rng is consumed exactly once per call with a temperature > 0
/// (whatever the logits hold) and never when greedy, so a run's draws depend
/// only on its parameters and its length.
pub fn sample_f32(logits: &[f32], p: &SampleParams, seen: &[u32], rng: &mut Rng) -> usize {
    let u = if p.temperature > 0.0 { rng.uniform() } else { 0.0 };
    sample_f32_with(logits, p, seen, u)
}

/// The next token for `logits` given the tokens `seen`, under `p`, the
/// choice made by `u` in `[0, 1)` (outside it, clamped). Greedy (the argmax
/// after the penalty) when `temperature` is not > 0, or when no logit is
/// finite and the largest is not (an all-NaN row: token 0).
///
/// Otherwise the kept set is that of Hugging Face's processors in their
/// order: probabilities `p_i = exp((l_i - max) / T)` ([`sample_exp`]; NaN
/// logits 0), most likely first with the lower id first among equals; the
/// first `top_k`; then the shortest prefix whose mass reaches `top_p` of
/// theirs (at least one token; `top_p >= 1` keeps them all); then those at
/// least `min_p` as likely as the first (at least one). Masses are summed in
/// fixed point ([`sample_fix`]), exactly. The token is then the first of the
/// kept set **in token-id order** whose running mass exceeds
/// `floor(u · kept mass)`: each kept token is chosen with probability its
/// share of the kept mass, as a walk in probability order would, but the map
/// from `u` to the token is the one a block-wide prefix scan on the device
/// computes (`kernels/cuda/sample.cu`, this function's kernel twin), so both
/// give the same token for the same `u`.
pub fn sample_f32_with(logits: &[f32], p: &SampleParams, seen: &[u32], u: f32) -> usize {
    assert!(logits.len() <= SAMPLE_MAX_VOCAB, "sampling takes at most {SAMPLE_MAX_VOCAB} logits, not {}", logits.len());
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
    if p.temperature.is_nan() || p.temperature <= 0.0 || logits.is_empty() {
        return argmax_f32(logits);
    }
    let max = logits[argmax_f32(logits)];
    if !max.is_finite() {
        return argmax_f32(logits);
    }
    let mut probs: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, if l.is_nan() { 0.0 } else { sample_exp((l - max) / p.temperature) }))
        .collect();
    // Most likely first; the lower id first among equals.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if p.top_k > 0 {
        probs.truncate(p.top_k);
    }
    let top_p = if p.top_p.is_nan() { 1.0 } else { p.top_p.clamp(0.0, 1.0) };
    if top_p < 1.0 {
        let total: u64 = probs.iter().map(|q| sample_fix(q.1)).sum();
        let target = top_p as f64 * total as f64;
        let mut mass = 0u64;
        let kept = probs
            .iter()
            .position(|q| {
                mass += sample_fix(q.1);
                mass as f64 >= target
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(kept.max(1));
    }
    if p.min_p > 0.0 {
        let floor = p.min_p * probs[0].1;
        let keep = probs.iter().take_while(|q| q.1 >= floor).count().max(1);
        probs.truncate(keep);
    }
    probs.sort_unstable_by_key(|q| q.0);
    let mass: u64 = probs.iter().map(|q| sample_fix(q.1)).sum();
    let u = if u > 0.0 { u } else { 0.0 };
    let r = ((u as f64 * mass as f64) as u64).min(mass.saturating_sub(1));
    let mut acc = 0u64;
    for q in &probs {
        acc += sample_fix(q.1);
        if acc > r {
            return q.0;
        }
    }
    unreachable!("the most likely token is kept and has mass 2^40 > r")
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
    fn sample_exp_is_exp_to_about_an_ulp_never_above_one_and_massless_below_minus_28() {
        assert_eq!(sample_exp(0.0), 1.0);
        assert_eq!(sample_exp(-0.0), 1.0);
        assert_eq!(sample_exp(3.0), 1.0, "x > 0 is taken as 0");
        assert_eq!(sample_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(sample_exp(f32::NAN), 0.0);
        assert_eq!(sample_exp(-87.5), 0.0);
        // Every 97th float of [-87, 0], and every 7th float of [-1e-3, -1e-5] (those rounding near 1).
        // (All of [-87, 0] were checked once, outside the tests: under 1 ulp, never above 1, never increasing as x falls.)
        let (lo, hi) = ((-87f32).to_bits(), (-0f32).to_bits());
        let (mut worst, mut at) = (0f64, 0f32);
        let mut check = |x: f32| {
            let (got, want) = (sample_exp(x), (x as f64).exp());
            assert!(got <= 1.0, "sample_exp({x}) = {got} > 1");
            let w = want as f32;
            let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
            let err = (got as f64 - want).abs() / ulp;
            if err > worst {
                (worst, at) = (err, x);
            }
        };
        for b in (hi..=lo).step_by(97) {
            check(f32::from_bits(b));
        }
        for b in ((-1e-5f32).to_bits()..=(-1e-3f32).to_bits()).step_by(7) {
            check(f32::from_bits(b));
        }
        assert!(worst < 1.0, "sample_exp is {worst:.2} ulp off at {at}");
        // Whatever is more than 28 below the max carries no mass: the kernel skips it unexamined.
        for b in (-28f32).to_bits()..=lo {
            assert_eq!(sample_fix(sample_exp(f32::from_bits(b))), 0, "{}", f32::from_bits(b));
        }
        assert!(sample_fix(sample_exp(-27.5)) > 0);
    }

    fn with(logits: &[f32], p: SampleParams, u: f32) -> usize {
        sample_f32_with(logits, &p, &[], u)
    }

    fn grid() -> impl Iterator<Item = f32> {
        (0..1000).map(|i| i as f32 / 1000.0)
    }

    #[test]
    fn the_walk_over_the_kept_set_goes_in_token_id_order() {
        // p = [1/3, 1]: token 0 holds the first quarter of [0, 1), token 1 the rest.
        let logits = [0.0, 3f32.ln()];
        let p = top_p(1.0, 1.0);
        assert_eq!(with(&logits, p, 0.0), 0);
        assert_eq!(with(&logits, p, 0.24), 0);
        assert_eq!(with(&logits, p, 0.26), 1);
        assert_eq!(with(&logits, p, 0.999_999_9), 1);
        // u outside [0, 1) is clamped: to the first kept token and the last.
        assert_eq!(with(&logits, p, -1.0), 0);
        assert_eq!(with(&logits, p, f32::NAN), 0);
        assert_eq!(with(&logits, p, 1.0), 1);
        assert_eq!(with(&logits, p, 7.0), 1);
        // min-p 0.5 on probabilities ∝ 5, 3, 2, 1 keeps {0, 1}: 5/8 of [0, 1) to token 0.
        let logits = [5f32.ln(), 3f32.ln(), 2f32.ln(), 1f32.ln()];
        let m = SampleParams { min_p: 0.5, ..top_p(1.0, 1.0) };
        assert_eq!((with(&logits, m, 0.62), with(&logits, m, 0.63)), (0, 1));
        assert!(grid().all(|u| with(&logits, m, u) < 2));
    }

    #[test]
    fn top_k_one_and_a_tiny_top_p_keep_the_first_of_the_most_likely() {
        // Tied maxima: the lower id is first.
        let logits = [1.0, 3.0, 3.0, 0.0, f32::NAN];
        for p in [SampleParams { top_k: 1, ..top_p(0.7, 1.0) }, top_p(0.7, 1e-6), top_p(0.7, 0.0)] {
            assert!(grid().all(|u| with(&logits, p, u) == 1), "{p:?}");
        }
        // min-p above 1 keeps that one too.
        let p = SampleParams { min_p: 2.0, ..top_p(1.0, 1.0) };
        assert!(grid().all(|u| with(&logits, p, u) == 1));
    }

    #[test]
    fn ties_at_a_cut_keep_the_lower_ids() {
        // top-k 2 among three equal maxima keeps ids 0 and 2, half each.
        let logits = [3.0, 1.0, 3.0, 3.0];
        let p = SampleParams { top_k: 2, ..top_p(1.0, 1.0) };
        assert_eq!((with(&logits, p, 0.49), with(&logits, p, 0.51)), (0, 2));
        assert!(grid().all(|u| with(&logits, p, u) != 3));
        // All equal: top-p 0.35 of 10 keeps the first 4 (the shortest prefix reaching 3.5), top-k 3 the first 3.
        let flat = [0.5f32; 10];
        let p = top_p(0.8, 0.35);
        assert!(grid().all(|u| with(&flat, p, u) == (u * 4.0) as usize), "top-p on a flat row");
        let p = SampleParams { top_k: 3, ..top_p(0.8, 1.0) };
        assert!(grid().all(|u| with(&flat, p, u) == (u * 3.0) as usize), "top-k on a flat row");
        // Every token of a flat row is reachable without cuts.
        let mut hit = [false; 10];
        grid().for_each(|u| hit[with(&flat, top_p(1.0, 1.0), u)] = true);
        assert_eq!(hit, [true; 10]);
    }

    #[test]
    fn nan_and_minus_infinity_are_never_chosen() {
        let row = [f32::NAN, f32::NEG_INFINITY, 0.0, f32::NAN, 0.0, f32::NEG_INFINITY];
        for p in [top_p(1.0, 1.0), top_p(0.3, 0.9), SampleParams { top_k: 5, min_p: 0.01, ..top_p(2.0, 1.0) }] {
            assert!(grid().all(|u| with(&row, p, u) == if u < 0.5 { 2 } else { 4 }), "{p:?}");
        }
        // Nothing finite: the greedy answer (token 0 for all NaN, else the first non-NaN).
        assert_eq!(with(&[f32::NAN; 4], top_p(1.0, 1.0), 0.5), 0);
        assert_eq!(with(&[f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY], top_p(1.0, 1.0), 0.5), 1);
        assert_eq!(with(&[0.0, f32::INFINITY, 1.0, f32::INFINITY], top_p(1.0, 1.0), 0.5), 1);
        assert_eq!(with(&[], top_p(1.0, 1.0), 0.5), 0);
        // A NaN temperature is greedy.
        assert_eq!(with(&[0.0, 1.0, 0.5], top_p(f32::NAN, 1.0), 0.0), 1);
    }

    #[test]
    fn far_below_the_max_carries_no_mass() {
        // exp(-40) < 2^-40: token 1 is in the kept set's order but can never be chosen.
        let logits = [0.0, -40.0, 0.0];
        assert!(grid().all(|u| with(&logits, top_p(1.0, 1.0), u) != 1));
        let logits = [0.0, -20.0];
        assert_eq!(with(&logits, top_p(1.0, 1.0), 0.0), 0);
    }

    #[test]
    fn one_uniform_per_sample_with_a_temperature_and_none_when_greedy() {
        let logits = [0.3f32, 1.0, -0.5, 0.9, 0.0];
        let p = SampleParams { top_k: 4, top_p: 0.95, min_p: 0.05, ..top_p(0.8, 1.0) };
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        for _ in 0..200 {
            assert_eq!(sample_f32(&logits, &p, &[], &mut a), with(&logits, p, b.uniform()));
        }
        let before = a.clone();
        sample_f32(&logits, &SampleParams::GREEDY, &[], &mut a);
        assert_eq!(a, before, "greedy draws nothing");
        sample_f32(&[f32::NAN; 3], &p, &[], &mut a);
        assert_ne!(a, before, "a sample with a temperature draws even when the row has nothing finite");
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
