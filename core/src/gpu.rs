//! The GPU profile: what the compiler's cost model knows about a device.
//!
//! Presets (`djinn-compile --gpu l4`) and measured profiles
//! (`djinn-compile --gpu profile.toml`, written by `djinn-profile`) share this
//! format. Every rate is an *effective* figure, what a program achieves, not a
//! datasheet peak; presets say in comments where each number comes from.
//!
//! [`GpuProfile::from_toml_str`] and [`GpuProfile::load`] are the one way a
//! profile enters: they bound the file ([`crate::limits`]) and check every
//! number (module `check`), naming the file and the field.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fsio::{check_text_len, read_to_string_limited, ReadError};
use crate::limits::{self, OverLimit, MAX_PROFILE_FILE_BYTES};
use crate::model::BlockKind;
use crate::toml_error::describe;

mod check;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuProfile {
    /// Short name (`l4`, `h100-sxm`, or whatever a measured profile calls itself).
    pub name: String,
    /// Where the figures come from (a preset's sources, or the profiler run).
    pub source: String,
    /// Physical device memory.
    pub memory_bytes: u64,
    /// What one process can allocate once the driver and context have taken theirs;
    /// the default budget.
    pub usable_bytes: u64,
    /// Effective device-memory read bandwidth, GB/s (10^9 bytes per second).
    pub hbm_gbps: f64,
    /// Achievable dense fp16/bf16 tensor-core rate with fp32 accumulation, TFLOP/s.
    pub fp16_tflops: f64,
    /// Achievable rate of causal prefill attention (the flash kernel), TFLOP/s,
    /// counting `2 · tokens² · q_dim` flops for a pass over `tokens` (optional;
    /// without it the cost model times attention's flops at `fp16_tflops`).
    /// Long-context attention runs well below the GEMM rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_tflops: Option<f64>,
    pub pcie_gen: u32,
    pub pcie_lanes: u32,
    /// Effective pinned host-to-device bandwidth for large copies, GB/s.
    pub h2d_gbps: f64,
    /// Fixed cost of one host-to-device copy (setup and first-byte latency), µs.
    pub copy_latency_us: f64,
    /// Fixed cost of one kernel on the compute lane (launch and tail), µs.
    pub kernel_overhead_us: f64,
    /// Measured pinned host-to-device bandwidth by copy size (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub h2d_curve: Vec<BandwidthPoint>,
    /// Measured compute time of blocks (optional); overrides the roofline
    /// estimate for a matching model, block kind, phase and token count, and
    /// in prefill prices other token counts scaled by the roofline
    /// (`djinn_compiler::cost`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_times: Vec<BlockTime>,
    /// The host CPU as a compute lane (optional; used by a later placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuLane>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BandwidthPoint {
    pub bytes: u64,
    pub gbps: f64,
}

/// The phase a block time was measured in: the plan's [`PhaseName`](crate::phase::PhaseName) (one
/// enum), under the name the cost model and the simulator still use.
pub use crate::phase::PhaseName as PhaseKind;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlockTime {
    /// The model name the measurement was taken with (`llama2-13b`).
    pub model: String,
    pub kind: BlockKind,
    pub phase: PhaseKind,
    /// Tokens in the forward pass (the prompt length for prefill, the batch for decode).
    pub tokens: u64,
    pub us: f64,
}

/// The host CPU as a compute lane (`djinn-profile` measures it; presets have none).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CpuLane {
    pub cores: u32,
    /// f16 matrix-vector rate streaming weights from host RAM, GB/s.
    pub gemv_f16_gbps: f64,
    /// The same while the copy lane runs at full rate, GB/s.
    pub gemv_f16_gbps_during_copy: f64,
    /// A plain read of host memory on every core, GB/s: the host lane's bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_read_gbps: Option<f64>,
    /// The residual stream's trip device → host → device around a run of
    /// host-computed layers, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_us: Option<f64>,
    /// Pinned host-to-device copies while the host lane computes, GB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2d_gbps_during_host: Option<f64>,
    /// Decode steps of blocks (MLP halves of layers) computed on the host, as the host lane runs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_times: Vec<HostBlockTime>,
}

impl CpuLane {
    /// The measured host step of `model`'s blocks of `kind` for a run of
    /// `prompt_len`: a host-computed block reads no KV cache, so its step does
    /// not depend on the context and a time measured at another prompt length
    /// applies too (the nearest one, the longer of two as near).
    pub fn block_time(&self, model: &str, kind: BlockKind, prompt_len: u64) -> Option<&HostBlockTime> {
        self.block_times
            .iter()
            .filter(|t| t.kind == kind && t.model == model)
            .min_by_key(|t| (t.context.abs_diff(prompt_len), std::cmp::Reverse(t.context)))
    }
}

/// One decode step of a model's block on the host lane, measured over
/// distinct weights larger than the last-level cache.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostBlockTime {
    /// The model name the measurement was taken with (`llama2-13b`).
    pub model: String,
    /// The block's kind (`mlp`).
    pub kind: BlockKind,
    /// Positions the step attends over (the prompt length).
    pub context: u64,
    /// While the copy lane runs at full rate, the team hot: what the compiler prices, µs.
    pub us: f64,
    /// Alone, the team hot (layers back to back), µs.
    pub hot_us: f64,
    /// Alone, the team parked before the layer and woken for it, µs.
    pub cold_us: f64,
}

/// Everything reading a GPU profile can refuse; each names the file.
#[derive(Debug, Error)]
pub enum GpuProfileError {
    /// An I/O error, or a file over [`MAX_PROFILE_FILE_BYTES`].
    #[error("cannot read GPU profile {path}: {error}")]
    Read { path: String, error: ReadError },
    #[error("GPU profile {path}: {over} (docs/plan-format.md, section Limits)")]
    Limit { path: String, over: OverLimit },
    #[error("GPU profile {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

impl GpuProfile {
    /// Parses and checks a profile; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<GpuProfile, GpuProfileError> {
        let path = origin.to_string();
        check_text_len(text, MAX_PROFILE_FILE_BYTES)
            .map_err(|error| GpuProfileError::Read { path: path.clone(), error })?;
        let invalid = |message: String| GpuProfileError::Invalid { path: origin.to_string(), message };
        let table: toml::Table = toml::from_str(text).map_err(|e| invalid(describe(&e, text)))?;
        limits::check_profile_table(&table).map_err(|over| GpuProfileError::Limit { path: path.clone(), over })?;
        let gpu: GpuProfile = toml::from_str(text).map_err(|e| invalid(describe(&e, text)))?;
        check::check(&gpu).map_err(invalid)?;
        Ok(gpu)
    }

    /// Reads, parses and checks the profile at `path`.
    pub fn load(path: &Path) -> Result<GpuProfile, GpuProfileError> {
        let shown = path.display().to_string();
        let text = read_to_string_limited(path, MAX_PROFILE_FILE_BYTES)
            .map_err(|error| GpuProfileError::Read { path: shown.clone(), error })?;
        GpuProfile::from_toml_str(&text, &shown)
    }
}
