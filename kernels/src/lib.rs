//! Kernels and their CPU twins.
//!
//! The CUDA kernels live in `cuda/*.cu` (embedded, with a typed id per
//! kernel, by [`cuda`]; the runtime compiles them with NVRTC); each
//! has a CPU twin here with the same name and signature — plain slices plus
//! dimensions — so a test can run both on the same random inputs and compare
//! them, and so the CPU backend proves the forward pass on any machine.
//!
//! Each op is written once, generic over the model dtype ([`Half`]: f16 or
//! bf16), in its module; the `{op}_{dtype}` functions below are the thin
//! monomorphic entry points. A `_f32` suffix after the dtype names an f32
//! output (the LM head writes f32 logits). Conventions are those of
//! `djinn_runtime::ops`: row-major, weights `[out_features, in_features]`,
//! f32 residual stream, f32 accumulation and softmax.

pub mod attention;
pub mod check;
pub mod cuda;
pub mod elem;
pub mod elementwise;
pub mod flash;
pub mod gemv;
pub mod matmul;
pub mod rng;
pub mod rope;
pub mod sample;
pub mod simd;
pub mod team;

pub use attention::{attn_partial_len, ATTN_CHUNK};
pub use elem::{Elem, Half};
pub use elementwise::copy_f32;
pub use flash::PREFILL_TILE;
pub use gemv::GemvOut;
pub use half::{bf16, f16};
pub use rng::Rng;
pub use sample::{argmax_f32, sample_exp, sample_f32, sample_f32_with, sample_fix, SampleParams, SAMPLE_MAX_VOCAB};
pub use team::Team;

/// Declares the monomorphic `{op}_{dtype}` entry points of every generic kernel, per dtype.
macro_rules! twins {
    ($($dtype:ident, $t:ty, $embed:ident, $rmsnorm:ident, $matmul:ident, $matmul32:ident, $rope:ident,
       $kv_store:ident, $attn_softmax:ident, $attention:ident, $silu_mul:ident, $add:ident,
       $gemv:ident, $gemv_silu:ident, $rope_kv_store:ident, $attn_decode:ident, $attn_combine:ident,
       $add_bias:ident, $head_rmsnorm:ident, $attn_prefill:ident, $attn_decode_rope:ident;)*) => {$(
        #[doc = concat!("`x[t, :] = f32(table[tokens[t], :])`, ", stringify!($dtype), " table `[vocab, hidden]`.")]
        pub fn $embed(x: &mut [f32], table: &[$t], tokens: &[u32], hidden: usize) {
            elementwise::embed(x, table, tokens, hidden)
        }
        #[doc = concat!("RMSNorm of f32 rows into ", stringify!($dtype), ".")]
        pub fn $rmsnorm(out: &mut [$t], x: &[f32], w: &[$t], rows: usize, dim: usize, eps: f32) {
            elementwise::rmsnorm(out, x, w, rows, dim, eps)
        }
        #[doc = concat!("`out[m, n] = x[m, k] · w[n, k]ᵀ` in ", stringify!($dtype), ", f32 accumulation.")]
        pub fn $matmul(out: &mut [$t], x: &[$t], w: &[$t], m: usize, n: usize, k: usize) {
            matmul::matmul(out, x, w, m, n, k)
        }
        #[doc = concat!("`out[m, n] = x[m, k] · w[n, k]ᵀ`, ", stringify!($dtype), " inputs, f32 output (the LM head).")]
        pub fn $matmul32(out: &mut [f32], x: &[$t], w: &[$t], m: usize, n: usize, k: usize) {
            matmul::matmul(out, x, w, m, n, k)
        }
        #[doc = concat!("RoPE (rotate-half) in place on ", stringify!($dtype), " q and k, by the `[head_dim/2]` frequency table.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $rope(q: &mut [$t], k: &mut [$t], tokens: usize, pos0: usize, num_heads: usize,
                     num_kv_heads: usize, head_dim: usize, inv_freq: &[f32]) {
            rope::rope(q, k, tokens, pos0, num_heads, num_kv_heads, head_dim, inv_freq)
        }
        #[doc = concat!("Stores ", stringify!($dtype), " k, v rows into the cache at `pos0`.")]
        pub fn $kv_store(k_cache: &mut [$t], v_cache: &mut [$t], k: &[$t], v: &[$t], tokens: usize,
                         pos0: usize, kv_dim: usize) {
            attention::kv_store(k_cache, v_cache, k, v, tokens, pos0, kv_dim)
        }
        #[doc = concat!("Causal (sliding-window if `window > 0`) softmax of scaled score rows into ", stringify!($dtype), " probabilities.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $attn_softmax(probs: &mut [$t], scores: &[f32], rows: usize, tokens: usize, pos0: usize,
                             stride: usize, out_stride: usize, window: usize) {
            attention::attn_softmax(probs, scores, rows, tokens, pos0, stride, out_stride, window)
        }
        #[doc = concat!("Causal (sliding-window if `window > 0`) grouped-query attention over a ", stringify!($dtype), " KV cache.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $attention(out: &mut [$t], q: &[$t], k_cache: &[$t], v_cache: &[$t], scores: &mut [f32],
                          tokens: usize, pos0: usize, num_heads: usize, num_kv_heads: usize, head_dim: usize,
                          window: usize) {
            attention::attention(out, q, k_cache, v_cache, scores, tokens, pos0, num_heads, num_kv_heads, head_dim,
                                 window)
        }
        #[doc = concat!("`gate = silu(gate) * up`, ", stringify!($dtype), ".")]
        pub fn $silu_mul(gate: &mut [$t], up: &[$t], n: usize) {
            elementwise::silu_mul(gate, up, n)
        }
        #[doc = concat!("`x += f32(y)`, ", stringify!($dtype), " y (the residual add).")]
        pub fn $add(x: &mut [f32], y: &[$t], n: usize) {
            elementwise::add(x, y, n)
        }
        #[doc = concat!("The decode product of ", stringify!($dtype), " weights with its epilogue ([`GemvOut`]).")]
        pub fn $gemv(out: GemvOut<'_, $t>, w: &[$t], x: &[$t], m: usize, n: usize, k: usize) {
            gemv::gemv(out, w, x, m, n, k)
        }
        #[doc = concat!("`out = silu(x·gateᵀ) * x·upᵀ`, ", stringify!($dtype), ", each product rounded first.")]
        pub fn $gemv_silu(out: &mut [$t], gate: &[$t], up: &[$t], x: &[$t], m: usize, n: usize, k: usize) {
            gemv::gemv_silu(out, gate, up, x, m, n, k)
        }
        #[doc = concat!("RoPE on ", stringify!($dtype), " q, and the rotated k with v stored into the cache.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $rope_kv_store(q: &mut [$t], k: &[$t], v: &[$t], k_cache: &mut [$t], v_cache: &mut [$t],
                              tokens: usize, pos0: usize, num_heads: usize, num_kv_heads: usize,
                              head_dim: usize, inv_freq: &[f32]) {
            rope::rope_kv_store(q, k, v, k_cache, v_cache, tokens, pos0, num_heads, num_kv_heads, head_dim, inv_freq)
        }
        #[doc = concat!("Split decode attention over a ", stringify!($dtype), " KV cache: the per-split partials.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $attn_decode(partial: &mut [f32], q: &[$t], k_cache: &[$t], v_cache: &[$t], seq: usize,
                            num_heads: usize, num_kv_heads: usize, head_dim: usize, scale: f32, window: usize) {
            attention::attn_decode(partial, q, k_cache, v_cache, seq, num_heads, num_kv_heads, head_dim, scale, window)
        }
        #[doc = concat!("Merges decode attention's partials into ", stringify!($dtype), " outputs.")]
        pub fn $attn_combine(out: &mut [$t], partial: &[f32], num_heads: usize, splits: usize, head_dim: usize) {
            attention::attn_combine(out, partial, num_heads, splits, head_dim)
        }
        #[doc = concat!("`out[r, i] = round(out[r, i] + bias[i])`, ", stringify!($dtype), " (a projection's bias).")]
        pub fn $add_bias(out: &mut [$t], bias: &[$t], rows: usize, n: usize) {
            elementwise::add_bias(out, bias, rows, n)
        }
        #[doc = concat!("In-place RMSNorm of ", stringify!($dtype), " head rows (Qwen3's q/k norm), rounded before the weight.")]
        pub fn $head_rmsnorm(x: &mut [$t], w: &[$t], rows: usize, dim: usize, eps: f32) {
            elementwise::head_rmsnorm(x, w, rows, dim, eps)
        }
        #[doc = concat!("Prefill attention over a ", stringify!($dtype), " KV cache as a streaming softmax, no score scratch; `window` 0 is full causal.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $attn_prefill(out: &mut [$t], q: &[$t], k_cache: &[$t], v_cache: &[$t], tokens: usize, pos0: usize,
                             num_heads: usize, num_kv_heads: usize, head_dim: usize, window: usize) {
            flash::attn_prefill(out, q, k_cache, v_cache, tokens, pos0, num_heads, num_kv_heads, head_dim, window)
        }
        #[doc = concat!("Split decode attention over a ", stringify!($dtype), " KV cache with RoPE and the newest row's store folded in.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $attn_decode_rope(partial: &mut [f32], q: &[$t], k: &[$t], v: &[$t], k_cache: &mut [$t],
                                 v_cache: &mut [$t], seq: usize, num_heads: usize, num_kv_heads: usize,
                                 head_dim: usize, scale: f32, window: usize, inv_freq: &[f32]) {
            rope::attn_decode_rope(partial, q, k, v, k_cache, v_cache, seq, num_heads, num_kv_heads, head_dim, scale,
                                   window, inv_freq)
        }
    )*};
}

twins! {
    f16, f16, embed_f16, rmsnorm_f16, matmul_f16, matmul_f16_f32, rope_f16,
        kv_store_f16, attn_softmax_f16, attention_f16, silu_mul_f16, add_f16,
        gemv_f16, gemv_silu_f16, rope_kv_store_f16, attn_decode_f16, attn_combine_f16,
        add_bias_f16, head_rmsnorm_f16, attn_prefill_f16, attn_decode_rope_f16;
    bf16, bf16, embed_bf16, rmsnorm_bf16, matmul_bf16, matmul_bf16_f32, rope_bf16,
        kv_store_bf16, attn_softmax_bf16, attention_bf16, silu_mul_bf16, add_bf16,
        gemv_bf16, gemv_silu_bf16, rope_kv_store_bf16, attn_decode_bf16, attn_combine_bf16,
        add_bias_bf16, head_rmsnorm_bf16, attn_prefill_bf16, attn_decode_rope_bf16;
}
