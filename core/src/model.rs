//! What a model is, as far as a plan cares: its architecture numbers and its
//! block table.
//!
//! A *block* is the unit of residency and of streaming: the embedding, the
//! final norm, the LM head, and each transformer layer either whole (one
//! `layer` block) or as its two halves (an `attention` block — attention norm,
//! q/k/v/o — then an `mlp` block — MLP norm, gate/up/down;
//! [`ModelSpec::split_layers`]). Halves let a plan keep a layer's attention
//! on the device while its MLP streams or runs on the host, and size slots for
//! the larger half rather than the layer. Each block has a packed *image*: its
//! tensors laid end to end, each at a [`TENSOR_ALIGN`]-aligned offset. The
//! image is what sits in pinned host memory, what one host-to-device copy
//! moves into a slot, and what a resident region holds, so the offsets here
//! are part of the contract.

use serde::{Deserialize, Serialize};

use crate::units::{align_up, ALIGN};

/// Alignment of every tensor inside a block image: [`ALIGN`].
pub const TENSOR_ALIGN: u64 = ALIGN;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F16,
    Bf16,
    F32,
}

impl Dtype {
    pub fn size(self) -> u64 {
        match self {
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 => 4,
        }
    }

    /// The name safetensors uses in its header (`F16`, `BF16`, `F32`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
            Dtype::F32 => "F32",
        }
    }

    pub fn from_safetensors_name(name: &str) -> Option<Dtype> {
        match name {
            "F16" => Some(Dtype::F16),
            "BF16" => Some(Dtype::Bf16),
            "F32" => Some(Dtype::F32),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
            Dtype::F32 => "f32",
        })
    }
}

/// The architecture numbers of a Llama-family decoder, as `config.json` gives them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Always `llama` for now (Llama 2/3, Mistral, TinyLlama share the shape).
    pub family: String,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_layers: u64,
    pub num_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: u64,
    pub tie_word_embeddings: bool,
}

impl Architecture {
    /// Width of the query projection output (`num_heads * head_dim`).
    pub fn q_dim(&self) -> u64 {
        self.num_heads * self.head_dim
    }

    /// Width of each of the key and value projection outputs.
    pub fn kv_dim(&self) -> u64 {
        self.num_kv_heads * self.head_dim
    }

    /// Parameters of one layer's attention half (norm, q, k, v, o).
    pub fn attention_params(&self) -> u64 {
        let h = self.hidden_size;
        h * self.q_dim() * 2 + h * self.kv_dim() * 2 + h
    }

    /// Parameters of one layer's MLP half (norm, gate, up, down).
    pub fn mlp_params(&self) -> u64 {
        3 * self.hidden_size * self.intermediate_size + self.hidden_size
    }

    /// Parameters in one transformer layer.
    pub fn layer_params(&self) -> u64 {
        self.attention_params() + self.mlp_params()
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Embedding,
    /// A whole transformer layer: its attention, then its MLP.
    Layer,
    /// A layer's attention half: reads and appends to the layer's KV cache.
    Attention,
    /// A layer's MLP half.
    Mlp,
    FinalNorm,
    LmHead,
}

impl BlockKind {
    /// Whether computing the block reads the layer's KV cache: such a block
    /// runs only where the cache lives, on the device.
    pub fn reads_kv(self) -> bool {
        matches!(self, BlockKind::Layer | BlockKind::Attention)
    }

    /// Whether the block is (part of) a transformer layer: what a plan streams.
    pub fn is_layer_part(self) -> bool {
        matches!(self, BlockKind::Layer | BlockKind::Attention | BlockKind::Mlp)
    }

    /// The tensors the forward pass reads from a block of this kind.
    pub fn roles(self) -> &'static [TensorRole] {
        use TensorRole::*;
        match self {
            BlockKind::Embedding => &[Embed],
            BlockKind::Layer => &[AttnNorm, Q, K, V, O, MlpNorm, Gate, Up, Down],
            BlockKind::Attention => &[AttnNorm, Q, K, V, O],
            BlockKind::Mlp => &[MlpNorm, Gate, Up, Down],
            BlockKind::FinalNorm => &[FinalNorm],
            BlockKind::LmHead => &[LmHead],
        }
    }
}

/// What a tensor does in the forward pass; the runtime finds weights by role.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TensorRole {
    Embed,
    AttnNorm,
    Q,
    K,
    V,
    O,
    MlpNorm,
    Gate,
    Up,
    Down,
    FinalNorm,
    LmHead,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// The checkpoint's tensor name (`model.layers.3.mlp.up_proj.weight`).
    pub name: String,
    pub role: TensorRole,
    pub dtype: Dtype,
    /// Row-major shape, as stored (`[out_features, in_features]` for projections).
    pub shape: Vec<u64>,
    /// Byte offset of the tensor inside its block image.
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// `embed`, `layer.0` … `layer.N-1`, `norm`, `lm_head`.
    pub name: String,
    pub kind: BlockKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u64>,
    /// Size of the packed image (tensors at aligned offsets).
    pub bytes: u64,
    pub tensors: Vec<TensorEntry>,
}

impl Block {
    pub fn tensor(&self, role: TensorRole) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.role == role)
    }
}

/// A model as the plan records it: identity, architecture, and block table
/// in execution order (embedding, layers, final norm, LM head).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub dtype: Dtype,
    pub arch: Architecture,
    pub blocks: Vec<Block>,
}

/// One tensor the Llama forward pass needs, before it is placed in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTensor {
    pub name: String,
    pub role: TensorRole,
    pub shape: Vec<u64>,
}

/// One block the Llama forward pass needs, before its image is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedBlock {
    pub name: String,
    pub kind: BlockKind,
    pub layer: Option<u64>,
    pub tensors: Vec<ExpectedTensor>,
}

/// The block table a Llama checkpoint must provide, with Hugging Face tensor
/// names. With tied embeddings the LM head block reads
/// `model.embed_tokens.weight` (its image holds its own copy of the table).
pub fn expected_blocks(arch: &Architecture) -> Vec<ExpectedBlock> {
    let h = arch.hidden_size;
    let t = |name: String, role, shape: Vec<u64>| ExpectedTensor { name, role, shape };
    let mut blocks = vec![ExpectedBlock {
        name: "embed".into(),
        kind: BlockKind::Embedding,
        layer: None,
        tensors: vec![t("model.embed_tokens.weight".into(), TensorRole::Embed, vec![arch.vocab_size, h])],
    }];
    for i in 0..arch.num_layers {
        let p = format!("model.layers.{i}");
        blocks.push(ExpectedBlock {
            name: layer_block_name(i),
            kind: BlockKind::Layer,
            layer: Some(i),
            tensors: vec![
                t(format!("{p}.input_layernorm.weight"), TensorRole::AttnNorm, vec![h]),
                t(format!("{p}.self_attn.q_proj.weight"), TensorRole::Q, vec![arch.q_dim(), h]),
                t(format!("{p}.self_attn.k_proj.weight"), TensorRole::K, vec![arch.kv_dim(), h]),
                t(format!("{p}.self_attn.v_proj.weight"), TensorRole::V, vec![arch.kv_dim(), h]),
                t(format!("{p}.self_attn.o_proj.weight"), TensorRole::O, vec![h, arch.q_dim()]),
                t(format!("{p}.post_attention_layernorm.weight"), TensorRole::MlpNorm, vec![h]),
                t(format!("{p}.mlp.gate_proj.weight"), TensorRole::Gate, vec![arch.intermediate_size, h]),
                t(format!("{p}.mlp.up_proj.weight"), TensorRole::Up, vec![arch.intermediate_size, h]),
                t(format!("{p}.mlp.down_proj.weight"), TensorRole::Down, vec![h, arch.intermediate_size]),
            ],
        });
    }
    blocks.push(ExpectedBlock {
        name: "norm".into(),
        kind: BlockKind::FinalNorm,
        layer: None,
        tensors: vec![t("model.norm.weight".into(), TensorRole::FinalNorm, vec![h])],
    });
    let head_name = if arch.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
    blocks.push(ExpectedBlock {
        name: "lm_head".into(),
        kind: BlockKind::LmHead,
        layer: None,
        tensors: vec![t(head_name.into(), TensorRole::LmHead, vec![arch.vocab_size, h])],
    });
    blocks
}

pub fn layer_block_name(i: u64) -> String {
    format!("layer.{i}")
}

/// The name of layer `i`'s attention half (`layer.3.attn`).
pub fn attention_block_name(i: u64) -> String {
    format!("layer.{i}.attn")
}

/// The name of layer `i`'s MLP half (`layer.3.mlp`).
pub fn mlp_block_name(i: u64) -> String {
    format!("layer.{i}.mlp")
}

/// `blocks` with every whole layer replaced by its attention block
/// ([`attention_block_name`]) then its MLP block ([`mlp_block_name`]), each
/// with the layer's tensors of its kind, in the layer's order.
pub fn split_expected(blocks: Vec<ExpectedBlock>) -> Vec<ExpectedBlock> {
    let mut out = Vec::with_capacity(blocks.len() * 2);
    for b in blocks {
        let (Some(layer), BlockKind::Layer) = (b.layer, b.kind) else {
            out.push(b);
            continue;
        };
        for (kind, name) in
            [(BlockKind::Attention, attention_block_name(layer)), (BlockKind::Mlp, mlp_block_name(layer))]
        {
            let tensors = b.tensors.iter().filter(|t| kind.roles().contains(&t.role)).cloned().collect();
            out.push(ExpectedBlock { name, kind, layer: Some(layer), tensors });
        }
    }
    out
}

/// Lays out one block image: each tensor at the next [`TENSOR_ALIGN`] offset.
/// `dtype_of` gives each tensor's stored dtype.
pub fn lay_out_block(expected: &ExpectedBlock, dtype_of: impl Fn(&ExpectedTensor) -> Dtype) -> Block {
    let mut offset = 0;
    let mut tensors = Vec::with_capacity(expected.tensors.len());
    for t in &expected.tensors {
        let dtype = dtype_of(t);
        let bytes = t.shape.iter().product::<u64>() * dtype.size();
        offset = align_up(offset, TENSOR_ALIGN);
        tensors.push(TensorEntry { name: t.name.clone(), role: t.role, dtype, shape: t.shape.clone(), offset, bytes });
        offset += bytes;
    }
    Block {
        name: expected.name.clone(),
        kind: expected.kind,
        layer: expected.layer,
        bytes: align_up(offset, TENSOR_ALIGN),
        tensors,
    }
}

impl ModelSpec {
    /// The model as a preset describes it: every tensor stored in `dtype`.
    pub fn from_arch(name: &str, arch: Architecture, dtype: Dtype) -> ModelSpec {
        let blocks = expected_blocks(&arch).iter().map(|b| lay_out_block(b, |_| dtype)).collect();
        ModelSpec { name: name.to_string(), dtype, arch, blocks }
    }

    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    pub fn block_index(&self, name: &str) -> Option<usize> {
        self.blocks.iter().position(|b| b.name == name)
    }

    /// Sum of all block images.
    pub fn total_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.bytes).sum()
    }

    /// Whether the layers are split into attention and MLP blocks.
    pub fn is_split(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b.kind, BlockKind::Attention | BlockKind::Mlp))
    }

    /// The same model with every whole-layer block replaced by its attention
    /// block then its MLP block ([`split_expected`]; each image re-laid out
    /// from the layer's tensors, names and dtypes kept). The forward pass
    /// computes the same operations in the same order either way.
    pub fn split_layers(&self) -> ModelSpec {
        let mut blocks = Vec::with_capacity(self.blocks.len() * 2);
        for b in &self.blocks {
            let expected = ExpectedBlock {
                name: b.name.clone(),
                kind: b.kind,
                layer: b.layer,
                tensors: b
                    .tensors
                    .iter()
                    .map(|t| ExpectedTensor { name: t.name.clone(), role: t.role, shape: t.shape.clone() })
                    .collect(),
            };
            let dtype_of = |e: &ExpectedTensor| b.tensor(e.role).expect("taken from the block").dtype;
            for half in split_expected(vec![expected]) {
                blocks.push(if half.kind == b.kind { b.clone() } else { lay_out_block(&half, dtype_of) });
            }
        }
        ModelSpec { blocks, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn llama2_13b() -> Architecture {
        Architecture {
            family: "llama".into(),
            hidden_size: 5120,
            intermediate_size: 13824,
            num_layers: 40,
            num_heads: 40,
            num_kv_heads: 40,
            head_dim: 128,
            vocab_size: 32000,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
        }
    }

    #[test]
    fn llama2_13b_sizes_match_the_published_checkpoint() {
        let spec = ModelSpec::from_arch("llama2-13b", llama2_13b(), Dtype::F16);
        assert_eq!(spec.blocks.len(), 43);
        // 634 MB per layer, 24.24 GiB in all (the fp16 checkpoint's size).
        let layer = spec.block("layer.0").unwrap();
        assert_eq!(layer.bytes / 1_000_000, 634);
        assert_eq!(spec.total_bytes() * 100 / (1 << 30), 2424);
    }

    #[test]
    fn split_layers_partition_each_layer_in_model_order() {
        let spec = ModelSpec::from_arch("llama2-13b", llama2_13b(), Dtype::F16);
        let split = spec.split_layers();
        assert!(!spec.is_split() && split.is_split());
        assert_eq!(split.blocks.len(), 83);
        let names: Vec<&str> = split.blocks[..5].iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["embed", "layer.0.attn", "layer.0.mlp", "layer.1.attn", "layer.1.mlp"]);
        let (attn, mlp) = (split.block("layer.7.attn").unwrap(), split.block("layer.7.mlp").unwrap());
        assert_eq!(
            (attn.kind, attn.layer, mlp.kind, mlp.layer),
            (BlockKind::Attention, Some(7), BlockKind::Mlp, Some(7))
        );
        // 210 MB of attention and 425 MB of MLP; every tensor of the layer exactly once.
        assert_eq!((attn.bytes / 1_000_000, mlp.bytes / 1_000_000), (209, 424));
        let whole = spec.block("layer.7").unwrap();
        let mut names: Vec<&str> = attn.tensors.iter().chain(&mlp.tensors).map(|t| t.name.as_str()).collect();
        let mut want: Vec<&str> = whole.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        want.sort_unstable();
        assert_eq!(names, want);
        assert_eq!(attn.tensors[0].offset, 0);
        assert_eq!(split.split_layers(), split, "splitting twice changes nothing");
    }

    #[test]
    fn tensors_are_aligned_and_disjoint() {
        let spec = ModelSpec::from_arch("x", llama2_13b(), Dtype::F16);
        for b in spec.blocks.iter().chain(&spec.split_layers().blocks) {
            let mut end = 0;
            for t in &b.tensors {
                assert_eq!(t.offset % TENSOR_ALIGN, 0);
                assert!(t.offset >= end);
                end = t.offset + t.bytes;
            }
            assert!(end <= b.bytes);
        }
    }
}
