//! Tests of the structural rules: `version`, `model-identity`, `arena`,
//! `placement`, `step-shape`, `order`, `events`. Each corrupts the valid
//! [`fixture::streamed_plan`] in one way and checks that exactly the intended
//! rule breaks, with a message that names the culprit.

use super::fixture::{
    assert_mentions, broken_only, fine_plan, host_in_decode, split_streamed_plan, streamed_plan, Style,
};
use super::*;
use crate::plan::{tests::tiny_plan, Lane, Op, Placement, RegionKind};

fn region_mut<'p>(plan: &'p mut Plan, name: &str) -> &'p mut crate::plan::Region {
    plan.arena.regions.iter_mut().find(|r| r.name == name).unwrap()
}

#[test]
fn rule_names_are_unique_and_round_trip() {
    let names = Rule::names();
    for (i, r) in Rule::ALL.iter().enumerate() {
        assert_eq!(Rule::from_name(r.name()), Some(*r));
        assert!(!names[..i].contains(&r.name()), "duplicate {r}");
        assert_eq!(r.to_string(), names[i]);
    }
    assert_eq!(Rule::from_name("slot-reuse"), Some(Rule::SlotReuse));
}

#[test]
fn error_lists_one_violation_per_line_and_summarises_the_rest() {
    let mut plan = streamed_plan();
    for s in plan.decode.steps.iter_mut().chain(plan.prefill.steps.iter_mut()) {
        s.end_us = -1.0;
    }
    let err = verify(&plan).unwrap_err();
    assert_eq!(err.violations.len(), 22);
    assert_eq!(err.rules().into_iter().collect::<Vec<_>>(), [Rule::StepShape]);
    let text = err.to_string();
    assert!(
        text.starts_with("the plan is not safe to run: 22 violations of the plan rules\n  rule step-shape"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 23);
    let many = VerifyError { violations: vec![err.violations[0].clone(); LISTED_VIOLATIONS + 5] };
    assert!(many.to_string().ends_with("… and 5 more"), "{many}");
}

#[test]
fn other_format_version_breaks_version() {
    let mut plan = streamed_plan();
    plan.format_version = 7;
    let v = broken_only(&plan, Rule::Version);
    assert_mentions(&v[0], &["rule version broken", "format_version is 7", "recompile"]);
}

#[test]
fn heads_not_divisible_by_kv_heads_breaks_model_identity() {
    let mut plan = streamed_plan();
    plan.model.arch.num_heads = 3; // 3 % 2 kv heads; the q/o shapes no longer match either
    let v = broken_only(&plan, Rule::ModelIdentity);
    assert_mentions(&v[0], &["model.arch.num_heads is 3, not a multiple of num_kv_heads 2"]);
    assert!(v.iter().any(|x| x.to_string().contains(
        "tensor model.layers.0.self_attn.q_proj.weight of block layer.0: has shape [64, 64], but the architecture requires [48, 64]"
    )), "{v:#?}");
}

#[test]
fn misaligned_tensor_breaks_model_identity() {
    let mut plan = streamed_plan();
    plan.model.blocks[2].tensors[1].offset += 2;
    let v = broken_only(&plan, Rule::ModelIdentity);
    assert_eq!(v[0].block.as_deref(), Some("layer.1"));
    assert_mentions(
        &v[0],
        &[
            "tensor model.layers.1.self_attn.q_proj.weight of block layer.1",
            "offset 258, not a multiple of the tensor alignment 256",
        ],
    );
    assert_mentions(
        &v[1],
        &["tensor model.layers.1.self_attn.k_proj.weight", "overlap tensor model.layers.1.self_attn.q_proj.weight"],
    );
}

#[test]
fn wrong_tensor_dtype_and_block_size_break_model_identity() {
    let mut plan = streamed_plan();
    plan.model.blocks[0].tensors[0].dtype = crate::model::Dtype::Bf16;
    // Grow resident layer.2's image by 256 bytes, and move its region to a new,
    // big enough place at the end of the arena so that only the image is wrong.
    plan.model.blocks[3].bytes += 256;
    let (end, bytes) = (plan.arena.bytes, plan.model.blocks[3].bytes);
    *region_mut(&mut plan, "resident.layer.2") =
        crate::plan::Region { name: "resident.layer.2".into(), kind: RegionKind::Resident, offset: end, bytes };
    (plan.arena.bytes, plan.budget_bytes) = (end + bytes, end + bytes);
    let v = broken_only(&plan, Rule::ModelIdentity);
    assert_mentions(&v[0], &["tensor model.embed_tokens.weight of block embed", "is bf16, but model.dtype is f16"]);
    assert_mentions(
        &v[1],
        &["block layer.2 (model.blocks[3])", "has bytes = 74496, but its last tensor ends at 74240"],
    );
}

#[test]
fn absurd_sizes_are_reported_without_panicking() {
    let mut plan = streamed_plan();
    plan.model.arch.hidden_size = u64::MAX;
    plan.model.arch.rope_theta = f64::NAN;
    plan.shape.batch = u64::MAX;
    let err = verify(&plan).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model.arch.hidden_size is 18446744073709551615, implausibly large"), "{text}");
    assert!(text.contains("model.arch.rope_theta is NaN"), "{text}");
}

#[test]
fn overlapping_regions_break_arena() {
    let mut plan = streamed_plan();
    let kv = plan.region("kv_cache").unwrap().offset;
    region_mut(&mut plan, "workspace").offset = kv;
    let v = broken_only(&plan, Rule::Arena);
    assert_eq!(v.len(), 2, "{v:#?}"); // it overlaps kv_cache, and activations starts inside it
    assert_mentions(
        &v[0],
        &["rule arena broken at region workspace", "overlap region kv_cache", "regions must be disjoint"],
    );
}

#[test]
fn shrunk_kv_cache_breaks_arena() {
    let mut plan = streamed_plan();
    region_mut(&mut plan, "kv_cache").bytes -= 256;
    let v = broken_only(&plan, Rule::Arena);
    assert_mentions(&v[0], &["region kv_cache", "needs 8192 bytes", "grow the region"]);
}

#[test]
fn arena_over_budget_and_bad_shape_break_arena() {
    let mut plan = streamed_plan();
    plan.budget_bytes = plan.arena.bytes - 1;
    plan.shape.max_seq_len = 1000; // above max_position_embeddings 128
    let v = broken_only(&plan, Rule::Arena);
    let text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("shape.max_seq_len = 1000 exceeds the model's max_position_embeddings = 128")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("exceeds budget_bytes")), "{text:#?}");
    assert!(text.iter().any(|t| t.contains("region kv_cache") && t.contains("max_seq_len 1000")), "{text:#?}");
}

#[test]
fn prompt_len_of_2_pow_63_is_an_arena_error_not_a_multiplication_overflow() {
    // heads × prompt_len² overflowed even u128 while the verifier sized the
    // activations region for it (found by tests/plan_fuzz.rs).
    let mut plan = streamed_plan();
    plan.shape.prompt_len = 1 << 63;
    let v = broken_only(&plan, Rule::Arena);
    assert_mentions(&v[0], &["shape.prompt_len = 9223372036854775808 exceeds shape.max_seq_len = 16"]);
}

#[test]
fn arena_alignment_other_than_256_breaks_arena() {
    // Offsets that are multiples of 512 are also multiples of 256: only the field is wrong.
    let mut plan = streamed_plan();
    plan.arena.alignment = 512;
    let v = broken_only(&plan, Rule::Arena);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(&v[0], &["arena.alignment = 512, but the plan format fixes it at 256"]);
    plan.arena.alignment = 3;
    assert_mentions(&broken_only(&plan, Rule::Arena)[0], &["arena.alignment = 3"]);
}

#[test]
fn arena_larger_than_the_gpu_memory_breaks_arena() {
    let mut plan = streamed_plan();
    plan.gpu.memory_bytes = plan.arena.bytes - 1;
    plan.gpu.usable_bytes = plan.gpu.memory_bytes;
    let v = broken_only(&plan, Rule::Arena);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &["exceeds the memory of GPU test, memory_bytes = ", "cannot run on the GPU it was compiled for"],
    );
}

#[test]
fn all_resident_plan_without_kv_activations_workspace_breaks_arena() {
    let v = broken_only(&tiny_plan(), Rule::Arena);
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_mentions(&v[0], &["exactly one region of kind kv_cache, found none"]);
}

#[test]
fn misnamed_slot_region_breaks_arena() {
    let mut plan = streamed_plan();
    region_mut(&mut plan, "slot.1").kind = RegionKind::Resident;
    let err = verify(&plan).unwrap_err();
    assert!(err.broke(Rule::Arena) && err.broke(Rule::Placement), "{err}");
    assert!(err.to_string().contains("region slot.1: has kind Resident, but names slot.N are reserved"), "{err}");
}

#[test]
fn shared_resident_region_breaks_placement() {
    let mut plan = streamed_plan();
    plan.placements[6].placement = Placement::Resident { region: "resident.embed".into() }; // lm_head, same size
    let v = broken_only(&plan, Rule::Placement);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_mentions(
        &v[0],
        &["placements[6] (block lm_head)", "names region resident.embed, which block embed already uses"],
    );
    assert_mentions(&v[1], &["region resident.lm_head", "no block is placed in"]);
}

#[test]
fn resident_block_in_a_slot_region_breaks_placement() {
    let mut plan = streamed_plan();
    plan.placements[3].placement = Placement::Resident { region: "kv_cache".into() };
    plan.arena.regions.retain(|r| r.name != "resident.layer.2");
    let v = broken_only(&plan, Rule::Placement);
    assert_mentions(
        &v[0],
        &["names region kv_cache of kind KvCache; a resident block needs a region of kind resident"],
    );
}

#[test]
fn copy_of_a_resident_block_breaks_step_shape() {
    let mut plan = streamed_plan();
    let mut copy = plan.decode.steps[2].clone();
    (copy.block, copy.slot, copy.wait, copy.record) = ("layer.2".into(), None, vec![], None);
    plan.decode.steps.insert(8, copy);
    let v = broken_only(&plan, Rule::StepShape);
    assert_mentions(
        &v[0],
        &["decode step 8 (copy layer.2)", "resident in region resident.layer.2", "remove this step"],
    );
}

#[test]
fn undersized_slot_breaks_step_shape_at_every_copy_into_it() {
    let mut plan = streamed_plan();
    region_mut(&mut plan, "slot.1").bytes -= 256;
    let v = broken_only(&plan, Rule::StepShape);
    let at: Vec<_> = v.iter().map(|x| (x.phase.unwrap(), x.step.unwrap(), x.slot)).collect();
    assert_eq!(
        at,
        [(PhaseName::Prefill, 1, Some(1)), (PhaseName::Prefill, 6, Some(1)), (PhaseName::Decode, 4, Some(1))]
    );
    assert_mentions(&v[0], &["prefill step 1 (copy layer.1 into slot 1)", "but region slot.1 is only"]);
}

#[test]
fn streamed_compute_without_slot_wrong_lane_and_bad_times_break_step_shape() {
    let mut plan = streamed_plan();
    plan.decode.steps[3].slot = None;
    plan.decode.steps[5].lane = Lane::Copy;
    plan.prefill.steps[0].start_us = f64::INFINITY;
    let v = broken_only(&plan, Rule::StepShape);
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_mentions(&v[0], &["prefill step 0", "start_us = inf"]);
    assert_mentions(&v[1], &["decode step 3 (compute layer.1)", "without a slot"]);
    assert_mentions(&v[2], &["decode step 5 (compute layer.2)", "op Compute runs on lane Copy"]);
}

#[test]
fn swapped_computes_break_order() {
    let mut plan = streamed_plan();
    plan.decode.steps.swap(5, 8); // layer.2 <-> norm
    let v = broken_only(&plan, Rule::Order);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &["rule order broken at decode step 5 (compute norm)", "too early: model order requires layer.2 next"],
    );
}

#[test]
fn missing_compute_breaks_order() {
    let mut plan = streamed_plan();
    plan.prefill.steps.pop(); // lm_head
    let v = broken_only(&plan, Rule::Order);
    assert_mentions(&v[0], &["rule order broken in prefill", "never computes lm_head"]);
}

#[test]
fn wait_on_a_later_record_breaks_events() {
    let mut plan = streamed_plan();
    plan.decode.steps[8].wait = vec!["done:lm_head".into()]; // norm waits on step 9
    let v = broken_only(&plan, Rule::Events);
    assert_mentions(
        &v[0],
        &[
            "decode step 8 (compute norm)",
            "waits on event \"done:lm_head\", but only step 9 records it (not before step 8)",
            "use wait_prev",
        ],
    );
}

#[test]
fn wait_prev_in_prefill_or_shadowed_in_decode_breaks_events() {
    let mut plan = streamed_plan();
    plan.prefill.steps[10].wait_prev = vec!["done:norm".into()];
    plan.decode.steps[6].wait_prev = vec!["done:layer.0".into()]; // recorded at step 1, before 6
    let v = broken_only(&plan, Rule::Events);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_mentions(&v[0], &["prefill step 10 (compute norm)", "prefill has no previous iteration"]);
    assert_mentions(&v[1], &["decode step 6", "step 1 records it earlier in the same iteration", "use wait"]);
}

#[test]
fn wait_prev_on_an_event_prefill_never_records_breaks_events() {
    let mut plan = streamed_plan();
    plan.decode.steps[0].wait_prev = vec!["done:lm_head".into()]; // valid so far: prefill records it too
    verify(&plan).unwrap();
    plan.prefill.steps[11].record = None;
    let v = broken_only(&plan, Rule::Events);
    assert_mentions(
        &v[0],
        &["decode step 0 (compute embed)", "prefill never records it", "the previous iteration is prefill"],
    );
}

/// [`split_streamed_plan`] with layer.0.mlp computed on the host in decode:
/// decode step 3 becomes `host_compute layer.0.mlp` (no slot, no events), and
/// the copies of it for decode (decode step 4, prefill's prologue at step 6) go.
fn host_plan() -> Plan {
    let mut plan = split_streamed_plan();
    assert_eq!((plan.decode.steps[3].block.as_str(), plan.decode.steps[4].op), ("layer.0.mlp", Op::Copy));
    let host = &mut plan.decode.steps[3];
    (host.op, host.slot, host.wait_prev, host.record) = (Op::HostCompute, None, vec![], None);
    plan.decode.steps.remove(4);
    assert_eq!((plan.prefill.steps[6].block.as_str(), plan.prefill.steps[6].op), ("layer.0.mlp", Op::Copy));
    plan.prefill.steps.remove(6);
    plan
}

#[test]
fn host_compute_of_a_streamed_block_without_a_slot_verifies() {
    verify(&host_plan()).unwrap();
}

#[test]
fn host_compute_of_a_block_that_reads_the_kv_cache_breaks_step_shape() {
    // The attention half of a split layer.
    let mut plan = host_plan();
    assert_eq!(plan.decode.steps[1].block, "layer.0.attn");
    let s = &mut plan.decode.steps[1];
    (s.op, s.slot, s.wait_prev) = (Op::HostCompute, None, vec![]);
    let v: Vec<_> = verify(&plan).unwrap_err().violations.into_iter().filter(|v| v.rule == Rule::StepShape).collect();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &["decode step 1 (host-compute layer.0.attn)", "reads the layer's KV cache", "device memory only"],
    );
    // A whole layer, the same schedule as `host_plan` over whole layers.
    let mut plan = streamed_plan();
    let s = &mut plan.decode.steps[3];
    (s.op, s.slot, s.wait_prev, s.record) = (Op::HostCompute, None, vec![], None);
    plan.decode.steps.remove(4);
    plan.prefill.steps.remove(6);
    let v = broken_only(&plan, Rule::StepShape);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(&v[0], &["decode step 3 (host-compute layer.1)", "(Layer), which reads the layer's KV cache"]);
}

#[test]
fn host_compute_of_a_resident_block_breaks_step_shape() {
    let mut plan = host_plan();
    assert_eq!(plan.decode.steps[4].block, "layer.1.attn");
    plan.decode.steps[4].op = Op::HostCompute;
    let v = broken_only(&plan, Rule::StepShape);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &[
            "decode step 4 (host-compute layer.1.attn)",
            "resident in region resident.layer.1.attn",
            "only a streamed block",
        ],
    );
}

#[test]
fn host_compute_naming_a_slot_or_on_the_copy_lane_breaks_step_shape() {
    let mut plan = host_plan();
    plan.decode.steps[3].slot = Some(1);
    let v = broken_only(&plan, Rule::StepShape);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(&v[0], &["decode step 3 (host-compute layer.0.mlp)", "names slot 1", "remove the slot"]);
    let mut plan = host_plan();
    plan.decode.steps[3].lane = Lane::Copy;
    let v = broken_only(&plan, Rule::StepShape);
    assert_mentions(&v[0], &["decode step 3 (host-compute layer.0.mlp)", "op HostCompute runs on lane Copy"]);
}

#[test]
fn host_compute_counts_as_the_blocks_compute_for_order() {
    // Without it, layer.1.attn comes too early.
    let mut plan = host_plan();
    plan.decode.steps.remove(3);
    let v = broken_only(&plan, Rule::Order);
    assert_mentions(
        &v[0],
        &["decode step 3 (compute layer.1.attn)", "too early: model order requires layer.0.mlp next"],
    );
    // Host-computed twice, layer.0.mlp is computed a second time.
    let mut plan = host_plan();
    let twice = plan.decode.steps[3].clone();
    plan.decode.steps.insert(4, twice);
    let v = broken_only(&plan, Rule::Order);
    assert_mentions(&v[0], &["decode step 4 (host-compute layer.0.mlp)", "computes it a second time"]);
    // Out of model order, a host compute is reported like any compute.
    let mut plan = host_plan();
    plan.decode.steps.swap(3, 4); // host layer.0.mlp <-> layer.1.attn
    let v = broken_only(&plan, Rule::Order);
    assert_mentions(&v[0], &["decode step 3 (compute layer.1.attn)", "too early"]);
}

#[test]
fn a_block_table_with_split_layers_verifies_and_a_mixed_one_does_not() {
    verify(&split_streamed_plan()).unwrap();
    let mut plan = split_streamed_plan();
    // Merge nothing back, but rename a half: the table no longer matches the architecture.
    plan.model.blocks[3].name = "layer.1".into();
    let v = verify(&plan).unwrap_err();
    assert!(v.broke(Rule::ModelIdentity), "{v}");
}

#[test]
fn a_fine_block_table_verifies_pipelined_and_with_a_whole_mlp_on_the_host() {
    // layer.0.gate_up, layer.0.down and layer.1.down streamed.
    verify(&fine_plan(&[2, 3, 6], 2, Style::Pipelined)).unwrap();
    let sync = fine_plan(&[2, 3, 5, 6], 2, Style::Sync);
    verify(&sync).unwrap();
    verify(&host_in_decode(sync.clone(), &["layer.0.gate_up", "layer.0.down"])).unwrap();
    verify(&host_in_decode(sync, &["layer.0.gate_up", "layer.0.down", "layer.1.gate_up", "layer.1.down"])).unwrap();
}

#[test]
fn one_part_of_a_fine_mlp_on_the_host_verifies_either_way_round() {
    // The runtime hands the `gate` activation across the bus with the residual stream.
    let sync = fine_plan(&[2, 3, 5, 6], 2, Style::Sync);
    verify(&host_in_decode(sync.clone(), &["layer.1.gate_up"])).unwrap();
    verify(&host_in_decode(sync.clone(), &["layer.0.down"])).unwrap();
    verify(&host_in_decode(sync, &["layer.0.down", "layer.1.gate_up"])).unwrap();
}

#[test]
fn a_fine_table_with_a_wrong_kind_or_a_missing_part_breaks_model_identity() {
    let mut plan = fine_plan(&[2, 3, 6], 2, Style::Pipelined);
    plan.model.blocks[3].kind = crate::model::BlockKind::Mlp;
    let v = verify(&plan).unwrap_err();
    assert!(v.broke(Rule::ModelIdentity), "{v}");
    // Dropping a down block leaves 8 of the 9 blocks a fine table of 2 layers needs.
    let mut plan = fine_plan(&[2, 3, 6], 2, Style::Pipelined);
    plan.model.blocks.remove(6);
    let v = verify(&plan).unwrap_err();
    let identity: Vec<String> =
        v.violations.iter().filter(|v| v.rule == Rule::ModelIdentity).map(|v| v.to_string()).collect();
    assert!(identity.iter().any(|m| m.contains("needs 9") && m.contains("layer.0.gate_up, layer.0.down")), "{v}");
}
