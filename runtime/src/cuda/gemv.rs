//! The decode products behind [`CudaOps`]: `gemv.cu`'s kernels with their
//! epilogues (stored, f32 logits, added into the residual stream), the q/k/v
//! products of one input in one launch, and SiLU·gate/up.
//!
//! Each `try_*` method launches its kernel and returns `Ok(true)` when the
//! shape is one the kernel takes, and `Ok(false)` — having done nothing —
//! when it is not (too many input rows, a `k` or an address the 16-byte
//! loads cannot take, or `DJINN_FUSED=0`), so that the [`crate::ops::Ops`]
//! methods in `ops.rs` fall back to cuBLAS. Operands are checked like every
//! other op's: inside the arena, of the right dtype and size.

use djinn_core::Dtype;
use djinn_kernels::cuda::Kernel;

use super::error::CudaError;
use super::nvrtc::kernel_constant;
use super::ops::{kname, u32_of, Arg, CudaOps};
use crate::ops::Buf;

/// The most input rows a product runs with on the GEMV kernels (each lane
/// keeps 8 sums per weight row: `gemv.cu`'s GEMV_MAX_M, tested); more go to cuBLAS.
pub const GEMV_MAX_M: u64 = 8;
/// Warps per block of `gemv.cu`: a tuning override in
/// `$DJINN_NVRTC_DEFINES` (which the kernels are compiled with too), else
/// the file's own GEMV_WARPS, read from its text: the launch's block size
/// must be the one its `__launch_bounds__` were compiled for.
fn gemv_warps() -> u64 {
    static WARPS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *WARPS.get_or_init(|| {
        kernel_constant(Kernel::GemvF16, "GEMV_WARPS")
            .expect("gemv.cu defines GEMV_WARPS (a djinn-kernels test checks it)")
    })
}
/// Warps a multiprocessor holds of `gemv.cu` (its GEMV_SM_WARPS, the launch
/// bounds' register budget, overridden like GEMV_WARPS).
fn gemv_sm_warps() -> u64 {
    static WARPS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *WARPS.get_or_init(|| {
        kernel_constant(Kernel::GemvF16, "GEMV_SM_WARPS")
            .expect("gemv.cu defines GEMV_SM_WARPS (a djinn-kernels test checks it)")
    })
}

/// How `gemv_{dtype}` spreads a product over warps: its `rows_per_warp` and
/// `ahead` (bytes of each row prefetched into L2 past the loads) arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemvLayout {
    pub rows_per_warp: u64,
    pub ahead: u32,
}

/// Rows from which a row counts as long for [`gemv_layout`]: 16 KiB of weights.
const GEMV_LONG_ROW_BYTES: u64 = 16 << 10;
/// What short rows of a one-wave product prefetch ahead of their loads.
const GEMV_AHEAD_BYTES: u32 = 1 << 10;

/// The layout of a product of `m` input rows by `rows` weight rows of `k`
/// 16-bit values, on a device holding `resident_warps` of the kernel's warps
/// at once. Two rows a warp where that fills the device: the grid runs in
/// waves and the warps' own loads keep the memory busy. A product with fewer
/// rows runs in one partial wave and, measured on the H200 at Llama-2-13B's
/// 5120 rows (BENCHMARKS.md 1k), reads its weights at 85–87% of the device
/// copy that way. Its long rows (down_proj's 27 KB) go one a warp instead:
/// more warps than the device holds, so that multiprocessors that finish
/// early take the rest (36.0 µs against 38.3, 92%). Its short rows (o_proj's
/// 10 KB) stay two a warp in the one wave, with 1 KB of each prefetched into
/// L2 ahead of the loads (13.0 µs against 14.4, 94%); more ahead, or the
/// prefetch on the larger products, measured slower. Several input rows
/// (m > 1) take two rows a warp: the kernel's body for them is compiled so.
pub fn gemv_layout(m: u64, rows: u64, k: u64, resident_warps: u64) -> GemvLayout {
    let two = GemvLayout { rows_per_warp: 2, ahead: 0 };
    if m > 1 || rows.div_ceil(2) >= resident_warps {
        two
    } else if 2 * k >= GEMV_LONG_ROW_BYTES {
        GemvLayout { rows_per_warp: 1, ahead: 0 }
    } else {
        GemvLayout { ahead: GEMV_AHEAD_BYTES, ..two }
    }
}

/// `gemv.cu`'s epilogues.
const GEMV_STORE: u32 = 0;
const GEMV_F32: u32 = 1;
const GEMV_RESIDUAL: u32 = 2;
/// Where a product's result goes ([`djinn_kernels::GemvOut`] on the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// Stored in `out`'s dtype (the model dtype, or f32 for the logits).
    Store,
    /// Added into an f32 residual stream after rounding to the weights' dtype.
    Residual,
}

impl CudaOps {
    fn aligned16(&self, b: Buf) -> bool {
        (self.arena.ptr + b.offset).is_multiple_of(16)
    }

    /// Whether a product of `m` rows of `x` by weights `w` `[n, k]` runs on
    /// the GEMV kernels (else on cuBLAS): for tests and benchmarks that mean
    /// to measure one path.
    pub fn runs_gemv(&self, x: Buf, w: Buf, m: u64, k: u64) -> bool {
        self.gemv_takes(x, &[w], m, k)
    }

    /// Whether a product of `m` rows of `x` by weights `ws` (`[n, k]` each) runs on the GEMV kernels.
    fn gemv_takes(&self, x: Buf, ws: &[Buf], m: u64, k: u64) -> bool {
        self.fused
            && (1..=GEMV_MAX_M).contains(&m)
            && k > 0
            && k.is_multiple_of(8)
            && x.dtype != Dtype::F32
            && self.aligned16(x)
            && ws.iter().all(|&w| w.dtype == x.dtype && self.aligned16(w))
    }

    /// `out[i] (+)= x · w[i]ᵀ` for up to three `(out, w, n)` segments sharing `x`
    /// (`gemv_{dtype}`), in one launch.
    pub(super) fn try_gemv(
        &mut self,
        op: &'static str,
        segments: &[(Buf, Buf, u64)],
        x: Buf,
        m: u64,
        k: u64,
        epilogue: Epilogue,
    ) -> Result<bool, CudaError> {
        assert!((1..=3).contains(&segments.len()), "gemv takes one to three segments");
        let ws: Vec<Buf> = segments.iter().map(|s| s.1).collect();
        if !self.gemv_takes(x, &ws, m, k) {
            return Ok(false);
        }
        let name = kname(x.dtype, Kernel::GemvF16, Kernel::GemvBf16, op)?;
        let px = self.operand(op, "x", x, m * k, None)?;
        let mut args = Vec::with_capacity(13);
        let mut rows = 0u64;
        let mut mode = GEMV_STORE;
        for i in 0..3 {
            let Some(&(out, w, n)) = segments.get(i) else {
                args.extend([Arg::Ptr(0), Arg::Ptr(0), Arg::U32(0)]);
                continue;
            };
            let out_dtype = match (epilogue, out.dtype) {
                (Epilogue::Residual, _) => Dtype::F32,
                (Epilogue::Store, Dtype::F32) => Dtype::F32,
                (Epilogue::Store, _) => x.dtype,
            };
            mode = match (epilogue, out_dtype) {
                (Epilogue::Residual, _) => GEMV_RESIDUAL,
                (Epilogue::Store, Dtype::F32) => GEMV_F32,
                _ => GEMV_STORE,
            };
            let po = self.operand(op, "out", out, m * n, Some(out_dtype))?;
            let pw = self.operand(op, "w", w, n * k, None)?;
            args.extend([Arg::Ptr(po), Arg::Ptr(pw), Arg::U32(u32_of(op, "n", n)?)]);
            rows += n;
        }
        if segments.iter().any(|s| (s.0.dtype == Dtype::F32) != (segments[0].0.dtype == Dtype::F32)) {
            return Err(CudaError::BadOperands {
                op,
                message: "segments of one launch share their output dtype".into(),
            });
        }
        let layout = gemv_layout(m, rows, k, u64::from(self.gpu().sms) * gemv_sm_warps());
        args.extend([
            Arg::Ptr(px),
            Arg::U32(u32_of(op, "m", m)?),
            Arg::U32(u32_of(op, "k", k)?),
            Arg::U32(mode),
            Arg::U32(layout.rows_per_warp as u32),
            Arg::U32(layout.ahead),
        ]);
        let grid = u32_of(op, "row blocks", rows.div_ceil(gemv_warps() * layout.rows_per_warp))?.max(1);
        self.launch(op, name, grid, 32 * gemv_warps() as u32, 0, &mut args)?;
        Ok(true)
    }

    /// `out = silu(x · w_gateᵀ) * (x · w_upᵀ)` (`gemv_silu_{dtype}`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn try_gemv_silu(
        &mut self,
        out: Buf,
        x: Buf,
        w_gate: Buf,
        w_up: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<bool, CudaError> {
        const OP: &str = "gate_up_silu";
        if !self.gemv_takes(x, &[w_gate, w_up], m, k) {
            return Ok(false);
        }
        let name = kname(x.dtype, Kernel::GemvSiluF16, Kernel::GemvSiluBf16, OP)?;
        let po = self.operand(OP, "gate", out, m * n, Some(x.dtype))?;
        let pg = self.operand(OP, "w_gate", w_gate, n * k, None)?;
        let pu = self.operand(OP, "w_up", w_up, n * k, None)?;
        let px = self.operand(OP, "x", x, m * k, None)?;
        let mut a = [
            Arg::Ptr(po),
            Arg::Ptr(pg),
            Arg::Ptr(pu),
            Arg::U32(u32_of(OP, "n", n)?),
            Arg::Ptr(px),
            Arg::U32(u32_of(OP, "m", m)?),
            Arg::U32(u32_of(OP, "k", k)?),
        ];
        let grid = u32_of(OP, "row blocks", n.div_ceil(gemv_warps()))?.max(1);
        self.launch(OP, name, grid, 32 * gemv_warps() as u32, 0, &mut a)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launch_constants_are_the_kernels() {
        let gemv = Kernel::GemvF16.source();
        assert_eq!(gemv.define("GEMV_MAX_M"), Some(GEMV_MAX_M));
        assert_eq!(gemv.define("GEMV_STORE"), Some(GEMV_STORE as u64));
        assert_eq!(gemv.define("GEMV_F32"), Some(GEMV_F32 as u64));
        assert_eq!(gemv.define("GEMV_RESIDUAL"), Some(GEMV_RESIDUAL as u64));
        assert!(gemv.define("GEMV_SM_WARPS").is_some_and(|w| (1..=64).contains(&w)));
    }

    /// Llama-2-13B's decode products on the H200 (132 multiprocessors of 24 warps), and an L4's (58).
    #[test]
    fn the_layout_follows_the_shape() {
        let (h200, l4) = (132 * 24, 58 * 24);
        let two = GemvLayout { rows_per_warp: 2, ahead: 0 };
        assert_eq!(gemv_layout(1, 3 * 5120, 5120, h200), two, "q/k/v");
        assert_eq!(gemv_layout(1, 5120, 5120, h200), GemvLayout { rows_per_warp: 2, ahead: 1024 }, "o_proj");
        assert_eq!(gemv_layout(1, 5120, 13824, h200), GemvLayout { rows_per_warp: 1, ahead: 0 }, "down_proj");
        assert_eq!(gemv_layout(1, 32000, 5120, h200), two, "LM head");
        assert_eq!(gemv_layout(4, 5120, 13824, h200), two, "several input rows");
        assert_eq!(gemv_layout(1, 5120, 13824, l4), two, "an L4 fills in waves at two rows a warp");
    }
}
