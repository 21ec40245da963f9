//! Dot products of an f32 vector with f32 / f16 / bf16 weights: the inner
//! loop of every matrix product, hence of decode speed on the CPU.
//!
//! A decode step is a chain of matrix-vector products whose cost is reading
//! the weights once, so the loop must convert 16-bit weights as fast as
//! memory delivers them. On x86-64 with AVX2, FMA and F16C (checked once at
//! run time with `is_x86_feature_detected!`, which caches) eight f16 weights
//! become eight f32 with one `vcvtph2ps` and feed one FMA; bf16 widens with a
//! 16-bit shift. Elsewhere a portable loop with 32 independent accumulators
//! lets the compiler vectorise. Either way each call sums in a fixed order,
//! so results are deterministic for a given machine.

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
}
