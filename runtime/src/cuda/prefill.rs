//! Prefill attention behind [`CudaOps`]'s `attention`: the flash kernel
//! (`attn_prefill.cu`, twin `djinn_kernels::attn_prefill_{f16,bf16}`),
//! which needs no score scratch. The cuBLAS path it replaced (two
//! strided-batched GEMMs around `attn_softmax.cu`, in `ops.rs`) stays for
//! the head sizes the kernel does not tile, and with `DJINN_FLASH=0`.
//!
//! Which head sizes take the kernel is part of the plan contract
//! ([`djinn_core::activations::FLASH_HEAD_DIMS`]): the activation layout
//! gives the `scores` scratch its `[heads, tokens, seq]` prefill size only
//! for the others, so for those the fallback always has its scratch (and
//! with `DJINN_FLASH=0` a plan's prefill fails on the scratch's size, by name).

use djinn_core::activations::FLASH_HEAD_DIMS;
use djinn_kernels::cuda::Kernel;

use super::error::CudaError;
use super::ops::{kname, u32_of, Arg, CudaOps};
use crate::ops::{AttnShape, Buf};

/// Query rows per block of `attn_prefill.cu` (its `PF_M`).
const PREFILL_ROWS: u64 = 64;
/// Threads per block of `attn_prefill.cu` (its `PF_THREADS`).
const PREFILL_THREADS: u32 = 128;

/// The window `attn_prefill.cu` takes: 0 for none, or for one at least as
/// wide as the sequence (which masks nothing).
fn window_arg(op: &'static str, s: AttnShape) -> Result<u32, CudaError> {
    match s.window {
        Some(0) => Err(CudaError::BadOperands { op, message: "a sliding window of 0 positions sees nothing".into() }),
        Some(w) if w < s.pos0 + s.tokens => u32_of(op, "window", w),
        _ => Ok(0),
    }
}

impl CudaOps {
    /// Attention of `s.tokens` query rows by `attn_prefill_{dtype}`, with no
    /// scratch. `Ok(false)`, having done nothing, where the kernel does not
    /// take the shape: a head size outside [`FLASH_HEAD_DIMS`], an operand
    /// not 16-byte aligned (its tiles are copied in 16-byte chunks), or more
    /// heads than a grid's second dimension. Public for the benchmarks.
    pub fn try_attn_prefill(
        &mut self,
        out: Buf,
        q: Buf,
        k_cache: Buf,
        v_cache: Buf,
        s: AttnShape,
    ) -> Result<bool, CudaError> {
        const OP: &str = "attention";
        let (d, seq) = (s.head_dim, s.pos0 + s.tokens);
        let aligned = [out, q, k_cache, v_cache].iter().all(|b| b.offset.is_multiple_of(16));
        if !FLASH_HEAD_DIMS.contains(&d) || !aligned || s.num_heads > 65535 || s.tokens == 0 {
            return Ok(false);
        }
        if s.num_kv_heads == 0 || !s.num_heads.is_multiple_of(s.num_kv_heads) {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("{} heads over {} kv heads", s.num_heads, s.num_kv_heads),
            });
        }
        let name = kname(q.dtype, Kernel::AttnPrefillF16, Kernel::AttnPrefillBf16, OP)?;
        let (q_dim, kv_dim) = (s.num_heads * d, s.num_kv_heads * d);
        let window = window_arg(OP, s)?;
        let po = self.operand(OP, "out", out, s.tokens * q_dim, Some(q.dtype))?;
        let pq = self.operand(OP, "q", q, s.tokens * q_dim, None)?;
        let pkc = self.operand(OP, "k_cache", k_cache, seq * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, seq * kv_dim, Some(q.dtype))?;
        u32_of(OP, "pos0 + tokens", seq)?;
        let blocks = u32_of(OP, "query blocks", s.tokens.div_ceil(PREFILL_ROWS))?;
        let mut a = [
            Arg::Ptr(po),
            Arg::Ptr(pq),
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::U32(u32_of(OP, "tokens", s.tokens)?),
            Arg::U32(u32_of(OP, "pos0", s.pos0)?),
            Arg::U32(s.num_heads as u32),
            Arg::U32(u32_of(OP, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(d as u32),
            Arg::U32(window),
            Arg::F32((std::f64::consts::LOG2_E / (d as f64).sqrt()) as f32),
        ];
        self.launch_2d(OP, name, (blocks, s.num_heads as u32), PREFILL_THREADS, &mut a)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use djinn_core::activations::{DECODE_CHUNK, FLASH_HEAD_DIMS};

    #[test]
    fn the_plan_contract_names_the_kernels_constants() {
        // core sizes the scratch without depending on the kernels crate; these
        // are the numbers it copies.
        assert_eq!(DECODE_CHUNK, djinn_kernels::ATTN_CHUNK as u64);
        for d in FLASH_HEAD_DIMS {
            assert!(d.is_multiple_of(16) && d <= 128, "attn_prefill.cu tiles head_dim {d}?");
        }
    }
}
