//! The decode kernels behind [`CudaOps`] besides the products (`gemv.rs`):
//! RoPE fused with the cache store (`rope_kv_store.cu`), and split
//! attention over the cache (`attn_decode.cu`), which honours a sliding
//! window by skipping the splits wholly before it and masking the rest, and
//! which a decode step runs with RoPE and the newest row's store folded in
//! (`attn_decode_rope`: one launch and one launch wait a layer fewer) and,
//! given the pass header, merges each head's split partials in its last
//! split block (one more launch fewer: the counters are the header's).
//!
//! Each `try_*` method launches its kernel and returns `Ok(true)` when the
//! shape is one the kernel takes, and `Ok(false)` — having done nothing —
//! when it is not (too many input rows, a `k` or an address the 16-byte
//! loads cannot take, a head size the attention kernel does not tile, query
//! heads that do not group evenly over the kv heads, or `DJINN_FUSED=0`), so that the [`crate::ops::Ops`] methods in `ops.rs` fall
//! back to cuBLAS and the unfused kernels. Operands are checked like every
//! other op's: inside the arena, of the right dtype and size.
//!
//! Given a shape with a pass header (`AttnShape::header`, the forward pass's
//! shapes), both kernels read the position there, and attention's grid
//! covers the whole cache, so that what they enqueue does not depend on the
//! position: a decode step captured as a CUDA graph (`graph.rs`) replays
//! at every position.

use djinn_core::activations::{PASS_COUNTERS, PASS_WORDS};
use djinn_core::Dtype;
use djinn_kernels::cuda::Kernel;
use djinn_kernels::{attn_partial_len, ATTN_CHUNK};

use super::error::CudaError;
use super::ops::{grid_for, kname, kv_rows, rope_arg, u32_of, window_arg, Arg, CudaOps};
use crate::ops::{AttnShape, Buf};

/// The most heads one thread of `rope_kv_store.cu` rotates (its `ROPE_HEADS`).
const ROPE_HEADS: u64 = 8;
/// Below this many threads at one head a thread, `rope_kv_store.cu` takes
/// one head a thread (a decode token: all its loads in flight at once);
/// above it, ROPE_HEADS (a prefill pass: each angle computed once for them).
const ROPE_SPREAD_THREADS: u64 = 1 << 16;
/// Threads per block of `attn_decode.cu` (its `ATTN_THREADS`).
const ATTN_THREADS: u32 = 128;
/// The head sizes `attn_decode.cu` tiles: `head_dim / 8` threads per cache
/// row must divide a warp, and q fits its 256-float buffer.
const ATTN_HEAD_DIMS: [u64; 6] = [8, 16, 32, 64, 128, 256];

impl CudaOps {
    /// The device address of `s`'s pass header for a kernel that reads the
    /// position there, after checking the header was noted to hold `s`'s
    /// `pos0` and `tokens` ([`CudaOps::note_pass`]); 0 (the kernels take
    /// their arguments) for a shape without one, which is noted as a launch
    /// baking its position ([`CudaOps::take_positions_baked`]).
    fn header_ptr(&mut self, op: &'static str, s: &AttnShape) -> Result<u64, CudaError> {
        let Some(header) = s.header else {
            self.positions_baked = true;
            return Ok(0);
        };
        match self.pass {
            Some((h, pos0, tokens)) if h == header && (pos0, tokens) == (s.pos0, s.tokens) => {}
            noted => {
                return Err(CudaError::BadOperands {
                    op,
                    message: format!(
                        "the pass header at arena byte {} was staged for {}, not for {} tokens at position {}",
                        header.offset,
                        match noted {
                            Some((h, p, t)) if h == header => format!("{t} tokens at position {p}"),
                            _ => "no pass".into(),
                        },
                        s.tokens,
                        s.pos0
                    ),
                })
            }
        }
        self.operand(op, "header", header, PASS_WORDS, Some(Dtype::F32))
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
        let table = rope_arg(OP, &s)?;
        let (kv_dim, rows) = kv_rows(OP, k_cache, v_cache, s)?;
        let pq = self.operand(OP, "q", q, s.tokens * s.num_heads * s.head_dim, None)?;
        let pk = self.operand(OP, "k", k, s.tokens * kv_dim, Some(q.dtype))?;
        let pv = self.operand(OP, "v", v, s.tokens * kv_dim, Some(q.dtype))?;
        let pkc = self.operand(OP, "k_cache", k_cache, rows * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, rows * kv_dim, Some(q.dtype))?;
        // One thread per (token, hpt heads, 8 rotation pairs) where the
        // kernel's 16-byte path runs (head_dim % 16 == 0; a misaligned buffer
        // makes it take one pair a thread, in a grid-stride loop), else per pair.
        let pairs = if s.head_dim.is_multiple_of(16) { s.head_dim / 16 } else { s.head_dim / 2 };
        let heads = s.num_heads + s.num_kv_heads;
        let hpt = if s.tokens * heads * pairs < ROPE_SPREAD_THREADS { 1 } else { ROPE_HEADS };
        let total = s.tokens * heads.div_ceil(hpt) * pairs;
        let header = self.header_ptr(OP, &s)?;
        let mut a = [
            Arg::Ptr(pq),
            Arg::Ptr(pk),
            Arg::Ptr(pv),
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::U32(u32_of(OP, "tokens", s.tokens)?),
            Arg::U32(u32_of(OP, "pos0", s.pos0)?),
            Arg::Ptr(header),
            Arg::U32(u32_of(OP, "num_heads", s.num_heads)?),
            Arg::U32(u32_of(OP, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(u32_of(OP, "head_dim", s.head_dim)?),
            Arg::U32(hpt as u32),
            table,
        ];
        self.launch(OP, name, grid_for(total), 256, 0, &mut a)?;
        Ok(true)
    }

    /// Decode attention (one query row) split along the cache
    /// (`attn_decode_{dtype}`, then `attn_combine_{dtype}` unless the pass
    /// header's counters let the kernel merge the heads itself), its partials in
    /// the `scores` scratch. With `newest` (this pass's unrotated `k` and
    /// `v`), RoPE and the store of the newest cache row are folded in
    /// (`attn_decode_rope_{dtype}`: `q` is taken unrotated too).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn try_attn_decode(
        &mut self,
        out: Buf,
        q: Buf,
        newest: Option<(Buf, Buf)>,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        s: AttnShape,
    ) -> Result<bool, CudaError> {
        let op: &'static str = if newest.is_some() { "rope_attention" } else { "attention" };
        let (d, seq) = (s.head_dim, s.pos0 + s.tokens);
        // With a pass header, a split for every chunk of the cache (those
        // past seq return at once): the grid does not depend on the position.
        let rows = if s.header.is_some() { k_cache.elems / (s.num_kv_heads * d).max(1) } else { seq };
        let splits = rows.max(seq).div_ceil(ATTN_CHUNK as u64);
        let partial_elems = s.num_heads * splits * attn_partial_len(d as usize) as u64;
        let grouped = s.num_kv_heads > 0 && s.num_heads.is_multiple_of(s.num_kv_heads);
        if !self.fused
            || q.dtype == Dtype::F32
            || !grouped
            || s.tokens != 1
            || !ATTN_HEAD_DIMS.contains(&d)
            || partial_elems > scores.elems
        {
            return Ok(false);
        }
        let combine = kname(q.dtype, Kernel::AttnCombineF16, Kernel::AttnCombineBf16, op)?;
        let kv_dim = s.num_kv_heads * d;
        let po = self.operand(op, "out", out, s.num_heads * d, Some(q.dtype))?;
        let pq = self.operand(op, "q", q, s.num_heads * d, None)?;
        let pkc = self.operand(op, "k_cache", k_cache, seq * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(op, "v_cache", v_cache, seq * kv_dim, Some(q.dtype))?;
        let pp = self.operand(op, "scores", scores, partial_elems, Some(Dtype::F32))?;
        let (heads, splits32) = (u32_of(op, "num_heads", s.num_heads)?, u32_of(op, "splits", splits)?);
        let header = self.header_ptr(op, &s)?;
        // With the pass header's counters, the kernel merges each head's
        // partials itself (its last split); otherwise attn_combine does.
        let merged = header != 0 && s.num_heads <= PASS_COUNTERS;
        let mut a = vec![Arg::Ptr(pp), Arg::Ptr(if merged { po } else { 0 }), Arg::Ptr(pq)];
        let mut table = None;
        let decode = match newest {
            None => kname(q.dtype, Kernel::AttnDecodeF16, Kernel::AttnDecodeBf16, op)?,
            Some((k, v)) => {
                table = Some(rope_arg(op, &s)?);
                kv_rows(op, k_cache, v_cache, s)?;
                let pk = self.operand(op, "k", k, kv_dim, Some(q.dtype))?;
                let pv = self.operand(op, "v", v, kv_dim, Some(q.dtype))?;
                a.extend([Arg::Ptr(pk), Arg::Ptr(pv)]);
                kname(q.dtype, Kernel::AttnDecodeRopeF16, Kernel::AttnDecodeRopeBf16, op)?
            }
        };
        a.extend([
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::U32(u32_of(op, "seq", seq)?),
            Arg::Ptr(header),
            Arg::U32(heads),
            Arg::U32(u32_of(op, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(d as u32),
            Arg::F32((d as f64).powf(-0.5) as f32),
            Arg::U32(window_arg(op, s.window)?),
        ]);
        // The table goes last, after the arguments both kernels take.
        a.extend(table);
        self.launch_2d(op, decode, (heads, splits32), ATTN_THREADS, &mut a)?;
        if !merged {
            let mut c = [Arg::Ptr(po), Arg::Ptr(pp), Arg::U32(splits32), Arg::Ptr(header), Arg::U32(d as u32)];
            self.launch(op, combine, heads, (d as u32).max(32), 0, &mut c)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use djinn_core::activations::PASS_COUNTERS_AT;

    use super::*;

    #[test]
    fn the_pass_header_counters_are_the_kernels() {
        let attn = Kernel::AttnDecodeF16.source();
        assert_eq!(attn.define("PASS_HEAD_WORDS"), Some(PASS_COUNTERS_AT));
        assert_eq!(attn.define("ATTN_COUNTERS"), Some(PASS_COUNTERS));
        assert_eq!(PASS_COUNTERS_AT + PASS_COUNTERS, PASS_WORDS);
        assert_eq!(attn.define("ATTN_CHUNK"), Some(ATTN_CHUNK as u64));
        assert_eq!(attn.define("ATTN_THREADS"), Some(ATTN_THREADS as u64));
    }
}
