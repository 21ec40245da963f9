//! Tests of rules `copy-before-compute` and `slot-reuse` (and of the valid
//! fixtures they start from). Step positions refer to the layout documented on
//! [`fixture::streamed_plan`].

use super::fixture::{self, assert_mentions, broken_only, find, streamed_plan, Style};
use super::*;
use crate::plan::Op;

#[test]
fn hand_built_plans_verify() {
    let cases = [(4, vec![0, 1, 3], 2), (2, vec![0, 1], 2), (4, vec![0, 1, 2, 3], 3), (3, vec![1], 2), (2, vec![], 0)];
    for (layers, streamed, slots) in cases {
        for style in [Style::Pipelined, Style::Sync] {
            let plan = fixture::plan(layers, &streamed, slots, style);
            if let Err(e) = verify(&plan) {
                panic!("{style:?}, {layers} layers, {streamed:?} streamed through {slots} slots:\n{e}");
            }
        }
    }
}

#[test]
fn fixture_has_the_documented_layout() {
    let plan = streamed_plan();
    let render = |p: &crate::plan::Phase| p.steps.iter().map(step_summary).collect::<Vec<_>>().join(", ");
    assert_eq!(
        render(&plan.decode),
        "compute embed, compute layer.0 from slot 0, copy layer.3 into slot 0, compute layer.1 from slot 1, \
         copy layer.1 into slot 1, compute layer.2, compute layer.3 from slot 0, copy layer.0 into slot 0, \
         compute norm, compute lm_head"
    );
    assert_eq!(plan.decode.steps[1].wait_prev, ["ready:layer.0"]);
    assert_eq!(find(&plan.prefill, Op::Copy, "layer.0"), 0);
    assert_eq!(plan.prefill.steps[9].block, "layer.0");
}

#[test]
fn prologue_copies_may_re_record_an_event_in_prefill() {
    // Prefill records ready:layer.0 at step 0 (for its own compute) and again at
    // step 9 (the prologue); a wait resolves to the latest record, so this is valid.
    let plan = streamed_plan();
    let records = plan.prefill.steps.iter().filter(|s| s.record.as_deref() == Some("ready:layer.0")).count();
    assert_eq!(records, 2);
    verify(&plan).unwrap();
}

#[test]
fn compute_without_a_wait_on_its_copy_breaks_copy_before_compute() {
    let mut plan = streamed_plan();
    plan.decode.steps[6].wait.clear(); // compute layer.3 from slot 0 no longer waits on step 2
    let v = broken_only(&plan, Rule::CopyBeforeCompute);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(
        (v[0].phase, v[0].step, v[0].block.as_deref(), v[0].slot),
        (Some(PhaseName::Decode), Some(6), Some("layer.3"), Some(0))
    );
    assert_mentions(
        &v[0],
        &[
            "rule copy-before-compute broken at decode step 6 (compute layer.3 from slot 0)",
            "in every decode iteration (shown for the first, whose previous iteration is prefill)",
            "prefill step 9 (copy layer.0 into slot 0), which loads layer.0",
            "step 2 (copy layer.3 into slot 0) loads layer.3 but nothing makes this compute wait for it",
            "add wait = [\"ready:layer.3\"] to step 6",
        ],
    );
}

#[test]
fn compute_reading_the_wrong_slot_breaks_copy_before_compute() {
    let mut plan = streamed_plan();
    plan.decode.steps[3].slot = Some(0); // layer.1 lives in slot 1
    let v = broken_only(&plan, Rule::CopyBeforeCompute);
    assert_mentions(
        &v[0],
        &[
            "decode step 3 (compute layer.1 from slot 0)",
            "which loads layer.0",
            "the latest copy of layer.1 before it, prefill step 6 (copy layer.1 into slot 1), writes slot 1: read that slot instead",
        ],
    );
}

#[test]
fn prologue_without_its_record_breaks_copy_before_compute_in_the_first_iteration_only() {
    // Without the prologue's record, decode iteration 0's wait_prev resolves to
    // prefill's first record of ready:layer.0 (step 0), whose slot was reused since.
    let mut plan = streamed_plan();
    plan.prefill.steps[9].record = None;
    let v = broken_only(&plan, Rule::CopyBeforeCompute);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &[
            "decode step 1 (compute layer.0 from slot 0): in the first decode iteration",
            "prefill step 4 (copy layer.3 into slot 0), which loads layer.3",
            "prefill step 9 (copy layer.0 into slot 0) loads layer.0 but nothing makes this compute wait for it",
            "step 1 has wait_prev = [\"ready:layer.0\"], but that resolves to prefill step 0 (copy layer.0 into slot 0), \
             the latest record of \"ready:layer.0\"; make prefill step 9 (copy layer.0 into slot 0) the last step to record",
        ],
    );
}

#[test]
fn misplaced_record_in_the_body_breaks_copy_before_compute_in_steady_state_only() {
    // The body's record of ready:layer.0 moves from its copy (step 7) to the
    // resident compute at step 5. Iteration 0 still reads prefill's prologue
    // record, so only the unrolled iterations 1+ expose the race.
    let mut plan = streamed_plan();
    plan.decode.steps[7].record = None;
    plan.decode.steps[5].record = Some("ready:layer.0".into());
    let v = broken_only(&plan, Rule::CopyBeforeCompute);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &[
            "decode step 1 (compute layer.0 from slot 0): in steady-state decode iterations (not the first)",
            "step 2 (copy layer.3 into slot 0) of the previous iteration, which loads layer.3",
            "step 7 (copy layer.0 into slot 0) of the previous iteration loads layer.0",
            "resolves to step 5 (compute layer.2) of the previous iteration, the latest record of \"ready:layer.0\"",
        ],
    );
}

#[test]
fn copy_without_a_wait_on_the_previous_reader_breaks_slot_reuse() {
    let mut plan = streamed_plan();
    plan.decode.steps[2].wait.clear(); // copy layer.3 into slot 0 no longer waits for compute layer.0
    let v = broken_only(&plan, Rule::SlotReuse);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(
        (v[0].phase, v[0].step, v[0].block.as_deref(), v[0].slot),
        (Some(PhaseName::Decode), Some(2), Some("layer.3"), Some(0))
    );
    assert_mentions(
        &v[0],
        &[
            "rule slot-reuse broken at decode step 2 (copy layer.3 into slot 0)",
            "the copy may overwrite slot 0 while step 1 (compute layer.0 from slot 0) still reads layer.0 from it",
            "add wait = [\"done:layer.0\"] to step 2",
        ],
    );
}

#[test]
fn sync_copy_unordered_after_the_previous_iteration_breaks_slot_reuse_with_a_wait_prev_hint() {
    // Sync prefill and decode: 0 embed, 1 copy layer.0→0 (waits done:embed), 2 layer.0@0, …, 7 layer.3@0.
    let mut plan = fixture::plan(4, &[0, 1, 3], 2, Style::Sync);
    assert_eq!(step_summary(&plan.decode.steps[1]), "copy layer.0 into slot 0");
    plan.decode.steps[1].wait.clear();
    let v = broken_only(&plan, Rule::SlotReuse);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_mentions(
        &v[0],
        &[
            "decode step 1 (copy layer.0 into slot 0): in every decode iteration (shown for the first",
            "while prefill step 7 (compute layer.3 from slot 0) still reads layer.3",
            "add wait_prev = [\"done:layer.3\"] to step 1",
        ],
    );
}

#[test]
fn copy_issued_before_the_reader_breaks_slot_reuse() {
    // Prefill: move the copy of layer.3 (step 4) before the compute of layer.0 (step 3),
    // and make it wait on nothing.
    let mut plan = streamed_plan();
    plan.prefill.steps.swap(3, 4);
    plan.prefill.steps[3].wait.clear();
    let v = broken_only(&plan, Rule::SlotReuse);
    assert_mentions(
        &v[0],
        &["prefill step 3 (copy layer.3 into slot 0)", "step 4 (compute layer.0 from slot 0)", "move it after step 4"],
    );
}

/// The waits of `plan` whose removal alone still verifies; panics if a removal
/// breaks a rule other than the race rules.
fn redundant_waits(plan: &Plan) -> Vec<String> {
    let mut redundant = Vec::new();
    for phase in [PhaseName::Prefill, PhaseName::Decode] {
        for (i, step) in plan.phase(phase).steps.iter().enumerate() {
            for (prev, n) in [(false, step.wait.len()), (true, step.wait_prev.len())] {
                for j in 0..n {
                    let mut bad = plan.clone();
                    let steps =
                        if phase == PhaseName::Prefill { &mut bad.prefill.steps } else { &mut bad.decode.steps };
                    let list = if prev { &mut steps[i].wait_prev } else { &mut steps[i].wait };
                    let gone = format!("{phase} step {i} {}", list.remove(j));
                    match verify(&bad) {
                        Ok(()) => redundant.push(gone),
                        Err(e) => assert!(
                            e.rules().iter().all(|r| matches!(r, Rule::CopyBeforeCompute | Rule::SlotReuse)),
                            "{gone}: {e}"
                        ),
                    }
                }
            }
        }
    }
    redundant
}

#[test]
fn dropping_a_wait_is_caught_unless_the_copy_lane_order_already_implies_it() {
    // Slot 1's only occupant is layer.1. Its carried copy (decode step 4) is
    // issued on the copy lane before the carried copy of layer.0 (step 7), which
    // decode step 1 waits on before step 3 computes: FIFO lanes make step 3's
    // own wait_prev redundant. Every other wait guards a race.
    assert_eq!(redundant_waits(&streamed_plan()), ["decode step 3 ready:layer.1"]);
    // With three slots and all four layers streamed: slot 1 and 2 hold one layer
    // each, whose carried copies precede the one of slot 0's first occupant.
    let plan = fixture::plan(4, &[0, 1, 2, 3], 3, Style::Pipelined);
    assert_eq!(redundant_waits(&plan), ["decode step 3 ready:layer.1", "decode step 5 ready:layer.2"]);
}

#[test]
fn compute_reading_a_slot_past_the_arena_is_reported_not_a_panic() {
    // Slot 7 does not exist (2 slot regions) and no copy writes it: rule
    // step-shape reports the slot, and the race rules, which used to panic
    // looking up the copies into slot 7, report the missing copy.
    let mut plan = streamed_plan();
    plan.decode.steps[6].slot = Some(7);
    let err = verify(&plan).unwrap_err();
    assert_eq!(err.rules().into_iter().collect::<Vec<_>>(), [Rule::StepShape, Rule::CopyBeforeCompute], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("decode step 6 (compute layer.3 from slot 7): reads slot 7, but the arena has 2 slot regions"),
        "{text}"
    );
    assert!(text.contains("no copy into slot 7 is ordered before it"), "{text}");
}

#[test]
fn compute_reading_a_slot_no_copy_writes_is_reported_not_a_panic() {
    // A third slot region exists, but no step ever copies into it.
    let mut plan = streamed_plan();
    let last = plan.arena.regions.iter().rfind(|r| r.kind == crate::plan::RegionKind::Slot).unwrap().clone();
    let end = plan.arena.bytes;
    plan.arena.regions.push(crate::plan::Region { name: "slot.2".into(), offset: end, ..last });
    plan.arena.bytes += plan.arena.regions.last().unwrap().bytes;
    plan.budget_bytes = plan.arena.bytes;
    plan.prefill.steps[8].slot = Some(2);
    let v = broken_only(&plan, Rule::CopyBeforeCompute);
    assert_mentions(
        &v[0],
        &["prefill step 8 (compute layer.3 from slot 2)", "no copy into slot 2 is ordered before it"],
    );
}
