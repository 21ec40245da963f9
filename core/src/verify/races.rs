//! Rules `copy-before-compute` and `slot-reuse`: no data race on a slot.
//!
//! A slot is written only by copies (copy lane) and read only by computes of
//! streamed blocks (compute lane). The two lanes run concurrently and are
//! ordered only by program order within each lane and by the plan's events, so
//! the verifier builds that *happens-before* relation over the unrolled run
//! ([`super::trace`]) and asks, for every compute instance reading block `B` from slot `S`:
//!
//! * `copy-before-compute`: the latest copy into `S` that happens before the
//!   compute exists and copied `B` (else the compute may read a half-written
//!   slot, or another block's weights);
//! * `slot-reuse`: the next copy into `S` after that one (copies into a slot
//!   are totally ordered: one copy lane) happens after the compute (else it may
//!   overwrite the weights while the compute still reads them).
//!
//!
//! A fault in the decode body usually shows in every iteration; it is reported
//! once, for the first iteration it shows in, saying whether it is particular
//! to the first iteration (whose previous iteration is prefill) or to the
//! steady state.

use std::collections::HashMap;

use super::trace::{Pass, Trace};
use super::{Rule, Violation};
use crate::plan::PhaseName;

/// Violations found per step instance, reported once per step with the
/// iterations they show in.
#[derive(Default)]
struct Findings {
    order: Vec<(PhaseName, usize)>,
    found: HashMap<(PhaseName, usize), (Violation, Vec<Pass>)>,
}

impl Findings {
    /// `v` (message without its iteration context) found at an instance in `pass`.
    fn add(&mut self, pass: Pass, v: Violation) {
        let key = (pass.phase(), v.step.unwrap_or_default());
        match self.found.get_mut(&key) {
            Some((_, passes)) => passes.push(pass),
            None => {
                self.order.push(key);
                self.found.insert(key, (v, vec![pass]));
            }
        }
    }

    fn report(mut self, out: &mut Vec<Violation>) {
        for key in self.order {
            let (mut v, passes) = self.found.remove(&key).expect("every key was inserted");
            let first = passes.contains(&Pass::Decode(0));
            let later = passes.iter().any(|p| matches!(p, Pass::Decode(t) if *t > 0));
            let context = match (first, later) {
                (true, true) => {
                    "in every decode iteration (shown for the first, whose previous iteration is prefill), "
                }
                (true, false) => "in the first decode iteration (whose previous iteration is prefill), ",
                (false, true) => "in steady-state decode iterations (not the first), ",
                (false, false) => "",
            };
            v.message = format!("{context}{}", v.message);
            out.push(v);
        }
    }
}

/// Whether the copy `u` loads the same block as the node `c` names.
fn same_block(trace: &Trace, u: usize, c: usize) -> bool {
    trace.nodes[u].step.block == trace.nodes[c].step.block
}

pub(super) fn check_copy_before_compute(trace: &Trace, out: &mut Vec<Violation>) {
    let mut found = Findings::default();
    for &(c, slot) in trace.slot_reads() {
        let w = trace.last_copy_before(slot, c);
        if w.is_some_and(|w| same_block(trace, w, c)) {
            continue;
        }
        let node = &trace.nodes[c];
        let block = node.step.block.as_str();
        let mut msg = format!("it reads block {block} from slot {slot}, but ");
        match w {
            None => msg.push_str(&format!("no copy into slot {slot} is ordered before it")),
            Some(w) => msg.push_str(&format!(
                "the latest copy into slot {slot} ordered before it is {}, which loads {}: the compute would run \
                 with the wrong weights",
                trace.describe(w, c),
                trace.nodes[w].step.block
            )),
        }
        // The copy of this block into this slot the plan probably meant, if any.
        let meant = trace.last_copy_of_into(slot, block, c);
        match meant {
            Some(m) if w.is_none_or(|w| m > w) => msg.push_str(&format!(
                "; {} loads {block} but nothing makes this compute wait for it: {}",
                trace.describe(m, c),
                trace.wait_hint(m, c, c, &format!("ready:{block}"))
            )),
            Some(m) => msg.push_str(&format!(
                "; {} loaded {block}, but the slot is overwritten before this compute",
                trace.describe(m, c)
            )),
            None => match trace.last_copy_of(block, c).and_then(|u| Some((u, trace.nodes[u].step.slot?))) {
                Some((u, s)) => msg.push_str(&format!(
                    "; the latest copy of {block} before it, {}, writes slot {s}: read that slot instead",
                    trace.describe(u, c)
                )),
                None => msg.push_str(&format!(
                    "; no step before it copies {block} into slot {slot}: add that copy and wait on its record"
                )),
            },
        }
        found.add(node.pass, Violation::at_step(Rule::CopyBeforeCompute, node.pass.phase(), node.pos, node.step, msg));
    }
    found.report(out);
}

pub(super) fn check_slot_reuse(trace: &Trace, out: &mut Vec<Violation>) {
    let mut found = Findings::default();
    for &(c, slot) in trace.slot_reads() {
        // Without the right copy before it, rule copy-before-compute already rejects the compute.
        let Some(w) = trace.last_copy_before(slot, c).filter(|&w| same_block(trace, w, c)) else { continue };
        let Some(next) = trace.next_copy_after(slot, w) else { continue };
        if trace.hb(c, next) {
            continue;
        }
        let (read, copy) = (&trace.nodes[c], &trace.nodes[next]);
        let block = &read.step.block;
        let fix = if next > c {
            format!(
                "make it wait on that compute's completion: {}",
                trace.wait_hint(c, next, next, &format!("done:{block}"))
            )
        } else if same_block(trace, next, c) {
            // Issued before the compute and loading the same block: the compute
            // was most likely meant to read this copy, and forgot to wait for it.
            format!(
                "the compute does not wait for this copy of its block: {}",
                trace.wait_hint(next, c, next, &format!("ready:{block}"))
            )
        } else {
            format!(
                "it is issued before that compute; move it after {} and wait on its completion",
                trace.describe(c, next)
            )
        };
        let msg = format!(
            "the copy may overwrite slot {slot} while {} still reads {block} from it; {fix}",
            trace.describe(c, next)
        );
        found.add(copy.pass, Violation::at_step(Rule::SlotReuse, copy.pass.phase(), copy.pos, copy.step, msg));
    }
    found.report(out);
}
