//! The plan: the one contract between `djinn-compile` and `djinn-exec`.
//!
//! A plan is XLA-style memory-space assignment made explicit. The device
//! memory is one arena of named, non-overlapping regions. Every block is
//! either *resident* (its image lives in its own region for the whole run) or
//! *streamed* (its image lives in pinned host memory and is copied into one of
//! a small ring of slot regions before each use, or, for a `host_compute`
//! step, computed by the host CPU where it lies). Each phase — `prefill` once, then
//! the `decode` loop body once per token — is one ordered list of steps, each
//! on a lane (`copy` or `compute`). The executor issues the steps in list
//! order onto their lanes and synchronises the lanes only through the steps'
//! events:
//!
//! * `record = "e"` marks the completion of the step.
//! * `wait = ["e"]` holds the step until the latest earlier record of `e` in
//!   the current phase (for decode: the current iteration) has completed.
//! * `wait_prev = ["e"]` (decode only) waits on the record of `e` made by the
//!   *previous* iteration; for the first decode iteration, by prefill. This is
//!   how the copy of the next token's first streamed blocks, issued while the
//!   current token's last blocks compute, is consumed. An event that only
//!   prefill records (the copy that fills a *pinned* slot, whose block decode
//!   never replaces) binds to prefill's record in every iteration.
//! * `warm = true` (prefill's leading copies only) marks a *warm* copy: one
//!   that fills a slot before the pass starts. The executor issues the warm
//!   copies once the weights are loaded and again whenever a request ends
//!   (every earlier pass's result read, so no compute still reads a slot; the
//!   copy lane runs them after what it has queued), so the next prefill
//!   finds their blocks in place and only waits on their records; a prefill
//!   that follows another pass without that (the second chunk of a long
//!   prompt) issues them in place, at its head. Either way the copies happen
//!   in list order before every other step, so the pass is the same; only when
//!   they run differs. Their predicted times are 0: off the TTFT path.
//!
//! The executor decides nothing; [`crate::verify`] proves a plan safe before it runs.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::activations::RunShape;
use crate::fsio::{check_text_len, read_to_string_limited, write_atomic, ReadError};
use crate::gpu::GpuProfile;
use crate::limits::{self, OverLimit, MAX_PLAN_FILE_BYTES};
use crate::model::{Block, ModelSpec};
pub use crate::phase::PhaseName;
use crate::toml_error::describe;

/// Version of this schema. Bumped on any change a reader of an older plan would misread.
/// Version 2 added the `host_compute` op; version 3, block tables whose layers are split
/// into `attention` and `mlp` blocks (and host compute of blocks that read no KV cache only).
pub const FORMAT_VERSION: u32 = 3;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format_version: u32,
    /// The program that wrote the plan (`djinn-compile 0.1.0`).
    pub generator: String,
    pub strategy: Strategy,
    /// Device memory the plan may use, in bytes; the arena fits inside it.
    pub budget_bytes: u64,
    pub shape: RunShape,
    pub prediction: Prediction,
    pub arena: Arena,
    /// One entry per block of `model.blocks`, in the same order.
    pub placements: Vec<BlockPlacement>,
    pub prefill: Phase,
    pub decode: Phase,
    pub gpu: GpuProfile,
    pub model: ModelSpec,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Maximal residency, streamed blocks prefetched as early as their slot frees.
    Djinn,
    /// Same residency, but each copy waits for the compute before it (no overlap).
    Sync,
    /// Only embedding, final norm and LM head resident; every layer streamed.
    StreamAll,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Djinn, Strategy::Sync, Strategy::StreamAll];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Djinn => "djinn",
            Strategy::Sync => "sync",
            Strategy::StreamAll => "stream-all",
        }
    }
}

/// What the compiler's simulation of the two lanes predicts.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// Prefill of `shape.prompt_len` tokens, first token sampled, ms.
    pub ttft_ms: f64,
    /// One steady-state decode iteration, ms.
    pub decode_ms_per_token: f64,
    /// Fraction of the decode iteration during which the copy lane is busy.
    pub decode_copy_busy: f64,
    /// Fraction of prefill during which the copy lane is busy.
    pub prefill_copy_busy: f64,
    pub resident_blocks: u64,
    pub streamed_blocks: u64,
    pub resident_bytes: u64,
    /// Bytes the copy lane moves per decode iteration.
    pub streamed_bytes_per_token: u64,
    pub slots: u64,
    pub slot_bytes: u64,
    pub kv_cache_bytes: u64,
    pub activation_bytes: u64,
    pub workspace_bytes: u64,
}

/// The device memory, as one allocation carved into named regions.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Arena {
    /// Size of the one device allocation; `<= budget_bytes`.
    pub bytes: u64,
    /// Every region offset is a multiple of this.
    pub alignment: u64,
    pub regions: Vec<Region>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// `resident.layer.3`, `slot.0`, `kv_cache`, `activations`, `workspace`.
    pub name: String,
    pub kind: RegionKind,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    Resident,
    Slot,
    KvCache,
    Activations,
    Workspace,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(try_from = "RawPlacement")]
pub struct BlockPlacement {
    pub block: String,
    #[serde(flatten)]
    pub placement: Placement,
}

/// `[[placements]]` as written, with unknown fields refused like every other
/// table's (serde's `deny_unknown_fields` does not combine with the `flatten`
/// that [`BlockPlacement`] is written with).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    block: String,
    kind: PlacementKind,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlacementKind {
    Resident,
    Streamed,
}

impl TryFrom<RawPlacement> for BlockPlacement {
    type Error = String;

    fn try_from(raw: RawPlacement) -> Result<BlockPlacement, String> {
        let placement = match (raw.kind, raw.region) {
            (PlacementKind::Resident, Some(region)) => Placement::Resident { region },
            (PlacementKind::Streamed, None) => Placement::Streamed,
            (PlacementKind::Resident, None) => {
                return Err(format!("placement of block {}: kind = \"resident\" needs a `region`", raw.block))
            }
            (PlacementKind::Streamed, Some(region)) => {
                return Err(format!(
                    "placement of block {}: kind = \"streamed\" takes no `region` (found {region:?})",
                    raw.block
                ))
            }
        };
        Ok(BlockPlacement { block: raw.block, placement })
    }
}

/// Where a block's weights live while it computes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// Copied in once at load into its own region.
    Resident { region: String },
    /// Copied into a slot before each use (the slot is named by each step).
    Streamed,
    // (A streamed block's decode step may also run on the host CPU, from that
    // same host image: the `host_compute` op, not a placement of its own.)
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub steps: Vec<Step>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// The high-priority host-to-device copy stream.
    Copy,
    /// The stream that runs kernels.
    Compute,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Copy a block's image from pinned host memory into `slot`.
    Copy,
    /// Run a block's forward computation, reading its weights from its
    /// resident region or from `slot`.
    Compute,
    /// Compute-lane step, streamed blocks only, no slot: the host CPU runs the
    /// block from its image in host memory. The lane hands the residual
    /// stream to the host and resumes when the result is back, so the step
    /// orders like any compute; the copy lane is free meanwhile. Only blocks
    /// that read no KV cache run on the host (MLP parts, a held embedding or
    /// LM head): the cache lives on the device only.
    HostCompute,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub lane: Lane,
    pub op: Op,
    pub block: String,
    /// The slot a copy writes, or a streamed compute reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_prev: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// A warm copy (see the module doc): issued ahead of the prefill pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
    /// Predicted start and end, µs from the start of the phase (decode: of the iteration).
    pub start_us: f64,
    pub end_us: f64,
}

#[derive(Debug, Error)]
pub enum PlanIoError {
    /// An I/O error, or a file over [`MAX_PLAN_FILE_BYTES`].
    #[error("cannot read plan {path}: {error}")]
    Read { path: String, error: ReadError },
    #[error("cannot write plan {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("plan {path}: {over} (docs/plan-format.md, section Limits)")]
    Limit { path: String, over: OverLimit },
    #[error("plan {path} is not valid TOML or does not match the plan schema: {message}")]
    Parse { path: String, message: String },
    #[error("plan {path} has format_version {found}, but this build reads format_version {expected}; recompile the plan with this djinn-compile")]
    Version { path: String, found: i64, expected: u32 },
    #[error("plan {path} has no integer `format_version` field at the top level")]
    NoVersion { path: String },
}

impl Plan {
    /// Parses a plan, checking its size and counts against [`crate::limits`]
    /// and `format_version` before the rest of the schema, so that a plan
    /// from another version gets a version error, not a field error.
    /// `origin` names the source in errors (a path, or `<stdin>`).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Plan, PlanIoError> {
        let path = origin.to_string();
        check_text_len(text, MAX_PLAN_FILE_BYTES).map_err(|error| PlanIoError::Read { path: path.clone(), error })?;
        let table: toml::Table =
            toml::from_str(text).map_err(|e| PlanIoError::Parse { path: path.clone(), message: describe(&e, text) })?;
        limits::check_plan_table(&table).map_err(|over| PlanIoError::Limit { path: path.clone(), over })?;
        match table.get("format_version").and_then(|v| v.as_integer()) {
            None => return Err(PlanIoError::NoVersion { path }),
            Some(v) if v != FORMAT_VERSION as i64 => {
                return Err(PlanIoError::Version { path, found: v, expected: FORMAT_VERSION })
            }
            Some(_) => {}
        }
        toml::from_str(text).map_err(|e| PlanIoError::Parse { path, message: describe(&e, text) })
    }

    pub fn load(path: &Path) -> Result<Plan, PlanIoError> {
        let shown = path.display().to_string();
        let text = read_to_string_limited(path, MAX_PLAN_FILE_BYTES)
            .map_err(|error| PlanIoError::Read { path: shown.clone(), error })?;
        Plan::from_toml_str(&text, &shown)
    }

    /// The plan as TOML. Deterministic: the same plan always gives the same bytes.
    pub fn to_toml_string(&self) -> String {
        let compact = toml::to_string(self).expect("a plan always serializes to TOML");
        // A blank line before every table header, for people reading the plan.
        let mut out = String::with_capacity(compact.len() + compact.len() / 8);
        for line in compact.lines() {
            if line.starts_with('[') {
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Writes the plan to `path` atomically: a failed write leaves the previous file whole.
    pub fn save(&self, path: &Path) -> Result<(), PlanIoError> {
        write_atomic(path, self.to_toml_string().as_bytes())
            .map_err(|error| PlanIoError::Write { path: path.display().to_string(), error })
    }

    pub fn region(&self, name: &str) -> Option<&Region> {
        self.arena.regions.iter().find(|r| r.name == name)
    }

    /// The region of the given kind (for the singletons: KV cache, activations, workspace).
    pub fn region_of_kind(&self, kind: RegionKind) -> Option<&Region> {
        self.arena.regions.iter().find(|r| r.kind == kind)
    }

    /// Slot regions in slot order (`slot.0`, `slot.1`, …).
    pub fn slot_region(&self, slot: u64) -> Option<&Region> {
        self.region(&slot_region_name(slot)).filter(|r| r.kind == RegionKind::Slot)
    }

    /// The blocks (indices into `model.blocks`, ascending) that some step of
    /// either phase applies `op` to: what a backend must prepare host images of.
    pub fn blocks_with_op(&self, op: Op) -> Vec<usize> {
        let blocks: std::collections::BTreeSet<usize> = self
            .prefill
            .steps
            .iter()
            .chain(&self.decode.steps)
            .filter(|s| s.op == op)
            .filter_map(|s| self.model.block_index(&s.block))
            .collect();
        blocks.into_iter().collect()
    }

    /// Prefill's warm copies: its leading steps marked `warm` (rule `warm`
    /// proves no later step is).
    pub fn warm_steps(&self) -> &[Step] {
        let n = self.prefill.steps.iter().take_while(|s| s.warm).count();
        &self.prefill.steps[..n]
    }

    /// Bytes the warm copies move.
    pub fn warm_bytes(&self) -> u64 {
        self.warm_steps().iter().filter_map(|s| self.block(&s.block)).map(|b| b.bytes).sum()
    }

    pub fn slot_count(&self) -> u64 {
        self.arena.regions.iter().filter(|r| r.kind == RegionKind::Slot).count() as u64
    }

    pub fn placement(&self, block: &str) -> Option<&Placement> {
        self.placements.iter().find(|p| p.block == block).map(|p| &p.placement)
    }

    pub fn block(&self, name: &str) -> Option<&Block> {
        self.model.block(name)
    }

    pub fn phase(&self, which: PhaseName) -> &Phase {
        match which {
            PhaseName::Prefill => &self.prefill,
            PhaseName::Decode => &self.decode,
        }
    }
}

pub fn slot_region_name(slot: u64) -> String {
    format!("slot.{slot}")
}

pub fn resident_region_name(block: &str) -> String {
    format!("resident.{block}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Architecture, Dtype};

    /// A small, structurally complete plan for schema and verifier tests:
    /// two layers, all resident, no streaming.
    pub(crate) fn tiny_plan() -> Plan {
        let arch = Architecture {
            family: "llama".into(),
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            vocab_size: 100,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 128,
            tie_word_embeddings: false,
            ..Default::default()
        };
        let model = ModelSpec::from_arch("tiny", arch, Dtype::F16);
        let mut regions = Vec::new();
        let mut offset = 0;
        let mut placements = Vec::new();
        let mut steps = Vec::new();
        for b in &model.blocks {
            regions.push(Region {
                name: resident_region_name(&b.name),
                kind: RegionKind::Resident,
                offset,
                bytes: b.bytes,
            });
            offset += b.bytes;
            placements.push(BlockPlacement {
                block: b.name.clone(),
                placement: Placement::Resident { region: resident_region_name(&b.name) },
            });
            steps.push(Step {
                lane: Lane::Compute,
                op: Op::Compute,
                block: b.name.clone(),
                slot: None,
                wait: vec![],
                wait_prev: vec![],
                record: None,
                warm: false,
                start_us: 0.0,
                end_us: 1.0,
            });
        }
        Plan {
            format_version: FORMAT_VERSION,
            generator: "test".into(),
            strategy: Strategy::Djinn,
            budget_bytes: offset,
            shape: RunShape { prompt_len: 4, max_seq_len: 16, batch: 1 },
            prediction: Prediction {
                ttft_ms: 1.0,
                decode_ms_per_token: 1.0,
                decode_copy_busy: 0.0,
                prefill_copy_busy: 0.0,
                resident_blocks: 5,
                streamed_blocks: 0,
                resident_bytes: offset,
                streamed_bytes_per_token: 0,
                slots: 0,
                slot_bytes: 0,
                kv_cache_bytes: 0,
                activation_bytes: 0,
                workspace_bytes: 0,
            },
            arena: Arena { bytes: offset, alignment: 256, regions },
            placements,
            prefill: Phase { steps: steps.clone() },
            decode: Phase { steps },
            gpu: GpuProfile {
                name: "test".into(),
                source: "unit test".into(),
                memory_bytes: 1 << 30,
                usable_bytes: 1 << 30,
                hbm_gbps: 100.0,
                fp16_tflops: 10.0,
                attn_tflops: None,
                pcie_gen: 4,
                pcie_lanes: 16,
                h2d_gbps: 20.0,
                copy_latency_us: 10.0,
                kernel_overhead_us: 5.0,
                h2d_curve: vec![],
                block_times: vec![],
                cpu: None,
            },
            model,
        }
    }

    #[test]
    fn toml_round_trip_is_exact_and_deterministic() {
        let plan = tiny_plan();
        let text = plan.to_toml_string();
        let back = Plan::from_toml_str(&text, "mem").unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.to_toml_string(), text);
        assert!(text.starts_with("format_version = 3\n"), "{}", &text[..200]);
    }

    #[test]
    fn placements_refuse_unknown_fields_like_every_other_table() {
        let text = tiny_plan().to_toml_string();
        let typo = text.replacen("region = \"resident.embed\"", "regoin = \"resident.embed\"", 1);
        let err = Plan::from_toml_str(&typo, "p.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `regoin`, expected one of `block`, `kind`, `region`"), "{err}");
        let first = "[[placements]]\nblock = \"embed\"\nkind = \"resident\"\n";
        assert!(text.contains(first), "{text}");
        let extra = text.replacen(first, &format!("{first}slot = 3\n"), 1);
        let err = Plan::from_toml_str(&extra, "p.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `slot`"), "{err}");
        let streamed = text.replacen(first, &first.replace("resident", "streamed"), 1);
        let err = Plan::from_toml_str(&streamed, "p.toml").unwrap_err().to_string();
        assert!(err.contains("placement of block embed: kind = \"streamed\" takes no `region`"), "{err}");
    }

    #[test]
    fn unknown_format_version_is_named() {
        let text = tiny_plan().to_toml_string().replacen("format_version = 3", "format_version = 99", 1);
        let err = Plan::from_toml_str(&text, "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("format_version 99"), "{err}");
    }
}
