//! The row-wise and element-wise kernels: embedding lookup, RMSNorm, the
//! residual add, the SiLU-gated product of the MLP, and two that only some
//! families need: a projection's bias (Qwen2's q/k/v, `attention_bias`'s o)
//! and the per-head RMSNorm of queries and keys (Qwen3).
//!
//! The residual stream `x` is f32 (as in `djinn_core::activations`); what
//! these kernels hand to a matrix product is rounded once to the model dtype.
//! Arithmetic is f32 throughout, like the reference implementation in
//! Hugging Face transformers (which upcasts RMSNorm's variance to f32).

use crate::elem::Half;
use crate::team::Team;

/// Below this many elements a row-wise or element-wise op runs on the calling
/// thread alone (a decode row of a 13B model's norm is 5120: not worth a dispatch).
const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// `x[t, :] = f32(table[tokens[t], :])`; `table` is `[vocab, hidden]`.
pub fn embed<W: Half>(x: &mut [f32], table: &[W], tokens: &[u32], hidden: usize) {
    assert!(x.len() >= tokens.len() * hidden, "embed: x too small for {} tokens", tokens.len());
    let vocab = table.len() / hidden;
    if let Some(&tok) = tokens.iter().find(|&&t| t as usize >= vocab) {
        panic!("embed: token id {tok} outside the vocabulary of {vocab}");
    }
    // Rows are independent: a prefill's 512 rows are split over the team (the host lane's
    // embedding is on the TTFT path), a decode row runs here.
    let (n, h) = (tokens.len() * hidden, hidden.max(1));
    let team = Team::global().for_work(n, PARALLEL_MIN_ELEMS);
    team.split_mut(&mut x[..n], h, |start, chunk| {
        for (r, row) in chunk.chunks_mut(h).enumerate() {
            let tok = tokens[start / h + r] as usize;
            W::to_f32_slice(&table[tok * hidden..(tok + 1) * hidden], row);
        }
    });
}

/// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w` for `r < rows`.
pub fn rmsnorm<W: Half>(out: &mut [W], x: &[f32], w: &[W], rows: usize, dim: usize, eps: f32) {
    assert!(out.len() >= rows * dim && x.len() >= rows * dim, "rmsnorm: buffers smaller than rows*dim");
    assert!(w.len() >= dim, "rmsnorm: weight has {} elements, needs {dim}", w.len());
    let team = Team::global().for_work(rows * dim, PARALLEL_MIN_ELEMS);
    team.split_mut(&mut out[..rows * dim], dim.max(1), |start, chunk| {
        for (r, orow) in chunk.chunks_mut(dim.max(1)).enumerate() {
            let row = start / dim.max(1) + r;
            let xr = &x[row * dim..(row + 1) * dim];
            let ss: f32 = xr.iter().map(|v| v * v).sum();
            let inv = 1.0 / (ss / dim as f32 + eps).sqrt();
            for ((o, &xv), &wv) in orow.iter_mut().zip(xr).zip(w) {
                *o = W::from_f32(xv * inv * wv.to_f32());
            }
        }
    });
}

/// `dst[i] = src[i]` for `i < n`: the residual stream handed back by the host lane.
pub fn copy_f32(dst: &mut [f32], src: &[f32], n: usize) {
    dst[..n].copy_from_slice(&src[..n]);
}

/// `x[i] += f32(y[i])` for `i < n`: the residual add.
pub fn add<W: Half>(x: &mut [f32], y: &[W], n: usize) {
    for (a, b) in x[..n].iter_mut().zip(&y[..n]) {
        *a += b.to_f32();
    }
}

/// `out[r, i] = round(out[r, i] + bias[i])` for `r < rows`, `i < n`: a
/// projection's bias added after the product (f32 add, one rounding).
pub fn add_bias<W: Half>(out: &mut [W], bias: &[W], rows: usize, n: usize) {
    assert!(out.len() >= rows * n && bias.len() >= n, "add_bias: {rows}x{n} rows, {} bias", bias.len());
    for row in out[..rows * n].chunks_mut(n.max(1)) {
        for (o, b) in row.iter_mut().zip(bias) {
            *o = W::from_f32(o.to_f32() + b.to_f32());
        }
    }
}

/// In-place RMSNorm of `rows` rows of `dim` model-dtype values (each query
/// or key head of a pass: `rows = tokens * heads`, `dim = head_dim`), as
/// transformers' Qwen3RMSNorm rounds it: `x / sqrt(mean(x²) + eps)` in f32,
/// rounded to the dtype, then times `w` (the product rounded again).
pub fn head_rmsnorm<W: Half>(x: &mut [W], w: &[W], rows: usize, dim: usize, eps: f32) {
    assert!(x.len() >= rows * dim && w.len() >= dim, "head_rmsnorm: {rows}x{dim} rows, {} weights", w.len());
    for row in x[..rows * dim].chunks_mut(dim.max(1)) {
        let ss: f32 = row.iter().map(|v| v.to_f32() * v.to_f32()).sum();
        let inv = 1.0 / (ss / dim as f32 + eps).sqrt();
        for (v, wv) in row.iter_mut().zip(w) {
            let normed = W::from_f32(v.to_f32() * inv);
            *v = W::from_f32(normed.to_f32() * wv.to_f32());
        }
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` for `i < n`, `silu(g) = g / (1 + e^-g)`.
pub fn silu_mul<W: Half>(gate: &mut [W], up: &[W], n: usize) {
    let team = Team::global().for_work(n, PARALLEL_MIN_ELEMS);
    team.split_mut(&mut gate[..n], 64, |start, g| {
        for (gv, uv) in g.iter_mut().zip(&up[start..]) {
            let a = gv.to_f32();
            *gv = W::from_f32(a / (1.0 + (-a).exp()) * uv.to_f32());
        }
    });
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::check::close;
    use crate::rng::Rng;

    fn halves<W: Half>(v: &[f32]) -> Vec<W> {
        v.iter().map(|&a| W::from_f32(a)).collect()
    }

    fn widen<W: Half>(v: &[W]) -> Vec<f32> {
        v.iter().map(|a| a.to_f32()).collect()
    }

    /// Half an ulp of the output type, relative.
    fn half_ulp<W: Half>() -> f64 {
        if W::NAME == "f16" {
            1.0 / 2048.0
        } else {
            1.0 / 256.0
        }
    }

    fn rmsnorm_case<W: Half>(rows: usize, dim: usize) {
        let mut rng = Rng::new(dim as u64);
        let x = rng.normals(rows * dim, 3.0);
        let w: Vec<W> = halves(&rng.normals(dim, 1.0));
        let mut out = vec![W::from_f32(0.0); rows * dim];
        rmsnorm(&mut out, &x, &w, rows, dim, 1e-5);
        let mut want = vec![0f64; rows * dim];
        for r in 0..rows {
            let xr = &x[r * dim..(r + 1) * dim];
            let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
            for i in 0..dim {
                want[r * dim + i] = xr[i] as f64 / (ms + 1e-5).sqrt() * w[i].to_f32() as f64;
            }
        }
        close(&format!("rmsnorm {} {rows}x{dim}", W::NAME), &widen(&out), &want, 1e-5, half_ulp::<W>() * 1.01).unwrap();
    }

    #[test]
    fn rmsnorm_matches_f64() {
        for (rows, dim) in [(1, 1), (1, 64), (5, 96), (9, 4096)] {
            rmsnorm_case::<f16>(rows, dim);
            rmsnorm_case::<bf16>(rows, dim);
        }
    }

    fn silu_case<W: Half>() {
        let mut rng = Rng::new(11);
        let n = 10_000;
        let g: Vec<W> = halves(&rng.normals(n, 4.0));
        let u: Vec<W> = halves(&rng.normals(n, 1.0));
        let mut out = g.clone();
        silu_mul(&mut out, &u, n);
        let want: Vec<f64> = g
            .iter()
            .zip(&u)
            .map(|(a, b)| {
                let a = a.to_f32() as f64;
                a / (1.0 + (-a).exp()) * b.to_f32() as f64
            })
            .collect();
        close(&format!("silu_mul {}", W::NAME), &widen(&out), &want, 1e-6, half_ulp::<W>() * 1.01).unwrap();
    }

    #[test]
    fn silu_mul_matches_f64() {
        silu_case::<f16>();
        silu_case::<bf16>();
    }

    fn bias_case<W: Half>(rows: usize, n: usize) {
        let mut rng = Rng::new((rows * 13 + n) as u64);
        let x: Vec<W> = halves(&rng.normals(rows * n, 2.0));
        let b: Vec<W> = halves(&rng.normals(n, 1.0));
        let mut out = x.clone();
        add_bias(&mut out, &b, rows, n);
        let want: Vec<f64> = (0..rows * n).map(|i| x[i].to_f32() as f64 + b[i % n].to_f32() as f64).collect();
        close(&format!("add_bias {} {rows}x{n}", W::NAME), &widen(&out), &want, 1e-6, half_ulp::<W>() * 1.01).unwrap();
    }

    #[test]
    fn add_bias_matches_f64() {
        for (rows, n) in [(1, 1), (1, 96), (7, 33), (3, 1000)] {
            bias_case::<f16>(rows, n);
            bias_case::<bf16>(rows, n);
        }
    }

    fn head_norm_case<W: Half>(rows: usize, dim: usize) {
        let mut rng = Rng::new((rows * 5 + dim) as u64);
        let x: Vec<W> = halves(&rng.normals(rows * dim, 3.0));
        let w: Vec<W> = halves(&rng.normals(dim, 1.0));
        let mut out = x.clone();
        head_rmsnorm(&mut out, &w, rows, dim, 1e-6);
        let mut want = vec![0f64; rows * dim];
        for r in 0..rows {
            let xr = &x[r * dim..(r + 1) * dim];
            let ms = xr.iter().map(|v| v.to_f32() as f64 * v.to_f32() as f64).sum::<f64>() / dim as f64;
            for i in 0..dim {
                want[r * dim + i] = xr[i].to_f32() as f64 / (ms + 1e-6).sqrt() * w[i].to_f32() as f64;
            }
        }
        // Two roundings: the normalised value, then its product with the weight.
        let what = format!("head_rmsnorm {} {rows}x{dim}", W::NAME);
        close(&what, &widen(&out), &want, 1e-5, 2.0 * half_ulp::<W>() * 1.01).unwrap();
    }

    #[test]
    fn head_rmsnorm_matches_f64() {
        for (rows, dim) in [(1, 2), (6, 16), (9, 40), (40, 128)] {
            head_norm_case::<f16>(rows, dim);
            head_norm_case::<bf16>(rows, dim);
        }
    }

    /// transformers rounds the normalised head to the dtype before the weight:
    /// a weight of 3 then gives exactly 3·round(x/rms), not round(3·x/rms).
    #[test]
    fn head_rmsnorm_rounds_before_the_weight() {
        let x: Vec<bf16> = halves(&[1.0, 2.0, 3.0, 4.1]);
        let w: Vec<bf16> = halves(&[3.0; 4]);
        let mut out = x.clone();
        head_rmsnorm(&mut out, &w, 1, 4, 0.0);
        let inv = 1.0 / ((1.0f32 + 4.0 + 9.0 + x[3].to_f32().powi(2)) / 4.0).sqrt();
        for i in 0..4 {
            let normed = bf16::from_f32(x[i].to_f32() * inv);
            assert_eq!(out[i], bf16::from_f32(normed.to_f32() * 3.0), "element {i}");
        }
    }

    #[test]
    fn embed_copies_rows_and_add_accumulates() {
        let mut rng = Rng::new(2);
        let (vocab, hidden) = (10, 6);
        let table: Vec<bf16> = halves(&rng.normals(vocab * hidden, 1.0));
        let mut x = vec![0f32; 3 * hidden];
        embed(&mut x, &table, &[9, 0, 4], hidden);
        assert_eq!(&x[..hidden], &widen(&table[9 * hidden..10 * hidden])[..]);
        assert_eq!(&x[2 * hidden..], &widen(&table[4 * hidden..5 * hidden])[..]);
        let y: Vec<f16> = halves(&[1.0, -2.0, 0.5]);
        let mut acc = vec![1.0f32, 1.0, 1.0, 7.0];
        add(&mut acc, &y, 3);
        assert_eq!(acc, vec![2.0, -1.0, 1.5, 7.0]);
    }

    #[test]
    #[should_panic(expected = "token id 10 outside the vocabulary of 10")]
    fn embed_refuses_an_out_of_vocabulary_token() {
        let table = vec![f16::ZERO; 10 * 4];
        embed(&mut [0f32; 4], &table, &[10], 4);
    }
}
