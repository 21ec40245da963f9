//! `out[m, n] = x[m, k] · w[n, k]ᵀ` with f32 accumulation: every projection
//! of the model (weights stored `[out_features, in_features]`, as Hugging
//! Face stores them).
//!
//! Decode is `m = 1`: a matrix-vector product whose cost is streaming `w`
//! from memory once. `x` is converted to f32 once, then the rows of `w` are
//! split into one contiguous span per worker of the [`Team`], and each worker
//! runs [`Half::dot_rows`] over its span (AVX-512 four rows at a time where
//! the CPU has it). Prefill (`m > 1`) converts each weight row to f32 once
//! and reuses it for all `m` inputs, so the weights are still read once.
//! Every output element is one sequential dot product, whatever the thread
//! count or split: results are deterministic, which the runtime's
//! bit-identity tests rely on.

use crate::elem::{Elem, Half};
use crate::simd::dot_f32;
use crate::team::Team;

/// Weight rows per unit of the split (a multiple of the SIMD row group).
const ROW_UNIT: usize = 4;

/// Below this many weights a product runs on the calling thread alone:
/// dispatching costs more than it saves.
pub const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// The product on the process-wide team; see the module doc.
pub fn matmul<W: Half, O: Elem>(out: &mut [O], x: &[W], w: &[W], m: usize, n: usize, k: usize) {
    matmul_on(Team::global(), out, x, w, m, n, k)
}

/// The product on `team`.
pub fn matmul_on<W: Half, O: Elem>(team: &Team, out: &mut [O], x: &[W], w: &[W], m: usize, n: usize, k: usize) {
    assert!(out.len() >= m * n, "matmul: out has {} elements, needs m*n = {m}*{n}", out.len());
    assert!(x.len() >= m * k, "matmul: x has {} elements, needs m*k = {m}*{k}", x.len());
    assert!(w.len() >= n * k, "matmul: w has {} elements, needs n*k = {n}*{k}", w.len());
    let mut xf = vec![0f32; m * k];
    W::to_f32_slice(&x[..m * k], &mut xf);
    let team = team.for_work(n * k, PARALLEL_MIN_WEIGHTS);
    if m == 1 {
        team.split_mut(&mut out[..n], ROW_UNIT, |j0, piece| {
            let mut acc = [0f32; 64];
            for (c, chunk) in piece.chunks_mut(acc.len()).enumerate() {
                let j = j0 + c * acc.len();
                let acc = &mut acc[..chunk.len()];
                W::dot_rows(acc, &xf, &w[j * k..(j + chunk.len()) * k], k);
                for (o, a) in chunk.iter_mut().zip(acc.iter()) {
                    *o = O::from_f32(*a);
                }
            }
        });
        return;
    }
    // Each worker fills the rows of the transposed output `t` ([n, m]) of its
    // weight rows, then `t` is transposed into `out` ([m, n]).
    let mut t = vec![0f32; n * m];
    team.split_mut(&mut t, m, |start, piece| {
        let j0 = start / m;
        let mut row = vec![0f32; k];
        for (dj, col) in piece.chunks_mut(m).enumerate() {
            W::to_f32_slice(&w[(j0 + dj) * k..(j0 + dj + 1) * k], &mut row);
            for (i, o) in col.iter_mut().enumerate() {
                *o = dot_f32(&xf[i * k..(i + 1) * k], &row);
            }
        }
    });
    team.split_mut(&mut out[..m * n], n, |start, piece| {
        for (di, orow) in piece.chunks_mut(n).enumerate() {
            let i = start / n + di;
            for (j, o) in orow.iter_mut().enumerate() {
                *o = O::from_f32(t[j * m + i]);
            }
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
    fn results_do_not_depend_on_the_team_size() {
        let mut rng = Rng::new(5);
        // Large enough to be split over the team (n·k ≥ PARALLEL_MIN_WEIGHTS), odd row count.
        for (m, n, k) in [(1, 1031, 96), (4, 701, 100)] {
            assert!(n * k >= PARALLEL_MIN_WEIGHTS);
            let x: Vec<f16> = rng.normals(m * k, 1.0).into_iter().map(f16::from_f32).collect();
            let w: Vec<f16> = rng.normals(n * k, 0.1).into_iter().map(f16::from_f32).collect();
            let want = reference(&x, &w, m, n, k);
            let run = |threads| {
                let team = Team::new(threads, false);
                let mut out = vec![f32::NAN; m * n];
                matmul_on::<f16, f32>(&team, &mut out, &x, &w, m, n, k);
                close(&format!("matmul m={m} n={n} k={k} on {threads} threads"), &out, &want, 1e-4, 1e-5).unwrap();
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(1), run(3), "m={m}");
            assert_eq!(run(3), run(7), "m={m}");
        }
    }
}
