//! Prefill attention behind [`CudaOps`]'s `attention`: the flash kernel
//! (`attn_prefill.cu`, twin `djinn_kernels::attn_prefill_{f16,bf16}`),
//! which needs no score scratch. The cuBLAS path it replaced (two
//! strided-batched GEMMs around `attn_softmax.cu`, in `ops.rs`) stays for
//! the head sizes the kernel does not tile, for devices before compute
//! capability 8.0 (T4) and with `DJINN_FLASH=0`.
//!
//! Which head sizes take the kernel is part of the plan contract
//! ([`djinn_core::activations::FLASH_HEAD_DIMS`]): the activation layout
//! gives the `scores` scratch its `[heads, tokens, seq]` prefill size only
//! for the others, so for those the fallback always has its scratch. Where
//! the kernel cannot run a flash head size (an older device, `DJINN_FLASH=0`),
//! the cuBLAS path runs over chunks of query rows whose scores fit the
//! scratch that is there (at least one score row per head over the cache):
//! correct, and slower the smaller the chunks.

use djinn_core::activations::FLASH_HEAD_DIMS;
use djinn_kernels::cuda::Kernel;

use super::error::CudaError;
use super::ops::{kname, u32_of, window_arg, Arg, CudaOps};
use crate::ops::{AttnShape, Buf};

/// Query rows per block of `attn_prefill.cu` (its `PF_M`).
const PREFILL_ROWS: u64 = 64;
/// Threads per block of `attn_prefill.cu` (its `PF_THREADS`).
const PREFILL_THREADS: u32 = 128;

impl CudaOps {
    /// Attention of `s.tokens` query rows by `attn_prefill_{dtype}`, with no
    /// scratch. `Ok(false)`, having done nothing, where the kernel does not
    /// take the shape: a device before compute capability 8.0, a head size
    /// outside [`FLASH_HEAD_DIMS`], an operand not 16-byte aligned (its tiles
    /// are copied in 16-byte chunks), or more heads than a grid's second
    /// dimension. Public for the benchmarks.
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
        let device = self.gpu().cc.0 >= 8; // cp.async and the bf16 mma
        if !device || !FLASH_HEAD_DIMS.contains(&d) || !aligned || s.num_heads > 65535 || s.tokens == 0 {
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
        // A window at least as wide as the sequence masks nothing: the kernel takes it as none.
        let window = window_arg(OP, s.window.filter(|&w| w < seq))?;
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
    /// The cuBLAS path over query rows in chunks whose scores fit `scores`,
    /// for a prefill whose whole `[heads, tokens, seq]` scores do not (the
    /// scratch is sized for the flash path, which a device before compute
    /// capability 8.0 or `DJINN_FLASH=0` does not run): each chunk of rows
    /// `r0..r1` is a pass of its own at `pos0 + r0` over the same cache,
    /// through [`crate::ops::Ops::attention`]. Every chunk computes exactly
    /// what its rows would in one pass. `Ok(false)`, having done nothing, when
    /// the scores fit (or not even one row's do: the caller's error then).
    pub(super) fn try_attn_prefill_in_chunks(
        &mut self,
        out: Buf,
        q: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        s: AttnShape,
    ) -> Result<bool, CudaError> {
        let seq = s.pos0 + s.tokens;
        // Score rows as the cuBLAS path lays them out, padded to 8 floats.
        let per_row = s.num_heads * seq.div_ceil(8) * 8;
        let rows = scores.elems / per_row.max(1);
        if s.tokens <= 1 || rows >= s.tokens || rows == 0 {
            return Ok(false);
        }
        let q_dim = s.num_heads * s.head_dim;
        let mut r0 = 0;
        while r0 < s.tokens {
            let n = rows.min(s.tokens - r0);
            let chunk = AttnShape { tokens: n, pos0: s.pos0 + r0, header: None, ..s };
            let (o, qq) = (slice(out, r0 * q_dim, n * q_dim)?, slice(q, r0 * q_dim, n * q_dim)?);
            crate::ops::Ops::attention(self, o, qq, k_cache, v_cache, scores, chunk)?;
            r0 += n;
        }
        Ok(true)
    }
}

/// `b.slice(start, elems)`, or the error of an operand too small for it.
fn slice(b: Buf, start: u64, elems: u64) -> Result<Buf, CudaError> {
    if start + elems > b.elems {
        return Err(CudaError::BadOperands {
            op: "attention",
            message: format!("operand of {} elements where {} are needed", b.elems, start + elems),
        });
    }
    Ok(b.slice(start, elems))
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
