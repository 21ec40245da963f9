//! Rule `warm`: the copies a plan marks `warm = true` can be issued ahead of
//! prefill, while the device is idle, without changing what the pass computes.
//!
//! The executor issues them after loading the weights and whenever a request
//! has ended, and skips them in the next prefill (`crate::plan`). That moves
//! them earlier on the copy lane than the list says, which is safe exactly
//! when nothing in the pass had to happen before them: so they must *lead*
//! prefill's list (no step of the pass is issued before them either way, and
//! the race rules, which read the list in order, see the run that happens),
//! wait on nothing (an idle device has nothing to wait for; a wait would name
//! a record made after them), and fill distinct slots (a second warm copy
//! into a slot would overwrite the first before anything read it). Decode's
//! copies run every token and cannot be warm.

use std::collections::HashMap;

use super::{Rule, Violation};
use crate::plan::{Op, PhaseName, Plan};

pub(super) fn check_warm(plan: &Plan, out: &mut Vec<Violation>) {
    for (i, step) in plan.decode.steps.iter().enumerate().filter(|(_, s)| s.warm) {
        out.push(Violation::at_step(
            Rule::Warm,
            PhaseName::Decode,
            i,
            step,
            "is marked warm, but only prefill's leading copies can be: decode's copies run every token; remove \
             `warm`",
        ));
    }
    let mut filled: HashMap<u64, usize> = HashMap::new();
    let mut leading = true;
    for (i, step) in plan.prefill.steps.iter().enumerate() {
        if !step.warm {
            leading = false;
            continue;
        }
        let mut fail = |m: String| out.push(Violation::at_step(Rule::Warm, PhaseName::Prefill, i, step, m));
        if step.op != Op::Copy {
            fail(format!("is a {:?} step marked warm; only copies can be warm", step.op));
            continue;
        }
        if !leading {
            fail(
                "is a warm copy after a step that is not warm: the executor issues warm copies before the pass, \
                 so they must come first in prefill's list"
                    .into(),
            );
        }
        if !step.wait.is_empty() || !step.wait_prev.is_empty() {
            fail(format!(
                "is a warm copy that waits on {:?}: warm copies are issued while the device is idle, before \
                 the pass, and can wait on nothing",
                step.wait.iter().chain(&step.wait_prev).collect::<Vec<_>>()
            ));
        }
        if let Some(s) = step.slot {
            if let Some(&j) = filled.get(&s) {
                fail(format!(
                    "is a second warm copy into slot {s} (step {j} is the first): nothing reads the first before \
                     this one overwrites it"
                ));
            } else {
                filled.insert(s, i);
            }
        }
    }
}
