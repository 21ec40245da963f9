//! Prefill attention as a streaming softmax: the twin of `attn_prefill.cu`.
//!
//! [`crate::attention::attention`] materialises each query row's scores
//! over the whole sequence; here each row walks the cache in tiles of
//! [`PREFILL_TILE`] rows and keeps only a running max `m`, a running sum `l`
//! and an f32 accumulator of `head_dim`, so prefill needs no
//! `[heads, tokens, seq]` scratch on either backend.
//!
//! Geometry: query row `t` sits at position `pos0 + t` and sees cache rows
//! `j <= pos0 + t` and, given `window > 0`, `pos0 + t - window < j`
//! (transformers' sliding window; `window = 0` is plain causal). Query head
//! `h` reads kv head `h / (num_heads / num_kv_heads)`.
//!
//! The maths and its rounding points, which the GPU kernel shares:
//! - `s_j = (q · k_j) · log2(e) / sqrt(head_dim)`: products of model-dtype
//!   values summed in f32 (exact products on tensor cores), in the log2 domain.
//! - Tiles start at multiples of [`PREFILL_TILE`] in absolute cache rows (as
//!   the GPU's key tiles do, so both see the same sequence of running maxima).
//!   Per tile, `m' = max(m, max_j s_j)`, `α = 2^(m - m')`,
//!   `p_j = 2^(s_j - m')` in f32; `l ← α·l + Σ p_j` with the f32 `p_j`
//!   unrounded, `acc ← α·acc + Σ W(p_j)·v_j`: each probability rounded to
//!   the model dtype `W` before the product with V (the GPU multiplies them
//!   on tensor cores), the sum in f32.
//! - `out = W(acc / l)`, one rounding.
//!
//! It is not bit-identical to the GPU (summation orders differ, and the GPU's
//! exp2 is approximate), but the two agree within the twin tolerance.

use crate::attention::visible_rows;
use crate::elem::Half;
use crate::team::{part, SendPtr, Team};

/// Cache rows per tile of the streaming softmax: `attn_prefill.cu`'s `PF_N`.
pub const PREFILL_TILE: usize = 64;

/// Below this many cache elements read (keys and values), the twin runs on
/// the calling thread alone.
const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// Prefill attention of `tokens` query rows at positions `pos0..` over cache
/// rows `0..pos0+tokens`, with no score scratch; see the module doc.
/// `q` and `out` are `[tokens, num_heads*head_dim]`, the cache planes
/// `[>= pos0+tokens, num_kv_heads*head_dim]`; `window = 0` is full causal.
#[allow(clippy::too_many_arguments)]
pub fn attn_prefill<W: Half>(
    out: &mut [W],
    q: &[W],
    k_cache: &[W],
    v_cache: &[W],
    tokens: usize,
    pos0: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    window: usize,
) {
    assert!(
        num_kv_heads > 0 && num_heads.is_multiple_of(num_kv_heads),
        "attn_prefill: {num_heads} heads over {num_kv_heads}"
    );
    let seq = pos0 + tokens;
    let (q_dim, kv_dim) = (num_heads * head_dim, num_kv_heads * head_dim);
    let group = num_heads / num_kv_heads;
    assert!(k_cache.len() >= seq * kv_dim && v_cache.len() >= seq * kv_dim, "attn_prefill: cache shorter than {seq}");
    assert!(out.len() >= tokens * q_dim && q.len() >= tokens * q_dim, "attn_prefill: q/out smaller than tokens*q_dim");
    let scale_log2 = (std::f64::consts::LOG2_E / (head_dim as f64).sqrt()) as f32;
    // One unit per (query row, head), as in `attention`: each worker takes a
    // contiguous run, and each output is computed the same way whatever the split.
    let units = tokens * num_heads;
    let visible_keys = tokens * (pos0 + tokens.div_ceil(2)).min(if window > 0 { window } else { usize::MAX });
    let team = Team::global().for_work(visible_keys * num_heads * head_dim * 2, PARALLEL_MIN_ELEMS);
    let out_ptr = SendPtr(out.as_mut_ptr());
    team.run(&|w, n| {
        let mine = part(units, w, n);
        if mine.is_empty() {
            return;
        }
        let mut qh = vec![0f32; head_dim];
        let mut acc = vec![0f32; head_dim];
        let mut s = [0f32; PREFILL_TILE];
        for i in mine {
            // SAFETY: unit `i` owns out[i*head_dim..][..head_dim] (row t = i /
            // num_heads, head h = i % num_heads of [tokens, num_heads*head_dim]);
            // `part` gives each unit to one worker, and the range lies inside
            // `out` (asserted above).
            let ohead = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(i * head_dim), head_dim) };
            let (t, h) = (i / num_heads, i % num_heads);
            let (p, col) = (pos0 + t, (h / group) * head_dim);
            let lo = visible_rows(p, window).start;
            W::to_f32_slice(&q[t * q_dim + h * head_dim..][..head_dim], &mut qh);
            acc.iter_mut().for_each(|a| *a = 0.0);
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            for tile in lo / PREFILL_TILE..=p / PREFILL_TILE {
                let keys = (tile * PREFILL_TILE).max(lo)..((tile + 1) * PREFILL_TILE).min(p + 1);
                let s = &mut s[..keys.len()];
                for (sv, j) in s.iter_mut().zip(keys.clone()) {
                    *sv = W::dot(&qh, &k_cache[j * kv_dim + col..][..head_dim]) * scale_log2;
                }
                let m_new = s.iter().copied().fold(m, f32::max);
                let alpha = (m - m_new).exp2();
                m = m_new;
                let mut sum = 0f32;
                acc.iter_mut().for_each(|a| *a *= alpha);
                for (&sv, j) in s.iter().zip(keys) {
                    let e = (sv - m).exp2();
                    sum += e;
                    let pw = W::from_f32(e).to_f32();
                    for (a, v) in acc.iter_mut().zip(&v_cache[j * kv_dim + col..][..head_dim]) {
                        *a += pw * v.to_f32();
                    }
                }
                l = l * alpha + sum;
            }
            // Row p always sees itself, so l > 0.
            for (o, a) in ohead.iter_mut().zip(&acc) {
                *o = W::from_f32(a / l);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::attention::{attention, reference_f64 as reference};
    use crate::check::close;
    use crate::rng::Rng;

    fn inputs<W: Half>(
        seed: u64,
        tokens: usize,
        seq: usize,
        nh: usize,
        nkv: usize,
        d: usize,
    ) -> (Vec<W>, Vec<W>, Vec<W>) {
        let mut rng = Rng::new(seed);
        let h = |v: Vec<f32>| v.into_iter().map(W::from_f32).collect::<Vec<W>>();
        // Scores of a few units, so the softmax is neither flat nor one-hot.
        let q = h(rng.normals(tokens * nh * d, 1.5));
        let kc = h(rng.normals((seq + 3) * nkv * d, 1.0));
        let vc = h(rng.normals((seq + 3) * nkv * d, 1.0));
        (q, kc, vc)
    }

    fn wide<W: Half>(v: &[W]) -> Vec<f32> {
        v.iter().map(|a| a.to_f32()).collect()
    }

    fn ulp<W: Half>() -> f64 {
        if W::NAME == "f16" {
            1.0 / 2048.0
        } else {
            1.0 / 256.0
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run<W: Half>(
        q: &[W],
        kc: &[W],
        vc: &[W],
        t: usize,
        p0: usize,
        nh: usize,
        nkv: usize,
        d: usize,
        win: usize,
    ) -> Vec<W> {
        let mut out = vec![W::from_f32(f32::NAN); t * nh * d];
        attn_prefill(&mut out, q, kc, vc, t, p0, nh, nkv, d, win);
        out
    }

    /// Against f64 and, without a window, against the materialising
    /// `attention` twin. Tolerances as `attention`'s own test: the output's
    /// one rounding (rtol) and each probability's (atol u·max|v|); the
    /// comparison of the two twins allows both of theirs.
    fn case<W: Half>(tokens: usize, pos0: usize, nh: usize, nkv: usize, d: usize, window: usize) {
        let seq = pos0 + tokens;
        let (q, kc, vc) = inputs::<W>((tokens * 31 + pos0 * 7 + nh * 3 + d + window) as u64, tokens, seq, nh, nkv, d);
        let got = wide(&run(&q, &kc, &vc, tokens, pos0, nh, nkv, d, window));
        let want = reference(&wide(&q), &wide(&kc), &wide(&vc), tokens, pos0, nh, nkv, d, window);
        let u = ulp::<W>();
        let vmax = wide(&vc).iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let tag = format!("{} t={tokens} pos0={pos0} {nh}/{nkv}x{d} window={window}", W::NAME);
        close(&format!("attn_prefill vs f64 {tag}"), &got, &want, u * vmax, u).unwrap();
        if window == 0 {
            let mut old = vec![W::from_f32(f32::NAN); tokens * nh * d];
            let mut scores = vec![f32::NAN; nh * tokens * seq];
            attention(&mut old, &q, &kc, &vc, &mut scores, tokens, pos0, nh, nkv, d, 0);
            let old: Vec<f64> = wide(&old).into_iter().map(f64::from).collect();
            close(&format!("attn_prefill vs attention {tag}"), &got, &old, 2.0 * u * vmax, 2.0 * u).unwrap();
        }
    }

    #[test]
    fn streaming_prefill_matches_f64_and_the_materialising_twin() {
        case::<f16>(1, 0, 2, 2, 16, 0); // one row
        case::<f16>(5, 0, 4, 4, 16, 0); // less than a tile
        case::<f16>(67, 0, 4, 2, 32, 0); // past one tile, odd, grouped-query
        case::<bf16>(130, 0, 2, 1, 64, 0); // multi-query, three tiles
        case::<f16>(9, 121, 6, 2, 16, 0); // a chunk after a prefix, straddling a tile edge
        case::<bf16>(70, 200, 4, 4, 128, 0); // pos0 > 0, head_dim 128
        case::<f16>(1, 300, 4, 1, 64, 0); // one row over a long cache (the decode shape)
    }

    #[test]
    fn sliding_window_sees_only_the_last_window_rows() {
        case::<f16>(100, 0, 4, 2, 16, 7); // a window smaller than a tile
        case::<bf16>(150, 0, 2, 2, 32, 64); // exactly a tile
        case::<f16>(40, 90, 4, 1, 64, 100); // pos0 > 0, the window reaching back into the prefix
        case::<bf16>(33, 5, 2, 2, 16, 1000); // a window wider than the sequence: plain causal
        case::<f16>(20, 70, 2, 2, 16, 1); // each row sees only itself
    }

    #[test]
    fn a_window_wider_than_the_sequence_is_plain_causal_exactly() {
        let (t, nh, d) = (45, 2, 32);
        let (q, kc, vc) = inputs::<bf16>(5, t, t, nh, nh, d);
        assert_eq!(run(&q, &kc, &vc, t, 0, nh, nh, d, 0), run(&q, &kc, &vc, t, 0, nh, nh, d, t));
    }

    #[test]
    fn rows_do_not_depend_on_the_split_or_the_chunking() {
        // The same rows computed in one pass and as two chunks (the second at
        // pos0 > 0 over the first's cache rows) are bit-identical.
        let (t, nh, nkv, d) = (90, 4, 2, 16);
        let (q, kc, vc) = inputs::<f16>(9, t, t, nh, nkv, d);
        let whole = run(&q, &kc, &vc, t, 0, nh, nkv, d, 20);
        let split = 37 * nh * d;
        let a = run(&q[..split], &kc, &vc, 37, 0, nh, nkv, d, 20);
        let b = run(&q[split..], &kc, &vc, t - 37, 37, nh, nkv, d, 20);
        assert_eq!(&whole[..split], &a[..]);
        assert_eq!(&whole[split..], &b[..]);
    }
}
