//! The kernel interface the forward pass is written against.
//!
//! [`crate::forward`] is written once; the CPU backend implements [`Ops`]
//! with the CPU twins in `djinn-kernels`, the CUDA backend with the `.cu`
//! kernels and cuBLAS. Every operand is a [`Buf`]: a typed window into the
//! plan's arena (activations, KV cache, a resident region or a slot), so the
//! same offsets mean the same bytes on either backend.
//!
//! Besides the elementary ops, the trait names the fusions a decode step
//! wants on a GPU — the three projections of one input in one launch, the
//! gate/up products with their SiLU, a projection added straight into the
//! residual stream, RoPE with the cache store, RoPE and the store folded
//! into decode attention — each with a default that runs
//! the elementary ops it stands for ([`unfused`]), so a backend overrides
//! only what it fuses and the forward pass reads the same either way.
//!
//! Conventions: row-major; `matmul` computes `out[m, n] = x[m, k] · w[n, k]ᵀ`
//! (weights stored `[out_features, in_features]`, as Hugging Face stores
//! them) with f32 accumulation; the residual stream is f32; everything else is
//! in the model dtype (`f16` or `bf16`), which each call dispatches on.

use djinn_core::Dtype;

/// A typed window into the arena: `elems` elements of `dtype` at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    pub offset: u64,
    pub elems: u64,
    pub dtype: Dtype,
}

impl Buf {
    pub fn bytes(&self) -> u64 {
        self.elems * self.dtype.size()
    }

    /// The sub-window of `elems` elements starting `start` elements in.
    pub fn slice(&self, start: u64, elems: u64) -> Buf {
        assert!(start + elems <= self.elems, "slice {start}+{elems} out of {}", self.elems);
        Buf { offset: self.offset + start * self.dtype.size(), elems, dtype: self.dtype }
    }
}

/// Rotary pairs a [`RopeTable`] holds: heads of up to 256 dimensions.
pub const MAX_ROPE_PAIRS: usize = 128;

/// RoPE's inverse frequencies, f32, pair `i` of a head turning by
/// `position · inv_freq[i]` (the first `head_dim / 2` entries used, the rest
/// zero): [`djinn_core::model::inv_freq`] of the model, its scaling (llama3,
/// linear) included, so every RoPE variant whose difference is its
/// frequencies is data here. Fixed-size and `repr(C)` so that the CUDA
/// backend passes it to its kernels by value (`rope_freqs_t` in
/// `common.cuh`, 512 bytes of parameter space), with no device memory.
#[derive(Clone, Copy, PartialEq)]
#[repr(C)]
pub struct RopeTable {
    pub inv_freq: [f32; MAX_ROPE_PAIRS],
}

impl RopeTable {
    /// The table of `arch`, or `None` if its heads have more than
    /// `2 · MAX_ROPE_PAIRS` dimensions.
    pub fn of(arch: &djinn_core::model::Architecture) -> Option<RopeTable> {
        RopeTable::from_freqs(&djinn_core::model::inv_freq(arch))
    }

    /// A table holding `freqs` (f64, rounded to f32), or `None` if there are
    /// more than [`MAX_ROPE_PAIRS`] of them.
    pub fn from_freqs(freqs: &[f64]) -> Option<RopeTable> {
        if freqs.len() > MAX_ROPE_PAIRS {
            return None;
        }
        let mut inv_freq = [0f32; MAX_ROPE_PAIRS];
        for (t, f) in inv_freq.iter_mut().zip(freqs) {
            *t = *f as f32;
        }
        Some(RopeTable { inv_freq })
    }

    /// The unscaled table `theta^(-2i/head_dim)` (computed in f32, as the
    /// kernels computed it before they took a table), for tests and benchmarks.
    pub fn unscaled(head_dim: u64, theta: f64) -> RopeTable {
        let mut inv_freq = [0f32; MAX_ROPE_PAIRS];
        let pairs = (head_dim as usize / 2).min(MAX_ROPE_PAIRS);
        inv_freq[..pairs].copy_from_slice(&djinn_kernels::rope::inv_freq(head_dim as usize, theta as f32)[..pairs]);
        RopeTable { inv_freq }
    }

    /// The table's bytes, as a kernel parameter.
    pub fn as_bytes(&self) -> Vec<u8> {
        self.inv_freq.iter().flat_map(|f| f.to_le_bytes()).collect()
    }
}

impl std::fmt::Debug for RopeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.inv_freq.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
        f.debug_struct("RopeTable").field("inv_freq", &&self.inv_freq[..used]).finish()
    }
}

/// Attention geometry shared by the RoPE, KV-store and attention kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// Query rows in this pass.
    pub tokens: u64,
    /// Position of the first query row in the sequence (tokens already in the cache).
    pub pos0: u64,
    pub num_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    /// RoPE's frequencies (`head_dim / 2` of them used).
    pub rope: RopeTable,
    /// Sliding-window attention: the query at position `p` sees cache rows
    /// `j` with `p - window < j <= p` (`window` positions, itself included,
    /// as transformers masks them); `None`: every row `j <= p`.
    pub window: Option<u64>,
    /// The pass header (the `pass` activation buffer:
    /// `djinn_core::activations::PASS_WORDS` u32, `[pos0, tokens, ..]`), where
    /// the backend staged this pass's position: the CUDA decode kernels read
    /// it there, so that a captured decode step replays at any position (the
    /// CPU ops take `pos0` from here). `None` (a chunk of a pass, a kernel
    /// test): every kernel takes the position from here.
    pub header: Option<Buf>,
}

/// The operations of a Llama forward pass. Each call is issued on the
/// backend's compute lane (CUDA: enqueued on the compute stream; CPU: run now).
pub trait Ops {
    type Error: std::error::Error + Send + Sync + 'static;

    /// `x[t, :] = f32(table[tokens[t], :])` for `t < n`. `tokens` holds u32 ids
    /// (a `Buf` of dtype f32 used as 4-byte slots), `table` is `[vocab, hidden]`.
    fn embed(&mut self, x: Buf, table: Buf, tokens: Buf, n: u64, hidden: u64) -> Result<(), Self::Error>;

    /// `out[r, :] = x[r, :] / rms(x[r, :]) * w` for `r < rows`; `x` f32, `out` model dtype.
    fn rmsnorm(&mut self, out: Buf, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), Self::Error>;

    /// `out[m, n] = x[m, k] · w[n, k]ᵀ`, f32 accumulation, output in `out.dtype`.
    fn matmul(&mut self, out: Buf, x: Buf, w: Buf, m: u64, n: u64, k: u64) -> Result<(), Self::Error>;

    /// Rotary embedding, Hugging Face rotate-half convention, applied in place
    /// to `q` `[tokens, num_heads*head_dim]` and `k` `[tokens, num_kv_heads*head_dim]`
    /// at positions `pos0..pos0+tokens`.
    fn rope(&mut self, q: Buf, k: Buf, shape: AttnShape) -> Result<(), Self::Error>;

    /// Writes `k`, `v` `[tokens, kv_dim]` into the layer's cache planes
    /// `[max_seq_len, kv_dim]` at rows `pos0..pos0+tokens`.
    fn kv_store(&mut self, k_cache: Buf, v_cache: Buf, k: Buf, v: Buf, shape: AttnShape) -> Result<(), Self::Error>;

    /// Causal attention of the `tokens` query rows over cache rows
    /// `0..pos0+tokens` (query row t sees rows `<= pos0+t`, and with
    /// `shape.window` only the last `window` of them), grouped-query:
    /// head h reads kv head `h / (num_heads/num_kv_heads)`. `scores` is f32
    /// scratch: the decode partials, or `num_heads*tokens*(pos0+tokens)`
    /// elements where prefill materialises its scores (head sizes outside
    /// `djinn_core::activations::FLASH_HEAD_DIMS`; the flash path uses none).
    /// `out` is `[tokens, num_heads*head_dim]`.
    fn attention(
        &mut self,
        out: Buf,
        q: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        shape: AttnShape,
    ) -> Result<(), Self::Error>;

    /// `gate[i] = silu(gate[i]) * up[i]` for `i < n`.
    fn silu_mul(&mut self, gate: Buf, up: Buf, n: u64) -> Result<(), Self::Error>;

    /// `x[i] += f32(y[i])` for `i < n` (the residual add; `x` f32).
    fn add(&mut self, x: Buf, y: Buf, n: u64) -> Result<(), Self::Error>;

    /// `out[r, i] = round(out[r, i] + bias[i])` for `r < rows`, `i < n`: a
    /// projection's bias (`out` and `bias` in the model dtype).
    fn add_bias(&mut self, out: Buf, bias: Buf, rows: u64, n: u64) -> Result<(), Self::Error>;

    /// In-place RMSNorm of `rows` rows of `dim` model-dtype values by the
    /// `[dim]` weight `w`, rounded to the dtype before the weight product and
    /// after it (transformers' Qwen3RMSNorm; each query or key head a row).
    fn head_rmsnorm(&mut self, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), Self::Error>;

    /// `out[i] = x · w[i]ᵀ` for the three (q, k, v) products of one input:
    /// `out[i]` is `[m, n[i]]`, `w[i]` is `[n[i], k]`.
    fn qkv(&mut self, out: [Buf; 3], x: Buf, w: [Buf; 3], m: u64, n: [u64; 3], k: u64) -> Result<(), Self::Error> {
        unfused::qkv(self, out, x, w, m, n, k)
    }

    /// `gate = silu(x · w_gateᵀ) * (x · w_upᵀ)`, `[m, n]`, each product rounded
    /// to the model dtype first; `up` is scratch of `[m, n]` (its contents afterwards are unspecified).
    #[allow(clippy::too_many_arguments)]
    fn gate_up_silu(
        &mut self,
        gate: Buf,
        up: Buf,
        x: Buf,
        w_gate: Buf,
        w_up: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), Self::Error> {
        unfused::gate_up_silu(self, gate, up, x, w_gate, w_up, m, n, k)
    }

    /// `resid[m, n] += f32(y · wᵀ)`, the product rounded to the model dtype
    /// first (as storing it would); `proj` is scratch of `[m, n]`.
    #[allow(clippy::too_many_arguments)]
    fn matmul_residual(
        &mut self,
        resid: Buf,
        proj: Buf,
        y: Buf,
        w: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), Self::Error> {
        unfused::matmul_residual(self, resid, proj, y, w, m, n, k)
    }

    /// [`Ops::rope_kv_store`] then [`Ops::attention`] of the rotated queries:
    /// this pass's `q`, `k`, `v` (unrotated) in, `out` `[tokens,
    /// num_heads*head_dim]` and the cache rows `pos0..pos0+tokens` written;
    /// `q` and `k` are scratch afterwards (rotated or not).
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &mut self,
        out: Buf,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        shape: AttnShape,
    ) -> Result<(), Self::Error> {
        unfused::rope_attention(self, out, q, k, v, k_cache, v_cache, scores, shape)
    }

    /// [`Ops::rope`] on `q`, and the rotated keys with `v` stored into the
    /// cache rows `pos0..pos0+tokens` ([`Ops::kv_store`]); `k` is scratch
    /// afterwards (rotated or not).
    fn rope_kv_store(
        &mut self,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        shape: AttnShape,
    ) -> Result<(), Self::Error> {
        unfused::rope_kv_store(self, q, k, v, k_cache, v_cache, shape)
    }
}

/// What each fused op of [`Ops`] means, as elementary ops: its default, and
/// the path a backend falls back to for shapes its fused kernel does not take.
pub mod unfused {
    use super::{AttnShape, Buf, Ops};

    pub fn qkv<O: Ops + ?Sized>(
        ops: &mut O,
        out: [Buf; 3],
        x: Buf,
        w: [Buf; 3],
        m: u64,
        n: [u64; 3],
        k: u64,
    ) -> Result<(), O::Error> {
        for i in 0..3 {
            ops.matmul(out[i], x, w[i], m, n[i], k)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gate_up_silu<O: Ops + ?Sized>(
        ops: &mut O,
        gate: Buf,
        up: Buf,
        x: Buf,
        w_gate: Buf,
        w_up: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), O::Error> {
        ops.matmul(gate, x, w_gate, m, n, k)?;
        ops.matmul(up, x, w_up, m, n, k)?;
        ops.silu_mul(gate, up, m * n)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn matmul_residual<O: Ops + ?Sized>(
        ops: &mut O,
        resid: Buf,
        proj: Buf,
        y: Buf,
        w: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), O::Error> {
        ops.matmul(proj, y, w, m, n, k)?;
        ops.add(resid, proj, m * n)
    }

    pub fn rope_kv_store<O: Ops + ?Sized>(
        ops: &mut O,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        shape: AttnShape,
    ) -> Result<(), O::Error> {
        ops.rope(q, k, shape)?;
        ops.kv_store(k_cache, v_cache, k, v, shape)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rope_attention<O: Ops + ?Sized>(
        ops: &mut O,
        out: Buf,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        shape: AttnShape,
    ) -> Result<(), O::Error> {
        ops.rope_kv_store(q, k, v, k_cache, v_cache, shape)?;
        ops.attention(out, q, k_cache, v_cache, scores, shape)
    }
}
