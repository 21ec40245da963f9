//! `out[m, n] = x[m, k] · w[n, k]ᵀ` with f32 accumulation: every projection
//! of the model (weights stored `[out_features, in_features]`, as Hugging
//! Face stores them).
//!
//! Decode is `m = 1`: a matrix-vector product whose cost is streaming `w`
//! from memory once, so rows of `w` are split across threads and each output
//! is one [`Half::dot`] over its weight row (F16C + FMA on x86-64). Prefill
//! (`m > 1`) converts each weight row to f32 once and reuses it for all `m`
//! inputs, so the weights are still read once. Every output element is one
//! sequential dot product, whatever the thread count: results are
//! deterministic, which the runtime's bit-identity tests rely on.

use rayon::prelude::*;

use crate::elem::{Elem, Half};
use crate::simd::dot_f32;

/// Output rows per parallel task: enough work to amortise scheduling (a task
/// reads at least `ROWS_PER_TASK * k * 2` bytes), small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// The generic product; see the module doc. `x` is converted to f32 once.
pub fn matmul<W: Half, O: Elem>(out: &mut [O], x: &[W], w: &[W], m: usize, n: usize, k: usize) {
    assert!(out.len() >= m * n, "matmul: out has {} elements, needs m*n = {m}*{n}", out.len());
    assert!(x.len() >= m * k, "matmul: x has {} elements, needs m*k = {m}*{k}", x.len());
    assert!(w.len() >= n * k, "matmul: w has {} elements, needs n*k = {n}*{k}", w.len());
    let mut xf = vec![0f32; m * k];
    W::to_f32_slice(&x[..m * k], &mut xf);
    if m == 1 {
        out[..n].par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(task, chunk)| {
            let j0 = task * ROWS_PER_TASK;
            for (dj, o) in chunk.iter_mut().enumerate() {
                let row = &w[(j0 + dj) * k..(j0 + dj + 1) * k];
                *o = O::from_f32(W::dot(&xf, row));
            }
        });
        return;
    }
    // Each task fills a [rows, m] tile of the transposed output, then the
    // tiles are transposed into `out` ([m, n]).
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(|(task, tile)| {
        let j0 = task * ROWS_PER_TASK;
        let mut row = vec![0f32; k];
        for (dj, col) in tile.chunks_mut(m).enumerate() {
            W::to_f32_slice(&w[(j0 + dj) * k..(j0 + dj + 1) * k], &mut row);
            for (i, o) in col.iter_mut().enumerate() {
                *o = dot_f32(&xf[i * k..(i + 1) * k], &row);
            }
        }
    });
    out[..m * n].par_chunks_mut(n).enumerate().for_each(|(i, orow)| {
        for (j, o) in orow.iter_mut().enumerate() {
            *o = O::from_f32(t[j * m + i]);
        }
    });
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::check::close;
    use crate::rng::Rng;

    fn reference<W: Half>(x: &[W], w: &[W], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| x[i * k + p].to_f32() as f64 * w[j * k + p].to_f32() as f64).sum();
            }
        }
        out
    }

    fn case<W: Half>(m: usize, n: usize, k: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let x: Vec<W> = rng.normals(m * k, 1.0).into_iter().map(W::from_f32).collect();
        let w: Vec<W> = rng.normals(n * k, 0.05).into_iter().map(W::from_f32).collect();
        let want = reference(&x, &w, m, n, k);
        let mut out32 = vec![0f32; m * n];
        matmul::<W, f32>(&mut out32, &x, &w, m, n, k);
        // f32 accumulation only: error ~ sqrt(k) * 2^-24 * |terms|, far below 1e-4.
        close(&format!("matmul {} -> f32 m={m} n={n} k={k}", W::NAME), &out32, &want, 1e-4, 1e-5).unwrap();
        let mut outh = vec![W::from_f32(0.0); m * n];
        matmul::<W, W>(&mut outh, &x, &w, m, n, k);
        let got: Vec<f32> = outh.iter().map(|v| v.to_f32()).collect();
        // One rounding of the output to the 16-bit type: half an ulp, 2^-11 (f16) or 2^-8 (bf16) relative.
        let rtol = if W::NAME == "f16" { 1.0 / 2048.0 } else { 1.0 / 256.0 };
        close(&format!("matmul {} m={m} n={n} k={k}", W::NAME), &got, &want, 1e-4, rtol).unwrap();
    }

    #[test]
    fn f16_and_bf16_match_f64_for_decode_and_prefill_shapes() {
        for (m, n, k) in [(1, 1, 1), (1, 37, 70), (1, 100, 256), (3, 33, 64), (7, 50, 129), (16, 17, 96)] {
            case::<f16>(m, n, k, (m * 1000 + n) as u64);
            case::<bf16>(m, n, k, (m * 1000 + n) as u64 + 1);
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_pool() {
        let mut rng = Rng::new(5);
        let (m, n, k) = (4, 70, 80);
        let x: Vec<f16> = rng.normals(m * k, 1.0).into_iter().map(f16::from_f32).collect();
        let w: Vec<f16> = rng.normals(n * k, 0.1).into_iter().map(f16::from_f32).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0f32; m * n];
            pool.install(|| matmul::<f16, f32>(&mut out, &x, &w, m, n, k));
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(3));
    }
}
