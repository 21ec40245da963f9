//! The cost model: how long a copy and a block's computation take.
//!
//! The solver never reads a GPU profile directly; it asks a [`CostModel`]. The
//! real one, [`Roofline`], is a roofline over the profile's *effective* rates;
//! tests inject [`UnitCosts`] so that a timeline can be derived by hand.
//!
//! Roofline, per block and phase:
//!
//! * `copy_us(bytes) = copy_latency_us + bytes / (h2d_gbps · 10³)`, with the
//!   bandwidth interpolated from `h2d_curve` (linear in bytes, clamped at the
//!   ends) when the profile has one.
//! * `compute_us = max(bytes moved / hbm, math) + kernels · kernel_overhead_us`,
//!   where `math = matrix flops / fp16_tflops + attention flops / attn_tflops`
//!   (all flops at `fp16_tflops` when the profile has no `attn_tflops`: the
//!   flash attention kernel runs well below the GEMM rate at long contexts).
//!   A layer (or its attention half) moves its weights (biases and q/k norms
//!   included: they are in the image) plus the K and V rows it reads; its
//!   matrix flops are `2 · params · tokens`, its attention flops
//!   `4 · tokens · context · q_dim`, halved in prefill because attention is
//!   causal. A layer with a sliding window shorter than the context reads
//!   only its window of rows, and each
//!   query attends to at most `window` positions (in prefill, on average
//!   `window − window² / (2 · context)`). An MLP half moves its weights; `2 · params · tokens` flops. Prefill's final norm and
//!   LM head only process the last position of each sequence (only its logits
//!   are sampled); the embedding gathers `tokens` rows, never the whole table.
//! * Decode is costed at `context = prompt_len`: the first generated tokens,
//!   where a plan's prediction is checked against a measurement.
//! * A measured `block_times` entry matching (model name, block kind, phase,
//!   tokens) replaces the estimate. In prefill, an entry of the same model,
//!   kind and phase at another pass size is scaled instead of dropped: the
//!   nearest measured size `t0` (the larger of two as near) gives
//!   `measured(t0) · estimate(tokens) / estimate(t0)`, each estimate the
//!   roofline of its own pass (the measured one at batch 1 and
//!   `context = t0`), so the kernels' measured efficiency carries over and
//!   the roofline says how the work grows. Decode entries apply at their own
//!   `tokens` only (the context they were measured over is not recorded);
//!   `djinn-profile` times decode at `tokens = 1`. A whole layer without an
//!   entry costs its attention and MLP halves' (exact or scaled) times
//!   together (what `djinn-profile` times), and a half without one its share
//!   of a measured (or scaled) layer, in proportion to the halves' estimates at
//!   this pass size, so both block tables are priced alike. The fine table's
//!   `gate_up` and `down` parts without times of their own share their MLP
//!   half's time (or its share of the layer's) the same way. A kind the table
//!   lacks (a whole-layer table's halves, a split table's whole layer) is
//!   estimated with the bytes of the layer's tensors such a block would hold.
//!
//! * A host compute (the profile's `[cpu]` lane running a streamed block's
//!   decode step from host memory) takes the lane's measured time for a block
//!   of this kind, model and context (`cpu.block_times`, taken while the copy
//!   lane ran; a fine-table MLP part without one takes the MLP half's in
//!   proportion to its bytes), or else `bytes / gemv_f16_gbps_during_copy`: the host streams
//!   the weights once, at the rate it measured while the copy lane ran. A
//!   block that reads the KV cache (a whole layer, an attention half) has no
//!   host compute: the cache lives on the device. A top-level
//!   `block_times` entry is a GPU time and does not apply. Each run of
//!   consecutive host-computed blocks also pays one hand-off of the residual
//!   stream: the profile's `handoff_us`, else [`HOST_HANDOFF_US`]. Without a
//!   `[cpu]` lane there is no host compute.
//! * While the host lane computes, a copy runs at `h2d_gbps_during_host`
//!   rather than the curve's largest-copy rate: the copy engine and the host
//!   cores read the same DRAM ([`CostModel::copy_slowdown_during_host`]; the
//!   simulation stretches the overlapped part of each copy).
//!
//! Between two forward passes the host reads the logits, samples, and issues the
//! next pass: [`HOST_TURNAROUND_US`]. It is one constant for every GPU, taken from
//! the project's H100 machine, where PyTorch's version of that loop (a kernel, a
//! 32000-entry f32 logits copy to pinned memory, a stream sync, a numpy argmax,
//! the token copied back) took 62–68 µs per token (`presets/gpus/measure.py`).
//! An executor calling the driver directly has less in the way; the constant
//! is kept at the measured figure.

use djinn_core::gpu::{GpuProfile, PhaseKind};
use djinn_core::model::{Block, BlockKind, ModelSpec, TensorRole, TENSOR_ALIGN};
use djinn_core::plan::RunShape;
use djinn_core::units::align_up;

/// Host time between the end of one forward pass and the start of the next, µs
/// (PyTorch's turnaround loop measured on the project's H100: 62–68 µs).
pub const HOST_TURNAROUND_US: f64 = 65.0;

/// Fixed cost of one run of host compute steps, µs, on top of streaming the
/// weights: waiting for the compute stream, the residual row down and back,
/// and the host's turnaround. An estimate until djinn-profile measures it.
pub const HOST_HANDOFF_US: f64 = 60.0;

/// Kernels a layer's attention half launches: rmsnorm, 4 matmul, rope,
/// kv_store, attention, residual add (see `djinn_runtime::ops`).
pub const ATTENTION_KERNELS: u64 = 9;
/// Kernels a layer's MLP half launches: rmsnorm, 3 matmul, silu_mul, residual add.
pub const MLP_KERNELS: u64 = 6;
/// Kernels the first part of a layer's MLP in the fine table launches
/// (rmsnorm, 2 matmul, silu_mul); the down part launches the other two.
pub const GATE_UP_KERNELS: u64 = 4;
/// Kernels one whole transformer layer launches.
pub const LAYER_KERNELS: u64 = ATTENTION_KERNELS + MLP_KERNELS;

/// What the solver and the simulation need to know about time.
pub trait CostModel {
    /// Host-to-device copy of a block's image, µs.
    fn copy_us(&self, block: &Block) -> f64;
    /// The block's forward computation in `phase`, µs.
    fn compute_us(&self, block: &Block, phase: PhaseKind) -> f64;
    /// Host time between two forward passes, µs.
    fn turnaround_us(&self) -> f64;
    /// The host CPU's computation of a block in `phase`, µs, hand-off
    /// excluded; `None` when there is no host lane or the block cannot run
    /// there in that phase.
    fn host_compute_us(&self, block: &Block, phase: PhaseKind) -> Option<f64>;
    /// Handing the residual stream from the device to the host lane and back,
    /// µs: paid once by each run of consecutive host-computed blocks.
    fn host_handoff_us(&self) -> f64;
    /// How much slower a copy runs while the host lane computes (≥ 1): both
    /// read the same host DRAM.
    fn copy_slowdown_during_host(&self) -> f64;
}

/// Fixed costs for hand-checked tests: every copy, every compute, every
/// turnaround, every host compute (`None`: no host lane; blocks that read the
/// KV cache never have one), every hand-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitCosts {
    pub copy: f64,
    pub compute: f64,
    pub turnaround: f64,
    pub host: Option<f64>,
    pub handoff: f64,
    /// Copies overlapping a host compute run this many times slower.
    pub contention: f64,
}

impl UnitCosts {
    /// Copy = 1, compute = 1, no turnaround, no host lane.
    pub const ONE: UnitCosts =
        UnitCosts { copy: 1.0, compute: 1.0, turnaround: 0.0, host: None, handoff: 0.0, contention: 1.0 };
}

impl CostModel for UnitCosts {
    fn copy_us(&self, _: &Block) -> f64 {
        self.copy
    }
    fn compute_us(&self, _: &Block, _: PhaseKind) -> f64 {
        self.compute
    }
    fn turnaround_us(&self) -> f64 {
        self.turnaround
    }
    /// `host` for every block that reads no KV cache (the rule every cost model keeps).
    fn host_compute_us(&self, block: &Block, _: PhaseKind) -> Option<f64> {
        self.host.filter(|_| !block.kind.reads_kv())
    }
    fn host_handoff_us(&self) -> f64 {
        self.handoff
    }
    fn copy_slowdown_during_host(&self) -> f64 {
        self.contention
    }
}

/// The roofline cost model over a GPU profile, for one model and run shape.
#[derive(Debug, Clone)]
pub struct Roofline<'a> {
    pub gpu: &'a GpuProfile,
    pub model: &'a ModelSpec,
    pub shape: RunShape,
}

impl<'a> Roofline<'a> {
    pub fn new(gpu: &'a GpuProfile, model: &'a ModelSpec, shape: RunShape) -> Roofline<'a> {
        Roofline { gpu, model, shape }
    }

    /// Effective host-to-device bandwidth for a copy of `bytes`, GB/s.
    pub fn h2d_gbps(&self, bytes: u64) -> f64 {
        let curve = &self.gpu.h2d_curve;
        let (Some(first), Some(last)) = (curve.first(), curve.last()) else {
            return self.gpu.h2d_gbps;
        };
        if bytes <= first.bytes {
            return first.gbps;
        }
        if bytes >= last.bytes {
            return last.gbps;
        }
        for w in curve.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if bytes >= a.bytes && bytes <= b.bytes && b.bytes > a.bytes {
                let f = (bytes - a.bytes) as f64 / (b.bytes - a.bytes) as f64;
                return a.gbps + f * (b.gbps - a.gbps);
            }
        }
        self.gpu.h2d_gbps
    }

    /// The host lane's measured time for a block of `kind` of this model (the
    /// profile's `[[cpu.block_times]]`), µs.
    fn measured_host_us(
        cpu: &djinn_core::gpu::CpuLane,
        model: &ModelSpec,
        shape: &RunShape,
        kind: BlockKind,
    ) -> Option<f64> {
        // At any context ([`CpuLane::block_time`]): matching it exactly priced a 4046-token
        // run's host MLPs at the GEMV rate, 2.4x too fast (BENCHMARKS.md section 1h).
        cpu.block_time(&model.name, kind, shape.prompt_len).map(|t| t.us)
    }

    /// Bytes a µs the host lane streamed weights at beside the copy lane in
    /// the measured MLP: layer `layer`'s MLP bytes (its half, or its fine
    /// parts) over the measured MLP time; `None` without a measurement.
    fn host_mlp_rate(&self, cpu: &djinn_core::gpu::CpuLane, layer: Option<u64>) -> Option<f64> {
        let us = Self::measured_host_us(cpu, self.model, &self.shape, BlockKind::Mlp)?;
        let bytes: u64 = self
            .model
            .blocks
            .iter()
            .filter(|b| b.layer == layer && (b.kind == BlockKind::Mlp || b.kind.is_mlp_part()))
            .map(|b| b.bytes)
            .sum();
        (bytes > 0).then(|| bytes as f64 / us)
    }

    pub fn copy_bytes_us(&self, bytes: u64) -> f64 {
        self.gpu.copy_latency_us + bytes as f64 / (self.h2d_gbps(bytes) * 1e3)
    }

    /// Tokens a pass of `phase` processes and the context each attends over.
    pub fn tokens_and_context(&self, phase: PhaseKind) -> (u64, u64) {
        let s = &self.shape;
        match phase {
            PhaseKind::Prefill => (s.prompt_len * s.batch, s.prompt_len),
            PhaseKind::Decode => (s.batch, s.prompt_len),
        }
    }

    /// The roofline estimate for `block` processing `tokens` tokens over `context`.
    pub fn estimate_us(&self, block: &Block, phase: PhaseKind, tokens: u64, context: u64) -> f64 {
        let arch = &self.model.arch;
        let dsize = self.model.dtype.size() as f64;
        let h = arch.hidden_size as f64;
        let batch = self.shape.batch as f64;
        // Rows the final norm and the LM head process: the last position of each sequence.
        let last_rows = match phase {
            PhaseKind::Prefill => batch,
            PhaseKind::Decode => tokens as f64,
        };
        // Bytes moved, matrix-product flops, attention's flops (timed at their own rate), kernels.
        let (bytes, flops, attn, kernels) = match block.kind {
            // Gather `tokens` rows, write them as the f32 residual stream.
            BlockKind::Embedding => (tokens as f64 * h * (dsize + 4.0), 0.0, 0.0, 1),
            BlockKind::Layer | BlockKind::Attention => {
                // The positions the last query sees: the context, or the layer's window.
                let span = block.layer.map_or(context, |l| arch.attention_span(l, context)) as f64;
                let kv_read = 2.0 * batch * span * arch.kv_dim() as f64 * dsize;
                // Positions an average query attends to: causal prefill query i sees min(i + 1, span).
                let attended = match phase {
                    PhaseKind::Prefill => span - span * span / (2.0 * context as f64),
                    PhaseKind::Decode => span,
                };
                let attn = 4.0 * tokens as f64 * attended * arch.q_dim() as f64;
                let (params, kernels) = match block.kind {
                    BlockKind::Layer => (arch.layer_params(), LAYER_KERNELS),
                    _ => (arch.attention_params(), ATTENTION_KERNELS),
                };
                (block.bytes as f64 + kv_read, 2.0 * params as f64 * tokens as f64, attn, kernels)
            }
            BlockKind::Mlp => (block.bytes as f64, 2.0 * arch.mlp_params() as f64 * tokens as f64, 0.0, MLP_KERNELS),
            BlockKind::GateUp => {
                let params = 2 * arch.hidden_size * arch.intermediate_size + arch.hidden_size;
                (block.bytes as f64, 2.0 * params as f64 * tokens as f64, 0.0, GATE_UP_KERNELS)
            }
            BlockKind::Down => {
                let params = arch.hidden_size * arch.intermediate_size;
                (block.bytes as f64, 2.0 * params as f64 * tokens as f64, 0.0, MLP_KERNELS - GATE_UP_KERNELS)
            }
            BlockKind::FinalNorm => (block.bytes as f64 + last_rows * h * (4.0 + dsize), 0.0, 0.0, 1),
            BlockKind::LmHead => {
                let flops = 2.0 * arch.vocab_size as f64 * h * last_rows;
                (block.bytes as f64, flops, 0.0, 1)
            }
        };
        let memory_us = bytes / (self.gpu.hbm_gbps * 1e3);
        let math_us = match self.gpu.attn_tflops {
            Some(attn_tflops) => flops / (self.gpu.fp16_tflops * 1e6) + attn / (attn_tflops * 1e6),
            // One rate for all the flops: summed first, as before the profile could say otherwise,
            // so that a profile without the field prices every block exactly as it did.
            None => (flops + attn) / (self.gpu.fp16_tflops * 1e6),
        };
        memory_us.max(math_us) + kernels as f64 * self.gpu.kernel_overhead_us
    }

    /// A measured time for this block, if the profile has one for this model
    /// and pass size (or, in prefill, one at another pass size to scale:
    /// [`Self::entry_us`]). A whole layer without one of its own costs its measured
    /// halves together: it runs the attention half's kernels, then the MLP's.
    pub fn measured_us(&self, block: &Block, phase: PhaseKind, tokens: u64) -> Option<f64> {
        let of = |kind: BlockKind| self.entry_us(block, kind, phase, tokens);
        of(block.kind).or_else(|| match block.kind {
            BlockKind::Layer => Some(of(BlockKind::Attention)? + of(BlockKind::Mlp)?),
            // A half without a time of its own (a profile that timed whole layers) takes its
            // share of the measured layer, in proportion to the two halves' estimates.
            BlockKind::Attention | BlockKind::Mlp => {
                let layer = of(BlockKind::Layer)?;
                let (mine, theirs) = self.shares(block, phase, tokens, |kind| kind.is_layer_part())?;
                Some(layer * mine / (mine + theirs))
            }
            // A part of the fine table's MLP takes its share of the measured MLP half (or of
            // its share of a measured layer), in proportion to the two parts' estimates.
            BlockKind::GateUp | BlockKind::Down => {
                if let Some(mlp) = of(BlockKind::Mlp) {
                    let (mine, theirs) = self.shares(block, phase, tokens, BlockKind::is_mlp_part)?;
                    return Some(mlp * mine / (mine + theirs));
                }
                let layer = of(BlockKind::Layer)?;
                let (mine, theirs) = self.shares(block, phase, tokens, |kind| kind.is_layer_part())?;
                Some(layer * mine / (mine + theirs))
            }
            _ => None,
        })
    }

    /// The profile's time for a block of `kind` in `block`'s layer (the block
    /// itself, or the part or whole of its layer that `kind` names) in a pass
    /// of `tokens`: the entry of this model, kind, phase and pass size; else,
    /// in prefill, the entry of the nearest measured size `t0` (the larger of
    /// two as near) times `estimate(tokens) / estimate(t0)`, each the roofline
    /// of that pass (prefill was measured at batch 1, context = its tokens).
    /// The kernels' efficiency at the measured size carries over; how the
    /// work grows with the prompt (attention's quadratically) comes from the
    /// roofline. Decode entries apply at their own size only: the context
    /// they were measured over is not recorded, so there is no estimate to
    /// scale from.
    fn entry_us(&self, block: &Block, kind: BlockKind, phase: PhaseKind, tokens: u64) -> Option<f64> {
        let entries =
            || self.gpu.block_times.iter().filter(|t| t.model == self.model.name && t.kind == kind && t.phase == phase);
        if let Some(t) = entries().find(|t| t.tokens == tokens) {
            return Some(t.us);
        }
        if phase != PhaseKind::Prefill {
            return None;
        }
        let t0 = entries().min_by_key(|t| (t.tokens.abs_diff(tokens), std::cmp::Reverse(t.tokens)))?;
        let stand_in;
        let part = if kind == block.kind {
            block
        } else {
            // Only the kind, layer and bytes enter an estimate.
            let bytes = self.bytes_of(block, kind);
            stand_in = Block { name: String::new(), kind, layer: block.layer, bytes, tensors: Vec::new() };
            &stand_in
        };
        let now = self.estimate_us(part, phase, tokens, self.tokens_and_context(phase).1);
        let measured = Roofline::new(self.gpu, self.model, RunShape { prompt_len: t0.tokens, batch: 1, ..self.shape });
        let then = measured.estimate_us(part, phase, t0.tokens, t0.tokens);
        (then > 0.0).then(|| t0.us * now / then)
    }

    /// The image bytes of a block of `kind` in `block`'s layer, which this
    /// table does not have (the halves a whole-layer table lacks, or the whole
    /// layer of a split one): the layer's tensors such a block would hold,
    /// each at an aligned offset as a block image lays them out.
    fn bytes_of(&self, block: &Block, kind: BlockKind) -> u64 {
        let holds = |role: TensorRole| match kind {
            BlockKind::Layer => true,
            BlockKind::Attention | BlockKind::Mlp => role.half() == Some(kind),
            _ => role.fine_part() == Some(kind),
        };
        self.model
            .blocks
            .iter()
            .filter(|b| b.layer == block.layer)
            .flat_map(|b| &b.tensors)
            .filter(|t| holds(t.role))
            .map(|t| align_up(t.bytes, TENSOR_ALIGN))
            .sum()
    }

    /// `block`'s estimate and the summed estimates of the other blocks of its
    /// layer whose kind `sibling` accepts (0 when none does).
    fn shares(
        &self,
        block: &Block,
        phase: PhaseKind,
        tokens: u64,
        sibling: fn(BlockKind) -> bool,
    ) -> Option<(f64, f64)> {
        let context = self.tokens_and_context(phase).1;
        let mine = self.estimate_us(block, phase, tokens, context);
        let theirs = self
            .model
            .blocks
            .iter()
            .filter(|b| b.layer == block.layer && b.kind != block.kind && sibling(b.kind))
            .map(|b| self.estimate_us(b, phase, tokens, context))
            .sum();
        (mine + theirs > 0.0).then_some((mine, theirs))
    }
}

impl CostModel for Roofline<'_> {
    fn copy_us(&self, block: &Block) -> f64 {
        self.copy_bytes_us(block.bytes)
    }

    fn compute_us(&self, block: &Block, phase: PhaseKind) -> f64 {
        let (tokens, context) = self.tokens_and_context(phase);
        self.measured_us(block, phase, tokens).unwrap_or_else(|| self.estimate_us(block, phase, tokens, context))
    }

    fn turnaround_us(&self) -> f64 {
        HOST_TURNAROUND_US
    }

    fn host_compute_us(&self, block: &Block, phase: PhaseKind) -> Option<f64> {
        let cpu = self.gpu.cpu.as_ref()?;
        match block.kind {
            kind if kind.reads_kv() => return None,
            // Gather the pass's rows from host memory; send them up as the f32 residual stream.
            BlockKind::Embedding => {
                let (tokens, _) = self.tokens_and_context(phase);
                let rows = tokens as f64 * self.model.arch.hidden_size as f64;
                let read = rows * self.model.dtype.size() as f64;
                let up = (rows * 4.0) as u64;
                let rate = cpu.host_read_gbps.unwrap_or(cpu.gemv_f16_gbps);
                return Some(read / (rate * 1e3) + up as f64 / (self.h2d_gbps(up) * 1e3));
            }
            // The LM head's one row, in every pass, at the rate the host streamed a measured MLP.
            BlockKind::LmHead => {
                let first_mlp = self.model.blocks.iter().find(|b| b.kind == BlockKind::Mlp || b.kind.is_mlp_part());
                let rate = self
                    .host_mlp_rate(cpu, first_mlp.and_then(|b| b.layer))
                    .unwrap_or(cpu.gemv_f16_gbps_during_copy * 1e3);
                let down = self.model.arch.hidden_size * self.model.dtype.size();
                return Some(block.bytes as f64 / rate + down as f64 / (self.h2d_gbps(down) * 1e3));
            }
            // Other blocks run on the host in decode only (prefill's matrix products belong on the GPU).
            _ if phase == PhaseKind::Prefill => return None,
            _ => {}
        }
        // A part of the fine table's MLP without a time of its own takes the measured MLP
        // half's in proportion to its bytes (the host streams the weights once).
        let share = || Some(block.bytes as f64 / self.host_mlp_rate(cpu, block.layer)?);
        let time = Self::measured_host_us(cpu, self.model, &self.shape, block.kind).or_else(|| {
            if block.kind.is_mlp_part() {
                share()
            } else {
                None
            }
        });
        Some(time.unwrap_or_else(|| block.bytes as f64 / (cpu.gemv_f16_gbps_during_copy * 1e3)))
    }

    fn host_handoff_us(&self) -> f64 {
        self.gpu.cpu.as_ref().and_then(|c| c.handoff_us).unwrap_or(HOST_HANDOFF_US)
    }

    /// The largest copies' rate alone over the rate `djinn-profile` measured
    /// while the host lane computed (`h2d_gbps_during_host`); 1 without one.
    fn copy_slowdown_during_host(&self) -> f64 {
        let during = self.gpu.cpu.as_ref().and_then(|c| c.h2d_gbps_during_host);
        during.map_or(1.0, |d| (self.h2d_gbps(u64::MAX) / d).max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use djinn_core::gpu::{BandwidthPoint, BlockTime};
    use djinn_core::model::{Architecture, Dtype};

    fn gpu() -> GpuProfile {
        GpuProfile {
            name: "g".into(),
            source: "test".into(),
            memory_bytes: 1 << 34,
            usable_bytes: 1 << 34,
            hbm_gbps: 1000.0,
            fp16_tflops: 100.0,
            attn_tflops: None,
            pcie_gen: 4,
            pcie_lanes: 16,
            h2d_gbps: 20.0,
            copy_latency_us: 10.0,
            kernel_overhead_us: 2.0,
            h2d_curve: vec![],
            block_times: vec![],
            cpu: None,
        }
    }

    fn model() -> ModelSpec {
        let arch = Architecture {
            family: "llama".into(),
            hidden_size: 4096,
            intermediate_size: 11008,
            num_layers: 2,
            num_heads: 32,
            num_kv_heads: 32,
            head_dim: 128,
            vocab_size: 32000,
            rope_theta: 1e4,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            ..Default::default()
        };
        ModelSpec::from_arch("m", arch, Dtype::F16)
    }

    const SHAPE: RunShape = RunShape { prompt_len: 512, max_seq_len: 2048, batch: 1 };

    #[test]
    fn copy_is_latency_plus_bytes_over_bandwidth() {
        let (g, m) = (gpu(), model());
        let r = Roofline::new(&g, &m, SHAPE);
        // 20 GB/s = 20_000 bytes per µs: 2 MB takes 100 µs, plus 10 µs latency.
        assert!((r.copy_bytes_us(2_000_000) - 110.0).abs() < 1e-9);
    }

    #[test]
    fn h2d_curve_is_interpolated_and_clamped() {
        let mut g = gpu();
        g.h2d_curve = vec![BandwidthPoint { bytes: 1000, gbps: 2.0 }, BandwidthPoint { bytes: 3000, gbps: 6.0 }];
        let m = model();
        let r = Roofline::new(&g, &m, SHAPE);
        assert_eq!(r.h2d_gbps(10), 2.0);
        assert_eq!(r.h2d_gbps(2000), 4.0);
        assert_eq!(r.h2d_gbps(1 << 30), 6.0);
    }

    #[test]
    fn decode_layer_is_memory_bound_and_prefill_layer_compute_bound() {
        let (g, m) = (gpu(), model());
        let r = Roofline::new(&g, &m, SHAPE);
        let layer = m.block("layer.0").unwrap();
        // Decode: weights (404 MB) + KV read (2·512·4096·2 B = 8.4 MB) at 1000 GB/s,
        // plus 15 kernels × 2 µs.
        let kv = 2.0 * 512.0 * 4096.0 * 2.0;
        let want = (layer.bytes as f64 + kv) / 1e6 + 30.0;
        assert!((r.compute_us(layer, PhaseKind::Decode) - want).abs() < 1e-6);
        // Prefill: 2·params·512 + causal attention 2·512·512·4096 flops at 100 TFLOP/s.
        let flops = 2.0 * m.arch.layer_params() as f64 * 512.0 + 2.0 * 512.0 * 512.0 * 4096.0;
        let want = flops / 1e8 + 30.0;
        assert!((r.compute_us(layer, PhaseKind::Prefill) - want).abs() < 1e-6);
    }

    #[test]
    fn a_sliding_window_bounds_the_kv_read_and_the_attention() {
        let g = gpu();
        let plain = model();
        let mut arch = plain.arch.clone();
        // Layer 1 attends through a window of 128 of the 512 positions; layer 0 to all of them.
        arch.sliding_window = Some(djinn_core::model::SlidingWindow { window: 128, first_layer: 1 });
        let m = ModelSpec::from_arch("m", arch, Dtype::F16);
        let r = Roofline::new(&g, &m, SHAPE);
        let (full, windowed) = (m.block("layer.0").unwrap(), m.block("layer.1").unwrap());
        let rp = Roofline::new(&g, &plain, SHAPE);
        assert_eq!(r.compute_us(full, PhaseKind::Decode), rp.compute_us(full, PhaseKind::Decode));
        // Decode reads 128 K and V rows, not 512.
        let want = (windowed.bytes as f64 + 2.0 * 128.0 * 4096.0 * 2.0) / 1e6 + 30.0;
        assert!((r.compute_us(windowed, PhaseKind::Decode) - want).abs() < 1e-6);
        // Prefill: query i attends to min(i + 1, 128) positions, 128 − 128²/1024 = 112 on average.
        let flops = 2.0 * m.arch.layer_params() as f64 * 512.0 + 4.0 * 512.0 * 112.0 * 4096.0;
        assert!((r.compute_us(windowed, PhaseKind::Prefill) - (flops / 1e8 + 30.0)).abs() < 1e-6);
    }

    #[test]
    fn biases_and_qk_norms_are_counted_in_the_bytes_and_the_flops() {
        let g = gpu();
        let plain = model();
        let arch = Architecture { qkv_bias: true, qk_norm: true, ..plain.arch.clone() };
        let m = ModelSpec::from_arch("m", arch, Dtype::F16);
        let (a, b) = (m.block("layer.0").unwrap(), plain.block("layer.0").unwrap());
        // 3 × 4096 bias values and 2 × 128 norm weights, each in its own 256-byte-aligned slot.
        assert_eq!(a.bytes - b.bytes, 3 * 4096 * 2 + 2 * 256);
        let (r, rp) = (Roofline::new(&g, &m, SHAPE), Roofline::new(&g, &plain, SHAPE));
        let extra_flops = 2.0 * (3.0 * 4096.0 + 256.0) * 512.0;
        let d = r.compute_us(a, PhaseKind::Prefill) - rp.compute_us(b, PhaseKind::Prefill);
        assert!((d - extra_flops / 1e8).abs() < 1e-6, "{d}");
        assert!(r.compute_us(a, PhaseKind::Decode) > rp.compute_us(b, PhaseKind::Decode));
    }

    #[test]
    fn prefill_lm_head_only_computes_the_last_position() {
        let (g, m) = (gpu(), model());
        let r = Roofline::new(&g, &m, SHAPE);
        let head = m.block("lm_head").unwrap();
        assert_eq!(r.compute_us(head, PhaseKind::Prefill), r.compute_us(head, PhaseKind::Decode));
    }

    #[test]
    fn measured_block_time_overrides_the_estimate() {
        let mut g = gpu();
        g.block_times = vec![BlockTime {
            model: "m".into(),
            kind: BlockKind::Layer,
            phase: PhaseKind::Decode,
            tokens: 1,
            us: 123.0,
        }];
        let m = model();
        let r = Roofline::new(&g, &m, SHAPE);
        let layer = m.block("layer.1").unwrap();
        assert_eq!(r.compute_us(layer, PhaseKind::Decode), 123.0);
        assert_ne!(r.compute_us(layer, PhaseKind::Prefill), 123.0, "prefill has no measurement");
        // Measured halves price a whole layer that has no time of its own.
        let half = |kind, us| BlockTime { model: "m".into(), kind, phase: PhaseKind::Prefill, tokens: 512, us };
        g.block_times = vec![half(BlockKind::Attention, 40.0)];
        assert_ne!(Roofline::new(&g, &m, SHAPE).compute_us(layer, PhaseKind::Prefill), 40.0, "one half is not enough");
        g.block_times.push(half(BlockKind::Mlp, 60.0));
        assert_eq!(Roofline::new(&g, &m, SHAPE).compute_us(layer, PhaseKind::Prefill), 100.0);
        // And a measured layer prices halves that have none, in proportion to their estimates.
        g.block_times = vec![BlockTime { kind: BlockKind::Layer, ..half(BlockKind::Layer, 90.0) }];
        let split = m.split_layers();
        let r = Roofline::new(&g, &split, SHAPE);
        let (a, b) = (split.block("layer.1.attn").unwrap(), split.block("layer.1.mlp").unwrap());
        let (ta, tb) = (r.compute_us(a, PhaseKind::Prefill), r.compute_us(b, PhaseKind::Prefill));
        assert!((ta + tb - 90.0).abs() < 1e-9 && ta < tb, "{ta} + {tb}");
        let est = |x| r.estimate_us(x, PhaseKind::Prefill, 512, 512);
        assert!((ta / tb - est(a) / est(b)).abs() < 1e-9);
    }

    #[test]
    fn a_measured_prefill_time_scales_to_another_prompt_length() {
        let mut g = gpu();
        let split = model().split_layers();
        let (attn, mlp) = (split.block("layer.1.attn").unwrap(), split.block("layer.1.mlp").unwrap());
        let entry = |kind, tokens, us| BlockTime { model: "m".into(), kind, phase: PhaseKind::Prefill, tokens, us };
        g.block_times = vec![entry(BlockKind::Attention, 512, 1500.0), entry(BlockKind::Mlp, 512, 2000.0)];
        let long = RunShape { prompt_len: 2048, max_seq_len: 4096, batch: 1 };
        let r = Roofline::new(&g, &split, long);
        let prefill = |r: &Roofline, b| r.compute_us(b, PhaseKind::Prefill);
        // Both halves are compute bound at 512 and at 2048 tokens (100 TFLOP/s: 1e8 flops a µs).
        // The MLP: 2·params·t flops and 6 launches of 2 µs; 1397 µs at 512, 5553 µs at 2048.
        let p = split.arch.mlp_params() as f64;
        let mlp_at = |t: f64| 2.0 * p * t / 1e8 + 12.0;
        assert!((mlp_at(2048.0) / mlp_at(512.0) - 3.9742).abs() < 1e-4);
        assert!((prefill(&r, mlp) - 2000.0 * mlp_at(2048.0) / mlp_at(512.0)).abs() < 1e-6);
        // The attention half: causal 4·t·(t/2)·4096 flops on top, quadrupling with t; 9 launches.
        let a = split.arch.attention_params() as f64;
        let attn_at = |t: f64| (2.0 * a * t + 2.0 * t * t * 4096.0) / 1e8 + 18.0;
        assert!((prefill(&r, attn) - 1500.0 * attn_at(2048.0) / attn_at(512.0)).abs() < 1e-6);
        // A whole-layer table's layer costs the two scaled halves.
        let whole = model();
        let layer = whole.block("layer.1").unwrap();
        let both = prefill(&r, attn) + prefill(&r, mlp);
        assert!((prefill(&Roofline::new(&g, &whole, long), layer) - both).abs() < 1e-6);
        // The nearest measured size is scaled (the larger of two as near): 1024 for 1536, 3072 for 2048.
        g.block_times = vec![entry(BlockKind::Mlp, 1024, 3000.0), entry(BlockKind::Mlp, 3072, 8000.0)];
        let at =
            |prompt_len| Roofline::new(&g, &split, RunShape { prompt_len, ..long }).compute_us(mlp, PhaseKind::Prefill);
        assert!((at(1536) - 3000.0 * mlp_at(1536.0) / mlp_at(1024.0)).abs() < 1e-6);
        assert!((at(2048) - 8000.0 * mlp_at(2048.0) / mlp_at(3072.0)).abs() < 1e-6);
        // A batch of 2 prompts of 512 is a pass of 1024 tokens, scaled from the one prompt measured.
        g.block_times = vec![entry(BlockKind::Mlp, 512, 2000.0)];
        let batch = Roofline::new(&g, &split, RunShape { batch: 2, ..SHAPE });
        assert!((prefill(&batch, mlp) - 2000.0 * mlp_at(1024.0) / mlp_at(512.0)).abs() < 1e-6);
        // Decode entries apply at their own tokens only, at any prompt length.
        g.block_times =
            vec![BlockTime { model: "m".into(), kind: BlockKind::Mlp, phase: PhaseKind::Decode, tokens: 1, us: 123.0 }];
        assert_eq!(Roofline::new(&g, &split, long).compute_us(mlp, PhaseKind::Decode), 123.0);
        let batch = Roofline::new(&g, &split, RunShape { batch: 2, ..SHAPE });
        assert_eq!(batch.compute_us(mlp, PhaseKind::Decode), batch.estimate_us(mlp, PhaseKind::Decode, 2, 512));
    }

    #[test]
    fn attn_tflops_times_long_prefill_attention_and_barely_a_decode_step() {
        let mut g = gpu();
        let m = model();
        let layer = m.block("layer.0").unwrap();
        let long = RunShape { prompt_len: 4096, max_seq_len: 8192, batch: 1 };
        let cost = |g: &GpuProfile, phase| Roofline::new(g, &m, long).compute_us(layer, phase);
        let (prefill, decode) = (cost(&g, PhaseKind::Prefill), cost(&g, PhaseKind::Decode));
        // Prefill: 2·params·4096 matrix flops (16580 µs at 100 TFLOP/s) and causal
        // 4·4096·2048·4096 attention flops: 1374 µs at 100 TFLOP/s, 5498 µs at 25.
        let gemm = 2.0 * m.arch.layer_params() as f64 * 4096.0;
        let attn = 4.0 * 4096.0 * 2048.0 * 4096.0;
        assert!((prefill - ((gemm + attn) / 1e8 + 30.0)).abs() < 1e-6);
        g.attn_tflops = Some(25.0);
        assert!((cost(&g, PhaseKind::Prefill) - (gemm / 1e8 + attn / 2.5e7 + 30.0)).abs() < 1e-6);
        // Decode stays memory bound: weights and 2·4096·4096·2 bytes of K and V (471 µs at
        // 1000 GB/s) against 4 µs of matrix flops and 4·4096·4096 attention flops (2.7 µs at 25).
        assert_eq!(cost(&g, PhaseKind::Decode), decode);
        let kv = 2.0 * 4096.0 * 4096.0 * 2.0;
        assert!((decode - ((layer.bytes as f64 + kv) / 1e6 + 30.0)).abs() < 1e-6);
    }

    #[test]
    fn fine_parts_share_a_measured_mlp_or_layer_and_the_host_mlp_time() {
        let mut g = gpu();
        let fine = model().fine_layers();
        let (gu, down) = (fine.block("layer.1.gate_up").unwrap(), fine.block("layer.1.down").unwrap());
        let est = |r: &Roofline, x| r.estimate_us(x, PhaseKind::Decode, 1, 512);
        // Estimates: the gate/up streams two thirds of the MLP's weights, launches 4 of its 6 kernels.
        let r = Roofline::new(&g, &fine, SHAPE);
        assert!((est(&r, gu) - (gu.bytes as f64 / 1e6 + 8.0)).abs() < 1e-6);
        assert!((est(&r, down) - (down.bytes as f64 / 1e6 + 4.0)).abs() < 1e-6);
        // A measured MLP half is shared in proportion to the estimates.
        let time = |kind, us| BlockTime { model: "m".into(), kind, phase: PhaseKind::Decode, tokens: 1, us };
        g.block_times = vec![time(BlockKind::Mlp, 300.0)];
        let r = Roofline::new(&g, &fine, SHAPE);
        let (tg, td) = (r.compute_us(gu, PhaseKind::Decode), r.compute_us(down, PhaseKind::Decode));
        assert!((tg + td - 300.0).abs() < 1e-9 && (tg / td - est(&r, gu) / est(&r, down)).abs() < 1e-9, "{tg} {td}");
        // A measured layer alone: the three parts add up to it.
        g.block_times = vec![time(BlockKind::Layer, 500.0)];
        let r = Roofline::new(&g, &fine, SHAPE);
        let attn = fine.block("layer.1.attn").unwrap();
        let sum: f64 = [attn, gu, down].iter().map(|b| r.compute_us(b, PhaseKind::Decode)).sum();
        assert!((sum - 500.0).abs() < 1e-9, "{sum}");
        // The host lane's measured MLP, in proportion to the parts' bytes.
        g.cpu = Some(djinn_core::gpu::CpuLane {
            cores: 16,
            gemv_f16_gbps: 50.0,
            gemv_f16_gbps_during_copy: 40.0,
            block_times: vec![djinn_core::gpu::HostBlockTime {
                model: "m".into(),
                kind: BlockKind::Mlp,
                context: 512,
                us: 6000.0,
                hot_us: 5000.0,
                cold_us: 7000.0,
            }],
            ..Default::default()
        });
        let r = Roofline::new(&g, &fine, SHAPE);
        let (hg, hd) =
            (r.host_compute_us(gu, PhaseKind::Decode).unwrap(), r.host_compute_us(down, PhaseKind::Decode).unwrap());
        assert!((hg + hd - 6000.0).abs() < 1e-9 && (hg / hd - gu.bytes as f64 / down.bytes as f64).abs() < 1e-9);
        assert_eq!(r.host_compute_us(attn, PhaseKind::Decode), None, "attention reads the KV cache");
    }

    #[test]
    fn split_halves_cost_what_the_layer_costs_less_one_set_of_launches_each() {
        let (g, m) = (gpu(), model());
        let split = m.split_layers();
        let r = Roofline::new(&g, &m, SHAPE);
        let rs = Roofline::new(&g, &split, SHAPE);
        let (layer, attn, mlp) =
            (m.block("layer.0").unwrap(), split.block("layer.0.attn").unwrap(), split.block("layer.0.mlp").unwrap());
        for phase in [PhaseKind::Decode, PhaseKind::Prefill] {
            let halves = rs.compute_us(attn, phase) + rs.compute_us(mlp, phase);
            // Decode is memory bound, so the halves add up (images padded to the alignment aside).
            if phase == PhaseKind::Decode {
                assert!((halves - r.compute_us(layer, phase)).abs() < 1.0, "{phase:?}: {halves}");
            }
            assert!(halves >= r.compute_us(layer, phase) - 1.0, "{phase:?}");
        }
        // MLP decode: its weights at 1000 GB/s plus 6 launches of 2 µs.
        assert!((rs.compute_us(mlp, PhaseKind::Decode) - (mlp.bytes as f64 / 1e6 + 12.0)).abs() < 1e-6);
    }

    #[test]
    fn host_compute_streams_the_weights_at_the_cpu_rate_plus_the_handoff() {
        let mut g = gpu();
        let m = model().split_layers();
        let mlp = m.block("layer.0.mlp").unwrap();
        assert_eq!(Roofline::new(&g, &m, SHAPE).host_compute_us(mlp, PhaseKind::Decode), None, "no cpu lane");
        g.cpu = Some(djinn_core::gpu::CpuLane {
            cores: 16,
            gemv_f16_gbps: 50.0,
            gemv_f16_gbps_during_copy: 40.0,
            ..Default::default()
        });
        // A GPU block time does not apply to the host.
        g.block_times =
            vec![BlockTime { model: "m".into(), kind: BlockKind::Mlp, phase: PhaseKind::Decode, tokens: 1, us: 123.0 }];
        let r = Roofline::new(&g, &m, SHAPE);
        // 40 GB/s = 40_000 bytes per µs.
        let want = mlp.bytes as f64 / 40_000.0;
        assert!((r.host_compute_us(mlp, PhaseKind::Decode).unwrap() - want).abs() < 1e-9);
        assert_eq!(r.host_handoff_us(), HOST_HANDOFF_US);
        // Blocks that read the KV cache never run on the host.
        assert_eq!(r.host_compute_us(m.block("layer.0.attn").unwrap(), PhaseKind::Decode), None);
        let whole = model();
        assert_eq!(
            Roofline::new(&g, &whole, SHAPE).host_compute_us(whole.block("layer.0").unwrap(), PhaseKind::Decode),
            None
        );
        // A measured MLP of this model, and a measured hand-off, replace both. The MLP reads no
        // KV cache: a time at another context applies too, the nearest one when there are several.
        let cpu = g.cpu.as_mut().unwrap();
        cpu.handoff_us = Some(33.0);
        let t = |model: &str, context, us| djinn_core::gpu::HostBlockTime {
            model: model.into(),
            kind: BlockKind::Mlp,
            context,
            us,
            hot_us: 6000.0,
            cold_us: 6500.0,
        };
        cpu.block_times = vec![t("other", SHAPE.prompt_len, 9000.0)];
        let r = Roofline::new(&g, &m, SHAPE);
        assert!((r.host_compute_us(mlp, PhaseKind::Decode).unwrap() - want).abs() < 1e-9, "another model's");
        g.cpu.as_mut().unwrap().block_times.push(t("m", SHAPE.prompt_len * 8, 7100.0));
        let r = Roofline::new(&g, &m, SHAPE);
        assert_eq!(r.host_compute_us(mlp, PhaseKind::Decode), Some(7100.0), "at another context");
        g.cpu.as_mut().unwrap().block_times.push(t("m", SHAPE.prompt_len, 7000.0));
        let r = Roofline::new(&g, &m, SHAPE);
        assert_eq!((r.host_compute_us(mlp, PhaseKind::Decode), r.host_handoff_us()), (Some(7000.0), 33.0));
    }
}
