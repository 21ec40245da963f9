//! Rules `step-shape`, `order` and `events`: each step, each
//! phase's compute order and each event reference is well-formed on its own.
//!
//! These are the local facts the race rules ([`super::races`]) build on: a
//! step's slot exists and fits its block, and every `wait` / `wait_prev`
//! resolves, by the semantics documented in [`crate::plan`], to a record
//! issued *before* it. That last fact is what makes issue order a topological
//! order of the run: no wait can point forward, so the lanes cannot deadlock.

use std::collections::HashMap;

use super::identity::abbreviate;
use super::index::Index;
use super::{Rule, Violation};
use crate::plan::{Lane, Op, Phase, PhaseName, Placement, Plan};

const PHASES: [PhaseName; 2] = [PhaseName::Prefill, PhaseName::Decode];

pub(super) fn check_step_shape(plan: &Plan, index: &Index, out: &mut Vec<Violation>) {
    for phase in PHASES {
        for (i, step) in plan.phase(phase).steps.iter().enumerate() {
            let mut fail = |m: String| out.push(Violation::at_step(Rule::StepShape, phase, i, step, m));
            match (step.op, step.lane) {
                (Op::Copy, Lane::Copy) | (Op::Compute | Op::HostCompute, Lane::Compute) => {}
                (op, lane) => fail(format!(
                    "op {op:?} runs on lane {lane:?}; copies go on the copy lane, computes and host computes on \
                     the compute lane"
                )),
            }
            if !(step.start_us.is_finite()
                && step.end_us.is_finite()
                && step.start_us >= 0.0
                && step.start_us <= step.end_us)
            {
                fail(format!(
                    "predicted times start_us = {}, end_us = {} must be finite with 0 <= start_us <= end_us",
                    step.start_us, step.end_us
                ));
            }
            let Some(block) = index.block(&step.block) else {
                fail(format!("names block {:?}, which the model does not have", step.block));
                continue;
            };
            let placement = index.placement(&step.block);
            let slot = step.slot.map(|s| (s, index.slot_region(s)));
            let slots = index.slot_count();
            match (step.op, placement) {
                (Op::Copy, Some(Placement::Resident { region })) => fail(format!(
                    "copies block {}, which is resident in region {region}: resident blocks are loaded once before \
                     the run and need no copy steps; remove this step",
                    block.name
                )),
                (Op::Copy, _) => match slot {
                    None => fail("is a copy without a slot; a copy must name the slot it writes".into()),
                    Some((s, None)) => fail(format!("writes slot {s}, but the arena has {slots} slot regions")),
                    Some((s, Some(r))) if r.bytes < block.bytes => fail(format!(
                        "copies {} bytes into slot {s}, but region {} is only {} bytes",
                        block.bytes, r.name, r.bytes
                    )),
                    Some(_) => {}
                },
                (Op::Compute, Some(Placement::Resident { region })) => {
                    if let Some((s, _)) = slot {
                        fail(format!(
                            "names slot {s}, but block {} is resident in region {region} and computes from there; \
                             remove the slot",
                            block.name
                        ));
                    }
                }
                (Op::Compute, Some(Placement::Streamed)) => match slot {
                    None => fail(format!(
                        "computes streamed block {} without a slot; name the slot its copy was written to",
                        block.name
                    )),
                    Some((s, None)) => fail(format!("reads slot {s}, but the arena has {slots} slot regions")),
                    Some(_) => {}
                },
                (Op::HostCompute, Some(Placement::Resident { region })) => fail(format!(
                    "host-computes block {}, which is resident in region {region}: only a streamed block has an \
                     image in host memory for the host CPU to read",
                    block.name
                )),
                (Op::HostCompute, Some(Placement::Streamed)) => {
                    if block.kind.reads_kv() {
                        fail(format!(
                            "host-computes block {} ({:?}), which reads the layer's KV cache: the cache lives in \
                             device memory only, so only blocks that do not read it (MLP halves) run on the host",
                            block.name, block.kind
                        ));
                    }
                    if let Some((s, _)) = slot {
                        fail(format!(
                            "host-computes block {} but names slot {s}: the host CPU reads the block's image in host \
                             memory; remove the slot",
                            block.name
                        ));
                    }
                }
                (Op::Compute | Op::HostCompute, None) => {} // Reported by rule `placement`.
            }
        }
    }
}

pub(super) fn check_order(plan: &Plan, out: &mut Vec<Violation>) {
    let want: Vec<&str> = plan.model.blocks.iter().map(|b| b.name.as_str()).collect();
    for phase in PHASES {
        let steps = &plan.phase(phase).steps;
        let computes = steps.iter().enumerate().filter(|(_, s)| matches!(s.op, Op::Compute | Op::HostCompute));
        let mut next = 0; // index into `want` of the block the next compute must name
        let mut broken = false;
        for (i, step) in computes {
            if want.get(next) == Some(&step.block.as_str()) {
                next += 1;
                continue;
            }
            let expected = match want.get(next) {
                Some(b) => format!("model order requires {b} next"),
                None => format!("all {} blocks have already been computed", want.len()),
            };
            let why = if want[..next].contains(&step.block.as_str()) {
                "computes it a second time"
            } else if want.contains(&step.block.as_str()) {
                "computes it too early"
            } else {
                "names a block the model does not have"
            };
            out.push(Violation::at_step(
                Rule::Order,
                phase,
                i,
                step,
                format!(
                    "{why}: {expected} (each phase computes every block exactly once, in model order: {})",
                    abbreviate(&want)
                ),
            ));
            broken = true;
            break;
        }
        if !broken && next < want.len() {
            out.push(
                Violation::new(
                    Rule::Order,
                    format!(
                        "the phase never computes {}; each phase computes every block exactly once, in model order",
                        abbreviate(&want[next..])
                    ),
                )
                .in_phase(phase)
                .block(want[next]),
            );
        }
    }
}

/// Positions of the steps of `phase` that record each event, ascending.
fn recorders(phase: &Phase) -> HashMap<&str, Vec<usize>> {
    let mut at: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in phase.steps.iter().enumerate() {
        if let Some(e) = &s.record {
            at.entry(e.as_str()).or_default().push(i);
        }
    }
    at
}

/// How many recording positions a message lists before summarising the rest.
const LISTED_POSITIONS: usize = 6;

fn list(positions: &[usize]) -> String {
    let shown = positions.iter().take(LISTED_POSITIONS).map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    match positions {
        [] => "no step records it".into(),
        [p] => format!("only step {p} records it"),
        _ if positions.len() > LISTED_POSITIONS => {
            format!("only steps {shown}, … ({} in all) record it", positions.len())
        }
        _ => format!("only steps {shown} record it"),
    }
}

pub(super) fn check_events(plan: &Plan, out: &mut Vec<Violation>) {
    let prefill_records = recorders(&plan.prefill);
    let decode_records = recorders(&plan.decode);
    let none = Vec::new();
    for phase in PHASES {
        let records = if phase == PhaseName::Prefill { &prefill_records } else { &decode_records };
        let recorded = |e: &str| records.get(e).unwrap_or(&none).as_slice();
        let steps = &plan.phase(phase).steps;
        for (i, step) in steps.iter().enumerate() {
            let mut fail = |m: String| out.push(Violation::at_step(Rule::Events, phase, i, step, m));
            for e in &step.wait {
                let at = recorded(e);
                if at.first().is_none_or(|&p| p >= i) {
                    let hint = if phase == PhaseName::Decode && !at.is_empty() {
                        "; to wait on the previous iteration's record use wait_prev"
                    } else {
                        ""
                    };
                    fail(format!(
                        "waits on event {e:?}, but {}: a wait must name an event recorded by an earlier step of \
                         the same {phase} {}{hint}",
                        if at.is_empty() {
                            "no step records it".into()
                        } else {
                            format!("{} (not before step {i})", list(at))
                        },
                        if phase == PhaseName::Decode { "iteration" } else { "phase" },
                    ));
                }
            }
            if phase == PhaseName::Prefill {
                if !step.wait_prev.is_empty() {
                    fail(format!(
                        "has wait_prev = {:?}, but prefill has no previous iteration; wait_prev is for decode only",
                        step.wait_prev
                    ));
                }
                continue;
            }
            for e in &step.wait_prev {
                let at = recorded(e);
                if at.is_empty() {
                    // Recorded by prefill alone (a pinned slot's copy): every iteration binds
                    // to prefill's record; the check below says so when prefill lacks it.
                } else if let Some(&p) = at.iter().find(|&&p| p < i) {
                    fail(format!(
                        "has wait_prev on event {e:?}, but step {p} records it earlier in the same iteration, so the \
                         latest record when this step is issued is the current iteration's, not the previous one's; \
                         use wait, or record the event only at or after step {i}"
                    ));
                }
                if !prefill_records.contains_key(e.as_str()) {
                    fail(if at.is_empty() {
                        format!("has wait_prev on event {e:?}, but neither prefill nor the decode body records it")
                    } else {
                        format!(
                            "has wait_prev on event {e:?}, but prefill never records it: in the first decode \
                             iteration the previous iteration is prefill, which must record {e:?} too"
                        )
                    });
                }
            }
        }
    }
}
