//! Solver and simulator tests with unit costs, on cases small enough to check
//! by hand. Each test derives its expected timeline in a comment, the way XLA's
//! memory-space-assignment simulator tests do.
//!
//! Block numbering of a model with L layers: 0 = embed (E), 1..=L = layer.0 …
//! layer.(L-1), L+1 = norm (N), L+2 = lm_head (H). `cB` is the copy of block B,
//! `CB` its compute, `HB` its host compute; `[a,b]` a step's start and end.
//! Host compute needs split layers (only MLP halves run on the host): a model
//! of L/2 split layers has the same numbering, 1 = layer.0.attn, 2 =
//! layer.0.mlp, 3 = layer.1.attn, …, so the host tests use those.

use djinn_core::gpu::GpuProfile;
use djinn_core::model::{Architecture, Dtype, ModelSpec};
use djinn_core::plan::{Lane, Op, Plan, RunShape, Step, Strategy};

use crate::arena::FixedRegions;
use crate::cost::{CostModel, UnitCosts};
use crate::emit::emit;
use crate::error::CompileError;
use crate::solve::{evaluate, layer_blocks, layout_for, pick_streamed, solve, Problem, Solution, Spread};

const SHAPE: RunShape = RunShape { prompt_len: 4, max_seq_len: 16, batch: 1 };

fn model(layers: u64) -> ModelSpec {
    let arch = Architecture {
        family: "llama".into(),
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: layers,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        vocab_size: 100,
        rope_theta: 1e4,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        ..Default::default()
    };
    ModelSpec::from_arch("tiny", arch, Dtype::F16)
}

/// [`model`] with `layers` layers, each split into its attention and MLP block.
fn split_model(layers: u64) -> ModelSpec {
    model(layers).split_layers()
}

fn run(layers: u64, streamed: &[usize], slots: u64, strategy: Strategy, cost: &dyn CostModel) -> Solution {
    let m = model(layers);
    let fixed = FixedRegions::new(&m, &SHAPE);
    evaluate(&m, layout_for(&m, &fixed, streamed, slots), &[], 0, Spread::Even, strategy, cost).unwrap()
}

/// [`run`] without warm copies (`--warm-slots off`): prefill pays for its first
/// copies, as the hand-derived timelines below show; `warm_copies_*` shows the difference.
fn run_cold(layers: u64, streamed: &[usize], slots: u64, strategy: Strategy, cost: &dyn CostModel) -> Solution {
    crate::solve::without_warm(run(layers, streamed, slots, strategy, cost), &model(layers), cost).unwrap()
}

/// `(name, lane, start, end)` of the last simulated decode iteration, relative to its start.
fn decode_times(sol: &Solution) -> Vec<String> {
    let last = sol.graph.decode.last().unwrap();
    let origin = sol.metrics.last_iteration_start_us;
    render_times(sol, last, origin)
}

fn prefill_times(sol: &Solution) -> Vec<String> {
    render_times(sol, &sol.graph.prefill, 0.0)
}

fn render_times(sol: &Solution, nodes: &[petgraph::graph::NodeIndex], origin: f64) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let node = sol.graph.graph[*n];
            let tag = match node.work {
                crate::schedule::Work::Copy { .. } => 'c',
                crate::schedule::Work::Compute { .. } => 'C',
                crate::schedule::Work::HostCompute { .. } => 'H',
            };
            let (s, e) = (sol.timeline.start[n.index()] - origin, sol.timeline.end[n.index()] - origin);
            format!("{tag}{}[{s},{e}]", node.work.block())
        })
        .collect()
}

fn gpu() -> GpuProfile {
    crate::gpu_presets::load_gpu("l4").unwrap()
}

fn plan_of(sol: &Solution, layers: u64) -> Plan {
    plan_of_model(sol, &model(layers))
}

fn plan_of_model(sol: &Solution, m: &ModelSpec) -> Plan {
    emit(sol, m, &gpu(), SHAPE, sol.layout.arena.bytes).unwrap()
}

fn step<'a>(steps: &'a [Step], lane: Lane, block: &str) -> &'a Step {
    let found: Vec<_> = steps.iter().filter(|s| s.lane == lane && s.block == block).collect();
    assert_eq!(found.len(), 1, "{lane:?} steps of {block}: {found:?}");
    found[0]
}

#[test]
fn two_of_four_layers_through_two_slots_djinn_and_sync() {
    // Layers 1 and 3 (blocks 2 and 4) stream, block 2 → slot 0, block 4 → slot 1.
    // (The solver would make them resident instead, since 2 slots cost as much
    // as 2 layers; the schedule itself is still well defined.)
    let djinn = run_cold(4, &[2, 4], 2, Strategy::Djinn, &UnitCosts::ONE);
    // Prefill: c2 [0,1], c4 [1,2] | C0 [0,1], C1 [1,2], C2 waits c2 → [2,3];
    // C3 [3,4]; C4 waits c4 → [4,5]; C5 [5,6]; C6 [6,7]. TTFT 7. Each slot has
    // one decode occupant, the one prefill leaves there: both slots are pinned,
    // so there is no prologue, and decode copies nothing.
    assert_eq!(
        prefill_times(&djinn),
        ["c2[0,1]", "c4[1,2]", "C0[0,1]", "C1[1,2]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "C5[5,6]", "C6[6,7]"]
    );
    assert_eq!(decode_times(&djinn), ["C0[0,1]", "C1[1,2]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "C5[5,6]", "C6[6,7]"]);
    assert_eq!((djinn.metrics.ttft_us, djinn.metrics.decode_us), (7.0, 7.0));
    assert_eq!(djinn.metrics.decode_copy_busy, 0.0);
    // Sync: c2 waits C1 → [2,3], C2 [3,4], C3 [4,5], c4 waits C3 → [5,6], C4
    // [6,7], C5 [7,8], C6 [8,9]: every copy adds its full time. 9 per pass.
    let sync = run(4, &[2, 4], 2, Strategy::Sync, &UnitCosts::ONE);
    assert_eq!(
        decode_times(&sync),
        ["C0[0,1]", "C1[1,2]", "c2[2,3]", "C2[3,4]", "C3[4,5]", "c4[5,6]", "C4[6,7]", "C5[7,8]", "C6[8,9]"]
    );
    assert_eq!((sync.metrics.ttft_us, sync.metrics.decode_us), (9.0, 9.0));
    // Pinned slots: decode has no copy step, and each streamed compute waits on
    // prefill's copy (no body step records it, so wait_prev binds to prefill's).
    let plan = plan_of(&djinn, 4);
    djinn_core::verify::verify(&plan).unwrap();
    assert!(plan.decode.steps.iter().all(|s| s.lane == Lane::Compute));
    for layer in ["layer.1", "layer.3"] {
        let c = step(&plan.decode.steps, Lane::Compute, layer);
        assert_eq!(c.wait_prev, [format!("ready:{layer}")]);
        assert_eq!(step(&plan.prefill.steps, Lane::Copy, layer).record.as_deref(), Some(&*format!("ready:{layer}")));
    }
    assert_eq!(plan.prediction.streamed_bytes_per_token, 0);
}

/// 4 layers; layers 0, 1, 3 (blocks 1, 2, 4) stream through 2 slots
/// (s0 = block 1 → slot 0, s1 = block 2 → slot 1, s2 = block 4 → slot 0).
const B_STREAMED: [usize; 3] = [1, 2, 4];

#[test]
fn djinn_three_of_four_layers_through_two_slots_unit_costs() {
    let sol = run_cold(4, &B_STREAMED, 2, Strategy::Djinn, &UnitCosts::ONE);
    // Decode rotates blocks 1 and 4 through slot 0 and keeps block 2 in slot 1
    // (pinned: its only decode occupant, and what prefill leaves there).
    // Prefill (copy lane | compute lane):
    //   c1 [0,1] c2 [1,2]              | C0 [0,1]
    //   c4 waits C1 (slot 0)  → [2,3]   | C1 waits c1 → [1,2]
    //                                  | C2 waits c2 → [2,3]; C3 [3,4]
    //   c1' (prologue) waits C4 → [5,6] | C4 waits c4 → [4,5]; C5 [5,6]; C6 [6,7]
    // TTFT = 7; the copy lane is busy 4 of 7.
    assert_eq!(
        prefill_times(&sol),
        [
            "c1[0,1]", "c2[1,2]", "C0[0,1]", "C1[1,2]", "c4[2,3]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "c1[5,6]",
            "C5[5,6]", "C6[6,7]"
        ]
    );
    assert_eq!(sol.metrics.ttft_us, 7.0);
    assert!((sol.metrics.prefill_copy_busy - 4.0 / 7.0).abs() < 1e-12);
    // Decode steady state: C1 reads the copy the previous iteration issued
    // after its C4, long done; C2 reads slot 1 as prefill left it. The compute
    // lane never stalls: 7 computes, 7 units; 2 copies busy 2 of 7.
    assert_eq!(
        decode_times(&sol),
        ["C0[0,1]", "C1[1,2]", "c4[2,3]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "c1[5,6]", "C5[5,6]", "C6[6,7]"]
    );
    assert_eq!(sol.metrics.decode_us, 7.0);
    assert!((sol.metrics.decode_copy_busy - 2.0 / 7.0).abs() < 1e-12);
}

#[test]
fn djinn_hides_copies_twice_as_slow_as_computes() {
    let cost = UnitCosts { copy: 2.0, compute: 1.0, turnaround: 0.0, host: None, handoff: 0.0, contention: 1.0 };
    let sol = run_cold(4, &B_STREAMED, 2, Strategy::Djinn, &cost);
    // Prefill: c1 [0,2] c2 [2,4]; C0 [0,1]; C1 waits c1 → [2,3]; c4 waits C1 and
    // the lane → [4,6]; C2 waits c2 → [4,5]; C3 [5,6]; C4 waits c4 → [6,7];
    // c1' waits C4 → [7,9]; C5 [7,8]; C6 [8,9]. TTFT 9.
    assert_eq!(sol.metrics.ttft_us, 9.0);
    // Decode, iteration 0 starts at 9: C0 [9,10]; C1 waits c1' (9) → [10,11];
    // c4 waits C1 → [11,13]; C2 [11,12] (slot 1, pinned); C3 [12,13]; C4 waits
    // c4 → [13,14]; c1 next → [14,16]; C5 [14,15]; C6 [15,16]. Iteration 1
    // starts at 16 and repeats with the same offsets: steady state 7 units, the
    // copy lane busy 4 of 7, the compute lane never waiting.
    assert_eq!(
        decode_times(&sol),
        ["C0[0,1]", "C1[1,2]", "c4[2,4]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "c1[5,7]", "C5[5,6]", "C6[6,7]"]
    );
    assert_eq!(sol.metrics.decode_us, 7.0);
    assert!((sol.metrics.decode_copy_busy - 4.0 / 7.0).abs() < 1e-12);
}

#[test]
fn warm_copies_take_the_first_copies_off_the_ttft_path() {
    let cost = UnitCosts { copy: 2.0, compute: 1.0, turnaround: 0.0, host: None, handoff: 0.0, contention: 1.0 };
    let sol = run(4, &B_STREAMED, 2, Strategy::Djinn, &cost);
    // As in `djinn_hides_copies_twice_as_slow_as_computes`, but c1 and c2 are
    // warm, done before the pass: C0 [0,1]; C1 [1,2]; c4 waits C1 → [2,4]; C2
    // [2,3]; C3 [3,4]; C4 waits c4 → [4,5]; c1' waits C4 → [5,7]; C5 [5,6]; C6
    // [6,7]. TTFT 7 instead of 9; the copy lane busy 4 of 7; decode unchanged.
    assert_eq!(sol.program.warm, 2);
    assert_eq!(
        prefill_times(&sol),
        [
            "c1[0,0]", "c2[0,0]", "C0[0,1]", "C1[1,2]", "c4[2,4]", "C2[2,3]", "C3[3,4]", "C4[4,5]", "c1[5,7]",
            "C5[5,6]", "C6[6,7]"
        ]
    );
    assert_eq!(sol.metrics.ttft_us, 7.0);
    assert!((sol.metrics.prefill_copy_busy - 4.0 / 7.0).abs() < 1e-12);
    let cold = run_cold(4, &B_STREAMED, 2, Strategy::Djinn, &cost);
    assert_eq!((cold.program.warm, cold.metrics.ttft_us), (0, 9.0));
    assert_eq!(sol.metrics.decode_us, cold.metrics.decode_us);
    // The plan marks exactly the two leading copies warm, predicted at 0, and verifies.
    let plan = plan_of(&sol, 4);
    djinn_core::verify::verify(&plan).unwrap();
    let warm: Vec<(&str, f64, f64)> =
        plan.prefill.steps.iter().filter(|s| s.warm).map(|s| (s.block.as_str(), s.start_us, s.end_us)).collect();
    assert_eq!(warm, [("layer.0", 0.0, 0.0), ("layer.1", 0.0, 0.0)]);
    assert!(plan.prefill.steps[..2].iter().all(|s| s.warm) && plan.decode.steps.iter().all(|s| !s.warm));
    // The sync baseline's first copy waits for the compute before it: nothing is warm.
    assert_eq!(run(4, &B_STREAMED, 2, Strategy::Sync, &cost).program.warm, 0);
}

#[test]
fn sync_never_overlaps_copy_and_compute() {
    let sol = run(4, &B_STREAMED, 2, Strategy::Sync, &UnitCosts::ONE);
    // Every copy waits for the compute before its block: C0 [0,1], c1 [1,2],
    // C1 [2,3], c2 [3,4], C2 [4,5], C3 [5,6], c4 [6,7], C4 [7,8], C5 [8,9], C6 [9,10].
    let want =
        ["C0[0,1]", "c1[1,2]", "C1[2,3]", "c2[3,4]", "C2[4,5]", "C3[5,6]", "c4[6,7]", "C4[7,8]", "C5[8,9]", "C6[9,10]"];
    assert_eq!(prefill_times(&sol), want);
    assert_eq!(decode_times(&sol), want);
    assert_eq!((sol.metrics.ttft_us, sol.metrics.decode_us), (10.0, 10.0));
    assert!((sol.metrics.decode_copy_busy - 0.3).abs() < 1e-12);
    // djinn on the same layout: 7 and 7.
    let djinn = run(4, &B_STREAMED, 2, Strategy::Djinn, &UnitCosts::ONE);
    assert!(djinn.metrics.decode_us < sol.metrics.decode_us);
}

#[test]
fn stream_all_four_layers_through_two_slots() {
    let sol = run(4, &[1, 2, 3, 4], 2, Strategy::StreamAll, &UnitCosts::ONE);
    // Slots: block 1 → 0, 2 → 1, 3 → 0, 4 → 1. Decode: C0 [0,1]; C1 [1,2] (copy
    // from the previous iteration); c3 waits C1 → [2,3]; C2 [2,3]; c4 waits C2 →
    // [3,4]; C3 waits c3 → [3,4]; c1 next waits C3 → [4,5]; C4 waits c4 → [4,5];
    // c2 next waits C4 → [5,6]; C5 [5,6]; C6 [6,7]. 7 units, copy busy 4 of 7.
    assert_eq!(
        decode_times(&sol),
        [
            "C0[0,1]", "C1[1,2]", "c3[2,3]", "C2[2,3]", "c4[3,4]", "C3[3,4]", "c1[4,5]", "C4[4,5]", "c2[5,6]",
            "C5[5,6]", "C6[6,7]"
        ]
    );
    assert_eq!(sol.metrics.decode_us, 7.0);
    assert!((sol.metrics.decode_copy_busy - 4.0 / 7.0).abs() < 1e-12);
}

#[test]
fn host_turnaround_separates_passes() {
    let cost = UnitCosts { copy: 1.0, compute: 1.0, turnaround: 5.0, host: None, handoff: 0.0, contention: 1.0 };
    let sol = run(4, &B_STREAMED, 2, Strategy::Djinn, &cost);
    // Prefill ends at 7 as with no turnaround; the first token is sampled 5 later.
    // Each iteration is its 7 units of compute plus the 5 the host takes; the
    // next iteration's first copies were issued before the host sync, so nothing
    // else stalls.
    assert_eq!(sol.metrics.ttft_us, 12.0);
    assert_eq!(sol.metrics.decode_us, 12.0);
    assert_eq!(decode_times(&sol)[0], "C0[0,1]");
}

#[test]
fn emitted_events_follow_slot_reuse_and_cross_iterations() {
    let sol = run(4, &B_STREAMED, 2, Strategy::Djinn, &UnitCosts::ONE);
    let plan = plan_of(&sol, 4);
    let pre = &plan.prefill.steps;
    let dec = &plan.decode.steps;
    // Prefill: layer.3 (block 4) reuses slot 0 after layer.0.
    let c = pre.iter().find(|s| s.lane == Lane::Copy && s.block == "layer.3").unwrap();
    assert_eq!(
        (c.slot, &c.wait, c.record.as_deref()),
        (Some(0), &vec!["done:layer.0".to_string()], Some("ready:layer.3"))
    );
    let first_copies: Vec<_> = pre.iter().take(2).map(|s| (s.block.as_str(), s.slot, s.wait.len())).collect();
    assert_eq!(first_copies, [("layer.0", Some(0), 0), ("layer.1", Some(1), 0)]);
    // Decode: the first occupants read last iteration's copies.
    let c0 = step(dec, Lane::Compute, "layer.0");
    assert_eq!((&c0.wait, &c0.wait_prev), (&vec![], &vec!["ready:layer.0".to_string()]));
    let c3 = step(dec, Lane::Compute, "layer.3");
    assert_eq!(c3.wait, ["ready:layer.3"]);
    // The copy of layer.0 for the next iteration waits for slot 0's last occupant.
    let next = step(dec, Lane::Copy, "layer.0");
    assert_eq!((&next.wait, next.record.as_deref()), (&vec!["done:layer.3".to_string()], Some("ready:layer.0")));
    // Nobody waits on resident layer.2 or the head: no record.
    assert_eq!(step(dec, Lane::Compute, "layer.2").record, None);
    assert_eq!(step(dec, Lane::Compute, "lm_head").record, None);
}

#[test]
fn sync_waits_only_on_the_latest_compute() {
    let sol = run(4, &B_STREAMED, 2, Strategy::Sync, &UnitCosts::ONE);
    let plan = plan_of(&sol, 4);
    for steps in [&plan.prefill.steps, &plan.decode.steps] {
        // done:layer.2 implies done:layer.0 (slot 0's previous occupant): one wait.
        assert_eq!(step(steps, Lane::Copy, "layer.3").wait, ["done:layer.2"]);
        let first = step(steps, Lane::Copy, "layer.0");
        assert_eq!((&first.wait, &first.wait_prev), (&vec!["done:embed".to_string()], &vec![]));
    }
}

#[test]
fn solver_prefers_the_even_spread_and_two_slots() {
    // 6 layers, budget for exactly 3 streamed layers through 2 slots (or 4
    // through 3). copy = 2, compute = 1.
    // Even spread streams layers 1, 3, 5 (blocks 2, 4, 6): decode is compute
    // bound, 9 units; prefill: c2 [0,2] c4 [2,4]; C2 [2,3]; c6 [4,6]; C4 [4,5];
    // C6 [6,7]; C7 [7,8]; C8 [8,9]: TTFT 9.
    // Last 3 (blocks 4, 5, 6): C0-C3 run [0,4] before the first streamed layer,
    // so c6, which waits for C4, starts at 5; C6 ends at 8 and decode is 10
    // units, TTFT 10. 3 slots stream 4 layers: TTFT 11. Even, 2 slots wins.
    let m = model(6);
    let fixed = FixedRegions::new(&m, &SHAPE);
    let layers = layer_blocks(&m);
    let budget = layout_for(&m, &fixed, &pick_streamed(&m, &layers, 3, Spread::Even), 2).arena.bytes;
    let cost = UnitCosts { copy: 2.0, compute: 1.0, turnaround: 0.0, host: None, handoff: 0.0, contention: 1.0 };
    let problem =
        Problem { model: &m, shape: SHAPE, budget, strategy: Strategy::Djinn, host_compute: crate::HostCompute::Auto };
    let sol = solve(&problem, &cost).unwrap();
    assert_eq!((sol.layout.streamed.as_slice(), sol.layout.slots, sol.spread), (&[2, 4, 6][..], 2, Spread::Even));
    assert_eq!((sol.metrics.ttft_us, sol.metrics.decode_us), (9.0, 9.0));
    let last =
        evaluate(&m, layout_for(&m, &fixed, &[4, 5, 6], 2), &[], 0, Spread::Last, Strategy::Djinn, &cost).unwrap();
    assert_eq!((last.metrics.ttft_us, last.metrics.decode_us), (10.0, 10.0));
    // Sync keeps djinn's residency and slots.
    let sync = solve(&Problem { strategy: Strategy::Sync, ..problem.clone() }, &cost).unwrap();
    assert_eq!((sync.layout.clone(), sync.strategy), (sol.layout.clone(), Strategy::Sync));
    // Everything fits: nothing streams, no slots.
    let all = solve(&Problem { budget: 1 << 40, ..problem }, &cost).unwrap();
    assert_eq!((all.layout.streamed.len(), all.layout.slots, all.layout.resident.len()), (0, 0, 9));
}

#[test]
fn budget_too_small_names_every_part() {
    let m = model(6);
    let problem = Problem {
        model: &m,
        shape: SHAPE,
        budget: 1000,
        strategy: Strategy::Djinn,
        host_compute: crate::HostCompute::Auto,
    };
    let err = solve(&problem, &UnitCosts::ONE).unwrap_err();
    let CompileError::BudgetTooSmall { needed, .. } = &err else { panic!("{err}") };
    let fixed = FixedRegions::new(&m, &SHAPE);
    assert_eq!(*needed, layout_for(&m, &fixed, &layer_blocks(&m), 2).arena.bytes);
    let text = err.to_string();
    for part in ["budget 1000 B", "KV cache", "activations", "workspace", "2 slots", "embed/norm/head"] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    // One byte less than the minimum fails, the minimum succeeds.
    let ok = solve(&Problem { budget: *needed, ..problem.clone() }, &UnitCosts::ONE).unwrap();
    assert!(ok.layout.arena.bytes <= *needed);
    assert!(solve(&Problem { budget: needed - 1, ..problem }, &UnitCosts::ONE).is_err());
}

/// Regression: an empty f64 `sum()` is -0.0, which an all-resident plan printed as `decode_copy_busy = -0.0`.
#[test]
fn all_resident_plan_prints_no_negative_zero() {
    let sol = run(4, &[], 0, Strategy::Djinn, &UnitCosts::ONE);
    assert!(sol.metrics.decode_copy_busy.is_sign_positive() && sol.metrics.prefill_copy_busy.is_sign_positive());
    let text = plan_of(&sol, 4).to_toml_string();
    assert!(!text.contains("-0.0"), "{}", &text[..600]);
}

/// Not only the plans the solver picks: every schedule it can build (each layer
/// count, slot count, streamed count, spread and strategy) emits a plan the
/// verifier accepts.
#[test]
fn every_schedule_the_solver_can_build_verifies() {
    let mut checked = 0;
    for layers in 2..=9u64 {
        let m = model(layers);
        let fixed = FixedRegions::new(&m, &SHAPE);
        let all = layer_blocks(&m);
        for k in 2..=crate::solve::MAX_SLOTS.min(layers) {
            for count in k as usize..=all.len() {
                for spread in [Spread::Even, Spread::Last] {
                    for strategy in Strategy::ALL {
                        for pinned in 0..k as usize {
                            let layout = layout_for(&m, &fixed, &pick_streamed(&m, &all, count, spread), k);
                            let sol = evaluate(&m, layout, &[], pinned, spread, strategy, &UnitCosts::ONE).unwrap();
                            let plan = plan_of(&sol, layers);
                            if let Err(e) = djinn_core::verify::verify(&plan) {
                                panic!(
                                    "{layers} layers, {count} streamed ({spread:?}) through {k} slots, {pinned} \
                                     pinned, {strategy:?}:\n{e}"
                                );
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

/// `run` with `host` computed on the host CPU in decode.
/// A djinn solution for [`split_model`]`(layers)` through 2 slots.
fn run_host(layers: u64, streamed: &[usize], host: &[usize], cost: &dyn CostModel) -> Solution {
    let m = split_model(layers);
    let fixed = FixedRegions::new(&m, &SHAPE);
    evaluate(&m, layout_for(&m, &fixed, streamed, 2), host, 0, Spread::Even, Strategy::Djinn, cost).unwrap()
}

#[test]
fn a_host_layer_beats_the_copy_floor_when_copies_dominate() {
    // Copy = 5, compute = 1, host compute = 2. Two split layers; blocks 1, 2, 4
    // (layer.0.attn, layer.0.mlp, layer.1.mlp) stream.
    let cost = UnitCosts { copy: 5.0, compute: 1.0, turnaround: 0.0, host: Some(2.0), handoff: 0.0, contention: 1.0 };
    // Without host compute decode rotates blocks 1 and 4 through slot 0 (block 2
    // stays pinned in slot 1), and the copy lane's cycle sets the pace: C1 →
    // c4 (5) → C4 → c1 (5) → the next C1, 12 per token for 7 of compute.
    // Steady state: C0 [0,1], C1 waits the previous c1 → [3,4], c4 [4,9], C2
    // [4,5], C3 [5,6], C4 waits c4 → [9,10], c1 [10,15], C5 [10,11], C6 [11,12].
    let copied = run_host(2, &B_STREAMED, &[], &cost);
    assert_eq!(
        decode_times(&copied),
        ["C0[0,1]", "C1[3,4]", "c4[4,9]", "C2[4,5]", "C3[5,6]", "C4[9,10]", "c1[10,15]", "C5[10,11]", "C6[11,12]"]
    );
    assert_eq!(copied.metrics.decode_us, 12.0);
    // Block 2 on the host: decode copies blocks 1 and 4, no more than the
    // slots, so both are pinned (block 4 where prefill leaves it, block 1 in
    // slot 1) and decode copies nothing: C0 C1 H2(2) C3 C4 C5 C6 = 8 per token.
    let host = run_host(2, &B_STREAMED, &[2], &cost);
    assert_eq!(decode_times(&host), ["C0[0,1]", "C1[1,2]", "H2[2,4]", "C3[4,5]", "C4[5,6]", "C5[6,7]", "C6[7,8]"]);
    assert_eq!(host.metrics.decode_us, 8.0);
    assert_eq!(host.metrics.decode_copy_busy, 0.0);
    // Prefill is the same but for its prologue: every streamed layer is copied
    // and computed on the GPU.
    assert!(host.metrics.prefill_end_us <= copied.metrics.prefill_end_us);
    // The plan: a host_compute step with no slot and no events; the prologue
    // copies block 1 into slot 1 (its decode slot) after prefill's compute of
    // block 2 (slot 1's last prefill occupant); every decode iteration reads it.
    let plan = plan_of_model(&host, &split_model(2));
    djinn_core::verify::verify(&plan).unwrap();
    let h = step(&plan.decode.steps, Lane::Compute, "layer.0.mlp");
    assert_eq!((h.op, h.slot, h.wait.len(), h.wait_prev.len(), &h.record), (Op::HostCompute, None, 0, 0, &None));
    let copies: Vec<_> = plan
        .prefill
        .steps
        .iter()
        .filter(|s| s.lane == Lane::Copy && s.block == "layer.0.attn")
        .map(|s| (s.slot, s.wait.clone()))
        .collect();
    assert_eq!(copies, [(Some(0), vec![]), (Some(1), vec!["done:layer.0.mlp".to_string()])]);
    let c0 = step(&plan.decode.steps, Lane::Compute, "layer.0.attn");
    assert_eq!((c0.slot, &c0.wait_prev), (Some(1), &vec!["ready:layer.0.attn".to_string()]));
    let c3 = step(&plan.decode.steps, Lane::Compute, "layer.1.mlp");
    assert_eq!((c3.slot, &c3.wait_prev), (Some(0), &vec!["ready:layer.1.mlp".to_string()]));
    // The same blocks as whole layers cannot run on the host: they read the KV cache.
    let whole = model(4);
    let computable: Vec<usize> = B_STREAMED
        .iter()
        .copied()
        .filter(|&b| cost.host_compute_us(&whole.blocks[b], djinn_core::gpu::PhaseKind::Decode).is_some())
        .collect();
    assert!(computable.is_empty());
    assert_eq!(plan.prediction.streamed_bytes_per_token, 0);
}

#[test]
fn solver_picks_the_fastest_host_set_and_only_for_djinn() {
    // 3 split layers, 3 MLPs stream (blocks 2, 4, 6) through 2 slots; copy = 6, compute =
    // 1, host = 2. Copied: block 4 stays pinned in slot 1 and blocks 2 and 6
    // rotate through slot 0: the cycle C2 → c6 (6) → C6 → c2 (6) → C2, with C7,
    // C8, C0, C1 between c2's start and C2, takes 14 per token. One host layer,
    // any of the three, leaves two copied layers, both pinned: decode copies
    // nothing, and the compute lane runs 8 computes and one host compute back
    // to back: 10 (the first set simulated, block 2, keeps the tie). Two host
    // layers (compute 11) and three (12) are slower.
    let m = split_model(3);
    let fixed = FixedRegions::new(&m, &SHAPE);
    let layers = layer_blocks(&m);
    let budget = layout_for(&m, &fixed, &pick_streamed(&m, &layers, 3, Spread::Even), 2).arena.bytes;
    let cost = UnitCosts { copy: 6.0, compute: 1.0, turnaround: 0.0, host: Some(2.0), handoff: 0.0, contention: 1.0 };
    let problem =
        Problem { model: &m, shape: SHAPE, budget, strategy: Strategy::Djinn, host_compute: crate::HostCompute::Auto };
    let sol = solve(&problem, &cost).unwrap();
    assert_eq!((sol.layout.streamed.as_slice(), sol.host.as_slice()), (&[2, 4, 6][..], &[2][..]));
    assert_eq!(sol.program.decode.iter().filter(|it| it.work.is_copy()).count(), 0);
    assert_eq!(sol.metrics.decode_us, 10.0);
    let off = solve(&Problem { host_compute: crate::HostCompute::Off, ..problem.clone() }, &cost).unwrap();
    assert_eq!((off.host.len(), off.metrics.decode_us), (0, 14.0));
    for strategy in [Strategy::Sync, Strategy::StreamAll] {
        let sol = solve(&Problem { strategy, ..problem.clone() }, &cost).unwrap();
        assert!(sol.host.is_empty(), "{strategy:?}");
    }
    // No host lane: no host compute, whatever the problem allows.
    let none = solve(&problem, &UnitCosts { host: None, ..cost }).unwrap();
    assert!(none.host.is_empty());
    // Host compute slower than the copy it saves: h = 0 (ties go to fewer host layers).
    let slow = solve(&problem, &UnitCosts { host: Some(100.0), ..cost }).unwrap();
    assert!(slow.host.is_empty());
}

#[test]
fn host_layers_are_spread_evenly_over_the_streamed_ones() {
    let s = [4, 9, 14, 19, 24, 29, 34, 39];
    assert_eq!(crate::solve::pick_host(&s, 0), Vec::<usize>::new());
    assert_eq!(crate::solve::pick_host(&s, 1), [24]);
    assert_eq!(crate::solve::pick_host(&s, 4), [9, 19, 29, 39]);
    assert_eq!(crate::solve::pick_host(&s, 5), [4, 14, 24, 29, 39]);
    assert_eq!(crate::solve::pick_host(&s, 8), s);
}

/// Every host set of every layout the solver can build emits a plan the verifier accepts.
#[test]
fn every_host_schedule_verifies() {
    let mut checked = 0;
    for layers in 1..=4u64 {
        let m = split_model(layers);
        let fixed = FixedRegions::new(&m, &SHAPE);
        let all = layer_blocks(&m);
        for k in 2..=crate::solve::MAX_SLOTS.min(all.len() as u64) {
            for count in k as usize..=all.len() {
                for spread in crate::solve::spreads(&m) {
                    let streamed = pick_streamed(&m, &all, count, spread);
                    let mlps: Vec<usize> =
                        streamed.iter().copied().filter(|&b| m.blocks[b].kind == djinn_core::BlockKind::Mlp).collect();
                    if mlps.is_empty() {
                        continue;
                    }
                    for host in crate::solve::host_candidates(&mlps) {
                        for pinned in 0..k as usize {
                            let layout = layout_for(&m, &fixed, &streamed, k);
                            let cost = UnitCosts { host: Some(2.0), handoff: 0.5, ..UnitCosts::ONE };
                            let sol = evaluate(&m, layout, &host, pinned, spread, Strategy::Djinn, &cost).unwrap();
                            let plan = plan_of_model(&sol, &m);
                            if let Err(e) = djinn_core::verify::verify(&plan) {
                                panic!(
                                    "{layers} layers, {count} streamed ({spread:?}) through {k} slots, {pinned} \
                                     pinned, host {host:?}:\n{e}"
                                );
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// The fine table: the spreads pick what they say.
#[test]
fn fine_spreads_pick_what_they_say() {
    use djinn_core::BlockKind::{Attention, Down, GateUp};
    let m = model(4).fine_layers();
    let all = layer_blocks(&m);
    assert_eq!(all.len(), 12);
    let kinds = |bs: &[usize]| bs.iter().map(|&b| m.blocks[b].kind).collect::<Vec<_>>();
    let spreads = crate::solve::spreads(&m);
    assert!(spreads.contains(&Spread::DownFirst) && spreads.contains(&Spread::GateUpFirst));
    // Downs first: 3 downs, evenly; 5: the 4 downs, then one gate/up.
    assert_eq!(kinds(&pick_streamed(&m, &all, 3, Spread::DownFirst)), [Down; 3]);
    let five = pick_streamed(&m, &all, 5, Spread::DownFirst);
    assert_eq!(kinds(&five).iter().filter(|&&k| k == Down).count(), 4);
    assert_eq!(kinds(&pick_streamed(&m, &all, 4, Spread::GateUpFirst)), [GateUp; 4]);
    // Whole MLPs first: 4 blocks are two layers' gate_up and down, evenly (layers 1 and 3).
    let mlps = pick_streamed(&m, &all, 4, Spread::MlpFirst);
    let names: Vec<&str> = mlps.iter().map(|&b| m.blocks[b].name.as_str()).collect();
    assert_eq!(names, ["layer.1.gate_up", "layer.1.down", "layer.3.gate_up", "layer.3.down"]);
    // 9: all four MLPs, then one attention.
    assert_eq!(kinds(&pick_streamed(&m, &all, 9, Spread::MlpFirst)).iter().filter(|&&k| k == Attention).count(), 1);
}

/// Every host set of every fine-table layout the solver can build emits a plan the verifier accepts.
#[test]
fn every_fine_host_schedule_verifies() {
    let mut checked = 0;
    for layers in 1..=3u64 {
        let m = model(layers).fine_layers();
        let fixed = FixedRegions::new(&m, &SHAPE);
        let all = layer_blocks(&m);
        let cost = UnitCosts { host: Some(2.0), handoff: 0.5, ..UnitCosts::ONE };
        for k in 2..=4.min(all.len() as u64) {
            for count in k as usize..=all.len() {
                for spread in crate::solve::spreads(&m) {
                    let streamed = pick_streamed(&m, &all, count, spread);
                    let layout = layout_for(&m, &fixed, &streamed, k);
                    // Every MLP part on its own, whatever side its partner runs on.
                    let computable: Vec<usize> =
                        streamed.iter().copied().filter(|&b| m.blocks[b].kind.is_mlp_part()).collect();
                    for host in std::iter::once(vec![]).chain(crate::solve::host_candidates(&computable)) {
                        for pinned in 0..k as usize {
                            let sol =
                                evaluate(&m, layout.clone(), &host, pinned, spread, Strategy::Djinn, &cost).unwrap();
                            let plan = plan_of_model(&sol, &m);
                            if let Err(e) = djinn_core::verify::verify(&plan) {
                                panic!(
                                    "{layers} layers, {count} streamed ({spread:?}) through {k} slots, {pinned} \
                                     pinned, host {host:?}:\n{e}"
                                );
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 500, "{checked}");
}
