//! The unrolled run and its happens-before relation, which the race rules
//! ([`super::races`]) query.
//!
//! Nodes are step instances: prefill's steps, then the decode body's steps
//! once per unrolled iteration, in issue order. Edges: program order on each
//! lane (the copy lane and the compute lane are each one sequence running
//! across phases and iterations), and event edges: a `wait` resolves to the
//! most recent record of that name issued before it in the same pass, a
//! `wait_prev` to the most recent record in the previous pass (prefill, for
//! decode iteration 0), or to prefill's when the decode body never records
//! the event (a pinned slot, filled once by prefill: an edge from prefill into
//! every iteration, which adds nothing to iteration `t ≥ 1` that lane order
//! through iteration 0 had not already implied). Happens-before is reachability.
//!
//! **Why two numbers per node suffice.** Every node lies on one of the two
//! lanes, and each lane is a chain: if a node of a lane happens before `v`,
//! so does every earlier node of that lane. So the set of nodes that happen
//! before `v` is, per lane, a prefix of that lane's sequence, and `v` needs
//! only the two prefix lengths (a vector clock). Issue order is a topological
//! order, so one forward sweep computes them from each node's predecessors:
//! the relation costs O(nodes + edges), not the O(nodes²) of a bitset per
//! node, and each query is a comparison. Each phase's records and copies are
//! indexed once (by event, slot and block; the decode body is unrolled three
//! times but indexed once), so resolving a wait and finding the copy a
//! compute read are binary searches: the race rules cost O(n log n) in the
//! steps.
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

use std::collections::{BTreeMap, HashMap};

use super::index::Index;
use super::{step_summary, Rule, Violation};
use crate::plan::{Lane, Op, Phase, PhaseName, Plan, Step};

/// Decode iterations unrolled after prefill (see the module docs for why three suffice).
pub(super) const DECODE_ITERATIONS: usize = 3;

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
    /// Index of the node in its lane's sequence.
    lane_pos: usize,
    /// `clock[l]`: how many nodes of lane `l` (a prefix of its sequence) happen before this one.
    clock: [usize; 2],
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Copy => 0,
        Lane::Compute => 1,
    }
}

/// The last of the ascending `positions` below `before`.
fn last_below(positions: &[usize], before: usize) -> Option<usize> {
    positions[..positions.partition_point(|&u| u < before)].last().copied()
}

/// A list of positions per step, stored flat.
#[derive(Default)]
struct PerStep {
    start: Vec<usize>,
    items: Vec<usize>,
}

impl PerStep {
    fn push_step(&mut self, items: impl IntoIterator<Item = usize>) {
        self.start.push(self.items.len());
        self.items.extend(items);
    }

    fn of(&self, step: usize) -> &[usize] {
        let end = self.start.get(step + 1).copied().unwrap_or(self.items.len());
        &self.items[self.start[step]..end]
    }
}

/// One phase's step list, indexed by event, slot and block (positions in the list, ascending).
struct PhaseIndex<'p> {
    steps: &'p [Step],
    records: HashMap<&'p str, Vec<usize>>,
    /// Per step: the positions its `wait`s resolve to, in the same phase.
    waits: PerStep,
    copies_into: BTreeMap<u64, Vec<usize>>,
    copies_of_into: HashMap<(u64, &'p str), Vec<usize>>,
    /// The copy steps of each block, with or without a slot.
    copies_of: HashMap<&'p str, Vec<usize>>,
    /// Computes reading a slot, for streamed blocks: (position, slot).
    slot_reads: Vec<(usize, u64)>,
}

impl<'p> PhaseIndex<'p> {
    fn new(phase: &'p Phase, index: &Index<'p>) -> PhaseIndex<'p> {
        let mut records: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut waits = PerStep::default();
        let mut copies_into: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut copies_of_into: HashMap<(u64, &str), Vec<usize>> = HashMap::new();
        let mut copies_of: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut slot_reads = Vec::new();
        for (i, step) in phase.steps.iter().enumerate() {
            // Resolved before this step's own record: a wait names an earlier record.
            waits.push_step(step.wait.iter().filter_map(|e| records.get(e.as_str())?.last().copied()));
            if let Some(e) = &step.record {
                records.entry(e.as_str()).or_default().push(i);
            }
            match (step.op, step.slot) {
                (Op::Copy, slot) => {
                    copies_of.entry(step.block.as_str()).or_default().push(i);
                    if let Some(s) = slot {
                        copies_into.entry(s).or_default().push(i);
                        copies_of_into.entry((s, step.block.as_str())).or_default().push(i);
                    }
                }
                (Op::Compute, Some(s)) if index.is_streamed(&step.block) => slot_reads.push((i, s)),
                _ => {}
            }
        }
        PhaseIndex { steps: &phase.steps, records, waits, copies_into, copies_of_into, copies_of, slot_reads }
    }

    /// Per step: the positions in `prev` (the previous pass's phase) its `wait_prev`s resolve to.
    fn prev_waits(&self, prev: &PhaseIndex) -> PerStep {
        let mut out = PerStep::default();
        for step in self.steps {
            out.push_step(step.wait_prev.iter().filter_map(|e| prev.records.get(e.as_str())?.last().copied()));
        }
        out
    }

    /// Per step of this (decode) phase: where its `wait_prev`s on events this
    /// phase never records resolve in `prefill` (a pinned slot's copy, which
    /// every iteration's wait binds to).
    fn pinned_waits(&self, prefill: &PhaseIndex) -> PerStep {
        let mut out = PerStep::default();
        for step in self.steps {
            out.push_step(
                step.wait_prev
                    .iter()
                    .filter(|e| !self.records.contains_key(e.as_str()))
                    .filter_map(|e| prefill.records.get(e.as_str())?.last().copied()),
            );
        }
        out
    }
}

/// The unrolled run with its happens-before relation.
pub(super) struct Trace<'p> {
    /// In issue order: prefill's steps, then each decode iteration's.
    pub(super) nodes: Vec<Node<'p>>,
    /// First node of each pass, by [`Pass::ordinal`].
    starts: Vec<usize>,
    prefill: PhaseIndex<'p>,
    decode: PhaseIndex<'p>,
    /// The copies into each slot, as nodes, ascending.
    copies_into: BTreeMap<u64, Vec<usize>>,
    /// The same per lane the copy runs on (the copy lane, unless rule
    /// `step-shape` reports it), so that those happening before a node are a
    /// prefix of each list.
    copies_into_on: BTreeMap<(u64, usize), Vec<usize>>,
    /// The compute instances reading a slot: (node, slot) for streamed blocks.
    slot_reads: Vec<(usize, u64)>,
}

impl<'p> Trace<'p> {
    /// Unrolls prefill and [`DECODE_ITERATIONS`] decode iterations and computes happens-before.
    /// Waits that do not resolve are skipped (rule `events` reports them).
    pub(super) fn unroll(plan: &'p Plan, index: &Index<'p>, out: &mut Vec<Violation>) -> Trace<'p> {
        let prefill = PhaseIndex::new(&plan.prefill, index);
        let decode = PhaseIndex::new(&plan.decode, index);
        let (mut nodes, mut starts, mut slot_reads) = (Vec::new(), Vec::new(), Vec::new());
        let mut copies_into: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut copies_into_on: BTreeMap<(u64, usize), Vec<usize>> = BTreeMap::new();
        let mut lane_len = [0usize; 2];
        for pass in std::iter::once(Pass::Prefill).chain((0..DECODE_ITERATIONS).map(Pass::Decode)) {
            let start = nodes.len();
            starts.push(start);
            let phase = if pass == Pass::Prefill { &prefill } else { &decode };
            for (pos, step) in phase.steps.iter().enumerate() {
                let lane = lane_index(step.lane);
                nodes.push(Node { pass, pos, step, lane_pos: lane_len[lane], clock: [0; 2] });
                lane_len[lane] += 1;
            }
            for (&slot, positions) in &phase.copies_into {
                copies_into.entry(slot).or_default().extend(positions.iter().map(|p| start + p));
                for &p in positions {
                    copies_into_on.entry((slot, lane_index(phase.steps[p].lane))).or_default().push(start + p);
                }
            }
            slot_reads.extend(phase.slot_reads.iter().map(|&(p, s)| (start + p, s)));
        }
        let mut trace = Trace { nodes, starts, prefill, decode, copies_into, copies_into_on, slot_reads };
        trace.sweep(out);
        trace
    }

    fn phase(&self, pass: Pass) -> &PhaseIndex<'p> {
        match pass {
            Pass::Prefill => &self.prefill,
            Pass::Decode(_) => &self.decode,
        }
    }

    /// Computes every node's clock from its predecessors, in issue order.
    fn sweep(&mut self, out: &mut Vec<Violation>) {
        let after_prefill = self.decode.prev_waits(&self.prefill);
        let after_decode = self.decode.prev_waits(&self.decode);
        let pinned = self.decode.pinned_waits(&self.prefill);
        let mut lane_last: [Option<usize>; 2] = [None, None];
        let mut preds = Vec::new();
        for v in 0..self.nodes.len() {
            let node = &self.nodes[v];
            let (pass, pos, lane) = (node.pass, node.pos, lane_index(node.step.lane));
            preds.clear();
            preds.extend(lane_last[lane]);
            lane_last[lane] = Some(v);
            let start = self.starts[pass.ordinal()];
            preds.extend(self.phase(pass).waits.of(pos).iter().map(|p| start + p));
            let prev = match pass {
                Pass::Prefill => None,
                Pass::Decode(0) => Some((&after_prefill, self.starts[0])),
                Pass::Decode(t) => Some((&after_decode, self.starts[t])),
            };
            if let Some((targets, prev_start)) = prev {
                preds.extend(targets.of(pos).iter().map(|p| prev_start + p));
            }
            if matches!(pass, Pass::Decode(t) if t > 0) {
                let prefill_start = self.starts[0];
                preds.extend(pinned.of(pos).iter().map(|p| prefill_start + p));
            }
            let mut clock = [0usize; 2];
            for &p in &preds {
                // Every edge points backwards in issue order by construction, so the
                // graph is acyclic; refuse rather than loop should that ever change.
                if p >= v {
                    let node = &self.nodes[v];
                    out.push(Violation::at_step(
                        Rule::Events,
                        node.pass.phase(),
                        node.pos,
                        node.step,
                        "waits on a step issued after it: the lanes would deadlock".to_string(),
                    ));
                    continue;
                }
                let pred = &self.nodes[p];
                for (l, c) in clock.iter_mut().enumerate() {
                    *c = (*c).max(pred.clock[l]);
                }
                let pl = lane_index(pred.step.lane);
                clock[pl] = clock[pl].max(pred.lane_pos + 1);
            }
            self.nodes[v].clock = clock;
        }
    }

    /// The node of the record `waiter` resolves its `field` wait on `event` to:
    /// for `wait`, the latest record before it in its pass; for `wait_prev`, the
    /// latest record of the previous pass (none for prefill).
    fn resolve(&self, waiter: usize, field: &str, event: &str) -> Option<usize> {
        let node = &self.nodes[waiter];
        let ordinal = node.pass.ordinal();
        match field {
            "wait" => {
                let at = last_below(self.phase(node.pass).records.get(event)?, node.pos)?;
                Some(self.starts[ordinal] + at)
            }
            _ => {
                let prev = if ordinal == 1 { &self.prefill } else { &self.decode };
                match prev.records.get(event).and_then(|r| r.last()) {
                    Some(&at) => Some(self.starts[ordinal.checked_sub(1)?] + at),
                    // Never recorded by the decode body: prefill's record, every iteration.
                    None if !self.decode.records.contains_key(event) => {
                        Some(self.starts[0] + *self.prefill.records.get(event)?.last()?)
                    }
                    None => None,
                }
            }
        }
    }

    /// Whether `u` happens before `v`.
    pub(super) fn hb(&self, u: usize, v: usize) -> bool {
        let node = &self.nodes[u];
        node.lane_pos < self.nodes[v].clock[lane_index(node.step.lane)]
    }

    /// Compute instances reading a slot: (node, slot) for streamed blocks.
    pub(super) fn slot_reads(&self) -> &[(usize, u64)] {
        &self.slot_reads
    }

    /// The latest copy into `slot` that happens before `c`.
    pub(super) fn last_copy_before(&self, slot: u64, c: usize) -> Option<usize> {
        // The copies on one lane that happen before `c` are a prefix of that lane's list.
        let latest_on = |lane: usize| {
            let copies = self.copies_into_on.get(&(slot, lane))?;
            let seen = self.nodes[c].clock[lane];
            copies[..copies.partition_point(|&w| self.nodes[w].lane_pos < seen)].last().copied()
        };
        latest_on(0).max(latest_on(1))
    }

    /// The copy into `slot` issued next after the copy `w` into it.
    pub(super) fn next_copy_after(&self, slot: u64, w: usize) -> Option<usize> {
        let copies = self.copies_into.get(&slot)?;
        copies.get(copies.partition_point(|&u| u <= w)).copied()
    }

    /// The latest node before `c` among those `find` picks out of each pass's
    /// phase (positions, ascending), searching `c`'s pass and then the earlier ones.
    fn latest_before(
        &self,
        c: usize,
        find: impl for<'a> Fn(&'a PhaseIndex<'p>) -> Option<&'a Vec<usize>>,
    ) -> Option<usize> {
        let node = &self.nodes[c];
        let ordinal = node.pass.ordinal();
        let passes = std::iter::once(Pass::Prefill).chain((0..DECODE_ITERATIONS).map(Pass::Decode));
        let passes: Vec<Pass> = passes.take(ordinal + 1).collect();
        passes.into_iter().rev().find_map(|pass| {
            let positions = find(self.phase(pass))?;
            let at = if pass == node.pass { last_below(positions, node.pos) } else { positions.last().copied() };
            Some(self.starts[pass.ordinal()] + at?)
        })
    }

    /// The latest copy of `block` into `slot` issued before `c`.
    pub(super) fn last_copy_of_into(&self, slot: u64, block: &str, c: usize) -> Option<usize> {
        self.latest_before(c, |p| p.copies_of_into.get(&(slot, block)))
    }

    /// The latest copy step of `block` issued before `c`, into whichever slot.
    pub(super) fn last_copy_of(&self, block: &str, c: usize) -> Option<usize> {
        self.latest_before(c, |p| p.copies_of.get(block))
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
