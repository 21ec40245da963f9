//! The element types the kernels are generic over.
//!
//! Every kernel is written once, generic over [`Half`] (the model dtype: f16 or
//! bf16) and, for outputs that may be either, over [`Elem`] (f16, bf16 or
//! f32). The `{op}_{dtype}` functions in the crate root are thin monomorphic
//! entry points over these generics, so that each `.cu` kernel has a CPU twin
//! with the same name and signature.

use half::{bf16, f16};

use crate::simd;

/// A storable element: converts to and from f32 (rounding to nearest even).
pub trait Elem: Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    const NAME: &'static str;
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
}

/// A 16-bit model dtype: f16 or bf16.
pub trait Half: Elem {
    /// `Σ x[i] * w[i]` in f32, with the weights converted on the fly (SIMD where the CPU has it).
    fn dot(x: &[f32], w: &[Self]) -> f32;

    /// `out[r] = Σ x[p] * w[r·k + p]` for every row `r < out.len()`: the
    /// matrix-vector kernel ([`simd::dot_rows_f16`]).
    fn dot_rows(out: &mut [f32], x: &[f32], w: &[Self], k: usize);

    /// `dst[i] = f32(src[i])`.
    fn to_f32_slice(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
}

impl Elem for f32 {
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f32 {
        x
    }
}

impl Elem for f16 {
    const NAME: &'static str = "f16";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
}

impl Elem for bf16 {
    const NAME: &'static str = "bf16";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        // bf16 is the top half of an f32: widening is a shift.
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
}

impl Half for f16 {
    #[inline]
    fn dot(x: &[f32], w: &[f16]) -> f32 {
        simd::dot_f16(x, w)
    }
    #[inline]
    fn dot_rows(out: &mut [f32], x: &[f32], w: &[f16], k: usize) {
        simd::dot_rows_f16(out, x, w, k)
    }
    fn to_f32_slice(src: &[f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

impl Half for bf16 {
    #[inline]
    fn dot(x: &[f32], w: &[bf16]) -> f32 {
        simd::dot_bf16(x, w)
    }
    #[inline]
    fn dot_rows(out: &mut [f32], x: &[f32], w: &[bf16], k: usize) {
        simd::dot_rows_bf16(out, x, w, k)
    }
}
