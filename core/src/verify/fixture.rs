//! Valid plans for the verifier's tests, built by hand from the schedule's
//! definition (deliberately not by the compiler, whose output the verifier
//! must not trust): the tiny architecture of `plan::tests::tiny_plan` with
//! some layers streamed through a ring of slots.

use crate::activations::{ActivationLayout, KvLayout, WORKSPACE_BYTES};
use crate::model::{layer_block_name, Dtype, ModelSpec};
use crate::plan::tests::tiny_plan;
use crate::plan::{
    resident_region_name, slot_region_name, Arena, BlockPlacement, Lane, Op, Phase, Placement, Plan, Region,
    RegionKind, Step,
};
use crate::units::align_up;

/// How the copies of streamed blocks are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Software-pipelined: each copy is issued as soon as its slot frees, and the
    /// decode body ends with the copies of each slot's first occupant for the
    /// next iteration (prefill ends with the same copies, for iteration 0).
    Pipelined,
    /// Each copy waits for the compute just before its block: no overlap.
    Sync,
}

pub(crate) fn ready(block: &str) -> String {
    format!("ready:{block}")
}

pub(crate) fn done(block: &str) -> String {
    format!("done:{block}")
}

fn step(lane: Lane, op: Op, block: &str, slot: Option<u64>, wait: Vec<String>, wait_prev: Vec<String>) -> Step {
    let record = Some(if op == Op::Copy { ready(block) } else { done(block) });
    Step { lane, op, block: block.into(), slot, wait, wait_prev, record, warm: false, start_us: 0.0, end_us: 0.0 }
}

fn copy(block: &str, slot: u64, wait: Vec<String>) -> Step {
    step(Lane::Copy, Op::Copy, block, Some(slot), wait, vec![])
}

fn compute(block: &str, slot: Option<u64>, wait: Vec<String>, wait_prev: Vec<String>) -> Step {
    step(Lane::Compute, Op::Compute, block, slot, wait, wait_prev)
}

/// The step lists of one pass. `carried`: whether the computes of each slot's
/// first occupant consume the previous pass's copies (the decode body).
fn pass(names: &[String], streamed: &[usize], k: usize, style: Style, carried: bool) -> Vec<Step> {
    let m = streamed.len();
    let idx = |b: usize| streamed.iter().position(|&s| s == b);
    let name = |i: usize| names[streamed[i]].as_str();
    let slot = |i: usize| (i % k) as u64;
    let mut steps = Vec::new();
    if style == Style::Pipelined && !carried {
        steps.extend((0..k.min(m)).map(|i| copy(name(i), slot(i), vec![])));
    }
    for (b, block) in names.iter().enumerate() {
        let Some(i) = idx(b) else {
            steps.push(compute(block, None, vec![], vec![]));
            continue;
        };
        match style {
            Style::Pipelined => {
                let (wait, wait_prev) =
                    if carried && i < k { (vec![], vec![ready(block)]) } else { (vec![ready(block)], vec![]) };
                steps.push(compute(block, Some(slot(i)), wait, wait_prev));
                // The slot's next occupant, or (after its last) its first one again.
                let next = if i + k < m { i + k } else { i % k };
                steps.push(copy(name(next), slot(i), vec![done(block)]));
            }
            Style::Sync => {
                steps.push(copy(block, slot(i), vec![done(&names[b - 1])]));
                steps.push(compute(block, Some(slot(i)), vec![ready(block)], vec![]));
            }
        }
    }
    for (i, s) in steps.iter_mut().enumerate() {
        (s.start_us, s.end_us) = (i as f64 * 10.0, i as f64 * 10.0 + 7.5);
    }
    steps
}

/// A valid plan for the tiny architecture with `num_layers` layers, of which
/// `streamed_layers` (ascending layer indices) go through `slots` slots.
pub(crate) fn plan(num_layers: u64, streamed_layers: &[u64], slots: u64, style: Style) -> Plan {
    let mut arch = tiny_plan().model.arch;
    arch.num_layers = num_layers;
    let model = ModelSpec::from_arch("tiny", arch, Dtype::F16);
    let streamed: Vec<usize> =
        streamed_layers.iter().map(|&l| model.block_index(&layer_block_name(l)).unwrap()).collect();
    plan_of(model, &streamed, slots, style)
}

/// A plan of `model` with blocks `streamed` (indices, ascending) through `slots` slots.
pub(crate) fn plan_of(model: ModelSpec, streamed: &[usize], slots: u64, style: Style) -> Plan {
    let mut plan = tiny_plan();
    plan.model = model;
    let model = &plan.model;
    let names: Vec<String> = model.blocks.iter().map(|b| b.name.clone()).collect();
    let streamed = streamed.to_vec();

    let align = 256;
    let mut regions = Vec::new();
    let mut offset = 0;
    let mut push = |name: String, kind, bytes: u64| {
        regions.push(Region { name, kind, offset, bytes });
        offset = align_up(offset + bytes, align);
    };
    let mut placements = Vec::new();
    for (b, block) in model.blocks.iter().enumerate() {
        let placement = if streamed.contains(&b) {
            Placement::Streamed
        } else {
            push(resident_region_name(&block.name), RegionKind::Resident, block.bytes);
            Placement::Resident { region: resident_region_name(&block.name) }
        };
        placements.push(BlockPlacement { block: block.name.clone(), placement });
    }
    let slot_bytes = streamed.iter().map(|&b| model.blocks[b].bytes).max().unwrap_or(0);
    for s in 0..slots {
        push(slot_region_name(s), RegionKind::Slot, slot_bytes);
    }
    let kv = KvLayout::new(&model.arch, model.dtype, &plan.shape).bytes();
    let act = ActivationLayout::new(&model.arch, model.dtype, &plan.shape).bytes;
    push("kv_cache".into(), RegionKind::KvCache, kv);
    push("activations".into(), RegionKind::Activations, act);
    push("workspace".into(), RegionKind::Workspace, WORKSPACE_BYTES);

    let k = slots as usize;
    plan.prefill = Phase { steps: pass(&names, &streamed, k, style, false) };
    plan.decode = Phase { steps: pass(&names, &streamed, k, style, true) };
    let p = &mut plan.prediction;
    p.streamed_blocks = streamed.len() as u64;
    p.resident_blocks = (names.len() - streamed.len()) as u64;
    p.slots = slots;
    p.slot_bytes = slot_bytes;
    (p.kv_cache_bytes, p.activation_bytes, p.workspace_bytes) = (kv, act, WORKSPACE_BYTES);
    plan.arena = Arena { bytes: offset, alignment: align, regions };
    plan.budget_bytes = offset + (1 << 20);
    plan.placements = placements;
    plan
}

/// The main fixture: 4 layers, layers 0, 1 and 3 streamed through 2 slots
/// (slot 0 holds layer.0 then layer.3 in every pass), pipelined.
///
/// Prefill: `0 copy layer.0→0, 1 copy layer.1→1, 2 embed, 3 layer.0@0, 4 copy layer.3→0,
/// 5 layer.1@1, 6 copy layer.1→1 (prologue), 7 layer.2, 8 layer.3@0, 9 copy layer.0→0 (prologue),
/// 10 norm, 11 lm_head`.
///
/// Decode body: `0 embed, 1 layer.0@0 (wait_prev ready:layer.0), 2 copy layer.3→0,
/// 3 layer.1@1 (wait_prev ready:layer.1), 4 copy layer.1→1 (next iteration), 5 layer.2,
/// 6 layer.3@0, 7 copy layer.0→0 (next iteration), 8 norm, 9 lm_head`.
pub(crate) fn streamed_plan() -> Plan {
    plan(4, &[0, 1, 3], 2, Style::Pipelined)
}

/// [`streamed_plan`]'s schedule over 2 layers split into halves: the same 7
/// blocks, named `embed, layer.0.attn, layer.0.mlp, layer.1.attn,
/// layer.1.mlp, norm, lm_head`; blocks 1, 2 and 4 streamed (so step `i` of
/// each phase is step `i` of [`streamed_plan`], layer.1 there being
/// layer.0.mlp here).
pub(crate) fn split_streamed_plan() -> Plan {
    let mut arch = tiny_plan().model.arch;
    arch.num_layers = 2;
    plan_of(ModelSpec::from_arch("tiny", arch, Dtype::F16).split_layers(), &[1, 2, 4], 2, Style::Pipelined)
}

/// The fine table of 2 layers: `embed, layer.0.attn, layer.0.gate_up,
/// layer.0.down, layer.1.attn, layer.1.gate_up, layer.1.down, norm, lm_head`,
/// blocks `streamed` through `slots` slots in `style`.
pub(crate) fn fine_plan(streamed: &[usize], slots: u64, style: Style) -> Plan {
    let mut arch = tiny_plan().model.arch;
    arch.num_layers = 2;
    plan_of(ModelSpec::from_arch("tiny", arch, Dtype::F16).fine_layers(), streamed, slots, style)
}

/// `plan` (of [`Style::Sync`], where each streamed block's copy sits just
/// before its compute) with `blocks` computed on the host in decode: each
/// one's copy goes and its compute becomes a `host_compute` without a slot
/// or a wait (it still records `done:`, which the next block's copy waits on).
pub(crate) fn host_in_decode(mut plan: Plan, blocks: &[&str]) -> Plan {
    for b in blocks {
        let at = find(&plan.decode, Op::Compute, b);
        assert_eq!(plan.decode.steps[at - 1].op, Op::Copy, "a Sync plan copies {b} just before computing it");
        let s = &mut plan.decode.steps[at];
        (s.op, s.slot, s.wait) = (Op::HostCompute, None, vec![]);
        plan.decode.steps.remove(at - 1);
    }
    plan
}

/// Position of the step of `phase` with this op and block (the first one).
pub(crate) fn find(phase: &Phase, op: Op, block: &str) -> usize {
    phase.steps.iter().position(|s| s.op == op && s.block == block).unwrap_or_else(|| panic!("no {op:?} {block}"))
}

/// Verifies `plan`, asserts that it breaks `rule` and no other, and returns the violations.
pub(crate) fn broken_only(plan: &Plan, rule: super::Rule) -> Vec<super::Violation> {
    let err = super::verify(plan).expect_err("the corrupted plan must fail verification");
    assert!(err.violations.iter().all(|v| v.rule == rule), "expected only rule {rule} to break, got:\n{err}");
    err.violations
}

/// Asserts that `v` renders with every one of `parts`.
#[track_caller]
pub(crate) fn assert_mentions(v: &super::Violation, parts: &[&str]) {
    let text = v.to_string();
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in:\n{text}");
    }
}
