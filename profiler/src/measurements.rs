//! What one profiling run measured, before it becomes a profile: the raw
//! timings that the `--json` log records and [`crate::assemble`] turns into a
//! [`GpuProfile`](djinn_core::gpu::GpuProfile). Every time is a [`Timing`]
//! of repeated runs timed with CUDA events (or the host clock, for the CPU).

use djinn_core::model::BlockKind;
use djinn_core::phase::PhaseName;
use djinn_core::Dtype;
use serde::Serialize;

use crate::pcie::Link;
use crate::stats::Timing;

/// The device as the driver describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `sm_90`.
    pub arch: String,
    /// Physical device memory (`cuMemGetInfo` total).
    pub memory_bytes: u64,
    /// Free right after our context was created: what one process can allocate.
    pub usable_bytes: u64,
}

/// Copies of one size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyTiming {
    pub bytes: u64,
    pub time: Timing,
}

/// A device-to-device copy of `bytes` (it reads `bytes` and writes `bytes`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceCopy {
    pub bytes: u64,
    pub time: Timing,
}

/// One `[m, k] · [n, k]ᵀ` GEMM through the CUDA ops (cuBLAS, fp32 accumulation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub dtype: Dtype,
    pub time: Timing,
}

/// Causal prefill attention of `tokens` query rows over as many cached
/// positions (no window), through the flash kernel (`attn_prefill.cu`) with
/// the model's heads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attention {
    pub tokens: u64,
    pub num_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    pub dtype: Dtype,
    pub time: Timing,
}

impl Attention {
    /// The flops the cost model counts for this pass: `4 · tokens · attended · q_dim`
    /// with causal prefill's `attended = span − span² / (2 · context)` at
    /// `span = context = tokens`, i.e. `2 · tokens² · num_heads · head_dim`.
    pub fn flops(&self) -> f64 {
        2.0 * (self.tokens as f64).powi(2) * (self.num_heads * self.head_dim) as f64
    }
}

/// Batches of `kernels` one-element kernels, run back to back by the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Launches {
    pub kernels: u64,
    /// Device time of a batch.
    pub time: Timing,
    /// Host time to issue a batch.
    pub host: Timing,
}

/// One block of the model computing one pass shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockTiming {
    /// The block of the one-layer profiling model that ran (`layer.0`).
    pub block: String,
    pub kind: BlockKind,
    pub phase: PhaseName,
    /// Tokens of the pass.
    pub tokens: u64,
    /// Positions the pass attends over (its own plus those already cached).
    pub context: u64,
    /// The block's image.
    pub bytes: u64,
    /// Device time, between CUDA events, with the work queued ahead.
    pub device: Timing,
    /// Host time to issue the block's kernels (and its two timing events).
    pub host: Timing,
}

impl BlockTiming {
    /// How long the block holds the compute lane when passes are issued back
    /// to back: its device time, or the time the host takes to issue it if
    /// that is longer (the device then waits for the host).
    pub fn lane_us(&self) -> f64 {
        self.device.median_us.max(self.host.median_us)
    }
}

/// The host CPU's matrix-vector rate (the kernels crate's `matmul` twin, `m = 1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuGemv {
    /// Threads of the pool the twin ran on (all cores).
    pub threads: u32,
    /// The weight matrix, `[rows, cols]` f16.
    pub rows: u64,
    pub cols: u64,
    pub alone: Timing,
    /// While a pinned host-to-device copy loop ran.
    pub during_copy: Timing,
    /// What that copy loop achieved meanwhile, GB/s.
    pub copy_gbps: f64,
}

impl CpuGemv {
    pub fn weight_bytes(&self) -> u64 {
        self.rows * self.cols * 2
    }
}

/// One decode layer of the model on the host lane ([`super::host_layer`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLayer {
    /// Threads of the kernels' team.
    pub threads: u32,
    /// The layer's weight bytes, and the distinct images cycled through.
    pub bytes: u64,
    pub images: u64,
    /// Positions each step attends over.
    pub context: u64,
    /// Steps back to back.
    pub hot: Timing,
    /// Each step after the team parked, woken first.
    pub cold: Timing,
    /// Steps back to back while the copy loop ran.
    pub during_copy: Timing,
    /// What the copy loop achieved meanwhile, GB/s.
    pub copy_gbps: f64,
    /// A plain read of the images on the whole team, GB/s.
    pub read_gbps: f64,
    /// The residual stream's round trip (`handoff_bytes`).
    pub handoff: Timing,
    pub handoff_bytes: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurements {
    pub device: Device,
    pub link: Link,
    /// Small pinned host-to-device copies, for the fixed cost.
    pub h2d_small: Vec<CopyTiming>,
    /// Pinned host-to-device copies over the sizes of the curve, ascending.
    pub h2d: Vec<CopyTiming>,
    pub device_copy: DeviceCopy,
    pub gemm: Gemm,
    /// `None` where the flash kernel does not take the model's heads on this
    /// device (a head size it does not tile, compute capability below 8.0).
    pub attention: Option<Attention>,
    pub launches: Launches,
    /// The model the block times belong to, as djinn-compile names it.
    pub model: String,
    pub prompt_len: u64,
    pub blocks: Vec<BlockTiming>,
    /// Whether the device was busy whenever timed work was issued, so that
    /// the device times of `blocks` and `launches` are device time alone
    /// (see `crate::blocks`).
    pub device_ahead: bool,
    pub cpu: CpuGemv,
    pub host_layer: HostLayer,
}
