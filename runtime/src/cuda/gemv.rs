//! The decode products behind [`CudaOps`]: `gemv.cu`'s kernels with their
//! epilogues (stored, f32 logits, added into the residual stream), the q/k/v
//! products of one input in one launch, and SiLU·gate/up; the input either a
//! model-dtype `x` or the RMSNorm of the f32 residual stream, computed by the
//! product itself ([`GemvIn::Norm`]: the normalised rows never go through
//! memory and the norm costs no launch of its own).
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
use super::ops::{kname, u32_of, Arg, CudaOps};
use crate::ops::Buf;

/// The most input rows a product runs with on the GEMV kernels (each lane
/// keeps 8 sums per weight row); more go to cuBLAS.
pub const GEMV_MAX_M: u64 = 8;
/// Threads per block of `gemv.cu` (its GEMV_WARPS warps).
const GEMV_THREADS: u32 = 256;
/// Blocks of `gemv.cu` resident per multiprocessor (its launch bounds): a
/// grid of this many per multiprocessor is one wave.
const GEMV_BLOCKS_PER_SM: u64 = 3;
/// The most weight rows one block owns (its GEMV_BLOCK_ROWS_MAX shared sums).
const GEMV_BLOCK_ROWS_MAX: u64 = 128;
/// A single input row of at most this many elements is staged in shared
/// memory by each block (`gemv.cu`'s GEMV_STAGE_MAX_K: the launch then takes
/// `k` elements of dynamic shared memory).
const GEMV_STAGE_MAX_K: u64 = 16384;
/// `gemv.cu`'s epilogues.
const GEMV_STORE: u32 = 0;
const GEMV_F32: u32 = 1;
const GEMV_RESIDUAL: u32 = 2;
/// A product's input rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GemvIn {
    /// `x` `[m, k]` in the model dtype.
    X(Buf),
    /// `rmsnorm(x) · w` of the f32 rows `x` `[m, k]`, weight `w` `[k]`
    /// (each element rounded to the model dtype, as `rmsnorm` stores it).
    Norm { x: Buf, w: Buf, eps: f64 },
}

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
        self.gemv_takes(GemvIn::X(x), &[w], m, k)
    }

    /// Blocks for a product of `rows` weight rows: whole waves (every
    /// multiprocessor given the same number of blocks, and every block the
    /// same number of rows to within one), each block owning at most
    /// GEMV_BLOCK_ROWS_MAX rows; one row a block when there are fewer rows than
    /// one wave has blocks.
    /// `$DJINN_GEMV_WAVES` (default 1) multiplies the waves, for tuning.
    fn gemv_grid(&self, rows: u64) -> u64 {
        let waves: u64 = std::env::var("DJINN_GEMV_WAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
        let wave = self.gpu().sms as u64 * GEMV_BLOCKS_PER_SM;
        let waves = waves * wave;
        (waves * rows.div_ceil(waves * GEMV_BLOCK_ROWS_MAX)).min(rows).max(1)
    }

    /// Whether a product of `m` input rows by weights `ws` (`[n, k]` each) runs on the GEMV kernels.
    fn gemv_takes(&self, input: GemvIn, ws: &[Buf], m: u64, k: u64) -> bool {
        let Some(&w0) = ws.first() else { return false };
        let input_ok = match input {
            GemvIn::X(x) => x.dtype == w0.dtype && self.aligned16(x),
            GemvIn::Norm { x, w, .. } => {
                x.dtype == Dtype::F32 && self.aligned16(x) && w.dtype == w0.dtype && self.aligned16(w)
            }
        };
        self.fused
            && (1..=GEMV_MAX_M).contains(&m)
            && k > 0
            && k.is_multiple_of(8)
            && w0.dtype != Dtype::F32
            && input_ok
            && ws.iter().all(|&w| w.dtype == w0.dtype && self.aligned16(w))
    }

    /// Dynamic shared memory of a launch with `m` input rows of `k` elements.
    fn gemv_smem(m: u64, k: u64, dtype: Dtype) -> u32 {
        if m == 1 && k <= GEMV_STAGE_MAX_K {
            (k * dtype.size()) as u32
        } else {
            0
        }
    }

    /// The kernel arguments for `input`: `x`, `resid`, `norm_w`, `eps`.
    fn gemv_input_args(
        &self,
        op: &'static str,
        input: GemvIn,
        m: u64,
        k: u64,
        dtype: Dtype,
    ) -> Result<[Arg; 4], CudaError> {
        Ok(match input {
            GemvIn::X(x) => {
                [Arg::Ptr(self.operand(op, "x", x, m * k, Some(dtype))?), Arg::Ptr(0), Arg::Ptr(0), Arg::F32(0.0)]
            }
            GemvIn::Norm { x, w, eps } => [
                Arg::Ptr(0),
                Arg::Ptr(self.operand(op, "x", x, m * k, Some(Dtype::F32))?),
                Arg::Ptr(self.operand(op, "norm", w, k, Some(dtype))?),
                Arg::F32(eps as f32),
            ],
        })
    }

    /// `out[i] (+)= input · w[i]ᵀ` for up to three `(out, w, n)` segments sharing
    /// their input (`gemv_{dtype}`), in one launch.
    pub(super) fn try_gemv(
        &mut self,
        op: &'static str,
        segments: &[(Buf, Buf, u64)],
        input: GemvIn,
        m: u64,
        k: u64,
        epilogue: Epilogue,
    ) -> Result<bool, CudaError> {
        assert!((1..=3).contains(&segments.len()), "gemv takes one to three segments");
        let ws: Vec<Buf> = segments.iter().map(|s| s.1).collect();
        if !self.gemv_takes(input, &ws, m, k) {
            return Ok(false);
        }
        let dtype = ws[0].dtype;
        let name = kname(dtype, Kernel::GemvF16, Kernel::GemvBf16, op)?;
        let mut args = Vec::with_capacity(16);
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
                (Epilogue::Store, _) => dtype,
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
        args.extend(self.gemv_input_args(op, input, m, k, dtype)?);
        args.extend([Arg::U32(u32_of(op, "m", m)?), Arg::U32(u32_of(op, "k", k)?), Arg::U32(mode)]);
        let grid = u32_of(op, "row blocks", self.gemv_grid(rows))?;
        self.launch(op, name, grid, GEMV_THREADS, Self::gemv_smem(m, k, dtype), &mut args)?;
        Ok(true)
    }

    /// `out = silu(input · w_gateᵀ) * (input · w_upᵀ)` (`gemv_silu_{dtype}`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn try_gemv_silu(
        &mut self,
        out: Buf,
        input: GemvIn,
        w_gate: Buf,
        w_up: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<bool, CudaError> {
        const OP: &str = "gate_up_silu";
        if !self.gemv_takes(input, &[w_gate, w_up], m, k) {
            return Ok(false);
        }
        let dtype = w_gate.dtype;
        let name = kname(dtype, Kernel::GemvSiluF16, Kernel::GemvSiluBf16, OP)?;
        let po = self.operand(OP, "gate", out, m * n, Some(dtype))?;
        let pg = self.operand(OP, "w_gate", w_gate, n * k, None)?;
        let pu = self.operand(OP, "w_up", w_up, n * k, None)?;
        let mut a = vec![Arg::Ptr(po), Arg::Ptr(pg), Arg::Ptr(pu), Arg::U32(u32_of(OP, "n", n)?)];
        a.extend(self.gemv_input_args(OP, input, m, k, dtype)?);
        a.extend([Arg::U32(u32_of(OP, "m", m)?), Arg::U32(u32_of(OP, "k", k)?)]);
        let grid = u32_of(OP, "row blocks", self.gemv_grid(n))?;
        self.launch(OP, name, grid, GEMV_THREADS, Self::gemv_smem(m, k, dtype), &mut a)?;
        Ok(true)
    }
}
