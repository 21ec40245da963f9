//! The KV-cache store and causal grouped-query attention.
//!
//! The cache of one layer is a K plane and a V plane, each
//! `[max_seq_len, kv_heads * head_dim]` in the model dtype; a pass of
//! `tokens` tokens starting at position `pos0` writes rows
//! `pos0..pos0+tokens` and its query row `t` attends to rows `0..=pos0+t`,
//! or, with a sliding window of `window` positions (`window > 0`; 0 means
//! none), to rows `j` with `pos0 + t - window < j <= pos0 + t` only
//! ([`visible_rows`]), as transformers' `sliding_window_overlay` masks them.
//! Query head `h` reads kv head `h / (num_heads / num_kv_heads)`, as
//! transformers' `repeat_kv` does. Scores are scaled by `1/sqrt(head_dim)`,
//! soft-maxed in f32 (max-subtracted), the probabilities rounded to the model
//! dtype (the GPU multiplies them by V on tensor cores, as flash-attention
//! does), and the weighted sum of V rows is accumulated in f32 and rounded
//! once to the model dtype.

use crate::elem::Half;
use crate::team::{part, SendPtr, Team};

/// Below this many cache elements read (keys and values), attention runs on
/// the calling thread alone.
const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// The cache rows the query at position `pos` sees: `0..=pos`, or with a
/// sliding window of `window` positions (`window > 0`) its last `window` of
/// them, `pos + 1 - window ..= pos`.
pub fn visible_rows(pos: usize, window: usize) -> std::ops::Range<usize> {
    let lo = if window > 0 { (pos + 1).saturating_sub(window) } else { 0 };
    lo..pos + 1
}

/// Copies `k`, `v` `[tokens, kv_dim]` into cache rows `pos0..pos0+tokens`.
pub fn kv_store<W: Half>(
    k_cache: &mut [W],
    v_cache: &mut [W],
    k: &[W],
    v: &[W],
    tokens: usize,
    pos0: usize,
    kv_dim: usize,
) {
    let (lo, hi) = (pos0 * kv_dim, (pos0 + tokens) * kv_dim);
    assert!(hi <= k_cache.len() && hi <= v_cache.len(), "kv_store: rows {pos0}..{} past the cache", pos0 + tokens);
    k_cache[lo..hi].copy_from_slice(&k[..tokens * kv_dim]);
    v_cache[lo..hi].copy_from_slice(&v[..tokens * kv_dim]);
}

/// `p = softmax(s)` over one visible row: max-subtracted, exponentials summed
/// in f32, each probability rounded once to the model dtype (as the GPU's
/// probability-times-V product consumes them).
fn softmax_row<W: Half>(p: &mut [W], s: &[f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = s.iter().map(|v| (v - max).exp()).sum();
    let inv = 1.0 / sum;
    for (pv, sv) in p.iter_mut().zip(s) {
        *pv = W::from_f32((sv - max).exp() * inv);
    }
}

/// The causal softmax of `rows = num_heads * tokens` score rows (row `r` is
/// query row `t = r % tokens`, which sees the positions
/// [`visible_rows`]`(pos0 + t, window)`): row `r` of `scores` starts at
/// `r * stride`, row `r` of `probs` at `r * out_stride`, and each output row
/// is `pos0 + tokens` long, zero outside the visible part (the
/// probability-times-V product runs over all of it). Scores arrive already
/// scaled by `1/sqrt(head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn attn_softmax<W: Half>(
    probs: &mut [W],
    scores: &[f32],
    rows: usize,
    tokens: usize,
    pos0: usize,
    stride: usize,
    out_stride: usize,
    window: usize,
) {
    let seq = pos0 + tokens;
    for r in 0..rows {
        let vis = visible_rows(pos0 + r % tokens, window);
        let out = &mut probs[r * out_stride..r * out_stride + seq];
        out.iter_mut().for_each(|p| *p = W::from_f32(0.0));
        softmax_row(&mut out[vis.clone()], &scores[r * stride + vis.start..r * stride + vis.end]);
    }
}

/// Causal attention; see the module doc (`window` 0: none). `scores` is f32
/// scratch of at least `num_heads * tokens * (pos0 + tokens)` elements; `out`
/// is `[tokens, num_heads*head_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attention<W: Half>(
    out: &mut [W],
    q: &[W],
    k_cache: &[W],
    v_cache: &[W],
    scores: &mut [f32],
    tokens: usize,
    pos0: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    window: usize,
) {
    assert!(
        num_kv_heads > 0 && num_heads.is_multiple_of(num_kv_heads),
        "attention: {num_heads} heads over {num_kv_heads}"
    );
    let seq = pos0 + tokens;
    let (q_dim, kv_dim) = (num_heads * head_dim, num_kv_heads * head_dim);
    let group = num_heads / num_kv_heads;
    assert!(scores.len() >= num_heads * tokens * seq, "attention: scores scratch too small");
    assert!(k_cache.len() >= seq * kv_dim && v_cache.len() >= seq * kv_dim, "attention: cache shorter than {seq}");
    assert!(out.len() >= tokens * q_dim && q.len() >= tokens * q_dim, "attention: q/out smaller than tokens*q_dim");
    let scale = (head_dim as f64).powf(-0.5) as f32;
    // One unit per (query row, head): its scores are a [seq] row of the
    // [tokens, num_heads, seq] scratch, its output one head_dim slice. Each
    // worker takes a contiguous run of units, so decode (one query row) still
    // spreads its heads over every core, and each output is computed the same
    // way whatever the split. Scratch vectors are allocated once per worker.
    let units = tokens * num_heads;
    let team = Team::global().for_work(units * seq * head_dim * 2, PARALLEL_MIN_ELEMS);
    let (out_ptr, scores_ptr) = (SendPtr(out.as_mut_ptr()), SendPtr(scores.as_mut_ptr()));
    team.run(&|w, n| {
        let mine = part(units, w, n);
        if mine.is_empty() {
            return;
        }
        let mut qh = vec![0f32; head_dim];
        let mut acc = vec![0f32; head_dim];
        let mut probs = vec![W::from_f32(0.0); seq];
        for i in mine {
            // SAFETY: unit `i` owns out[i*head_dim..][..head_dim] and
            // scores[i*seq..][..seq]; `part` gives each unit to one worker, and
            // both ranges lie inside the slices (asserted above).
            let (ohead, srow) = unsafe {
                (
                    std::slice::from_raw_parts_mut(out_ptr.get().add(i * head_dim), head_dim),
                    std::slice::from_raw_parts_mut(scores_ptr.get().add(i * seq), seq),
                )
            };
            let (t, h) = (i / num_heads, i % num_heads);
            let (visible, kvh) = (visible_rows(pos0 + t, window), h / group);
            W::to_f32_slice(&q[t * q_dim + h * head_dim..t * q_dim + (h + 1) * head_dim], &mut qh);
            let s = &mut srow[visible.clone()];
            for (p, sv) in visible.clone().zip(s.iter_mut()) {
                let krow = &k_cache[p * kv_dim + kvh * head_dim..p * kv_dim + (kvh + 1) * head_dim];
                *sv = W::dot(&qh, krow) * scale;
            }
            let probs = &mut probs[..visible.len()];
            softmax_row(probs, s);
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (p, pv) in visible.clone().zip(probs.iter()) {
                let (pv, vrow) =
                    (pv.to_f32(), &v_cache[p * kv_dim + kvh * head_dim..p * kv_dim + (kvh + 1) * head_dim]);
                for (a, vv) in acc.iter_mut().zip(vrow) {
                    *a += pv * vv.to_f32();
                }
            }
            for (o, a) in ohead.iter_mut().zip(&acc) {
                *o = W::from_f32(*a);
            }
        }
    });
}

/// Cache rows per block of `attn_decode.cu` (its `ATTN_CHUNK`): decode
/// attention over `seq` rows runs as `seq.div_ceil(ATTN_CHUNK)` splits.
pub const ATTN_CHUNK: usize = 64;

/// Floats per (head, split) of the decode partials: `m`, `l`, then `head_dim` sums.
pub fn attn_partial_len(head_dim: usize) -> usize {
    2 + head_dim
}

/// Decode attention's first half (`attn_decode.cu`): for each head `h` and
/// split `s` (cache rows `s·ATTN_CHUNK..` below `seq`), with
/// `score_p = scale · q_h · k_p` in f32, writes `partial[h, s] = (m, l, acc)`:
/// `m` the largest score, `l = Σ e^(score_p - m)`, `acc = Σ e^(score_p - m) · v_p`,
/// over the split's rows the query (at position `seq - 1`) sees
/// ([`visible_rows`] with `window`, 0: none); a split with none of them
/// writes `(-∞, 0, 0…)`, which [`attn_combine`] weighs as nothing.
/// `q` is one row `[num_heads * head_dim]`; `partial` is
/// `[num_heads, splits, 2 + head_dim]`. The probabilities stay f32 (the
/// prefill path rounds them to the model dtype for the tensor cores).
#[allow(clippy::too_many_arguments)]
pub fn attn_decode<W: Half>(
    partial: &mut [f32],
    q: &[W],
    k_cache: &[W],
    v_cache: &[W],
    seq: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    window: usize,
) {
    assert!(seq > 0 && num_kv_heads > 0 && num_heads.is_multiple_of(num_kv_heads), "attn_decode: shape");
    let (kv_dim, group, splits, stride) =
        (num_kv_heads * head_dim, num_heads / num_kv_heads, seq.div_ceil(ATTN_CHUNK), attn_partial_len(head_dim));
    assert!(partial.len() >= num_heads * splits * stride, "attn_decode: partial smaller than heads*splits*(2+d)");
    let mut qh = vec![0f32; head_dim];
    let mut scores = vec![0f32; ATTN_CHUNK];
    let lo = visible_rows(seq - 1, window).start;
    for h in 0..num_heads {
        W::to_f32_slice(&q[h * head_dim..(h + 1) * head_dim], &mut qh);
        let col = (h / group) * head_dim;
        for s in 0..splits {
            let rows = (s * ATTN_CHUNK).max(lo)..((s + 1) * ATTN_CHUNK).min(seq);
            let rows = rows.start.min(rows.end)..rows.end;
            let sc = &mut scores[..rows.len()];
            for (v, p) in sc.iter_mut().zip(rows.clone()) {
                *v = W::dot(&qh, &k_cache[p * kv_dim + col..p * kv_dim + col + head_dim]) * scale;
            }
            let m = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let out = &mut partial[(h * splits + s) * stride..(h * splits + s + 1) * stride];
            out.iter_mut().for_each(|v| *v = 0.0);
            for (e, p) in sc.iter().map(|v| (v - m).exp()).zip(rows) {
                out[1] += e;
                for (a, v) in out[2..].iter_mut().zip(&v_cache[p * kv_dim + col..p * kv_dim + col + head_dim]) {
                    *a += e * v.to_f32();
                }
            }
            out[0] = m;
        }
    }
}

/// Decode attention's second half (`attn_decode.cu`'s `attn_combine`):
/// `out[h] = W(Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s)`, `M = max_s m_s`.
pub fn attn_combine<W: Half>(out: &mut [W], partial: &[f32], num_heads: usize, splits: usize, head_dim: usize) {
    let stride = attn_partial_len(head_dim);
    for h in 0..num_heads {
        let parts: Vec<&[f32]> = (0..splits).map(|s| &partial[(h * splits + s) * stride..][..stride]).collect();
        let m = parts.iter().map(|p| p[0]).fold(f32::NEG_INFINITY, f32::max);
        let l: f32 = parts.iter().map(|p| (p[0] - m).exp() * p[1]).sum();
        for i in 0..head_dim {
            let a: f32 = parts.iter().map(|p| (p[0] - m).exp() * p[2 + i]).sum();
            out[h * head_dim + i] = W::from_f32(a / l);
        }
    }
}

/// Attention in f64 straight from the definition (causal, grouped-query, the
/// window as `attention` takes it): what the twins' tests compare against.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn reference_f64(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    tokens: usize,
    pos0: usize,
    nh: usize,
    nkv: usize,
    d: usize,
    window: usize,
) -> Vec<f64> {
    let (qd, kvd) = (nh * d, nkv * d);
    let mut out = vec![0f64; tokens * qd];
    for t in 0..tokens {
        for h in 0..nh {
            let g = h * nkv / nh;
            // Written out independently of `visible_rows`: i - window < j <= i.
            let lo = if window == 0 { 0 } else { (pos0 + t + 1).saturating_sub(window) };
            let s: Vec<f64> = (lo..=pos0 + t)
                .map(|p| {
                    (0..d).map(|i| q[t * qd + h * d + i] as f64 * kc[p * kvd + g * d + i] as f64).sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for i in 0..d {
                out[t * qd + h * d + i] =
                    e.iter().enumerate().map(|(p, w)| w * vc[(lo + p) * kvd + g * d + i] as f64).sum::<f64>() / z;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::check::close;
    use crate::rng::Rng;

    fn case<W: Half>(tokens: usize, pos0: usize, nh: usize, nkv: usize, d: usize, window: usize) -> Vec<f32> {
        let mut rng = Rng::new((tokens * 7 + pos0 * 3 + nh) as u64);
        let max_seq = pos0 + tokens + 3;
        let h = |v: Vec<f32>| v.into_iter().map(W::from_f32).collect::<Vec<W>>();
        let mut kc: Vec<W> = h(rng.normals(max_seq * nkv * d, 1.0));
        let mut vc: Vec<W> = h(rng.normals(max_seq * nkv * d, 1.0));
        let q: Vec<W> = h(rng.normals(tokens * nh * d, 1.0));
        let k: Vec<W> = h(rng.normals(tokens * nkv * d, 1.0));
        let v: Vec<W> = h(rng.normals(tokens * nkv * d, 1.0));
        kv_store(&mut kc, &mut vc, &k, &v, tokens, pos0, nkv * d);
        assert_eq!(&kc[pos0 * nkv * d..(pos0 + tokens) * nkv * d], &k[..]);
        let mut out = vec![W::from_f32(0.0); tokens * nh * d];
        let mut scores = vec![f32::NAN; nh * tokens * (pos0 + tokens)];
        attention(&mut out, &q, &kc, &vc, &mut scores, tokens, pos0, nh, nkv, d, window);
        let wide = |v: &[W]| v.iter().map(|a| a.to_f32()).collect::<Vec<_>>();
        let want = reference_f64(&wide(&q), &wide(&kc), &wide(&vc), tokens, pos0, nh, nkv, d, window);
        // One rounding of the output (rtol), and the probabilities' own
        // rounding: each p_j is off by at most p_j·u, so the sum Σ p_j·v_j by at
        // most u·max|v| (atol), u the dtype's half-ulp.
        let u = if W::NAME == "f16" { 1.0 / 2048.0 } else { 1.0 / 256.0 };
        let vmax = wide(&vc).iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        close(
            &format!("attention {} t={tokens} pos0={pos0} {nh}/{nkv} window={window}", W::NAME),
            &wide(&out),
            &want,
            u * vmax,
            u,
        )
        .unwrap();
        wide(&out)
    }

    #[test]
    fn attn_softmax_rows_sum_to_one_and_mask_the_future() {
        let (tokens, pos0, heads, stride) = (3, 2, 2, 8);
        let mut rng = Rng::new(11);
        let scores = rng.normals(heads * tokens * stride, 3.0);
        for window in [0, 2, 3] {
            let mut probs = vec![f16::from_f32(f32::NAN); heads * tokens * 6];
            attn_softmax(&mut probs, &scores, heads * tokens, tokens, pos0, stride, 6, window);
            for r in 0..heads * tokens {
                let (pos, visible) = (pos0 + r % tokens, pos0 + r % tokens + 1);
                let lo = if window == 0 { 0 } else { (pos + 1).saturating_sub(window) };
                let row: Vec<f32> = probs[r * 6..r * 6 + pos0 + tokens].iter().map(|p| p.to_f32()).collect();
                assert!(row[visible..].iter().all(|&p| p == 0.0), "row {r}: {row:?}");
                assert!(row[..lo].iter().all(|&p| p == 0.0), "row {r} window {window}: {row:?}");
                assert!(row[lo..visible].iter().all(|&p| p > 0.0), "row {r} window {window}: {row:?}");
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 4e-3, "row {r} sums to {sum}");
                let s = &scores[r * stride + lo..r * stride + visible];
                let (hi, _) =
                    s.iter().enumerate().fold((0, f32::MIN), |(i, m), (j, &v)| if v > m { (j, v) } else { (i, m) });
                assert!(
                    row[lo..visible].iter().all(|&p| p <= row[lo + hi]),
                    "row {r}: the largest score has the largest weight"
                );
            }
        }
    }

    fn decode_case<W: Half>(seq: usize, nh: usize, nkv: usize, d: usize, window: usize) {
        let mut rng = Rng::new((seq * 5 + nh) as u64);
        let h = |v: Vec<f32>| v.into_iter().map(W::from_f32).collect::<Vec<W>>();
        let (kc, vc): (Vec<W>, Vec<W>) = (h(rng.normals(seq * nkv * d, 1.0)), h(rng.normals(seq * nkv * d, 1.0)));
        let q: Vec<W> = h(rng.normals(nh * d, 1.0));
        let splits = seq.div_ceil(ATTN_CHUNK);
        let mut partial = vec![f32::NAN; nh * splits * attn_partial_len(d)];
        attn_decode(&mut partial, &q, &kc, &vc, seq, nh, nkv, d, (d as f64).powf(-0.5) as f32, window);
        let mut out = vec![W::from_f32(f32::NAN); nh * d];
        attn_combine(&mut out, &partial, nh, splits, d);
        let wide = |v: &[W]| v.iter().map(|a| a.to_f32()).collect::<Vec<_>>();
        let want = reference_f64(&wide(&q), &wide(&kc), &wide(&vc), 1, seq - 1, nh, nkv, d, window);
        let u = if W::NAME == "f16" { 1.0 / 2048.0 } else { 1.0 / 256.0 };
        let what = format!("attn_decode {} seq={seq} {nh}/{nkv}x{d} window={window}", W::NAME);
        close(&what, &wide(&out), &want, 1e-5, 2.0 * u).unwrap();
    }

    #[test]
    fn split_decode_attention_matches_f64() {
        decode_case::<f16>(1, 4, 4, 16, 0);
        decode_case::<f16>(300, 8, 2, 32, 0); // five splits, grouped-query
        decode_case::<bf16>(700, 4, 1, 64, 0); // eleven splits, multi-query
        decode_case::<f16>(256, 2, 2, 8, 0); // whole splits only
    }

    #[test]
    fn windowed_split_decode_attention_matches_f64() {
        decode_case::<f16>(300, 8, 2, 32, 100); // the first split wholly outside, the second in part
        decode_case::<bf16>(700, 4, 1, 64, 64); // exactly one split's worth, straddling two
        decode_case::<f16>(129, 2, 2, 16, 1); // only the query's own row
        decode_case::<bf16>(50, 4, 2, 16, 4096); // a window longer than the sequence
    }

    #[test]
    fn causal_gqa_attention_matches_f64() {
        case::<f16>(1, 0, 4, 4, 16, 0); // first decode-style row
        case::<f16>(5, 0, 4, 4, 16, 0); // prefill, multi-head
        case::<f16>(6, 0, 6, 2, 16, 0); // prefill, grouped-query
        case::<f16>(1, 9, 6, 2, 16, 0); // decode over a filled cache
        case::<bf16>(3, 4, 8, 1, 32, 0); // chunk after a prefix, multi-query
    }

    #[test]
    fn sliding_window_attention_matches_f64_and_differs_from_full() {
        case::<f16>(9, 0, 4, 2, 16, 3); // prefill longer than the window
        case::<bf16>(4, 6, 6, 2, 16, 5); // a chunk after a prefix
        case::<f16>(1, 12, 4, 4, 16, 4); // decode
                                         // Past the window the output must change: the same inputs, full attention.
        let (windowed, full) = (case::<f16>(9, 0, 4, 2, 16, 3), case::<f16>(9, 0, 4, 2, 16, 0));
        let q_dim = 4 * 16;
        assert_eq!(windowed[..3 * q_dim], full[..3 * q_dim], "rows inside the window see the same positions");
        assert!(windowed[3 * q_dim..].iter().zip(&full[3 * q_dim..]).any(|(a, b)| a != b));
        // A window at least the sequence's length is full attention, bit for bit.
        assert_eq!(case::<f16>(9, 0, 4, 2, 16, 9), full);
    }
}
