//! The decode kernels behind [`CudaOps`]: GEMV with epilogues (`gemv.cu`),
//! RoPE fused with the cache store (`rope_kv_store.cu`), and split
//! attention over the cache (`attn_decode.cu`).
//!
//! Each `try_*` method launches its kernel and returns `Ok(true)` when the
//! shape is one the kernel takes, and `Ok(false)` — having done nothing —
//! when it is not (too many input rows, a `k` or an address the 16-byte
//! loads cannot take, a head size the attention kernel does not tile, or
//! `DJINN_FUSED=0`), so that the [`crate::ops::Ops`] methods in `ops.rs` fall
//! back to cuBLAS and the unfused kernels. Operands are checked like every
//! other op's: inside the arena, of the right dtype and size.

use djinn_core::Dtype;
use djinn_kernels::cuda::Kernel;
use djinn_kernels::{attn_partial_len, ATTN_CHUNK};

use super::error::CudaError;
use super::ops::{grid_for, kname, kv_rows, u32_of, Arg, CudaOps};
use crate::ops::{AttnShape, Buf};

/// The most input rows a product runs with on the GEMV kernels (each lane
/// keeps 8 sums per weight row); more go to cuBLAS.
pub const GEMV_MAX_M: u64 = 8;
/// Threads per block of `gemv.cu` (its GEMV_WARPS warps), and the weight rows
/// a block of `gemv_{dtype}` (GEMV_ROWS per warp) and of `gemv_silu_{dtype}` (one per warp) covers.
const GEMV_THREADS: u32 = 256;
const GEMV_BLOCK_ROWS: u64 = 16;
const GEMV_SILU_BLOCK_ROWS: u64 = 8;
/// `gemv.cu`'s epilogues.
const GEMV_STORE: u32 = 0;
const GEMV_F32: u32 = 1;
const GEMV_RESIDUAL: u32 = 2;
/// Heads one thread of `rope_kv_store.cu` rotates (its `ROPE_HEADS`).
const ROPE_HEADS: u64 = 8;
/// Threads per block of `attn_decode.cu` (its `ATTN_THREADS`).
const ATTN_THREADS: u32 = 128;
/// The head sizes `attn_decode.cu` tiles: `head_dim / 8` threads per cache
/// row must divide a warp, and q fits its 256-float buffer.
const ATTN_HEAD_DIMS: [u64; 6] = [8, 16, 32, 64, 128, 256];

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
            return Err(CudaError::BadOperands { op, message: "segments of one launch share their output dtype".into() });
        }
        args.extend([Arg::Ptr(px), Arg::U32(u32_of(op, "m", m)?), Arg::U32(u32_of(op, "k", k)?), Arg::U32(mode)]);
        let grid = u32_of(op, "row blocks", rows.div_ceil(GEMV_BLOCK_ROWS))?.max(1);
        self.launch(op, name, grid, GEMV_THREADS, 0, &mut args)?;
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
        let grid = u32_of(OP, "row blocks", n.div_ceil(GEMV_SILU_BLOCK_ROWS))?.max(1);
        self.launch(OP, name, grid, GEMV_THREADS, 0, &mut a)?;
        Ok(true)
    }

    /// RoPE on `q`, rotated `k` and `v` into the cache (`rope_kv_store_{dtype}`).
    pub(super) fn try_rope_kv_store(
        &mut self,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        s: AttnShape,
    ) -> Result<bool, CudaError> {
        const OP: &str = "rope_kv_store";
        if !self.fused {
            return Ok(false);
        }
        let name = kname(q.dtype, Kernel::RopeKvStoreF16, Kernel::RopeKvStoreBf16, OP)?;
        if !s.head_dim.is_multiple_of(2) {
            return Err(CudaError::BadOperands { op: OP, message: format!("head_dim {} is odd", s.head_dim) });
        }
        let (kv_dim, rows) = kv_rows(OP, k_cache, v_cache, s)?;
        let pq = self.operand(OP, "q", q, s.tokens * s.num_heads * s.head_dim, None)?;
        let pk = self.operand(OP, "k", k, s.tokens * kv_dim, Some(q.dtype))?;
        let pv = self.operand(OP, "v", v, s.tokens * kv_dim, Some(q.dtype))?;
        let pkc = self.operand(OP, "k_cache", k_cache, rows * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, rows * kv_dim, Some(q.dtype))?;
        // One thread per (token, ROPE_HEADS heads, rotation pair).
        let total = s.tokens * (s.num_heads + s.num_kv_heads).div_ceil(ROPE_HEADS) * (s.head_dim / 2);
        let mut a = [
            Arg::Ptr(pq),
            Arg::Ptr(pk),
            Arg::Ptr(pv),
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::U32(u32_of(OP, "tokens", s.tokens)?),
            Arg::U32(u32_of(OP, "pos0", s.pos0)?),
            Arg::U32(u32_of(OP, "num_heads", s.num_heads)?),
            Arg::U32(u32_of(OP, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(u32_of(OP, "head_dim", s.head_dim)?),
            Arg::F32(s.rope_theta as f32),
        ];
        self.launch(OP, name, grid_for(total), 256, 0, &mut a)?;
        Ok(true)
    }

    /// Decode attention (one query row) split along the cache
    /// (`attn_decode_{dtype}`, then `attn_combine_{dtype}`), its partials in
    /// the `scores` scratch.
    pub(super) fn try_attn_decode(
        &mut self,
        out: Buf,
        q: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        s: AttnShape,
    ) -> Result<bool, CudaError> {
        const OP: &str = "attention";
        let (d, seq) = (s.head_dim, s.pos0 + s.tokens);
        let splits = seq.div_ceil(ATTN_CHUNK as u64);
        let partial_elems = s.num_heads * splits * attn_partial_len(d as usize) as u64;
        if !self.fused || s.tokens != 1 || !ATTN_HEAD_DIMS.contains(&d) || partial_elems > scores.elems {
            return Ok(false);
        }
        let decode = kname(q.dtype, Kernel::AttnDecodeF16, Kernel::AttnDecodeBf16, OP)?;
        let combine = kname(q.dtype, Kernel::AttnCombineF16, Kernel::AttnCombineBf16, OP)?;
        let kv_dim = s.num_kv_heads * d;
        let po = self.operand(OP, "out", out, s.num_heads * d, Some(q.dtype))?;
        let pq = self.operand(OP, "q", q, s.num_heads * d, None)?;
        let pkc = self.operand(OP, "k_cache", k_cache, seq * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, seq * kv_dim, Some(q.dtype))?;
        let pp = self.operand(OP, "scores", scores, partial_elems, Some(Dtype::F32))?;
        let (heads, splits32) = (u32_of(OP, "num_heads", s.num_heads)?, u32_of(OP, "splits", splits)?);
        let mut a = [
            Arg::Ptr(pp),
            Arg::Ptr(pq),
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::U32(u32_of(OP, "seq", seq)?),
            Arg::U32(heads),
            Arg::U32(u32_of(OP, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(d as u32),
            Arg::F32((d as f64).powf(-0.5) as f32),
        ];
        self.launch_2d(OP, decode, (heads, splits32), ATTN_THREADS, &mut a)?;
        let mut c = [Arg::Ptr(po), Arg::Ptr(pp), Arg::U32(splits32), Arg::U32(d as u32)];
        self.launch(OP, combine, heads, (d as u32).max(32), 0, &mut c)?;
        Ok(true)
    }
}
