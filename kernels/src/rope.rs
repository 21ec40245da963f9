//! Rotary position embedding, Hugging Face "rotate-half" convention.
//!
//! Llama checkpoints on the Hub have their q/k projection rows permuted so
//! that a head's first half pairs with its second half (not even with odd):
//! for `i < d/2`, `(a, b) = (x[i], x[i + d/2])` becomes
//! `(a cos θ - b sin θ, b cos θ + a sin θ)` with `θ = pos · inv_freq[i]`.
//! `inv_freq` is the model's frequency table, `[head_dim / 2]` f32, given by the
//! caller (`djinn_core::model::inv_freq` rounded to f32: plain `theta^(-2i/d)`
//! or a scaled table, llama3 or linear), so every RoPE variant whose only
//! difference is its frequencies runs through the same kernel. The angle is
//! computed in f32, as transformers' `LlamaRotaryEmbedding` does (its `freqs`
//! matmul runs with autocast off, in f32), so positions far into the sequence
//! round the same way.

use crate::attention::{attn_decode, kv_store};
use crate::elem::Half;

/// `inv_freq[i] = 1 / theta^(2i / head_dim)` in f32, `i < head_dim / 2`.
pub fn inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect()
}

/// Applies RoPE in place to `x` `[tokens, heads * head_dim]` at positions `pos0..pos0+tokens`.
fn rotate<W: Half>(x: &mut [W], tokens: usize, heads: usize, head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for t in 0..tokens {
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for h in 0..heads {
            let v = &mut x[(t * heads + h) * head_dim..(t * heads + h + 1) * head_dim];
            for i in 0..half {
                let (a, b) = (v[i].to_f32(), v[i + half].to_f32());
                v[i] = W::from_f32(a * c[i] - b * s[i]);
                v[i + half] = W::from_f32(b * c[i] + a * s[i]);
            }
        }
    }
}

/// RoPE on `q` `[tokens, num_heads*head_dim]` and `k` `[tokens, num_kv_heads*head_dim]`, in place.
#[allow(clippy::too_many_arguments)]
pub fn rope<W: Half>(
    q: &mut [W],
    k: &mut [W],
    tokens: usize,
    pos0: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    inv_freq: &[f32],
) {
    assert!(head_dim.is_multiple_of(2), "rope: head_dim {head_dim} is odd");
    assert!(inv_freq.len() >= head_dim / 2, "rope: {} frequencies for head_dim {head_dim}", inv_freq.len());
    assert!(q.len() >= tokens * num_heads * head_dim, "rope: q smaller than tokens*num_heads*head_dim");
    assert!(k.len() >= tokens * num_kv_heads * head_dim, "rope: k smaller than tokens*num_kv_heads*head_dim");
    let freq = inv_freq;
    let half = head_dim / 2;
    let (mut cos, mut sin) = (vec![0f32; tokens * half], vec![0f32; tokens * half]);
    for t in 0..tokens {
        let pos = (pos0 + t) as f32;
        for i in 0..half {
            let angle = pos * freq[i];
            cos[t * half + i] = angle.cos();
            sin[t * half + i] = angle.sin();
        }
    }
    rotate(q, tokens, num_heads, head_dim, &cos, &sin);
    rotate(k, tokens, num_kv_heads, head_dim, &cos, &sin);
}

/// RoPE and the KV-cache store in one (`rope_kv_store.cu`): `q` rotated in
/// place; cache rows `pos0..pos0+tokens` get the rotated `k` and `v`; `k`
/// itself is not changed. Exactly [`rope`] then [`kv_store`].
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_store<W: Half>(
    q: &mut [W],
    k: &[W],
    v: &[W],
    k_cache: &mut [W],
    v_cache: &mut [W],
    tokens: usize,
    pos0: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    inv_freq: &[f32],
) {
    let kv_dim = num_kv_heads * head_dim;
    let mut rotated = k[..tokens * kv_dim].to_vec();
    rope(q, &mut rotated, tokens, pos0, num_heads, num_kv_heads, head_dim, inv_freq);
    kv_store(k_cache, v_cache, &rotated, v, tokens, pos0, kv_dim);
}

/// Decode attention with RoPE and the newest row's store folded in
/// (`attn_decode.cu`'s `attn_decode_rope`): exactly [`rope_kv_store`] of the
/// one token at position `seq - 1` (the unrotated `q`, `k`, `v` of this
/// pass; cache row `seq - 1` gets the rotated key and the value), then
/// [`attn_decode`] of the rotated query over rows `0..seq`. `q` is not
/// changed (the kernel turns it in shared memory), nor are `k` and `v`.
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_rope<W: Half>(
    partial: &mut [f32],
    q: &[W],
    k: &[W],
    v: &[W],
    k_cache: &mut [W],
    v_cache: &mut [W],
    seq: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    window: usize,
    inv_freq: &[f32],
) {
    assert!(seq > 0, "attn_decode_rope: an empty cache has no newest row");
    let mut rotated = q[..num_heads * head_dim].to_vec();
    rope_kv_store(&mut rotated, k, v, k_cache, v_cache, 1, seq - 1, num_heads, num_kv_heads, head_dim, inv_freq);
    attn_decode(partial, &rotated, k_cache, v_cache, seq, num_heads, num_kv_heads, head_dim, scale, window);
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::check::close;
    use crate::rng::Rng;

    /// The textbook form, in f64: rotate_half(x) = cat(-x2, x1); x*cos + rotate_half(x)*sin.
    fn reference(x: &[f32], tokens: usize, heads: usize, d: usize, pos0: usize, freq: &[f32]) -> Vec<f64> {
        let mut out = vec![0f64; x.len()];
        for t in 0..tokens {
            for h in 0..heads {
                let base = (t * heads + h) * d;
                for j in 0..d {
                    let i = j % (d / 2);
                    let angle = (pos0 + t) as f64 * freq[i] as f64;
                    let rot = if j < d / 2 { -(x[base + j + d / 2] as f64) } else { x[base + j - d / 2] as f64 };
                    out[base + j] = x[base + j] as f64 * angle.cos() + rot * angle.sin();
                }
            }
        }
        out
    }

    fn case<W: Half>(tokens: usize, pos0: usize, heads: usize, kv_heads: usize, d: usize, freq: &[f32]) {
        let mut rng = Rng::new((tokens * 31 + pos0) as u64);
        let q: Vec<W> = rng.normals(tokens * heads * d, 1.0).into_iter().map(W::from_f32).collect();
        let k: Vec<W> = rng.normals(tokens * kv_heads * d, 1.0).into_iter().map(W::from_f32).collect();
        let (mut q2, mut k2) = (q.clone(), k.clone());
        rope(&mut q2, &mut k2, tokens, pos0, heads, kv_heads, d, freq);
        let wide = |v: &[W]| v.iter().map(|a| a.to_f32()).collect::<Vec<_>>();
        // f32 angles of positions up to ~300 lose ~300 * 2^-24 rad; the output rounds once to W.
        let rtol = if W::NAME == "f16" { 1.0 / 1024.0 } else { 1.0 / 128.0 };
        for (name, before, after, h) in [("q", &q, &q2, heads), ("k", &k, &k2, kv_heads)] {
            let want = reference(&wide(before), tokens, h, d, pos0, freq);
            close(&format!("rope {} {name} pos0={pos0}", W::NAME), &wide(after), &want, 2e-3, rtol).unwrap();
        }
    }

    #[test]
    fn rope_matches_the_rotate_half_definition() {
        case::<f16>(1, 0, 4, 4, 16, &inv_freq(16, 10000.0));
        case::<f16>(5, 3, 6, 2, 16, &inv_freq(16, 500000.0));
        case::<bf16>(7, 250, 4, 1, 32, &inv_freq(32, 10000.0));
        case::<f16>(1, 300, 8, 8, 128, &inv_freq(128, 10000.0));
    }

    /// A scaled table (every other frequency divided by 8, as llama3 does to
    /// its low band) rotates by exactly the table's angles, not theta's.
    #[test]
    fn rope_rotates_by_the_given_table() {
        let scaled: Vec<f32> =
            inv_freq(32, 500000.0).iter().enumerate().map(|(i, f)| if i % 2 == 1 { f / 8.0 } else { *f }).collect();
        case::<f16>(3, 40, 4, 2, 32, &scaled);
        case::<bf16>(2, 7, 2, 1, 32, &scaled);
        let q: Vec<f16> = (0..32).map(|i| f16::from_f32(i as f32 * 0.1 - 1.0)).collect();
        let (mut a, mut b) = (q.clone(), q.clone());
        rope(&mut a, &mut b, 1, 100, 1, 1, 32, &inv_freq(32, 500000.0));
        let (mut c, mut d) = (q.clone(), q.clone());
        rope(&mut c, &mut d, 1, 100, 1, 1, 32, &scaled);
        assert_ne!(a, c, "a different table must rotate differently");
    }

    #[test]
    fn position_zero_is_the_identity() {
        let q: Vec<f16> = (0..32).map(|i| f16::from_f32(i as f32 - 7.0)).collect();
        let (mut q2, mut k2) = (q.clone(), q.clone());
        rope(&mut q2, &mut k2, 1, 0, 2, 2, 16, &inv_freq(16, 10000.0));
        assert_eq!(q2, q);
    }
}
