//! The plan the block timings run under: one layer of the model, split into
//! its attention and MLP blocks, every block resident.
//!
//! Every block kind is timed through the real forward pass
//! ([`djinn_runtime::forward::Forward`]), which finds its buffers through a plan. So
//! the profiler compiles one, with the same compiler and activation layouts
//! as any run, for the model cut to a single layer (one layer's weights stand
//! for all: every layer has the same shapes), so a 70B model needs a few GiB
//! of device memory, not 140. The compiler then lays out embedding,
//! `layer.0.attn`, `layer.0.mlp`, final norm and LM head as resident regions
//! beside the KV cache, activations and workspace. The halves are timed
//! separately (a whole layer costs their sum: it runs one then the other), and
//! the MLP half is what the host lane computes.

use djinn_compiler::{compile_model, Options, DEFAULT_MAX_SEQ_LEN};
use djinn_core::gpu::GpuProfile;
use djinn_core::model::ModelSpec;
use djinn_core::plan::{Placement, Plan, Strategy};

use crate::error::ProfileError;

/// `model` with layer 0 only, split into its halves: its block table and
/// architecture say one layer.
pub fn one_layer(model: &ModelSpec) -> ModelSpec {
    let mut m = model.clone();
    m.blocks.retain(|b| !b.kind.is_layer_part() || b.layer == Some(0));
    m.arch.num_layers = 1;
    m.split_layers()
}

/// The KV cache length of the profiling plan: the compiler's default, or
/// longer so that the decode pass (one token after `prompt_len`) fits;
/// capped at the model's `max_position_embeddings`.
pub fn max_seq_len(model: &ModelSpec, prompt_len: u64) -> Result<u64, ProfileError> {
    let max_pos = model.arch.max_position_embeddings;
    if prompt_len == 0 || prompt_len >= max_pos {
        return Err(ProfileError::Usage(format!(
            "--prompt-len must be between 1 and {} (model {} has {max_pos} positions, and the decode pass \
             needs one after the prompt), got {prompt_len}",
            max_pos.saturating_sub(1),
            model.name
        )));
    }
    Ok(DEFAULT_MAX_SEQ_LEN.max(prompt_len + 1).min(max_pos))
}

/// Compiles the all-resident plan of `one` (a [`one_layer`] model) for a
/// device of `memory` bytes of which `usable` are free.
pub fn profiling_plan(one: &ModelSpec, prompt_len: u64, memory: u64, usable: u64) -> Result<Plan, ProfileError> {
    let fail = |message: String| ProfileError::Plan { model: one.name.clone(), message };
    // Only the arena layout matters here; the rates are placeholders.
    let gpu = GpuProfile {
        name: "djinn-profile".into(),
        source: "placeholder for laying out the profiling plan".into(),
        memory_bytes: memory,
        usable_bytes: usable,
        hbm_gbps: 1000.0,
        fp16_tflops: 100.0,
        attn_tflops: None,
        pcie_gen: 4,
        pcie_lanes: 16,
        h2d_gbps: 25.0,
        copy_latency_us: 3.0,
        kernel_overhead_us: 3.0,
        h2d_curve: Vec::new(),
        block_times: Vec::new(),
        cpu: None,
    };
    let opts = Options {
        budget: Some(usable),
        prompt_len,
        max_seq_len: Some(max_seq_len(one, prompt_len)?),
        batch: 1,
        strategy: Strategy::Djinn,
        ..Options::default()
    };
    let plan = compile_model(one, &gpu, &opts).map_err(|e| fail(e.to_string()))?.plan;
    if let Some(p) = plan.placements.iter().find(|p| p.placement == Placement::Streamed) {
        return Err(fail(format!("block `{}` does not fit beside the others", p.block)));
    }
    Ok(plan)
}

/// Arena offset of each block's resident region, in block-table order.
pub fn resident_offsets(plan: &Plan) -> Result<Vec<u64>, ProfileError> {
    let fail = |message: String| ProfileError::Plan { model: plan.model.name.clone(), message };
    plan.model
        .blocks
        .iter()
        .map(|b| match plan.placement(&b.name) {
            Some(Placement::Resident { region }) => plan
                .region(region)
                .map(|r| r.offset)
                .ok_or_else(|| fail(format!("block `{}`'s region `{region}` is missing", b.name))),
            _ => Err(fail(format!("block `{}` is not resident", b.name))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use djinn_core::model_presets::load_model;
    use djinn_core::plan::RegionKind;

    use super::*;

    #[test]
    fn one_layer_keeps_every_kind_once_and_the_name() {
        let m = load_model("llama2-13b").unwrap();
        let one = one_layer(&m);
        assert_eq!(one.name, "llama2-13b");
        assert_eq!(one.arch.num_layers, 1);
        let names: Vec<&str> = one.blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["embed", "layer.0.attn", "layer.0.mlp", "norm", "lm_head"]);
        assert_eq!(&one.blocks[1..3], &m.split_layers().blocks[1..3]);
    }

    #[test]
    fn llama2_13b_profiles_in_a_few_gib_all_resident() {
        let one = one_layer(&load_model("llama2-13b").unwrap());
        let plan = profiling_plan(&one, 512, 80 << 30, 79 << 30).unwrap();
        assert_eq!((plan.shape.prompt_len, plan.shape.max_seq_len), (512, 2048));
        let offsets = resident_offsets(&plan).unwrap();
        assert_eq!(offsets.len(), 5);
        assert!(plan.arena.bytes < 2 << 30, "{} bytes", plan.arena.bytes);
        for kind in [RegionKind::KvCache, RegionKind::Activations, RegionKind::Workspace] {
            assert!(plan.region_of_kind(kind).is_some(), "{kind:?}");
        }
        // The regions of different blocks do not overlap.
        let mut spans: Vec<(u64, u64)> =
            offsets.iter().zip(&plan.model.blocks).map(|(&o, b)| (o, o + b.bytes)).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
    }

    #[test]
    fn long_prompts_lengthen_the_cache_and_impossible_ones_are_refused() {
        let one = one_layer(&load_model("llama2-13b").unwrap());
        assert_eq!(max_seq_len(&one, 3000).unwrap(), 3001);
        assert_eq!(max_seq_len(&one, 4095).unwrap(), 4096);
        for bad in [0, 4096, 5000] {
            let e = max_seq_len(&one, bad).unwrap_err().to_string();
            assert!(e.contains("--prompt-len") && e.contains("4095"), "{e}");
        }
    }

    #[test]
    fn a_device_too_small_for_one_layer_is_a_clear_error() {
        let one = one_layer(&load_model("llama2-13b").unwrap());
        let e = profiling_plan(&one, 512, 1 << 30, 1 << 30).unwrap_err().to_string();
        assert!(e.contains("one layer of `llama2-13b`"), "{e}");
    }
}
