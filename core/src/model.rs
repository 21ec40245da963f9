//! What a model is, as far as a plan cares: its architecture numbers and its
//! block table.
//!
//! A *block* is the unit of residency and of streaming: the embedding, the
//! final norm, the LM head, and each transformer layer either whole (one
//! `layer` block) or as its two halves (an `attention` block — attention norm,
//! q/k/v/o, and the biases and per-head q/k norms of the families that have
//! them — then an `mlp` block — MLP norm, gate/up/down;
//! [`ModelSpec::split_layers`]). Halves let a plan keep a layer's attention
//! on the device while its MLP streams or runs on the host, and size slots for
//! the larger half rather than the layer. Each block has a packed *image*: its
//! tensors laid end to end, each at a [`TENSOR_ALIGN`]-aligned offset. The
//! image is what sits in pinned host memory, what one host-to-device copy
//! moves into a slot, and what a resident region holds, so the offsets here
//! are part of the contract.

use serde::{Deserialize, Serialize};

use crate::units::{align_up, ALIGN};

mod rope;

pub use rope::{inv_freq, RopeScaling};

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

/// The `model_type`s whose decoders this crate describes: Llama-shaped
/// (RMSNorm, rotary attention with grouped KV heads, a SwiGLU MLP), with the
/// per-family differences recorded as the [`Architecture`] fields below.
pub const FAMILIES: [&str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

/// The architecture of a Llama-shaped decoder, as `config.json` gives it.
///
/// Everything the forward pass computes differently from one family to
/// another is a field here (biases, q/k norms, RoPE scaling, a sliding
/// window), never a test of `family`. The fields after `tie_word_embeddings`
/// were added in plan format 3 with defaults (absent = unscaled, no biases,
/// no norms, no window), so a plan of a Llama 2 model reads and writes as
/// before. `Default` is all zeros and exists for struct-update syntax in
/// tests; it describes no model.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// The `model_type` of `config.json`: one of [`FAMILIES`]. A name only;
    /// the fields say what to compute.
    pub family: String,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_layers: u64,
    pub num_heads: u64,
    pub num_kv_heads: u64,
    /// Need not be `hidden_size / num_heads` (Qwen3-32B: 128, with 64 heads of a 5120 stream).
    pub head_dim: u64,
    pub vocab_size: u64,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: u64,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2 always; Llama and Qwen3
    /// with `attention_bias`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub qkv_bias: bool,
    /// A bias on the output projection (Llama and Qwen3 with `attention_bias`; never Qwen2).
    #[serde(default, skip_serializing_if = "is_false")]
    pub o_bias: bool,
    /// An RMSNorm over each query and each key head, `[head_dim]` weights
    /// shared by the heads, after the projections and before RoPE (Qwen3).
    #[serde(default, skip_serializing_if = "is_false")]
    pub qk_norm: bool,
    #[serde(default, skip_serializing_if = "RopeScaling::is_default")]
    pub rope_scaling: RopeScaling,
    /// Layers whose attention sees only the most recent positions; `None`
    /// when every layer sees the whole context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<SlidingWindow>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Sliding-window attention, as transformers masks it (`masking_utils`,
/// `sliding_window_overlay`): query position `i` attends to key positions
/// `j` with `i - window < j <= i`, `window` positions its own included.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlidingWindow {
    pub window: u64,
    /// Layers `first_layer..num_layers` use the window, the earlier ones
    /// attend to the whole context (Mistral: 0, every layer; Qwen2 and Qwen3
    /// with `use_sliding_window`: `max_window_layers`). At or past
    /// `num_layers`, no layer does.
    pub first_layer: u64,
}

/// A computation a model needs beyond the Llama 2 forward pass (plain RoPE,
/// no biases, no q/k norms, full causal attention): what
/// [`Architecture::features`] lists, so that an executor can refuse, by name,
/// a plan it would otherwise run wrongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchFeature {
    /// RoPE frequencies other than `theta^(-2i/d)` ([`inv_freq`] computes them).
    ScaledRope,
    /// Biases added after the q, k and v projections (roles `q_bias`, `k_bias`, `v_bias`).
    QkvBias,
    /// A bias added after the output projection (role `o_bias`).
    OBias,
    /// A per-head RMSNorm of queries and keys before RoPE (roles `q_norm`, `k_norm`).
    QkNorm,
    /// Some layer attends to fewer positions than the run holds ([`SlidingWindow`]).
    SlidingWindow,
}

impl std::fmt::Display for ArchFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArchFeature::ScaledRope => "scaled RoPE (rope_scaling)",
            ArchFeature::QkvBias => "q/k/v projection biases",
            ArchFeature::OBias => "an output projection bias",
            ArchFeature::QkNorm => "per-head q/k RMSNorm (q_norm, k_norm)",
            ArchFeature::SlidingWindow => "sliding-window attention shorter than the sequence",
        })
    }
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

    /// Parameters of one layer's attention half: norm, q, k, v, o, and the
    /// biases and q/k norms the architecture has.
    pub fn attention_params(&self) -> u64 {
        let h = self.hidden_size;
        let mut n = h * self.q_dim() * 2 + h * self.kv_dim() * 2 + h;
        if self.qkv_bias {
            n += self.q_dim() + 2 * self.kv_dim();
        }
        if self.o_bias {
            n += h;
        }
        if self.qk_norm {
            n += 2 * self.head_dim;
        }
        n
    }

    /// Parameters of one layer's MLP half (norm, gate, up, down).
    pub fn mlp_params(&self) -> u64 {
        3 * self.hidden_size * self.intermediate_size + self.hidden_size
    }

    /// Parameters in one transformer layer.
    pub fn layer_params(&self) -> u64 {
        self.attention_params() + self.mlp_params()
    }

    /// The window layer `layer` attends through, if it has one.
    pub fn window_of(&self, layer: u64) -> Option<u64> {
        self.sliding_window.filter(|w| layer >= w.first_layer && layer < self.num_layers).map(|w| w.window)
    }

    /// How many positions the last query of a pass over a `context`-position
    /// sequence attends to in layer `layer`.
    pub fn attention_span(&self, layer: u64, context: u64) -> u64 {
        self.window_of(layer).map_or(context, |w| w.min(context))
    }

    /// What a run whose KV cache holds `max_seq_len` positions needs beyond
    /// the Llama 2 forward pass, in a fixed order. A sliding window counts
    /// only if it is shorter than `max_seq_len` in some layer: otherwise
    /// every query sees every earlier position, as with full attention.
    ///
    /// An executor refuses a plan that needs one it does not run
    /// (`features(plan.shape.max_seq_len)` less what it implements).
    pub fn features(&self, max_seq_len: u64) -> Vec<ArchFeature> {
        let windowed = (0..self.num_layers).any(|l| self.window_of(l).is_some_and(|w| w < max_seq_len));
        [
            (!self.rope_scaling.is_default(), ArchFeature::ScaledRope),
            (self.qkv_bias, ArchFeature::QkvBias),
            (self.o_bias, ArchFeature::OBias),
            (self.qk_norm, ArchFeature::QkNorm),
            (windowed, ArchFeature::SlidingWindow),
        ]
        .into_iter()
        .filter_map(|(needed, f)| needed.then_some(f))
        .collect()
    }

    /// Where this architecture contradicts what its family always is (a
    /// `qwen3` without q/k norms, a `qwen2` without q/k/v biases, …): the
    /// field, and what is wrong with it (`is false, but a qwen3 model has
    /// …`); `None` when nothing is, or for a family not in [`FAMILIES`].
    pub fn family_contradiction(&self) -> Option<(&'static str, String)> {
        let want: &[(&str, bool, bool)] = match self.family.as_str() {
            "llama" => &[("qk_norm", self.qk_norm, false), ("o_bias", self.o_bias, self.qkv_bias)],
            "mistral" => {
                &[("qkv_bias", self.qkv_bias, false), ("o_bias", self.o_bias, false), ("qk_norm", self.qk_norm, false)]
            }
            "qwen2" => {
                &[("qkv_bias", self.qkv_bias, true), ("o_bias", self.o_bias, false), ("qk_norm", self.qk_norm, false)]
            }
            "qwen3" => &[("qk_norm", self.qk_norm, true), ("o_bias", self.o_bias, self.qkv_bias)],
            _ => &[],
        };
        want.iter().find(|(_, got, want)| got != want).map(|(field, got, want)| {
            let why = match *field {
                "o_bias" if matches!(self.family.as_str(), "llama" | "qwen3") => {
                    "`attention_bias` gives q, k, v and o their biases together"
                }
                _ => "the family's attention always has it so",
            };
            (*field, format!("is {got}, but a {} model has {field} = {want} ({why})", self.family))
        })
    }

    /// The tensors a block of `kind` holds for this architecture, in image
    /// order: [`BlockKind::roles`] plus the biases and q/k norms it has.
    pub fn block_roles(&self, kind: BlockKind) -> Vec<TensorRole> {
        use TensorRole::*;
        let attention = || {
            let mut r = vec![AttnNorm];
            for (weight, bias) in [(Q, QBias), (K, KBias), (V, VBias)] {
                r.push(weight);
                if self.qkv_bias {
                    r.push(bias);
                }
            }
            if self.qk_norm {
                r.extend([QNorm, KNorm]);
            }
            r.push(O);
            if self.o_bias {
                r.push(OBias);
            }
            r
        };
        match kind {
            BlockKind::Attention => attention(),
            BlockKind::Layer => {
                let mut r = attention();
                r.extend_from_slice(BlockKind::Mlp.roles());
                r
            }
            _ => kind.roles().to_vec(),
        }
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
    /// The first part of a layer's MLP in the fine table: its norm, gate and
    /// up projections; writes the `gate` activation, `silu(gate) · up`.
    GateUp,
    /// The second part of a layer's MLP in the fine table: the down
    /// projection of the `gate` activation, added into the residual stream.
    Down,
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
        matches!(self, BlockKind::Layer | BlockKind::Attention | BlockKind::Mlp | BlockKind::GateUp | BlockKind::Down)
    }

    /// Whether the block is one of the two parts of a layer's MLP in the fine
    /// table: they hand the `gate` activation from one to the other.
    pub fn is_mlp_part(self) -> bool {
        matches!(self, BlockKind::GateUp | BlockKind::Down)
    }

    /// The tensors every block of this kind holds, whatever the
    /// architecture; [`Architecture::block_roles`] adds the biases and q/k
    /// norms of the families that have them.
    pub fn roles(self) -> &'static [TensorRole] {
        use TensorRole::*;
        match self {
            BlockKind::Embedding => &[Embed],
            BlockKind::Layer => &[AttnNorm, Q, K, V, O, MlpNorm, Gate, Up, Down],
            BlockKind::Attention => &[AttnNorm, Q, K, V, O],
            BlockKind::Mlp => &[MlpNorm, Gate, Up, Down],
            BlockKind::GateUp => &[MlpNorm, Gate, Up],
            BlockKind::Down => &[Down],
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
    /// `[q_dim]`, added to the q projection's output.
    QBias,
    /// `[kv_dim]`, added to the k projection's output.
    KBias,
    /// `[kv_dim]`, added to the v projection's output.
    VBias,
    /// `[hidden_size]`, added to the output projection's output.
    OBias,
    /// `[head_dim]`: the RMSNorm weight applied to every query head.
    QNorm,
    /// `[head_dim]`: the RMSNorm weight applied to every key head.
    KNorm,
    MlpNorm,
    Gate,
    Up,
    Down,
    FinalNorm,
    LmHead,
}

impl TensorRole {
    /// The layer half a tensor of this role belongs to (`Attention` or
    /// `Mlp`); `None` for the embedding, final norm and LM head.
    pub fn half(self) -> Option<BlockKind> {
        use TensorRole::*;
        match self {
            AttnNorm | Q | K | V | O | QBias | KBias | VBias | OBias | QNorm | KNorm => Some(BlockKind::Attention),
            MlpNorm | Gate | Up | Down => Some(BlockKind::Mlp),
            Embed | FinalNorm | LmHead => None,
        }
    }

    /// The block of the fine table a tensor of this role belongs to
    /// (`Attention`, `GateUp` or `Down`); `None` outside the layers.
    pub fn fine_part(self) -> Option<BlockKind> {
        match self {
            TensorRole::Down => Some(BlockKind::Down),
            role => match role.half()? {
                BlockKind::Mlp => Some(BlockKind::GateUp),
                half => Some(half),
            },
        }
    }

    /// Whether the tensor is an RMSNorm weight (stored values near 1).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            TensorRole::AttnNorm | TensorRole::MlpNorm | TensorRole::FinalNorm | TensorRole::QNorm | TensorRole::KNorm
        )
    }
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

/// A model's block table, by its unit of residency and streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// One `layer` block per layer.
    Layers,
    /// `attention` then `mlp` per layer.
    Split,
    /// `attention`, `gate_up` then `down` per layer.
    Fine,
}

impl Table {
    /// Blocks per transformer layer.
    pub fn blocks_per_layer(self) -> u64 {
        match self {
            Table::Layers => 1,
            Table::Split => 2,
            Table::Fine => 3,
        }
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

/// One tensor the forward pass needs, before it is placed in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTensor {
    pub name: String,
    pub role: TensorRole,
    pub shape: Vec<u64>,
}

/// One block the forward pass needs, before its image is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedBlock {
    pub name: String,
    pub kind: BlockKind,
    pub layer: Option<u64>,
    pub tensors: Vec<ExpectedTensor>,
}

/// The block table a checkpoint of `arch` must provide, with Hugging Face
/// tensor names. With tied embeddings the LM head block reads
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
        blocks.push(ExpectedBlock {
            name: layer_block_name(i),
            kind: BlockKind::Layer,
            layer: Some(i),
            tensors: arch.block_roles(BlockKind::Layer).into_iter().map(|role| layer_tensor(arch, i, role)).collect(),
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

/// Layer `i`'s tensor of `role` (a role of [`TensorRole::half`]), with its
/// Hugging Face name and stored shape.
fn layer_tensor(arch: &Architecture, i: u64, role: TensorRole) -> ExpectedTensor {
    use TensorRole::*;
    let (h, q, kv, inter) = (arch.hidden_size, arch.q_dim(), arch.kv_dim(), arch.intermediate_size);
    let (suffix, shape) = match role {
        AttnNorm => ("input_layernorm.weight", vec![h]),
        Q => ("self_attn.q_proj.weight", vec![q, h]),
        QBias => ("self_attn.q_proj.bias", vec![q]),
        K => ("self_attn.k_proj.weight", vec![kv, h]),
        KBias => ("self_attn.k_proj.bias", vec![kv]),
        V => ("self_attn.v_proj.weight", vec![kv, h]),
        VBias => ("self_attn.v_proj.bias", vec![kv]),
        QNorm => ("self_attn.q_norm.weight", vec![arch.head_dim]),
        KNorm => ("self_attn.k_norm.weight", vec![arch.head_dim]),
        O => ("self_attn.o_proj.weight", vec![h, q]),
        OBias => ("self_attn.o_proj.bias", vec![h]),
        MlpNorm => ("post_attention_layernorm.weight", vec![h]),
        Gate => ("mlp.gate_proj.weight", vec![inter, h]),
        Up => ("mlp.up_proj.weight", vec![inter, h]),
        Down => ("mlp.down_proj.weight", vec![h, inter]),
        Embed | FinalNorm | LmHead => unreachable!("{role:?} is not a layer tensor"),
    };
    ExpectedTensor { name: format!("model.layers.{i}.{suffix}"), role, shape }
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
    let parts = |b: &ExpectedBlock, layer| match b.kind {
        BlockKind::Layer => {
            vec![(BlockKind::Attention, attention_block_name(layer)), (BlockKind::Mlp, mlp_block_name(layer))]
        }
        _ => Vec::new(),
    };
    partition_expected(blocks, parts, TensorRole::half)
}

/// The name of layer `i`'s gate/up block in the fine table (`layer.3.gate_up`).
pub fn gate_up_block_name(i: u64) -> String {
    format!("layer.{i}.gate_up")
}

/// The name of layer `i`'s down block in the fine table (`layer.3.down`).
pub fn down_block_name(i: u64) -> String {
    format!("layer.{i}.down")
}

/// The fine table: `blocks` with every whole layer replaced by its attention
/// block, its gate/up block ([`gate_up_block_name`]) and its down block
/// ([`down_block_name`]), and every MLP half by the last two; each with the
/// layer's tensors of its kind ([`TensorRole::fine_part`]), in the layer's order.
pub fn fine_expected(blocks: Vec<ExpectedBlock>) -> Vec<ExpectedBlock> {
    let parts = |b: &ExpectedBlock, layer| {
        let mlp = [(BlockKind::GateUp, gate_up_block_name(layer)), (BlockKind::Down, down_block_name(layer))];
        match b.kind {
            BlockKind::Layer => [vec![(BlockKind::Attention, attention_block_name(layer))], mlp.to_vec()].concat(),
            BlockKind::Mlp => mlp.to_vec(),
            _ => Vec::new(),
        }
    };
    partition_expected(blocks, parts, TensorRole::fine_part)
}

/// `blocks` with each layer block that `parts` names parts for replaced by
/// those parts, each holding the tensors `part_of` assigns it, in order.
fn partition_expected(
    blocks: Vec<ExpectedBlock>,
    parts: impl Fn(&ExpectedBlock, u64) -> Vec<(BlockKind, String)>,
    part_of: fn(TensorRole) -> Option<BlockKind>,
) -> Vec<ExpectedBlock> {
    let mut out = Vec::with_capacity(blocks.len() * 3);
    for b in blocks {
        let named = b.layer.map(|layer| parts(&b, layer)).unwrap_or_default();
        if named.is_empty() {
            out.push(b);
            continue;
        }
        for (kind, name) in named {
            let tensors = b.tensors.iter().filter(|t| part_of(t.role) == Some(kind)).cloned().collect();
            out.push(ExpectedBlock { name, kind, layer: b.layer, tensors });
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

    /// Whether the layers are split into attention and MLP blocks (or finer: [`Table::Fine`]).
    pub fn is_split(&self) -> bool {
        self.table() != Table::Layers
    }

    /// Which block table the model's layers are in (the finest kind present decides).
    pub fn table(&self) -> Table {
        if self.blocks.iter().any(|b| b.kind.is_mlp_part()) {
            Table::Fine
        } else if self.blocks.iter().any(|b| matches!(b.kind, BlockKind::Attention | BlockKind::Mlp)) {
            Table::Split
        } else {
            Table::Layers
        }
    }

    /// The same model with every whole-layer block replaced by its attention
    /// block then its MLP block ([`split_expected`]; each image re-laid out
    /// from the layer's tensors, names and dtypes kept). The forward pass
    /// computes the same operations in the same order either way.
    pub fn split_layers(&self) -> ModelSpec {
        self.partitioned(split_expected)
    }

    /// The fine table: every layer as its attention, gate/up and down blocks
    /// ([`fine_expected`]); the same operations in the same order again.
    pub fn fine_layers(&self) -> ModelSpec {
        self.partitioned(fine_expected)
    }

    fn partitioned(&self, partition: fn(Vec<ExpectedBlock>) -> Vec<ExpectedBlock>) -> ModelSpec {
        let mut blocks = Vec::with_capacity(self.blocks.len() * 3);
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
            for part in partition(vec![expected]) {
                blocks.push(if part.kind == b.kind { b.clone() } else { lay_out_block(&part, dtype_of) });
            }
        }
        ModelSpec { blocks, ..self.clone() }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
            ..Default::default()
        }
    }

    /// Qwen3-32B's shape: 64 heads of 128 over a 5120 stream (q_dim 8192), per-head q/k norms.
    fn qwen3_32b() -> Architecture {
        Architecture {
            family: "qwen3".into(),
            hidden_size: 5120,
            intermediate_size: 25600,
            num_layers: 64,
            num_heads: 64,
            num_kv_heads: 8,
            head_dim: 128,
            vocab_size: 151936,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 40960,
            qk_norm: true,
            ..Default::default()
        }
    }

    /// Qwen2.5-7B's shape: biases on q, k and v, none on o.
    fn qwen2_5_7b() -> Architecture {
        Architecture {
            family: "qwen2".into(),
            hidden_size: 3584,
            intermediate_size: 18944,
            num_layers: 28,
            num_heads: 28,
            num_kv_heads: 4,
            head_dim: 128,
            vocab_size: 152064,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 131072,
            qkv_bias: true,
            ..Default::default()
        }
    }

    fn shapes(b: &Block) -> Vec<(&str, TensorRole, Vec<u64>)> {
        b.tensors.iter().map(|t| (t.name.as_str(), t.role, t.shape.clone())).collect()
    }

    #[test]
    fn qwen2_layers_carry_qkv_biases_in_the_attention_half() {
        let spec = ModelSpec::from_arch("qwen2.5-7b", qwen2_5_7b(), Dtype::Bf16);
        let layer = spec.block("layer.3").unwrap();
        let want = [
            ("model.layers.3.input_layernorm.weight", TensorRole::AttnNorm, vec![3584]),
            ("model.layers.3.self_attn.q_proj.weight", TensorRole::Q, vec![3584, 3584]),
            ("model.layers.3.self_attn.q_proj.bias", TensorRole::QBias, vec![3584]),
            ("model.layers.3.self_attn.k_proj.weight", TensorRole::K, vec![512, 3584]),
            ("model.layers.3.self_attn.k_proj.bias", TensorRole::KBias, vec![512]),
            ("model.layers.3.self_attn.v_proj.weight", TensorRole::V, vec![512, 3584]),
            ("model.layers.3.self_attn.v_proj.bias", TensorRole::VBias, vec![512]),
            ("model.layers.3.self_attn.o_proj.weight", TensorRole::O, vec![3584, 3584]),
        ];
        assert_eq!(shapes(layer)[..8], want.iter().map(|(n, r, s)| (*n, *r, s.clone())).collect::<Vec<_>>()[..]);
        assert_eq!(layer.tensors.len(), 12);
        // The image holds every tensor, the biases counted: 233 M parameters in bf16.
        let bytes: u64 = layer.tensors.iter().map(|t| t.bytes).sum();
        assert_eq!(bytes, qwen2_5_7b().layer_params() * 2);
        assert_eq!(qwen2_5_7b().attention_params(), 2 * 3584 * 3584 + 2 * 512 * 3584 + 3584 + 3584 + 2 * 512);
        let split = spec.split_layers();
        let attn = split.block("layer.3.attn").unwrap();
        assert_eq!(attn.tensors.len(), 8);
        assert!(attn.tensor(TensorRole::VBias).is_some() && attn.tensor(TensorRole::OBias).is_none());
        assert_eq!(split.block("layer.3.mlp").unwrap().tensors.len(), 4);
        // 7.6 B parameters, 15.23 GB in bf16 (the published checkpoint's size).
        assert_eq!(spec.total_bytes() / 10_000_000, 1523);
    }

    #[test]
    fn qwen3_q_and_k_norms_are_head_dim_wide_and_q_dim_need_not_be_hidden() {
        let arch = qwen3_32b();
        let spec = ModelSpec::from_arch("qwen3-32b", arch.clone(), Dtype::Bf16);
        let layer = spec.block("layer.0").unwrap();
        let q = layer.tensor(TensorRole::Q).unwrap();
        let o = layer.tensor(TensorRole::O).unwrap();
        assert_eq!((q.shape.clone(), o.shape.clone()), (vec![8192, 5120], vec![5120, 8192]));
        for (role, name) in [(TensorRole::QNorm, "q_norm"), (TensorRole::KNorm, "k_norm")] {
            let t = layer.tensor(role).unwrap();
            assert_eq!(
                (t.name.clone(), t.shape.clone()),
                (format!("model.layers.0.self_attn.{name}.weight"), vec![128])
            );
        }
        let roles: Vec<TensorRole> = layer.tensors.iter().map(|t| t.role).collect();
        use TensorRole::*;
        assert_eq!(roles, [AttnNorm, Q, K, V, QNorm, KNorm, O, MlpNorm, Gate, Up, Down]);
        assert_eq!(arch.block_roles(BlockKind::Layer), roles);
        assert!(roles.iter().all(|r| r.half().is_some()));
        // 32.8 B parameters: 65.5 GB in bf16.
        assert_eq!(spec.total_bytes() / 100_000_000, 655);
        let split = spec.split_layers();
        assert_eq!(split.block("layer.0.attn").unwrap().tensors.len(), 7);
        assert_eq!(split.split_layers(), split);
    }

    #[test]
    fn llama_with_attention_bias_has_all_four_biases() {
        let arch = Architecture { qkv_bias: true, o_bias: true, ..llama2_13b() };
        let layer = &ModelSpec::from_arch("x", arch.clone(), Dtype::F16).blocks[1];
        let o_bias = layer.tensor(TensorRole::OBias).unwrap();
        assert_eq!((o_bias.name.as_str(), o_bias.shape.clone()), ("model.layers.0.self_attn.o_proj.bias", vec![5120]));
        assert_eq!(layer.tensors.len(), 13);
        assert_eq!(arch.family_contradiction(), None);
        let half = Architecture { o_bias: false, ..arch };
        let (field, e) = half.family_contradiction().unwrap();
        assert!(field == "o_bias" && e.starts_with("is false") && e.contains("attention_bias"), "{e}");
    }

    #[test]
    fn fine_layers_partition_each_mlp_into_gate_up_then_down() {
        use TensorRole::*;
        let spec = ModelSpec::from_arch("m", llama2_13b(), Dtype::F16);
        let fine = spec.fine_layers();
        assert_eq!(
            (spec.table(), spec.split_layers().table(), fine.table()),
            (Table::Layers, Table::Split, Table::Fine)
        );
        assert_eq!(fine.blocks.len(), 3 * 40 + 3);
        let names: Vec<&str> = fine.blocks[1..5].iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["layer.0.attn", "layer.0.gate_up", "layer.0.down", "layer.1.attn"]);
        let (gate_up, down) = (fine.block("layer.7.gate_up").unwrap(), fine.block("layer.7.down").unwrap());
        assert_eq!(
            (gate_up.kind, gate_up.layer, down.kind, down.layer),
            (BlockKind::GateUp, Some(7), BlockKind::Down, Some(7))
        );
        assert_eq!(gate_up.tensors.iter().map(|t| t.role).collect::<Vec<_>>(), [MlpNorm, Gate, Up]);
        assert_eq!(down.tensors.iter().map(|t| t.role).collect::<Vec<_>>(), [Down]);
        // 135 MiB each of the three matrices (plus the norm and alignment).
        assert_eq!(down.bytes, 5120 * 13824 * 2);
        assert_eq!(gate_up.bytes, 2 * 5120 * 13824 * 2 + 5120 * 2);
        // The same tensors, the same bytes: the split table refined, and refining twice changes nothing.
        assert_eq!(spec.split_layers().fine_layers(), fine);
        assert_eq!(fine.fine_layers(), fine);
        assert_eq!(fine.split_layers(), fine);
        let weights = |m: &ModelSpec| m.blocks.iter().flat_map(|b| b.tensors.iter().map(|t| t.bytes)).sum::<u64>();
        assert_eq!(weights(&fine), weights(&spec));
    }

    #[test]
    fn family_traits_are_checked() {
        assert_eq!(qwen2_5_7b().family_contradiction(), None);
        assert_eq!(qwen3_32b().family_contradiction(), None);
        assert_eq!(llama2_13b().family_contradiction(), None);
        let (field, e) = Architecture { qk_norm: false, ..qwen3_32b() }.family_contradiction().unwrap();
        assert_eq!(field, "qk_norm");
        assert_eq!(e, "is false, but a qwen3 model has qk_norm = true (the family's attention always has it so)");
        let (field, e) = Architecture { qkv_bias: false, ..qwen2_5_7b() }.family_contradiction().unwrap();
        assert!(field == "qkv_bias" && e.starts_with("is false, but a qwen2 model has qkv_bias = true"), "{e}");
    }

    #[test]
    fn features_name_what_the_llama2_forward_pass_lacks() {
        assert!(llama2_13b().features(4096).is_empty());
        assert_eq!(qwen2_5_7b().features(1024), [ArchFeature::QkvBias]);
        assert_eq!(qwen3_32b().features(1024), [ArchFeature::QkNorm]);
        let rope = RopeScaling::Linear { factor: 2.0 };
        let mistral = Architecture {
            rope_scaling: rope,
            sliding_window: Some(SlidingWindow { window: 4096, first_layer: 0 }),
            ..llama2_13b()
        };
        // The window matters only when the run holds more positions than it.
        assert_eq!(mistral.features(4096), [ArchFeature::ScaledRope]);
        assert_eq!(mistral.features(4097), [ArchFeature::ScaledRope, ArchFeature::SlidingWindow]);
        assert_eq!(ArchFeature::QkNorm.to_string(), "per-head q/k RMSNorm (q_norm, k_norm)");
    }

    #[test]
    fn the_window_applies_from_its_first_layer() {
        let arch =
            Architecture { sliding_window: Some(SlidingWindow { window: 100, first_layer: 30 }), ..llama2_13b() };
        assert_eq!((arch.window_of(29), arch.window_of(30), arch.window_of(39)), (None, Some(100), Some(100)));
        assert_eq!(arch.window_of(40), None, "no layer 40");
        assert_eq!(
            (arch.attention_span(29, 512), arch.attention_span(35, 512), arch.attention_span(35, 64)),
            (512, 100, 64)
        );
        let none =
            Architecture { sliding_window: Some(SlidingWindow { window: 100, first_layer: 40 }), ..llama2_13b() };
        assert!(none.features(1 << 20).is_empty());
    }

    #[test]
    fn new_fields_are_left_out_of_a_llama_plan_and_read_back_when_present() {
        // A Llama 2 architecture serializes as before the fields existed, and such text still parses.
        let text = toml::to_string(&llama2_13b()).unwrap();
        assert!(!text.contains("bias") && !text.contains("rope_scaling") && !text.contains("window"), "{text}");
        assert_eq!(toml::from_str::<Architecture>(&text).unwrap(), llama2_13b());
        let arch = Architecture {
            rope_scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            sliding_window: Some(SlidingWindow { window: 4096, first_layer: 0 }),
            ..qwen2_5_7b()
        };
        let text = toml::to_string(&arch).unwrap();
        assert!(text.contains("qkv_bias = true") && text.contains("[rope_scaling]\ntype = \"llama3\""), "{text}");
        assert_eq!(toml::from_str::<Architecture>(&text).unwrap(), arch);
        let bad = text.replace("factor = 8.0", "factor = 8.0\nbeta_fast = 32.0");
        let e = toml::from_str::<Architecture>(&bad).unwrap_err().to_string();
        assert!(e.contains("beta_fast"), "{e}");
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
