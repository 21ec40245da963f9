//! List scheduling of the run graph on the two lanes.
//!
//! A step starts when its lane is free and every predecessor has ended (a
//! `Host` edge adds the host turnaround); steps on a lane run in list order.
//! A host compute costs its block plus, when the compute lane's step before it
//! was not one, the hand-off of the residual stream. A copy that overlaps host
//! computes runs slower meanwhile (both read host DRAM;
//! [`CostModel::copy_slowdown_during_host`]): since a host compute listed after
//! a copy may start while the copy is in flight, the schedule is computed
//! again with the previous pass's host intervals until it settles
//! ([`CONTENTION_PASSES`] at most).
//! The nodes are already in issue order, a topological order, so one pass
//! computes every start and end.
//!
//! A warm copy (prefill's leading copies, issued by the executor before the
//! pass: at load and between requests) takes no time at the pass's start:
//! the simulation prices the pass the user waits for, and the copies' cost is
//! paid while the device is idle.
//!
//! Prefill runs first; then [`ITERATIONS`] decode iterations, enough for the
//! pipeline to reach its steady state (the first iteration consumes prefill's
//! prologue, which may have been issued earlier or later than a body's copies).
//! Iteration `t` starts when the host issues it: the end of the previous
//! pass's last compute plus the turnaround. The decode time per token is the
//! *last* iteration's length, start to the start of the next one.

use djinn_core::gpu::PhaseKind;
use djinn_core::model::ModelSpec;
use djinn_core::plan::Lane;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::cost::CostModel;
use crate::graph::{Edge, RunGraph, RunPass};
use crate::schedule::Work;

/// Decode iterations simulated after prefill.
pub const ITERATIONS: usize = 4;

/// Most re-simulations for copy contention with host computes.
pub const CONTENTION_PASSES: usize = 3;

/// Start and end of every node, µs from the start of prefill.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub start: Vec<f64>,
    pub end: Vec<f64>,
}

/// What the simulation predicts, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// End of prefill's last compute.
    pub prefill_end_us: f64,
    /// Prefill plus the host turnaround: the first token is sampled.
    pub ttft_us: f64,
    /// When the host issued the last simulated iteration.
    pub last_iteration_start_us: f64,
    /// The last iteration's length (steady state), turnaround included.
    pub decode_us: f64,
    /// Fraction of `[0, prefill_end]` the copy lane is busy.
    pub prefill_copy_busy: f64,
    /// Copy time of one iteration's steps over the iteration length, at most 1.
    pub decode_copy_busy: f64,
}

/// Runs the list schedule.
pub fn simulate(g: &RunGraph, model: &ModelSpec, cost: &dyn CostModel) -> Timeline {
    let slow = cost.copy_slowdown_during_host();
    let mut tl = schedule_once(g, model, cost, &[], slow);
    if slow > 1.0 {
        for _ in 0..CONTENTION_PASSES {
            let host = host_intervals(g, &tl);
            if host.is_empty() {
                break;
            }
            let next = schedule_once(g, model, cost, &host, slow);
            let settled = next == tl;
            tl = next;
            if settled {
                break;
            }
        }
    }
    tl
}

/// The host computes' `[start, end)` intervals, ascending (one lane: disjoint).
fn host_intervals(g: &RunGraph, tl: &Timeline) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = g
        .graph
        .node_indices()
        .filter(|&n| matches!(g.graph[n].work, Work::HostCompute { .. }))
        .map(|n| (tl.start[n.index()], tl.end[n.index()]))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// How long a copy of `work` µs (at full rate) started at `t` takes when it
/// runs `slow` times slower inside the `host` intervals.
pub fn stretched(t: f64, work: f64, host: &[(f64, f64)], slow: f64) -> f64 {
    let (mut now, mut left) = (t, work);
    for &(a, b) in host.iter().filter(|&&(_, b)| b > t) {
        if a > now {
            if left <= a - now {
                return now + left - t;
            }
            left -= a - now;
            now = a;
        }
        if left * slow <= b - now {
            return now + left * slow - t;
        }
        left -= (b - now) / slow;
        now = b;
    }
    now + left - t
}

fn schedule_once(g: &RunGraph, model: &ModelSpec, cost: &dyn CostModel, host: &[(f64, f64)], slow: f64) -> Timeline {
    let n = g.graph.node_count();
    let mut start = vec![0.0; n];
    let mut end = vec![0.0; n];
    let turnaround = cost.turnaround_us();
    // Whether the compute lane's latest step was a host compute: a run of them
    // hands the residual stream over once.
    let mut on_host = false;
    for ix in g.graph.node_indices() {
        let node = g.graph[ix];
        let mut t: f64 = 0.0;
        for e in g.graph.edges_directed(ix, Direction::Incoming) {
            let src = e.source().index();
            debug_assert!(src < ix.index(), "edges point forward in issue order");
            let ready = end[src] + if *e.weight() == Edge::Host { turnaround } else { 0.0 };
            t = t.max(ready);
        }
        let phase = match node.pass {
            RunPass::Prefill => PhaseKind::Prefill,
            RunPass::Decode(_) => PhaseKind::Decode,
        };
        let block = &model.blocks[node.work.block()];
        let dur = match node.work {
            Work::Copy { .. } if node.warm => 0.0,
            Work::Copy { .. } => stretched(t, cost.copy_us(block), host, slow),
            Work::Compute { .. } => cost.compute_us(block, phase),
            // The solver proposes host computes only when the cost model has a
            // host lane; were one simulated without, the infinite time would
            // fail the verifier's finite-time check instead of passing silently.
            Work::HostCompute { .. } => {
                let handoff = if on_host { 0.0 } else { cost.host_handoff_us() };
                cost.host_compute_us(block, phase).unwrap_or(f64::INFINITY) + handoff
            }
        };
        match node.work {
            Work::HostCompute { .. } => on_host = true,
            Work::Compute { .. } => on_host = false,
            Work::Copy { .. } => {}
        }
        start[ix.index()] = t;
        end[ix.index()] = t + dur;
    }
    Timeline { start, end }
}

/// End of the last compute step of a pass.
fn pass_end(g: &RunGraph, tl: &Timeline, nodes: &[NodeIndex]) -> f64 {
    nodes.iter().filter(|&&n| g.graph[n].lane() == Lane::Compute).map(|n| tl.end[n.index()]).fold(0.0, f64::max)
}

/// Derives the predictions from a timeline.
pub fn metrics(g: &RunGraph, tl: &Timeline, cost: &dyn CostModel) -> Metrics {
    let turnaround = cost.turnaround_us();
    let prefill_end = pass_end(g, tl, &g.prefill);
    let copy_nodes = |nodes: &[NodeIndex]| -> Vec<usize> {
        nodes.iter().filter(|&&n| g.graph[n].lane() == Lane::Copy).map(|n| n.index()).collect()
    };
    let busy_in = |nodes: &[usize], from: f64, to: f64| -> f64 {
        // fold from +0.0: an empty f64 `sum()` is -0.0, which a plan would print as `-0.0`.
        nodes.iter().map(|&i| (tl.end[i].min(to) - tl.start[i].max(from)).max(0.0)).fold(0.0, |a, b| a + b)
    };
    let prefill_copy_busy =
        if prefill_end > 0.0 { busy_in(&copy_nodes(&g.prefill), 0.0, prefill_end) / prefill_end } else { 0.0 };

    let (decode_start, decode_us, decode_copy_busy) = match g.decode.last() {
        Some(last) => {
            let t = g.decode.len() - 1;
            let begin = if t == 0 { prefill_end } else { pass_end(g, tl, &g.decode[t - 1]) } + turnaround;
            let len = pass_end(g, tl, last) + turnaround - begin;
            let copy = copy_nodes(last).iter().map(|&i| tl.end[i] - tl.start[i]).fold(0.0, |a, b| a + b);
            (begin, len, if len > 0.0 { (copy / len).min(1.0) } else { 0.0 })
        }
        None => (prefill_end + turnaround, 0.0, 0.0),
    };
    Metrics {
        prefill_end_us: prefill_end,
        ttft_us: prefill_end + turnaround,
        last_iteration_start_us: decode_start,
        decode_us,
        prefill_copy_busy,
        decode_copy_busy,
    }
}

#[cfg(test)]
mod tests {
    use super::stretched;

    #[test]
    fn a_copy_slows_down_only_where_it_overlaps_host_computes() {
        let host = [(10.0, 20.0), (30.0, 40.0)];
        // Entirely outside: unchanged.
        assert_eq!(stretched(0.0, 5.0, &host, 2.0), 5.0);
        assert_eq!(stretched(40.0, 5.0, &host, 2.0), 5.0);
        // 10 outside, then 5 of work at half speed inside [10, 20): 10 + 10.
        assert_eq!(stretched(0.0, 15.0, &host, 2.0), 20.0);
        // 10 outside, 5 inside (10 µs), 10 outside, then 2 more at half speed: 10 + 10 + 10 + 4.
        assert_eq!(stretched(0.0, 27.0, &host, 2.0), 34.0);
        // Starting inside an interval.
        assert_eq!(stretched(15.0, 2.0, &host, 2.0), 4.0);
        // No slowdown, no change.
        assert_eq!(stretched(0.0, 27.0, &host, 1.0), 27.0);
    }
}
