//! How the activations region, the KV cache and the workspace are sized and carved.
//!
//! The compiler reserves these regions in the arena; the runtime's backends
//! carve them with the same functions, so the sizes can never disagree.
//! The residual stream is kept in f32; the inputs and outputs of matrix
//! products are in the model's dtype (the GEMMs accumulate in f32).

use serde::{Deserialize, Serialize};

use crate::model::{Architecture, Dtype};
use crate::units::{align_up, ALIGN};

/// Alignment of every buffer carved out of a region: [`ALIGN`].
pub const BUFFER_ALIGN: u64 = ALIGN;

/// Scratch for cuBLAS(Lt) and kernels, in the workspace region.
pub const WORKSPACE_BYTES: u64 = 32 << 20;

/// The head sizes whose prefill attention the GPU runs as a streaming
/// (flash) softmax (`attn_prefill.cu`), with no `[heads, tokens, seq]` score
/// scratch; the CPU backend streams every head size (`djinn_kernels::flash`).
/// Other head sizes prefill on cuBLAS around a softmax on the GPU, and the
/// `scores` buffer is sized for that.
pub const FLASH_HEAD_DIMS: [u64; 4] = [16, 32, 64, 128];

/// Cache rows per split of decode attention (`attn_decode.cu`'s
/// `ATTN_CHUNK`, `djinn_kernels::ATTN_CHUNK`; the runtime tests they agree):
/// its partials are `[heads, seq.div_ceil(DECODE_CHUNK), 2 + head_dim]` f32.
pub const DECODE_CHUNK: u64 = 64;

/// The shape a plan is compiled for.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunShape {
    /// Tokens of the prompt the prefill phase is sized (and timed) for.
    pub prompt_len: u64,
    /// Longest sequence (prompt plus generated tokens) the KV cache holds.
    pub max_seq_len: u64,
    /// Sequences decoded together.
    pub batch: u64,
}

/// Every product the layouts form stays below this, so their sums of a dozen
/// such products times small constants stay far inside `u64`.
const MAX_LAYOUT_PRODUCT: u64 = 1 << 56;

/// The KV cache and activation bytes for `shape` ([`KvLayout::bytes`],
/// [`ActivationLayout::bytes`]), computed only once every product the two
/// layouts form is known to fit; otherwise which size would overflow, named by
/// its factors. A hostile `config.json` or flag (`max_position_embeddings =
/// 2^62`, `--batch 2^40`) once made the KV size wrap to 0 bytes.
pub fn checked_region_bytes(arch: &Architecture, dtype: Dtype, shape: &RunShape) -> Result<(u64, u64), &'static str> {
    let product = |xs: &[u64]| xs.iter().try_fold(1u64, |p, &x| p.checked_mul(x)).filter(|&p| p < MAX_LAYOUT_PRODUCT);
    let a = arch;
    let s = shape;
    let t = product(&[s.prompt_len, s.batch]).ok_or("the activations (prompt_len × batch tokens)")?;
    let (splits, partial) = (s.max_seq_len.div_ceil(DECODE_CHUNK), a.head_dim.saturating_add(2));
    let terms: [(&[u64], &str); 10] = [
        (&[a.num_heads, a.head_dim], "the attention width (num_heads × head_dim)"),
        (&[a.num_kv_heads, a.head_dim], "the KV width (num_kv_heads × head_dim)"),
        (&[a.num_heads, t, s.max_seq_len], "the prefill attention scores (num_heads × tokens × max_seq_len)"),
        (&[a.num_heads, s.batch, s.max_seq_len], "the decode attention scores (num_heads × batch × max_seq_len)"),
        (
            &[a.num_heads, s.batch, splits, partial],
            "the decode attention partials (num_heads × batch × splits × (2 + head_dim))",
        ),
        (&[t, a.num_heads, a.head_dim], "the query activations (tokens × num_heads × head_dim)"),
        (&[t, a.num_kv_heads, a.head_dim], "the key and value activations (tokens × num_kv_heads × head_dim)"),
        (&[t, a.hidden_size.max(a.intermediate_size)], "the MLP activations (tokens × hidden or intermediate size)"),
        (&[s.batch, a.vocab_size], "the logits (batch × vocab_size)"),
        (
            &[a.num_layers, s.batch, s.max_seq_len, a.num_kv_heads, a.head_dim],
            "the KV cache (num_layers × batch × max_seq_len × num_kv_heads × head_dim)",
        ),
    ];
    for (factors, what) in terms {
        product(factors).ok_or(what)?;
    }
    Ok((KvLayout::new(arch, dtype, shape).bytes(), ActivationLayout::new(arch, dtype, shape).bytes))
}

/// One named buffer inside a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub name: &'static str,
    pub dtype: Dtype,
    pub elems: u64,
    pub offset: u64,
}

impl Buffer {
    pub fn bytes(&self) -> u64 {
        self.elems * self.dtype.size()
    }
}

/// 4-byte words of the pass header, the `pass` buffer: `[pos0, tokens, 0,
/// 0]` as u32, then [`PASS_COUNTERS`] zeros, staged by the executor with
/// the pass's token ids. The GPU's decode kernels read the position there
/// rather than from their launch arguments, so that one captured decode step
/// replays at every position; decode attention counts its finished splits
/// of each head in the zeros (the last one merges the head's partials and
/// sets its counter back to zero). 256 bytes: one aligned buffer, as 4 words were.
pub const PASS_WORDS: u64 = 64;

/// Words of the pass header from which decode attention's per-head counters start.
pub const PASS_COUNTERS_AT: u64 = 4;

/// Per-head counters the pass header holds: decode attention of models with
/// more heads merges its partials in a launch of its own.
pub const PASS_COUNTERS: u64 = PASS_WORDS - PASS_COUNTERS_AT;

/// The activation buffers of one forward pass of up to `tokens` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationLayout {
    /// Tokens the buffers are sized for (`prompt_len * batch`, at least `batch`).
    pub tokens: u64,
    pub buffers: Vec<Buffer>,
    pub bytes: u64,
}

impl ActivationLayout {
    pub fn new(arch: &Architecture, dtype: Dtype, shape: &RunShape) -> ActivationLayout {
        let t = (shape.prompt_len * shape.batch).max(shape.batch);
        let score_elems = score_elems(arch, shape, t);
        let specs: [(&'static str, Dtype, u64); 13] = [
            ("pass", Dtype::F32, PASS_WORDS),                      // the pass header: see PASS_WORDS
            ("tokens", Dtype::F32, t),                             // [t] u32 token ids (4-byte slots)
            ("x", Dtype::F32, t * arch.hidden_size),               // [t, hidden] residual stream
            ("xn", dtype, t * arch.hidden_size),                   // [t, hidden] normed input to a GEMM
            ("q", dtype, t * arch.q_dim()),                        // [t, heads*head_dim]
            ("k", dtype, t * arch.kv_dim()),                       // [t, kv_heads*head_dim]
            ("v", dtype, t * arch.kv_dim()),                       // [t, kv_heads*head_dim]
            ("scores", Dtype::F32, score_elems),                   // attention scratch: see score_elems
            ("attn", dtype, t * arch.q_dim()),                     // [t, heads*head_dim] attention output
            ("proj", dtype, t * arch.hidden_size),                 // [t, hidden] o_proj / down_proj output
            ("gate", dtype, t * arch.intermediate_size),           // [t, intermediate] gate, then silu(gate)*up
            ("up", dtype, t * arch.intermediate_size),             // [t, intermediate]
            ("logits", Dtype::F32, shape.batch * arch.vocab_size), // [batch, vocab] last position only
        ];
        let mut offset = 0;
        let mut buffers = Vec::with_capacity(specs.len());
        for (name, dtype, elems) in specs {
            offset = align_up(offset, BUFFER_ALIGN);
            buffers.push(Buffer { name, dtype, elems, offset });
            offset += elems * dtype.size();
        }
        ActivationLayout { tokens: t, buffers, bytes: align_up(offset, BUFFER_ALIGN) }
    }

    pub fn buffer(&self, name: &str) -> &Buffer {
        self.buffers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("activation layout has no buffer {name:?}"))
    }
}

/// f32 elements of the attention scratch (`scores`) for passes of up to `t`
/// tokens: what the decode step needs — the split decode kernel's partials
/// (`[heads, splits, 2 + head_dim]` per sequence) and, for the CPU backend's
/// decode and the unfused GPU path (`DJINN_FUSED=0`), one score row per head
/// over the whole cache — and, only for head sizes outside
/// [`FLASH_HEAD_DIMS`], the cuBLAS prefill's `[heads, t, max_seq_len]` scores
/// (a chunk of `t` query rows over the longest cache it can see).
fn score_elems(arch: &Architecture, shape: &RunShape, t: u64) -> u64 {
    let splits = shape.max_seq_len.div_ceil(DECODE_CHUNK);
    let decode = shape.batch * (shape.max_seq_len).max(splits * (2 + arch.head_dim));
    // A prompt longer than `prompt_len` runs as chunks of it at pos0 > 0, each
    // over up to `max_seq_len` cache rows.
    let prefill = if FLASH_HEAD_DIMS.contains(&arch.head_dim) { 0 } else { t * shape.max_seq_len };
    arch.num_heads * decode.max(prefill)
}

/// KV cache layout: `[layer][k|v][batch][max_seq_len][kv_heads*head_dim]` in the model dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub layers: u64,
    pub batch: u64,
    pub max_seq_len: u64,
    pub kv_dim: u64,
    pub dtype: Dtype,
}

impl KvLayout {
    pub fn new(arch: &Architecture, dtype: Dtype, shape: &RunShape) -> KvLayout {
        KvLayout {
            layers: arch.num_layers,
            batch: shape.batch,
            max_seq_len: shape.max_seq_len,
            kv_dim: arch.kv_dim(),
            dtype,
        }
    }

    /// Bytes of one K (or V) plane of one layer.
    pub fn plane_bytes(&self) -> u64 {
        self.batch * self.max_seq_len * self.kv_dim * self.dtype.size()
    }

    /// Byte offset of layer `layer`'s K plane (`which = 0`) or V plane (`which = 1`).
    pub fn plane_offset(&self, layer: u64, which: u64) -> u64 {
        (layer * 2 + which) * self.plane_bytes()
    }

    pub fn bytes(&self) -> u64 {
        2 * self.layers * self.plane_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_hold_the_decode_partials_and_prefill_scores_only_without_flash() {
        let shape = RunShape { prompt_len: 512, max_seq_len: 1024, batch: 1 };
        let mut arch = crate::model::tests::llama2_13b();
        let scores = |a: &Architecture| ActivationLayout::new(a, Dtype::F16, &shape).buffer("scores").elems;
        // 40 heads of 128: 16 splits of 64 rows, 130 floats each (> 1024 score rows).
        assert_eq!(scores(&arch), 40 * 16 * 130);
        // A head size the flash kernel does not tile: the cuBLAS prefill's
        // [heads, prompt_len, max_seq_len] scores, for chunks at pos0 > 0 too.
        arch.head_dim = 96;
        assert_eq!(scores(&arch), 40 * 512 * 1024);
        // Small heads: a score row per head over the cache outgrows the partials.
        arch.head_dim = 16;
        assert_eq!(scores(&arch), 40 * 1024);
    }
}
