//! The plan verifier: proves a [`Plan`] safe to run without trusting whoever wrote it.
//!
//! The compiler runs it on every plan it emits and the executor runs it again
//! before replaying one, because a plan on disk may have been edited, written
//! by an older compiler, or produced by a compiler with a bug. The executor
//! decides nothing at run time, so everything that could make a replay read
//! garbage weights, overrun the arena or deadlock must be ruled out here.
//!
//! Each [`Rule`] is checked by its own function and every violation found is
//! reported, not just the first, each naming the phase / step / block / slot
//! at fault and how to fix it. The rules, in order:
//!
//! * structural (modules `identity`, `memory`, `steps`): the format version; the
//!   model's block table is exactly what its architecture requires; the arena
//!   is carved correctly (256-byte aligned) and fits the budget and the GPU's
//!   memory; every block is placed; every
//!   step is well-formed; computes follow model order; waits name events that
//!   are recorded where the plan's semantics say they are; a layer's gate/up
//!   and down blocks run on the same side of the bus; warm copies (module `warm`)
//!   lead prefill and wait on nothing, one per slot;
//! * data races (module `races`, over the unrolled run of module `trace`: prefill, then
//!   three decode iterations): every compute reading a slot sees the copy of its own
//!   block, and no copy overwrites a slot before its previous reader is done.

mod identity;
mod index;
mod memory;
mod races;
mod steps;
mod trace;
mod warm;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests_races;
#[cfg(test)]
mod tests_scale;
#[cfg(test)]
mod tests_structure;
#[cfg(test)]
mod tests_trace;
#[cfg(test)]
mod tests_warm;

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

use crate::plan::{Op, PhaseName, Plan, Step};

/// The rules a plan must satisfy. [`Rule::name`] is stable: tools and tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `format_version` is the one this build reads.
    Version,
    /// The model's block table and architecture are what the Llama forward pass needs.
    ModelIdentity,
    /// The arena fits the budget and the GPU, its regions are aligned, disjoint and big enough; the run shape is sane.
    Arena,
    /// Every block is resident in its own region or streamed, in model order.
    Placement,
    /// Every step is well-formed: lane, op, block, slot and predicted times agree.
    StepShape,
    /// Each phase computes every block exactly once, in model order.
    Order,
    /// Every `wait` / `wait_prev` names an event recorded where its semantics require.
    Events,
    /// Warm copies are prefill's leading copies, wait on nothing and fill distinct slots.
    Warm,
    /// A compute reading a slot is ordered after the copy of its block into that slot.
    CopyBeforeCompute,
    /// A copy into a slot is ordered after the compute that last read the slot.
    SlotReuse,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::Version,
        Rule::ModelIdentity,
        Rule::Arena,
        Rule::Placement,
        Rule::StepShape,
        Rule::Order,
        Rule::Events,
        Rule::Warm,
        Rule::CopyBeforeCompute,
        Rule::SlotReuse,
    ];

    /// The stable kebab-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Version => "version",
            Rule::ModelIdentity => "model-identity",
            Rule::Arena => "arena",
            Rule::Placement => "placement",
            Rule::StepShape => "step-shape",
            Rule::Order => "order",
            Rule::Events => "events",
            Rule::Warm => "warm",
            Rule::CopyBeforeCompute => "copy-before-compute",
            Rule::SlotReuse => "slot-reuse",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The names of all rules, in checking order.
    pub fn names() -> [&'static str; 10] {
        Rule::ALL.map(Rule::name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule, located as precisely as the rule allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: Rule,
    /// The phase of the step at fault.
    pub phase: Option<PhaseName>,
    /// Index of the step at fault in its phase's `steps` (for decode: in the loop body).
    pub step: Option<usize>,
    pub block: Option<String>,
    pub slot: Option<u64>,
    /// What is at fault, in a few words: `copy layer.3 into slot 1`, `region kv_cache`.
    pub subject: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(rule: Rule, message: impl Into<String>) -> Violation {
        Violation { rule, phase: None, step: None, block: None, slot: None, subject: None, message: message.into() }
    }

    /// A violation at step `index` of `phase`; block, slot and subject come from the step.
    pub(crate) fn at_step(
        rule: Rule,
        phase: PhaseName,
        index: usize,
        step: &Step,
        message: impl Into<String>,
    ) -> Violation {
        Violation {
            rule,
            phase: Some(phase),
            step: Some(index),
            block: Some(step.block.clone()),
            slot: step.slot,
            subject: Some(step_summary(step)),
            message: message.into(),
        }
    }

    pub(crate) fn in_phase(mut self, phase: PhaseName) -> Violation {
        self.phase = Some(phase);
        self
    }

    pub(crate) fn block(mut self, block: &str) -> Violation {
        self.block = Some(block.to_string());
        self
    }

    pub(crate) fn subject(mut self, subject: impl Into<String>) -> Violation {
        self.subject = Some(subject.into());
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {} broken", self.rule)?;
        match (self.phase, self.step, &self.subject) {
            (Some(p), Some(i), Some(s)) => write!(f, " at {p} step {i} ({s})")?,
            (Some(p), Some(i), None) => write!(f, " at {p} step {i}")?,
            (Some(p), None, Some(s)) => write!(f, " in {p} at {s}")?,
            (Some(p), None, None) => write!(f, " in {p}")?,
            (None, _, Some(s)) => write!(f, " at {s}")?,
            (None, _, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// `copy layer.3 into slot 1`, `compute layer.3 from slot 1`, `compute embed`.
pub fn step_summary(step: &Step) -> String {
    match (step.op, step.slot) {
        (Op::Copy, Some(s)) => format!("copy {} into slot {s}", step.block),
        (Op::Copy, None) => format!("copy {}", step.block),
        (Op::Compute, Some(s)) => format!("compute {} from slot {s}", step.block),
        (Op::Compute, None) => format!("compute {}", step.block),
        (Op::HostCompute, _) => format!("host-compute {}", step.block),
    }
}

/// How many violations [`VerifyError`]'s message lists before summarising the rest.
pub const LISTED_VIOLATIONS: usize = 40;

/// A plan that broke at least one rule. Holds every violation found.
#[derive(Debug, Error)]
#[error("{}", render(.violations))]
pub struct VerifyError {
    pub violations: Vec<Violation>,
}

impl VerifyError {
    /// The rules broken, each once.
    pub fn rules(&self) -> BTreeSet<Rule> {
        self.violations.iter().map(|v| v.rule).collect()
    }

    pub fn broke(&self, rule: Rule) -> bool {
        self.violations.iter().any(|v| v.rule == rule)
    }
}

fn render(violations: &[Violation]) -> String {
    let n = violations.len();
    let mut out =
        format!("the plan is not safe to run: {n} violation{} of the plan rules", if n == 1 { "" } else { "s" });
    for v in violations.iter().take(LISTED_VIOLATIONS) {
        out.push_str("\n  ");
        out.push_str(&v.to_string());
    }
    if n > LISTED_VIOLATIONS {
        out.push_str(&format!("\n  … and {} more", n - LISTED_VIOLATIONS));
    }
    out
}

/// Checks every rule; `Ok` only if none is broken.
pub fn verify(plan: &Plan) -> Result<(), VerifyError> {
    let violations = violations(plan);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(VerifyError { violations })
    }
}

/// Every violation of every rule, in rule order (empty for a safe plan).
pub fn violations(plan: &Plan) -> Vec<Violation> {
    let mut out = Vec::new();
    identity::check_version(plan, &mut out);
    identity::check_model_identity(plan, &mut out);
    memory::check_arena(plan, &mut out);
    let index = index::Index::new(plan);
    memory::check_placement(plan, &index, &mut out);
    steps::check_step_shape(plan, &index, &mut out);
    steps::check_order(plan, &mut out);
    steps::check_events(plan, &mut out);
    warm::check_warm(plan, &mut out);
    let trace = trace::Trace::unroll(plan, &index, &mut out);
    races::check_copy_before_compute(&trace, &mut out);
    races::check_slot_reuse(&trace, &mut out);
    out
}
