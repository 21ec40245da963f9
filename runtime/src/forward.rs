//! The Llama forward pass — the one and only copy, for every backend.
//!
//! Follow a token through it: [`Forward::compute_block`] is called once per
//! block, in model order, by whichever backend replays the plan. The
//! embedding block turns token ids into rows of the f32 residual stream `x`.
//! Each layer then does, top to bottom: its attention (`Forward::attention`),
//! then its MLP (`Forward::mlp`: `Forward::gate_up` then `Forward::down`) —
//! one `layer` block runs both, a plan with split layers runs them as an
//! `attention` block and an `mlp` block, the fine table as an `attention`, a
//! `gate_up` and a `down` block:
//!
//! ```text
//! xn = rmsnorm(x) · attn_norm          # normalise, rounded to the model dtype
//! q, k, v = xn·Wqᵀ, xn·Wkᵀ, xn·Wvᵀ     # projections                  (Ops::qkv)
//! q, k, v += bq, bk, bv                 # [qkv_bias]                   (Ops::add_bias)
//! q, k = head_rmsnorm(q, k)             # [qk_norm] per head           (Ops::head_rmsnorm)
//! q, k = rope(q, k)                     # rotate by position, the model's frequency table
//! cache[pos0..pos0+n] = k, v            # append to the KV cache
//! attn = softmax(q·Kᵀ/√d) · V           # causal (windowed: [sliding_window]), grouped-query
//!                                       #   (the three: Ops::rope_attention)
//! x += attn·Woᵀ (+ bo)                  # residual add                (Ops::matmul_residual;
//!                                       #   [o_bias]: matmul, add_bias, add)
//! xn = rmsnorm(x) · mlp_norm
//! g = silu(xn·Wgateᵀ) * xn·Wupᵀ         #                             (Ops::gate_up_silu)
//! x += g·Wdownᵀ                         #                             (Ops::matmul_residual)
//! ```
//!
//! The ops named on the right are fusions (one GPU launch each in decode);
//! each means exactly the elementary ops to its left (`ops::unfused`).
//!
//! What a family computes differently is data, never a branch on its name:
//! the steps in brackets run when the architecture has the field (Qwen2's
//! q/k/v biases, `attention_bias`'s o bias, Qwen3's q/k norms), RoPE always
//! takes the table of `djinn_core::model::inv_freq` (plain theta or llama3 /
//! linear scaling alike), and each layer's attention its own window
//! (`Architecture::window_of`: Mistral, Qwen2 `use_sliding_window`).
//!
//! The final-norm block normalises the last position only, and the LM-head
//! block turns it into f32 logits. Nothing here allocates or owns memory:
//! every operand is a [`Buf`] into the plan's arena — activations and KV
//! cache carved with `djinn_core::activations` (the same functions the
//! compiler sized the regions with), weights at the tensor offsets of the
//! plan's block table inside the block image the replay points at. f16 and
//! bf16 models run through the same code: each `Buf` carries its dtype.

use djinn_core::activations::{ActivationLayout, KvLayout};
use djinn_core::model::{ArchFeature, Architecture, Block, BlockKind, Dtype, TensorRole};
use djinn_core::plan::{Plan, RegionKind};
use thiserror::Error;

use crate::backend::Pass;
use crate::ops::{AttnShape, Buf, Ops, RopeTable, MAX_ROPE_PAIRS};

#[derive(Debug, Error, PartialEq)]
pub enum ForwardError {
    #[error("the plan has no {0:?} region")]
    NoRegion(RegionKind),
    #[error("region `{region}` is {have} bytes; the {what} layout needs {need}")]
    RegionTooSmall { region: String, what: &'static str, have: u64, need: u64 },
    #[error("the plan is for batch {0}; this executor runs batch 1")]
    Batch(u64),
    #[error("the model dtype is {0}; the forward pass runs f16 and bf16 models")]
    Dtype(Dtype),
    #[error("block `{block}` has no {role:?} tensor in the plan's block table")]
    NoTensor { block: String, role: TensorRole },
    #[error(
        "the {family} model needs {}, which this executor's forward pass does not run yet \
         (djinn-compile plans it; running it would give wrong tokens)",
        .features.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
    )]
    Unsupported { family: String, features: Vec<ArchFeature> },
    #[error("head_dim is {0}; the RoPE kernels take heads of at most {max} dimensions", max = 2 * MAX_ROPE_PAIRS)]
    HeadDim(u64),
}

/// The architecture features beyond Llama 2's that this forward pass runs,
/// on both backends. Every feature `Architecture::features` names is here
/// now; the list stays so that a feature added to the contract later is
/// refused by name until its ops land. (RoPE types core cannot describe —
/// dynamic, yarn, longrope — never reach a plan: `djinn-compile` refuses
/// their `config.json`.)
const RUNS: &[ArchFeature] = &[
    ArchFeature::ScaledRope,
    ArchFeature::QkvBias,
    ArchFeature::OBias,
    ArchFeature::QkNorm,
    ArchFeature::SlidingWindow,
];

/// The activation buffers, as absolute windows into the arena (`t` = the
/// plan's `prompt_len`, the most tokens one pass feeds).
#[derive(Debug, Clone, Copy)]
pub struct Activations {
    /// The pass header, `[pos0, tokens, 0, 0, counters…]` u32 (`djinn_core::activations::PASS_WORDS`).
    pub pass: Buf,
    /// `[t]` u32 token ids of the pass (f32-typed 4-byte slots).
    pub tokens: Buf,
    /// `[t, hidden]` f32: the residual stream.
    pub x: Buf,
    /// `[t, hidden]` model dtype: the normalised input of the next projections.
    pub xn: Buf,
    /// `[t, num_heads*head_dim]`: queries.
    pub q: Buf,
    /// `[t, num_kv_heads*head_dim]`: keys of this pass.
    pub k: Buf,
    /// `[t, num_kv_heads*head_dim]`: values of this pass.
    pub v: Buf,
    /// f32 attention scratch (`djinn_core::activations`' `score_elems`): the
    /// decode partials, and prefill scores only for head sizes without the flash path.
    pub scores: Buf,
    /// `[t, num_heads*head_dim]`: attention output, before `o_proj`.
    pub attn: Buf,
    /// `[t, hidden]`: `o_proj` and `down_proj` outputs, added into `x`.
    pub proj: Buf,
    /// `[t, intermediate]`: gate projection, then `silu(gate) * up`.
    pub gate: Buf,
    /// `[t, intermediate]`: up projection.
    pub up: Buf,
    /// `[vocab]` f32: logits of the last position.
    pub logits: Buf,
}

impl Activations {
    fn carve(layout: &ActivationLayout, base: u64) -> Activations {
        let b = |name: &str| {
            let buf = layout.buffer(name);
            Buf { offset: base + buf.offset, elems: buf.elems, dtype: buf.dtype }
        };
        Activations {
            pass: b("pass"),
            tokens: b("tokens"),
            x: b("x"),
            xn: b("xn"),
            q: b("q"),
            k: b("k"),
            v: b("v"),
            scores: b("scores"),
            attn: b("attn"),
            proj: b("proj"),
            gate: b("gate"),
            up: b("up"),
            logits: b("logits"),
        }
    }
}

/// A layer's attention weights inside their block image.
struct AttentionWeights {
    norm: Buf, // [hidden]
    q: Buf,    // [num_heads*head_dim, hidden]
    k: Buf,    // [num_kv_heads*head_dim, hidden]
    v: Buf,    // [num_kv_heads*head_dim, hidden]
    o: Buf,    // [hidden, num_heads*head_dim]
    /// `[q_dim]`, `[kv_dim]`, `[kv_dim]`, when the architecture has `qkv_bias`.
    qkv_bias: Option<[Buf; 3]>,
    /// `[head_dim]` each, when it has `qk_norm`.
    qk_norm: Option<[Buf; 2]>,
    /// `[hidden]`, when it has `o_bias`.
    o_bias: Option<Buf>,
}

/// The forward pass of one plan: its model and where its buffers are.
#[derive(Debug, Clone)]
pub struct Forward {
    arch: Architecture,
    /// The plan's block table: tensor offsets inside each block image.
    blocks: Vec<Block>,
    act: Activations,
    kv: KvLayout,
    /// Arena offset of the KV cache region.
    kv_base: u64,
    /// RoPE's frequencies, scaled as the architecture says.
    rope: RopeTable,
}

impl Forward {
    pub fn new(plan: &Plan) -> Result<Forward, ForwardError> {
        let (arch, dtype, shape) = (&plan.model.arch, plan.model.dtype, &plan.shape);
        if shape.batch != 1 {
            return Err(ForwardError::Batch(shape.batch));
        }
        if dtype == Dtype::F32 {
            return Err(ForwardError::Dtype(dtype));
        }
        let missing: Vec<ArchFeature> =
            arch.features(shape.max_seq_len).into_iter().filter(|f| !RUNS.contains(f)).collect();
        if !missing.is_empty() {
            return Err(ForwardError::Unsupported { family: arch.family.clone(), features: missing });
        }
        let rope = RopeTable::of(arch).ok_or(ForwardError::HeadDim(arch.head_dim))?;
        for b in &plan.model.blocks {
            if let Some(&role) = arch.block_roles(b.kind).iter().find(|&&r| b.tensor(r).is_none()) {
                return Err(ForwardError::NoTensor { block: b.name.clone(), role });
            }
        }
        let layout = ActivationLayout::new(arch, dtype, shape);
        let kv = KvLayout::new(arch, dtype, shape);
        let act_region = region(plan, RegionKind::Activations, "activation", layout.bytes)?;
        let kv_region = region(plan, RegionKind::KvCache, "KV cache", kv.bytes())?;
        Ok(Forward {
            arch: arch.clone(),
            blocks: plan.model.blocks.clone(),
            act: Activations::carve(&layout, act_region),
            kv,
            kv_base: kv_region,
            rope,
        })
    }

    pub fn activations(&self) -> &Activations {
        &self.act
    }

    /// Runs block `block` (index into the plan's block table) for `pass`,
    /// its image at arena byte `weights`.
    pub fn compute_block<O: Ops>(&self, ops: &mut O, block: usize, weights: u64, pass: &Pass) -> Result<(), O::Error> {
        let (a, h) = (&self.act, self.arch.hidden_size);
        let n = pass.tokens.len() as u64;
        let b = &self.blocks[block];
        let w = |role| self.weight(b, role, weights);
        match b.kind {
            BlockKind::Embedding => ops.embed(a.x, w(TensorRole::Embed), a.tokens, n, h),
            BlockKind::Layer => {
                self.attention(ops, b, weights, n, pass.pos0)?;
                self.mlp(ops, b, weights, n)
            }
            BlockKind::Attention => self.attention(ops, b, weights, n, pass.pos0),
            BlockKind::Mlp => self.mlp(ops, b, weights, n),
            BlockKind::GateUp => self.gate_up(ops, b, weights, n),
            BlockKind::Down => self.down(ops, b, weights, n),
            // Only the last position's logits are needed: normalise its row alone.
            BlockKind::FinalNorm => {
                let last = a.x.slice((n - 1) * h, h);
                ops.rmsnorm(a.xn, last, w(TensorRole::FinalNorm), 1, h, self.arch.rms_norm_eps)
            }
            BlockKind::LmHead => ops.matmul(a.logits, a.xn, w(TensorRole::LmHead), 1, self.arch.vocab_size, h),
        }
    }

    /// A layer's attention over `n` tokens at positions `pos0..pos0+n`: `x += attn(x)`.
    fn attention<O: Ops>(&self, ops: &mut O, b: &Block, weights: u64, n: u64, pos0: u64) -> Result<(), O::Error> {
        let (a, arch) = (&self.act, &self.arch);
        let (h, q_dim, kv_dim) = (arch.hidden_size, arch.q_dim(), arch.kv_dim());
        let w = |role| self.weight(b, role, weights);
        let w = AttentionWeights {
            norm: w(TensorRole::AttnNorm),
            q: w(TensorRole::Q),
            k: w(TensorRole::K),
            v: w(TensorRole::V),
            o: w(TensorRole::O),
            qkv_bias: arch.qkv_bias.then(|| [w(TensorRole::QBias), w(TensorRole::KBias), w(TensorRole::VBias)]),
            qk_norm: arch.qk_norm.then(|| [w(TensorRole::QNorm), w(TensorRole::KNorm)]),
            o_bias: arch.o_bias.then(|| w(TensorRole::OBias)),
        };
        let layer = b.layer.expect("a layer block has a layer index");
        let shape = AttnShape {
            tokens: n,
            pos0,
            num_heads: arch.num_heads,
            num_kv_heads: arch.num_kv_heads,
            head_dim: arch.head_dim,
            rope: self.rope,
            window: arch.window_of(layer),
            header: Some(a.pass),
        };
        let (k_cache, v_cache) = self.kv_planes(layer);
        ops.rmsnorm(a.xn, a.x, w.norm, n, h, arch.rms_norm_eps)?;
        ops.qkv([a.q, a.k, a.v], a.xn, [w.q, w.k, w.v], n, [q_dim, kv_dim, kv_dim], h)?;
        if let Some([bq, bk, bv]) = w.qkv_bias {
            ops.add_bias(a.q, bq, n, q_dim)?;
            ops.add_bias(a.k, bk, n, kv_dim)?;
            ops.add_bias(a.v, bv, n, kv_dim)?;
        }
        if let Some([nq, nk]) = w.qk_norm {
            let d = arch.head_dim;
            ops.head_rmsnorm(a.q, nq, n * arch.num_heads, d, arch.rms_norm_eps)?;
            ops.head_rmsnorm(a.k, nk, n * arch.num_kv_heads, d, arch.rms_norm_eps)?;
        }
        ops.rope_attention(a.attn, a.q, a.k, a.v, k_cache, v_cache, a.scores, shape)?;
        match w.o_bias {
            // The bias goes between the product and the residual add, so the fused op cannot be used.
            Some(bo) => {
                ops.matmul(a.proj, a.attn, w.o, n, h, q_dim)?;
                ops.add_bias(a.proj, bo, n, h)?;
                ops.add(a.x, a.proj, n * h)
            }
            None => ops.matmul_residual(a.x, a.proj, a.attn, w.o, n, h, q_dim),
        }
    }

    /// A layer's MLP over `n` tokens: `x += mlp(x)`: its gate/up part then its down part.
    fn mlp<O: Ops>(&self, ops: &mut O, b: &Block, weights: u64, n: u64) -> Result<(), O::Error> {
        self.gate_up(ops, b, weights, n)?;
        self.down(ops, b, weights, n)
    }

    /// The first part of a layer's MLP (all of a `gate_up` block, the start of
    /// an `mlp` or `layer` block): `gate = silu(rmsnorm(x)·Wgateᵀ) * rmsnorm(x)·Wupᵀ`.
    /// `gate` is then read by [`Forward::down`] and nothing computed between them writes it.
    fn gate_up<O: Ops>(&self, ops: &mut O, b: &Block, weights: u64, n: u64) -> Result<(), O::Error> {
        let (a, arch) = (&self.act, &self.arch);
        let (h, inter) = (arch.hidden_size, arch.intermediate_size);
        let w = |role| self.weight(b, role, weights);
        ops.rmsnorm(a.xn, a.x, w(TensorRole::MlpNorm), n, h, arch.rms_norm_eps)?;
        ops.gate_up_silu(a.gate, a.up, a.xn, w(TensorRole::Gate), w(TensorRole::Up), n, inter, h)
    }

    /// The second part of a layer's MLP (all of a `down` block): `x += gate·Wdownᵀ`.
    fn down<O: Ops>(&self, ops: &mut O, b: &Block, weights: u64, n: u64) -> Result<(), O::Error> {
        let (a, arch) = (&self.act, &self.arch);
        let (h, inter) = (arch.hidden_size, arch.intermediate_size);
        ops.matmul_residual(a.x, a.proj, a.gate, self.weight(b, TensorRole::Down, weights), n, h, inter)
    }

    /// Layer `layer`'s K and V planes, `[max_seq_len, kv_dim]` each.
    fn kv_planes(&self, layer: u64) -> (Buf, Buf) {
        let elems = self.kv.batch * self.kv.max_seq_len * self.kv.kv_dim;
        let plane =
            |which| Buf { offset: self.kv_base + self.kv.plane_offset(layer, which), elems, dtype: self.kv.dtype };
        (plane(0), plane(1))
    }

    /// A weight of block `b` whose image starts at arena byte `base` ([`Forward::new`]
    /// checked that every block has the tensors of its kind).
    fn weight(&self, b: &Block, role: TensorRole, base: u64) -> Buf {
        let t = b.tensor(role).expect("Forward::new checked the block's tensors");
        Buf { offset: base + t.offset, elems: t.shape.iter().product(), dtype: t.dtype }
    }
}

/// The offset of the plan's `kind` region, checked to hold `need` bytes.
fn region(plan: &Plan, kind: RegionKind, what: &'static str, need: u64) -> Result<u64, ForwardError> {
    let r = plan.region_of_kind(kind).ok_or(ForwardError::NoRegion(kind))?;
    if r.bytes < need {
        return Err(ForwardError::RegionTooSmall { region: r.name.clone(), what, have: r.bytes, need });
    }
    Ok(r.offset)
}
