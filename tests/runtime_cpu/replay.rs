//! Where the weights live and in which order the lanes run must not change
//! a single bit of what is computed — and a plan whose events are
//! incomplete must be caught, by the verifier or, forced past it, by the
//! adversarial replay.
//!
//! Bit identity (not a tolerance) is the right check: a streamed block's
//! image is the same bytes as its resident copy, the kernels are
//! deterministic whatever the thread count (`djinn_kernels::matmul`), and
//! the forward pass does not know where its weights came from. Any
//! difference is a wrong byte somewhere — a slot read before its copy
//! landed, or after the next occupant overwrote it.

use djinn_core::plan::{Op, PhaseName, Placement, RunShape};
use djinn_core::verify::Rule;
use djinn_runtime::replay::ReplayError;

use super::*;

/// New tokens per run: prefill, then enough decode passes to cycle every
/// slot several times (the decode body's prefetches wrap into the next iteration).
const TOKENS: u64 = 8;

/// The fixture's longest reference prompt (a few dozen tokens), so prefill has real work.
fn prompt(name: &str) -> &'static [u32] {
    &reference(name).iter().max_by_key(|r| r.input_ids.len()).unwrap().input_ids
}

/// The layers `plan` streams.
fn streamed_layers(plan: &Plan) -> Vec<String> {
    plan.placements.iter().filter(|p| p.placement == Placement::Streamed).map(|p| p.block.clone()).collect()
}

/// A Djinn plan whose budget is one layer short of holding everything: some
/// layers resident, some streamed, prefetched as early as a slot frees.
fn tight_budget_plan(name: &str) -> Plan {
    let resident = resident_plan(name);
    let layer = resident.block("layer.0").unwrap().bytes;
    let plan = plan_for(name, Strategy::Djinn, Some(resident.arena.bytes - layer), 64, 256);
    assert!(plan.slot_count() > 0, "{name}: a budget one layer short streams some layers");
    plan
}

/// Panics naming the first differing logit, rather than dumping 32000-element vectors.
fn assert_same_bits(what: &str, got: &Run, want: &Run) {
    assert_eq!(got.logits.len(), want.logits.len(), "{what}: number of emitted tokens");
    for (step, (g, w)) in got.bits().iter().zip(want.bits()).enumerate() {
        if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
            panic!(
                "{what}: logits of token {step} differ first at index {i}: {} vs {}",
                f32::from_bits(g[i]),
                f32::from_bits(w[i])
            );
        }
    }
    assert_eq!(got.tokens, want.tokens, "{what}: tokens");
}

#[test]
fn streaming_every_layer_through_two_slots_is_bit_identical_to_residency() {
    for name in FIXTURES {
        let resident = resident_plan(name);
        let streamed = stream_all_plan(name);
        assert_eq!(streamed.slot_count(), 2, "{name}");
        let layers = streamed.model.arch.num_layers as usize;
        assert_eq!(streamed_layers(&streamed), (0..layers).map(|i| format!("layer.{i}")).collect::<Vec<_>>());
        // The same with every layer as two blocks, attention then MLP.
        let split = stream_all_split_plan(name);
        let halves: Vec<String> =
            (0..layers).flat_map(|i| [format!("layer.{i}.attn"), format!("layer.{i}.mlp")]).collect();
        assert_eq!(streamed_layers(&split), halves);
        let p = prompt(name);
        let want = run(&resident, name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        let got = run(&streamed, name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        assert_same_bits(&format!("{name}: stream-all vs resident"), &got, &want);
        let got = run(&split, name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        assert_same_bits(&format!("{name}: stream-all of split layers vs resident"), &got, &want);
        // And as three, attention, gate/up and down.
        let fine = stream_all_fine_plan(name);
        let parts: Vec<String> = (0..layers)
            .flat_map(|i| [format!("layer.{i}.attn"), format!("layer.{i}.gate_up"), format!("layer.{i}.down")])
            .collect();
        assert_eq!(streamed_layers(&fine), parts);
        let got = run(&fine, name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        assert_same_bits(&format!("{name}: stream-all of the fine table vs resident"), &got, &want);
    }
}

/// Fine-table plans at budgets a down block, a gate/up block and a whole
/// layer short of residency: each streams some of the new kinds.
fn fine_tight_plans(name: &str) -> Vec<(String, Plan)> {
    let resident = resident_plan(name);
    let fine = resident.model.fine_layers();
    let (down, gate_up) = (fine.block("layer.0.down").unwrap().bytes, fine.block("layer.0.gate_up").unwrap().bytes);
    let layer = resident.block("layer.0").unwrap().bytes;
    [("a down", down), ("a gate/up", gate_up), ("a layer", layer)]
        .into_iter()
        .map(|(what, short)| {
            let plan = fine_plan_short_by(name, short);
            let streamed = streamed_layers(&plan);
            assert!(
                streamed.iter().any(|b| b.ends_with(".gate_up") || b.ends_with(".down")),
                "{name}: {what} short streams {streamed:?}"
            );
            (format!("fine, {what} short ({})", streamed.join(" ")), plan)
        })
        .collect()
}

#[test]
fn fine_table_plans_at_tight_budgets_are_bit_identical_to_residency_in_order_and_adversarial() {
    for name in FIXTURES {
        let p = prompt(name);
        let want = run(&resident_plan(name), name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        for (what, plan) in fine_tight_plans(name) {
            println!("{name}: {what} through {} slots", plan.slot_count());
            for mode in [Mode::InOrder, Mode::Adversarial] {
                let got = run(&plan, name, p, TOKENS, mode, ReplayOptions::default());
                assert_same_bits(&format!("{name}: {what}, {mode:?} vs resident"), &got, &want);
            }
        }
    }
}

#[test]
fn host_computed_fine_mlps_are_bit_identical_to_residency() {
    for name in FIXTURES {
        let want = run(&resident_plan(name), name, prompt(name), 8, Mode::InOrder, ReplayOptions::default());
        let plan = fine_host_compute_plan(name);
        let host: Vec<&str> = plan
            .decode
            .steps
            .iter()
            .filter(|s| s.op == Op::HostCompute && !["embed", "lm_head"].contains(&s.block.as_str()))
            .map(|s| s.block.as_str())
            .collect();
        // MLP parts only (every streamed one: --host-compute all).
        assert!(!host.is_empty(), "{name}");
        assert!(host.iter().all(|b| b.ends_with(".gate_up") || b.ends_with(".down")), "{name}: {host:?}");
        for mode in [Mode::InOrder, Mode::Adversarial] {
            let got = run(&plan, name, prompt(name), 8, mode, ReplayOptions::default());
            assert_same_bits(&format!("{name} fine host_compute {mode:?}"), &got, &want);
        }
    }
}

#[test]
fn fine_mlps_split_across_the_bus_are_bit_identical_to_residency() {
    let shape = RunShape { prompt_len: 64, max_seq_len: 256, batch: 1 };
    for name in FIXTURES {
        let want = run(&resident_plan(name), name, prompt(name), 8, Mode::InOrder, ReplayOptions::default());
        for (case, plan) in crate::support::split_mlp_plans(&fixture(name), "t4", shape) {
            for mode in [Mode::InOrder, Mode::Adversarial] {
                let got = run(&plan, name, prompt(name), 8, mode, ReplayOptions::default());
                assert_same_bits(&format!("{name} {case} {mode:?}"), &got, &want);
            }
        }
    }
}

#[test]
fn a_tight_budget_plan_is_bit_identical_to_residency() {
    for name in FIXTURES {
        let plan = tight_budget_plan(name);
        println!("{name}: tight budget streams {:?} through {} slots", streamed_layers(&plan), plan.slot_count());
        let p = prompt(name);
        let want = run(&resident_plan(name), name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        let got = run(&plan, name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        assert_same_bits(&format!("{name}: tight budget vs resident"), &got, &want);
    }
}

#[test]
fn host_computed_decode_steps_are_bit_identical_to_residency() {
    for name in FIXTURES {
        let want = run(&resident_plan(name), name, prompt(name), 8, Mode::InOrder, ReplayOptions::default());
        let plan = host_compute_plan(name);
        for mode in [Mode::InOrder, Mode::Adversarial] {
            let got = run(&plan, name, prompt(name), 8, mode, ReplayOptions::default());
            assert_same_bits(&format!("{name} host_compute {mode:?}"), &got, &want);
        }
    }
}

#[test]
fn adversarial_replay_is_bit_identical_to_in_order() {
    for name in FIXTURES {
        let p = prompt(name);
        let want = run(&resident_plan(name), name, p, TOKENS, Mode::InOrder, ReplayOptions::default());
        for (what, plan) in [
            ("resident", resident_plan(name)),
            ("stream-all", stream_all_plan(name)),
            ("stream-all split", stream_all_split_plan(name)),
            ("stream-all fine", stream_all_fine_plan(name)),
            ("tight budget", tight_budget_plan(name)),
        ] {
            let got = run(&plan, name, p, TOKENS, Mode::Adversarial, ReplayOptions::default());
            assert_same_bits(&format!("{name}: {what}, adversarial vs in-order"), &got, &want);
        }
    }
}

/// `plan` with the `wait` of its prefill compute of `block` removed; the step's index.
fn without_compute_wait(plan: &Plan, block: &str) -> (Plan, usize) {
    let mut broken = plan.clone();
    let (i, step) =
        broken.prefill.steps.iter_mut().enumerate().find(|(_, s)| s.op == Op::Compute && s.block == block).unwrap();
    assert!(step.slot.is_some() && !step.wait.is_empty(), "prefill compute of {block} reads a slot after a wait");
    step.wait.clear();
    (broken, i)
}

#[test]
fn a_plan_missing_a_wait_is_rejected_by_the_verifier_as_copy_before_compute() {
    for name in FIXTURES {
        let (broken, at) = without_compute_wait(&stream_all_plan(name), "layer.2");
        let Err(ReplayError::Verify(e)) = Replay::new(&broken, ReplayOptions::default()) else {
            panic!("{name}: a plan missing the wait of prefill step {at} was accepted");
        };
        let rules: std::collections::BTreeSet<Rule> = e.violations.iter().map(|v| v.rule).collect();
        assert_eq!(rules, [Rule::CopyBeforeCompute].into(), "{name}: {e}");
        assert!(
            e.violations.iter().any(|v| v.phase == Some(PhaseName::Prefill) && v.step == Some(at)),
            "{name}: no violation at prefill step {at}: {e}"
        );
        let message = e.to_string();
        assert!(message.contains("copy-before-compute") && message.contains("layer.2"), "{name}: {message}");
    }
}

/// Forced past the verifier, in-order replay cannot tell (every copy has
/// finished before the next call); adversarial replay runs the compute
/// while the copy into its slot is still in flight and reads the poison.
#[test]
fn a_plan_missing_a_wait_forced_past_the_verifier_reads_poison_in_adversarial_replay() {
    let forced = ReplayOptions::unverified();
    for name in FIXTURES {
        let plan = stream_all_plan(name);
        let (broken, _) = without_compute_wait(&plan, "layer.2");
        let p = prompt(name);
        let good = run(&plan, name, p, TOKENS, Mode::Adversarial, ReplayOptions::default());
        let in_order = run(&broken, name, p, TOKENS, Mode::InOrder, forced);
        assert_same_bits(&format!("{name}: broken plan in order"), &in_order, &good);
        let bad = run(&broken, name, p, TOKENS, Mode::Adversarial, forced);
        assert_ne!(bad.bits(), good.bits(), "{name}: adversarial replay did not notice the missing wait");
        assert!(
            bad.logits[0].iter().all(|v| v.is_nan()),
            "{name}: prefill read the poisoned slot, so every logit is NaN"
        );
        let again = run(&broken, name, p, TOKENS, Mode::Adversarial, forced);
        assert_same_bits(&format!("{name}: broken plan, adversarial twice"), &again, &bad);
    }
}

/// `plan` with the `wait` (and `wait_prev`) of `phase`'s copy of `block` removed; the step's index.
fn without_copy_wait(plan: &Plan, phase: PhaseName, block: &str) -> (Plan, usize) {
    let mut broken = plan.clone();
    let steps = match phase {
        PhaseName::Prefill => &mut broken.prefill.steps,
        PhaseName::Decode => &mut broken.decode.steps,
    };
    let (i, step) = steps.iter_mut().enumerate().find(|(_, s)| s.op == Op::Copy && s.block == block).unwrap();
    assert!(!step.wait.is_empty() || !step.wait_prev.is_empty(), "{phase} copy of {block} waits on its slot's reader");
    step.wait.clear();
    step.wait_prev.clear();
    (broken, i)
}

/// Regression: adversarial replay completed every copy as late as possible,
/// so the copy lane never got ahead of compute and a copy that did not wait
/// for its slot's last reader went unnoticed (same output as a good plan).
#[test]
fn adversarial_replay_catches_a_copy_missing_its_wait_on_the_slots_last_reader() {
    let forced = ReplayOptions::unverified();
    for name in FIXTURES {
        let plan = stream_all_plan(name);
        let p = prompt(name);
        let good = run(&plan, name, p, TOKENS, Mode::Adversarial, ReplayOptions::default());
        for phase in [PhaseName::Prefill, PhaseName::Decode] {
            let (broken, at) = without_copy_wait(&plan, phase, "layer.2");
            let e = Replay::new(&broken, ReplayOptions::default()).expect_err("the verifier rejects it");
            assert!(e.to_string().contains("rule slot-reuse broken"), "{name} {phase} step {at}: {e}");
            let bad = run(&broken, name, p, TOKENS, Mode::Adversarial, forced);
            assert_ne!(
                bad.bits(),
                good.bits(),
                "{name}: {phase} step {at} copies layer.2 over a slot still to be read"
            );
            let again = run(&broken, name, p, TOKENS, Mode::Adversarial, forced);
            assert_same_bits(&format!("{name}: {phase} step {at}, adversarial twice"), &again, &bad);
        }
    }
}

/// Copies of `plan`, each with one step's `wait` or `wait_prev` removed, described.
fn one_wait_removed(plan: &Plan) -> Vec<(String, Plan)> {
    let mut out = Vec::new();
    for phase in [PhaseName::Prefill, PhaseName::Decode] {
        for at in 0..plan.phase(phase).steps.len() {
            for (field, prev) in [("wait", false), ("wait_prev", true)] {
                let mut broken = plan.clone();
                let steps = match phase {
                    PhaseName::Prefill => &mut broken.prefill.steps,
                    PhaseName::Decode => &mut broken.decode.steps,
                };
                let step = &mut steps[at];
                let waits = if prev { &mut step.wait_prev } else { &mut step.wait };
                if !waits.is_empty() {
                    let gone = std::mem::take(waits);
                    out.push((format!("{phase} step {at} without {field} = {gone:?}"), broken));
                }
            }
        }
    }
    out
}

/// Every wait of a streaming plan, removed one at a time: the verifier
/// rejects the plan exactly when adversarial replay computes something else.
#[test]
fn each_wait_the_verifier_needs_is_one_adversarial_replay_needs() {
    let forced = ReplayOptions::unverified();
    for name in FIXTURES {
        let p = prompt(name);
        let fixed = [
            ("stream-all", stream_all_plan(name)),
            ("stream-all split", stream_all_split_plan(name)),
            ("stream-all fine", stream_all_fine_plan(name)),
            ("tight budget", tight_budget_plan(name)),
        ];
        let fine = fine_tight_plans(name);
        for (what, plan) in fixed.into_iter().chain(fine.iter().map(|(w, p)| (w.as_str(), p.clone()))) {
            let good = run(&plan, name, p, 3, Mode::InOrder, ReplayOptions::default());
            let cases = one_wait_removed(&plan);
            assert!(cases.len() >= 2 * plan.slot_count() as usize, "{name} {what}: only {} waits", cases.len());
            for (case, broken) in &cases {
                let rejected = Replay::new(broken, ReplayOptions::default()).is_err();
                let differs = run(broken, name, p, 3, Mode::Adversarial, forced).bits() != good.bits();
                assert_eq!(
                    differs, rejected,
                    "{name} {what}, {case}: the verifier rejects it: {rejected}; adversarial output differs: {differs}"
                );
            }
            println!("{name} {what}: {} single-wait removals checked", cases.len());
        }
    }
}
