//! Dot products of an f32 vector with f32 / f16 / bf16 weights: the inner
//! loop of every matrix product, hence of decode speed on the CPU.
//!
//! A decode step is a chain of matrix-vector products whose cost is reading
//! the weights once, so the loop must convert 16-bit weights as fast as
//! memory delivers them. Two paths, each chosen once at run time with
//! `is_x86_feature_detected!` (which caches):
//!
//! * [`dot_rows_f16`] / [`dot_rows_bf16`], the matrix-vector kernel: `R` weight
//!   rows against one `x` at a time, so each `x` vector load feeds `R` FMAs.
//!   With AVX-512F, 32 weights (one 64-byte cache line of f16) per row per
//!   iteration become f32 with two 16-lane `vcvtph2ps` (bf16: a 16-bit shift)
//!   into two accumulators per row; with AVX2 + FMA + F16C, four 8-lane
//!   accumulators per row. A row's arithmetic does not depend on `R` or on
//!   which rows share its group, so any split of the rows over threads gives
//!   the same bits.
//! * [`dot_f32`] / [`dot_f16`] / [`dot_bf16`], one row (attention, prefill):
//!   AVX2 + FMA + F16C, four 8-lane accumulators.
//!
//! Elsewhere a portable loop with 32 independent accumulators lets the
//! compiler vectorise. Either way each call sums in a fixed order, so results
//! are deterministic for a given machine.

use half::{bf16, f16};

/// Independent partial sums per iteration (4 AVX registers of 8 lanes).
const LANES: usize = 32;

pub fn dot_f32(x: &[f32], w: &[f32]) -> f32 {
    assert_eq!(x.len(), w.len(), "dot: vector lengths differ");
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_f16c() {
        // SAFETY: the features the function is compiled for were detected.
        return unsafe { x86::dot_f32(x, w) };
    }
    portable(x, w, |v| v)
}

pub fn dot_f16(x: &[f32], w: &[f16]) -> f32 {
    assert_eq!(x.len(), w.len(), "dot: vector lengths differ");
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_f16c() {
        // SAFETY: as above.
        return unsafe { x86::dot_f16(x, w) };
    }
    portable(x, w, f16::to_f32)
}

pub fn dot_bf16(x: &[f32], w: &[bf16]) -> f32 {
    assert_eq!(x.len(), w.len(), "dot: vector lengths differ");
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_f16c() {
        // SAFETY: as above.
        return unsafe { x86::dot_bf16(x, w) };
    }
    portable(x, w, |v: bf16| f32::from_bits((v.to_bits() as u32) << 16))
}

/// `out[r] = Σ_p x[p] · w[r·k + p]` for `r < out.len()`: `out.len()` rows of
/// `k` weights, contiguous in `w`, against `x` (`k` long). Rows go in groups
/// of four; see the module doc.
pub fn dot_rows_f16(out: &mut [f32], x: &[f32], w: &[f16], k: usize) {
    check_rows(out.len(), x.len(), w.len(), k);
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F (and the AVX2 family under it) was detected; `w` holds `out.len()·k` weights.
        return unsafe { x86::rows_f16_avx512(out, x, w.as_ptr() as *const u16, k) };
    }
    one_row_at_a_time(out, x, w, k, dot_f16)
}

/// [`dot_rows_f16`] for bf16 weights.
pub fn dot_rows_bf16(out: &mut [f32], x: &[f32], w: &[bf16], k: usize) {
    check_rows(out.len(), x.len(), w.len(), k);
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: as above.
        return unsafe { x86::rows_bf16_avx512(out, x, w.as_ptr() as *const u16, k) };
    }
    one_row_at_a_time(out, x, w, k, dot_bf16)
}

fn check_rows(rows: usize, x: usize, w: usize, k: usize) {
    assert_eq!(x, k, "dot_rows: x has {x} elements, k = {k}");
    assert!(w >= rows * k, "dot_rows: {w} weights for {rows} rows of {k}");
}

/// Without AVX-512: each row through the one-row dot product.
fn one_row_at_a_time<T>(out: &mut [f32], x: &[f32], w: &[T], k: usize, dot: fn(&[f32], &[T]) -> f32) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(x, &w[r * k..(r + 1) * k]);
    }
}

/// Which matrix-vector path this machine runs (reported by `gemv_bench` and `djinn-profile`).
pub fn gemv_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            return "avx512f";
        }
        if avx2_fma_f16c() {
            return "avx2+fma+f16c";
        }
    }
    "portable"
}

/// Whether the SIMD paths run on this machine (reported by `gemv_bench`).
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma_f16c()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_f16c() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    is_x86_feature_detected!("avx512f") && avx2_fma_f16c()
}

#[inline(always)]
fn portable<T: Copy>(x: &[f32], w: &[T], cvt: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let body = x.len() / LANES * LANES;
    for (xs, ws) in x[..body].chunks_exact(LANES).zip(w[..body].chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += xs[j] * cvt(ws[j]);
        }
    }
    let mut tail = 0f32;
    for i in body..x.len() {
        tail += x[i] * cvt(w[i]);
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::{bf16, f16};

    use super::LANES;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
        _mm_cvtss_f32(s)
    }

    /// The shared loop: `load(p)` turns 8 weights at element `p` into 8 f32.
    #[inline(always)]
    unsafe fn dot_with(x: &[f32], n: usize, load: impl Fn(usize) -> __m256, scalar: impl Fn(usize) -> f32) -> f32 {
        let xp = x.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let body = n / LANES * LANES;
        let mut i = 0;
        while i < body {
            for (r, a) in acc.iter_mut().enumerate() {
                let p = i + 8 * r;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(p)), load(p), *a);
            }
            i += LANES;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i)), load(i), acc[0]);
            i += 8;
        }
        let mut tail = 0f32;
        while i < n {
            tail += x[i] * scalar(i);
            i += 1;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(s) + tail
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32(x: &[f32], w: &[f32]) -> f32 {
        let wp = w.as_ptr();
        dot_with(x, x.len(), |p| _mm256_loadu_ps(wp.add(p)), |i| w[i])
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(x: &[f32], w: &[f16]) -> f32 {
        let wp = w.as_ptr() as *const __m128i;
        dot_with(
            x,
            x.len(),
            |p| _mm256_cvtph_ps(_mm_loadu_si128((wp as *const u16).add(p) as *const __m128i)),
            |i| w[i].to_f32(),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_bf16(x: &[f32], w: &[bf16]) -> f32 {
        let wp = w.as_ptr() as *const u16;
        dot_with(
            x,
            x.len(),
            |p| {
                let h = _mm_loadu_si128(wp.add(p) as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
            },
            |i| f32::from_bits((w[i].to_bits() as u32) << 16),
        )
    }
    /// Rows in one AVX-512 group: 4 rows × 2 accumulators + 2 `x` registers + 2 loads.
    const GROUP: usize = 4;

    /// `out[r] = x · w[r·k ..]` for every row, in groups of [`GROUP`] rows
    /// then one at a time; `load(p)` widens 16 weights at element `p` to f32.
    /// Every row runs the same instruction sequence on its own accumulators.
    #[inline(always)]
    unsafe fn rows_avx512(
        out: &mut [f32],
        x: &[f32],
        k: usize,
        load: impl Fn(usize) -> __m512,
        scalar: impl Fn(usize) -> f32,
    ) {
        let rows = out.len();
        let mut r0 = 0;
        while r0 + GROUP <= rows {
            let v = group::<GROUP>(x, k, r0, &load, &scalar);
            out[r0..r0 + GROUP].copy_from_slice(&v);
            r0 += GROUP;
        }
        while r0 < rows {
            out[r0] = group::<1>(x, k, r0, &load, &scalar)[0];
            r0 += 1;
        }
    }

    #[inline(always)]
    unsafe fn group<const R: usize>(
        x: &[f32],
        k: usize,
        r0: usize,
        load: &impl Fn(usize) -> __m512,
        scalar: &impl Fn(usize) -> f32,
    ) -> [f32; R] {
        let xp = x.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let body = k / 32 * 32;
        let mut p = 0;
        while p < body {
            let (x0, x1) = (_mm512_loadu_ps(xp.add(p)), _mm512_loadu_ps(xp.add(p + 16)));
            for (r, a) in acc.iter_mut().enumerate() {
                let at = (r0 + r) * k + p;
                a[0] = _mm512_fmadd_ps(x0, load(at), a[0]);
                a[1] = _mm512_fmadd_ps(x1, load(at + 16), a[1]);
            }
            p += 32;
        }
        if p + 16 <= k {
            let x0 = _mm512_loadu_ps(xp.add(p));
            for (r, a) in acc.iter_mut().enumerate() {
                a[0] = _mm512_fmadd_ps(x0, load((r0 + r) * k + p), a[0]);
            }
            p += 16;
        }
        let mut out = [0f32; R];
        for (r, o) in out.iter_mut().enumerate() {
            let mut tail = 0f32;
            for i in p..k {
                tail += x[i] * scalar((r0 + r) * k + i);
            }
            *o = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + tail;
        }
        out
    }

    /// # Safety
    /// AVX-512F must be available and `w` must hold `out.len() * k` f16 values.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn rows_f16_avx512(out: &mut [f32], x: &[f32], w: *const u16, k: usize) {
        rows_avx512(
            out,
            x,
            k,
            |p| _mm512_cvtph_ps(_mm256_loadu_si256(w.add(p) as *const __m256i)),
            |i| f16::from_bits(*w.add(i)).to_f32(),
        )
    }

    /// # Safety
    /// AVX-512F must be available and `w` must hold `out.len() * k` bf16 values.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn rows_bf16_avx512(out: &mut [f32], x: &[f32], w: *const u16, k: usize) {
        rows_avx512(
            out,
            x,
            k,
            |p| {
                _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(w.add(p) as *const __m256i)),
                    16,
                ))
            },
            |i| f32::from_bits((*w.add(i) as u32) << 16),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn naive(x: &[f32], w: &[f32]) -> f64 {
        x.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum()
    }

    #[test]
    fn dots_match_f64_at_every_length_around_the_vector_widths() {
        let mut rng = Rng::new(7);
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 4096 + 13] {
            let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let wf: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
            let wb: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
            let cases: [(&str, f32, f64); 3] = [
                ("f32", dot_f32(&x, &wf), naive(&x, &wf)),
                ("f16", dot_f16(&x, &wh), naive(&x, &wh.iter().map(|v| v.to_f32()).collect::<Vec<_>>())),
                ("bf16", dot_bf16(&x, &wb), naive(&x, &wb.iter().map(|v| v.to_f32()).collect::<Vec<_>>())),
            ];
            // f32 accumulation of n products of unit normals: error ~ sqrt(n) * 2^-24 * |terms|.
            let tol = 1e-5 * (n as f64 + 1.0);
            for (name, got, want) in cases {
                assert!((got as f64 - want).abs() <= tol, "{name} n={n}: got {got}, want {want}");
            }
        }
    }

    #[test]
    fn portable_path_agrees_with_the_dispatched_one() {
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..1000).map(|_| rng.normal()).collect();
        let w: Vec<f16> = (0..1000).map(|_| f16::from_f32(rng.normal())).collect();
        let p = portable(&x, &w, f16::to_f32);
        assert!((p - dot_f16(&x, &w)).abs() < 1e-3, "{p} vs {}", dot_f16(&x, &w));
    }

    #[test]
    fn dot_rows_match_f64_and_do_not_depend_on_the_row_grouping() {
        let mut rng = Rng::new(19);
        for (rows, k) in [(1, 1), (3, 15), (4, 16), (5, 31), (9, 32), (7, 33), (13, 100), (6, 5120 + 7)] {
            let x: Vec<f32> = (0..k).map(|_| rng.normal()).collect();
            let wf: Vec<f32> = (0..rows * k).map(|_| rng.normal()).collect();
            let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
            let wb: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
            let (mut oh, mut ob) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
            dot_rows_f16(&mut oh, &x, &wh, k);
            dot_rows_bf16(&mut ob, &x, &wb, k);
            let tol = 1e-5 * (k as f64 + 1.0);
            for r in 0..rows {
                let row = |w: &[f32]| naive(&x, &w[r * k..(r + 1) * k]);
                let want_h = row(&wh.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
                let want_b = row(&wb.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
                assert!((oh[r] as f64 - want_h).abs() <= tol, "f16 rows={rows} k={k} r={r}: {} vs {want_h}", oh[r]);
                assert!((ob[r] as f64 - want_b).abs() <= tol, "bf16 rows={rows} k={k} r={r}: {} vs {want_b}", ob[r]);
                // The same row alone, or starting another group, gives the same bits.
                let mut alone = [f32::NAN];
                dot_rows_f16(&mut alone, &x, &wh[r * k..(r + 1) * k], k);
                assert_eq!(alone[0].to_bits(), oh[r].to_bits(), "f16 rows={rows} k={k} r={r}: grouping changed bits");
                let mut rest = vec![f32::NAN; rows - r];
                dot_rows_bf16(&mut rest, &x, &wb[r * k..], k);
                assert_eq!(rest[0].to_bits(), ob[r].to_bits(), "bf16 rows={rows} k={k} r={r}: grouping changed bits");
            }
        }
    }
}
