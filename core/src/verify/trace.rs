//! The unrolled run and its happens-before relation, which the race rules
//! ([`super::races`]) query.
//!
//! Nodes are step instances: prefill's steps, then the decode body's steps
//! once per unrolled iteration, in issue order. Edges: program order on each
//! lane (the copy lane and the compute lane are each one sequence running
//! across phases and iterations), and event edges: a `wait` resolves to the
//! most recent record of that name issued before it in the same pass, a
//! `wait_prev` to the most recent record in the previous pass (prefill, for
//! decode iteration 0). Happens-before is reachability; issue order is a
//! topological order, so one forward sweep computes an ancestor bitset per
//! node (the run is a few hundred nodes).
//!
//! The relation deliberately ignores the host's per-token synchronisation
//! (reading the logits): a plan must order its lanes through its own events,
//! so an executor that issues ahead stays safe.
//!
//! **Why prefill plus three decode iterations suffice.** The decode body is
//! periodic and every edge reaches back at most one iteration: lane program
//! order links consecutive steps, `wait` stays in its iteration, and
//! `wait_prev` reaches into the previous one. A path between two steps
//! therefore only passes through the iterations between them. In a safe plan
//! the copies a compute of iteration `t` depends on are the last copy into its
//! slot issued before it (iteration `t` or `t-1`, or prefill when the body
//! never copies that slot) and the first one after it (iteration `t` or
//! `t+1`), and any copy in between is itself a violation found at `t`.
//! Iteration 0 is the only one whose previous iteration is prefill; iteration 1
//! is the steady state, checked with both neighbours present (iteration 2 is
//! there to be its successor); every later iteration repeats iteration 1's
//! paths exactly, shifted.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{step_summary, Rule, Violation};
use crate::plan::{Lane, Op, PhaseName, Placement, Plan, Step};

/// Decode iterations unrolled after prefill (see the module docs for why three suffice).
pub(super) const DECODE_ITERATIONS: usize = 3;

/// The latest node in `range` that records `event`.
fn latest_record(nodes: &[Node], range: Range<usize>, event: &str) -> Option<usize> {
    range.rev().find(|&u| nodes[u].step.record.as_deref() == Some(event))
}

/// One pass of the unrolled run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Prefill,
    Decode(usize),
}

impl Pass {
    pub(super) fn phase(self) -> PhaseName {
        match self {
            Pass::Prefill => PhaseName::Prefill,
            Pass::Decode(_) => PhaseName::Decode,
        }
    }

    /// Position in the run: prefill 0, decode iteration t at t + 1.
    pub(super) fn ordinal(self) -> usize {
        match self {
            Pass::Prefill => 0,
            Pass::Decode(t) => t + 1,
        }
    }
}

/// One step instance of the unrolled run.
pub(super) struct Node<'p> {
    pub(super) pass: Pass,
    /// Index of the step in its phase's list.
    pub(super) pos: usize,
    pub(super) step: &'p Step,
}

/// The unrolled run with its happens-before relation.
pub(super) struct Trace<'p> {
    /// In issue order: prefill's steps, then each decode iteration's.
    pub(super) nodes: Vec<Node<'p>>,
    /// `before[v]`: bitset over nodes, bit `u` set iff `u` happens before `v`.
    before: Vec<Vec<u64>>,
    /// Node indices of the copies into each slot, in issue (= copy-lane) order.
    copies_into: BTreeMap<u64, Vec<usize>>,
    /// Node range of each pass, by [`Pass::ordinal`].
    ranges: Vec<Range<usize>>,
}

impl<'p> Trace<'p> {
    /// Unrolls prefill and [`DECODE_ITERATIONS`] decode iterations and computes happens-before.
    /// Waits that do not resolve are skipped (rule `events` reports them).
    pub(super) fn unroll(plan: &'p Plan, out: &mut Vec<Violation>) -> Trace<'p> {
        let passes = std::iter::once(Pass::Prefill).chain((0..DECODE_ITERATIONS).map(Pass::Decode));
        let mut nodes = Vec::new();
        let mut ranges: Vec<Range<usize>> = Vec::new(); // per pass ordinal
        for pass in passes {
            let start = nodes.len();
            nodes.extend(plan.phase(pass.phase()).steps.iter().enumerate().map(|(pos, step)| Node { pass, pos, step }));
            ranges.push(start..nodes.len());
        }
        let words = nodes.len().div_ceil(64);
        let mut before = vec![vec![0u64; words]; nodes.len()];
        let mut lane_last: [Option<usize>; 2] = [None, None];
        let record_in = |range: Range<usize>, event: &str| latest_record(&nodes, range, event);
        for v in 0..nodes.len() {
            let node = &nodes[v];
            let lane = match node.step.lane {
                Lane::Copy => 0,
                Lane::Compute => 1,
            };
            let mut preds: Vec<usize> = lane_last[lane].into_iter().collect();
            lane_last[lane] = Some(v);
            let here = ranges[node.pass.ordinal()].start..v;
            preds.extend(node.step.wait.iter().filter_map(|e| record_in(here.clone(), e)));
            if let Pass::Decode(_) = node.pass {
                let prev = ranges[node.pass.ordinal() - 1].clone();
                preds.extend(node.step.wait_prev.iter().filter_map(|e| record_in(prev.clone(), e)));
            }
            for p in preds {
                // Every edge points backwards in issue order by construction, so the
                // graph is acyclic; refuse rather than loop should that ever change.
                if p >= v {
                    out.push(Violation::at_step(
                        Rule::Events,
                        node.pass.phase(),
                        node.pos,
                        node.step,
                        "waits on a step issued after it: the lanes would deadlock".to_string(),
                    ));
                    continue;
                }
                let (done, rest) = before.split_at_mut(v);
                for (w, d) in rest[0].iter_mut().zip(&done[p]) {
                    *w |= d;
                }
                rest[0][p / 64] |= 1 << (p % 64);
            }
        }
        let mut copies_into: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (v, n) in nodes.iter().enumerate() {
            if let (Op::Copy, Some(slot)) = (n.step.op, n.step.slot) {
                copies_into.entry(slot).or_default().push(v);
            }
        }
        Trace { nodes, before, copies_into, ranges }
    }

    /// The node of the record `waiter` resolves its `field` wait on `event` to.
    fn resolve(&self, waiter: usize, field: &str, event: &str) -> Option<usize> {
        let ordinal = self.nodes[waiter].pass.ordinal();
        let range = match field {
            "wait" => self.ranges[ordinal].start..waiter,
            _ => self.ranges[ordinal.checked_sub(1)?].clone(),
        };
        latest_record(&self.nodes, range, event)
    }

    /// Whether `u` happens before `v`.
    pub(super) fn hb(&self, u: usize, v: usize) -> bool {
        self.before[v][u / 64] & (1 << (u % 64)) != 0
    }

    /// Compute instances reading a slot: (node, slot) for streamed blocks.
    pub(super) fn slot_reads<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = (usize, u64)> + 'a {
        self.nodes.iter().enumerate().filter_map(move |(v, n)| match (n.step.op, n.step.slot) {
            (Op::Compute, Some(s)) if plan.placement(&n.step.block) == Some(&Placement::Streamed) => Some((v, s)),
            _ => None,
        })
    }

    /// The copies into `slot`, in issue order: none for a slot no copy writes
    /// (which may be a slot the arena does not have; rule `step-shape` says so).
    pub(super) fn copies_into(&self, slot: u64) -> &[usize] {
        self.copies_into.get(&slot).map_or(&[], Vec::as_slice)
    }

    /// The latest copy into `slot` that happens before `c`.
    pub(super) fn last_copy_before(&self, slot: u64, c: usize) -> Option<usize> {
        self.copies_into(slot).iter().rev().copied().find(|&w| w < c && self.hb(w, c))
    }

    /// `n` described as seen from a message about `from`.
    pub(super) fn describe(&self, n: usize, from: usize) -> String {
        let (a, b) = (&self.nodes[n], &self.nodes[from]);
        let what = format!("step {} ({})", a.pos, step_summary(a.step));
        match (a.pass, b.pass) {
            (x, y) if x == y => what,
            (Pass::Prefill, _) => format!("prefill {what}"),
            (Pass::Decode(0), Pass::Prefill) => format!("decode {what} of the first iteration"),
            (x, y) if x.ordinal() + 1 == y.ordinal() => format!("{what} of the previous iteration"),
            (x, y) if x.ordinal() == y.ordinal() + 1 => format!("{what} of the next iteration"),
            (x, y) if x.ordinal() < y.ordinal() => {
                format!("{what} of {} iterations earlier", y.ordinal() - x.ordinal())
            }
            (x, y) => format!("{what} of {} iterations later", x.ordinal() - y.ordinal()),
        }
    }

    /// How `waiter` can be made to wait for `target`: which field, which event.
    /// Steps are named as seen from `from`, the step the message is about.
    pub(super) fn wait_hint(&self, target: usize, waiter: usize, from: usize, default_event: &str) -> String {
        let (t, w) = (&self.nodes[target], &self.nodes[waiter]);
        let event = t.step.record.clone().unwrap_or_else(|| default_event.to_string());
        let field = match (t.pass, w.pass) {
            (x, y) if x == y => "wait",
            (x, y) if x.ordinal() + 1 == y.ordinal() => "wait_prev",
            _ => return "it is issued two or more iterations earlier, beyond the reach of any event".into(),
        };
        let name = |n: usize| if n == from { format!("step {}", self.nodes[n].pos) } else { self.describe(n, from) };
        let listed = if field == "wait" { &w.step.wait } else { &w.step.wait_prev };
        let mut hint = match self.resolve(waiter, field, &event) {
            Some(r) if listed.contains(&event) && r != target => format!(
                "{} has {field} = [\"{event}\"], but that resolves to {}, the latest record of \"{event}\"; \
                 make {} the last step to record \"{event}\"",
                name(waiter),
                name(r),
                name(target)
            ),
            _ if t.step.record.is_none() => {
                format!("make {} record \"{event}\" and add {field} = [\"{event}\"] to {}", name(target), name(waiter))
            }
            _ => format!("add {field} = [\"{event}\"] to {}", name(waiter)),
        };
        if field == "wait_prev" && t.pass != Pass::Prefill {
            hint.push_str(" (prefill must record it too, for the first iteration)");
        }
        hint
    }
}
