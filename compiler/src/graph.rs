//! The dependency graph of a run: prefill followed by a few decode iterations,
//! unrolled into one petgraph DAG.
//!
//! Nodes are the steps (`Copy{block, slot}` on the copy lane, `Compute{block}`
//! and `HostCompute{block}` on the compute lane: the host CPU's step holds
//! the compute lane like a kernel, it only takes longer), inserted in global issue order: prefill's list, then
//! each iteration's copy of the body. Edges:
//!
//! * `Data`: a copy → the compute that reads its slot;
//! * `SlotReuse`: the compute of a slot's occupant → the next copy into that
//!   slot (across iterations too);
//! * `Serialize`: the sync strategy's compute → copy ordering;
//! * `EventReuse`: a compute waiting on a copy's event → a later copy that
//!   records the same event (a prologue copy issued after it);
//! * `StreamOrder`: consecutive steps on one lane (a lane is a FIFO stream);
//! * `Host`: the end of a pass → the first step on each lane of the next decode
//!   iteration, which the host issues only after it has read the logits;
//! * `Issue`: a host compute → the next copy issued after it (the host thread
//!   computes the layer, so it issues nothing else meanwhile).
//!
//! A loop-carried dependency points into the previous pass, or into prefill
//! in every iteration when no body step produces the value (a pinned slot).
//!
//! Every edge points forward in issue order, so the issue order is a
//! topological order: the simulation walks it once, and the emitter turns the
//! cross-lane edges into the plan's `wait` / `wait_prev` / `record` events.

use djinn_core::plan::Lane;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::CompileError;
use crate::schedule::{DepKind, DepOn, Program, Work};

/// Which pass of the unrolled run a node belongs to (the runtime's `backend::Pass` is the
/// executor's description of one forward pass; this is only a position in the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPass {
    Prefill,
    Decode(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub pass: RunPass,
    /// Position in the pass's step list.
    pub pos: usize,
    pub work: Work,
    /// A warm copy ([`Program::warm`]): done before its pass starts.
    pub warm: bool,
}

impl Node {
    pub fn lane(&self) -> Lane {
        if self.work.is_copy() {
            Lane::Copy
        } else {
            Lane::Compute
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    Data,
    SlotReuse,
    Serialize,
    EventReuse,
    StreamOrder,
    Host,
    /// A host compute → the next copy in issue order: the host thread runs the
    /// layer itself, so it issues nothing after it until the layer is done.
    Issue,
}

impl Edge {
    /// Whether the edge crosses lanes and so needs an event in the plan.
    pub fn needs_event(self) -> bool {
        matches!(self, Edge::Data | Edge::SlotReuse | Edge::Serialize | Edge::EventReuse)
    }
}

impl From<DepKind> for Edge {
    fn from(k: DepKind) -> Edge {
        match k {
            DepKind::Data => Edge::Data,
            DepKind::SlotReuse => Edge::SlotReuse,
            DepKind::Serialize => Edge::Serialize,
            DepKind::EventReuse => Edge::EventReuse,
        }
    }
}

/// Prefill plus `decode.len()` unrolled decode iterations.
#[derive(Debug, Clone)]
pub struct RunGraph {
    pub graph: DiGraph<Node, Edge>,
    /// Node of each prefill position.
    pub prefill: Vec<NodeIndex>,
    /// Node of each body position, per iteration.
    pub decode: Vec<Vec<NodeIndex>>,
}

impl RunGraph {
    pub fn nodes_of(&self, pass: RunPass) -> &[NodeIndex] {
        match pass {
            RunPass::Prefill => &self.prefill,
            RunPass::Decode(t) => &self.decode[t],
        }
    }
}

/// Unrolls `program` into prefill and `iterations` decode iterations.
pub fn unroll(program: &Program, iterations: usize) -> Result<RunGraph, CompileError> {
    let mut graph = DiGraph::new();
    let mut lane_last: [Option<NodeIndex>; 2] = [None, None];
    // The latest host compute issued since the latest copy.
    let mut host_since_copy: Option<NodeIndex> = None;
    let lane_ix = |l: Lane| match l {
        Lane::Copy => 0,
        Lane::Compute => 1,
    };

    let mut add_pass = |graph: &mut DiGraph<Node, Edge>,
                        pass: RunPass,
                        prev: Option<&[NodeIndex]>,
                        prefill_nodes: Option<&[NodeIndex]>,
                        prev_is_prefill: bool|
     -> Result<Vec<NodeIndex>, CompileError> {
        let list = match pass {
            RunPass::Prefill => &program.prefill,
            RunPass::Decode(_) => &program.decode,
        };
        // The compute that ends the previous pass: the host waits for it.
        let prev_end = prev.and_then(|p| p.iter().rev().copied().find(|&n| !graph[n].work.is_copy()));
        let mut first_on_lane = [true, true];
        let mut nodes = Vec::with_capacity(list.len());
        for (pos, item) in list.iter().enumerate() {
            let warm = pass == RunPass::Prefill && pos < program.warm;
            let node = Node { pass, pos, work: item.work, warm };
            let lane = lane_ix(node.lane());
            let n = graph.add_node(node);
            if let Some(last) = lane_last[lane] {
                graph.add_edge(last, n, Edge::StreamOrder);
            }
            match node.work {
                Work::HostCompute { .. } => host_since_copy = Some(n),
                Work::Copy { .. } => {
                    if let Some(h) = host_since_copy.take() {
                        graph.add_edge(h, n, Edge::Issue);
                    }
                }
                Work::Compute { .. } => {}
            }
            lane_last[lane] = Some(n);
            if first_on_lane[lane] {
                first_on_lane[lane] = false;
                if let Some(end) = prev_end {
                    graph.add_edge(end, n, Edge::Host);
                }
            }
            for dep in &item.deps {
                let src = match dep.on {
                    DepOn::Here(p) if p < pos => nodes[p],
                    DepOn::Here(p) => {
                        return Err(CompileError::Internal(format!(
                            "{pass:?} step {pos} depends on step {p}, which is not issued before it"
                        )))
                    }
                    DepOn::Prev { body, prefill } => {
                        let prev = prev.ok_or_else(|| {
                            CompileError::Internal(format!("{pass:?} step {pos} depends on a previous pass"))
                        })?;
                        // No body step produces it: prefill's step, in every iteration.
                        let (p, prev) = match body {
                            Some(b) if !prev_is_prefill => (b, prev),
                            _ => (prefill, prefill_nodes.unwrap_or(prev)),
                        };
                        *prev.get(p).ok_or_else(|| {
                            CompileError::Internal(format!("{pass:?} step {pos} depends on missing step {p}"))
                        })?
                    }
                };
                graph.add_edge(src, n, dep.kind.into());
            }
            nodes.push(n);
        }
        Ok(nodes)
    };

    let prefill = add_pass(&mut graph, RunPass::Prefill, None, None, false)?;
    let mut decode: Vec<Vec<NodeIndex>> = Vec::with_capacity(iterations);
    for t in 0..iterations {
        let prev = if t == 0 { prefill.clone() } else { decode[t - 1].clone() };
        let nodes = add_pass(&mut graph, RunPass::Decode(t), Some(&prev), Some(&prefill), t == 0)?;
        decode.push(nodes);
    }
    Ok(RunGraph { graph, prefill, decode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use djinn_core::plan::Strategy;
    use petgraph::visit::EdgeRef;

    #[test]
    fn edges_point_forward_in_issue_order_and_the_graph_is_acyclic() {
        for strategy in Strategy::ALL {
            let p = crate::schedule::build(7, &[1, 2, 4], &[], &[], 2, 0, strategy);
            let g = unroll(&p, 3).unwrap();
            for e in g.graph.edge_references() {
                assert!(
                    e.source() < e.target(),
                    "{strategy:?}: {:?} -> {:?}",
                    g.graph[e.source()],
                    g.graph[e.target()]
                );
            }
            assert!(petgraph::algo::toposort(&g.graph, None).is_ok());
            assert_eq!(g.graph.node_count(), p.prefill.len() + 3 * p.decode.len());
        }
    }

    #[test]
    fn host_computes_sit_on_the_compute_lane_with_only_lane_order_edges() {
        let p = crate::schedule::build(7, &[1, 2, 4], &[], &[2], 2, 0, Strategy::Djinn);
        let g = unroll(&p, 2).unwrap();
        // Body "C0 C1@1 H2 C3 C4@0 C5 C6": position 2 is block 2's host compute; it
        // follows C1 on the compute lane and precedes C3, with no event edge in or out.
        let n = g.decode[1][2];
        assert_eq!(g.graph[n].work, Work::HostCompute { block: 2 });
        assert_eq!(g.graph[n].lane(), Lane::Compute);
        for dir in [petgraph::Direction::Incoming, petgraph::Direction::Outgoing] {
            let kinds: Vec<Edge> = g.graph.edges_directed(n, dir).map(|e| *e.weight()).collect();
            assert_eq!(kinds, [Edge::StreamOrder], "{dir:?}");
        }
        assert!(petgraph::algo::toposort(&g.graph, None).is_ok());
    }

    #[test]
    fn loop_carried_copies_feed_the_next_iteration() {
        let p = crate::schedule::build(7, &[1, 2, 4], &[], &[], 2, 0, Strategy::Djinn);
        let g = unroll(&p, 2).unwrap();
        // Iteration 0's compute of block 1 (body position 1) reads prefill's prologue copy
        // (prefill position 8); iteration 1's reads iteration 0's copy at body position 6.
        // Block 2's compute (body position 3), in its pinned slot, reads prefill's copy at
        // position 1 in every iteration.
        let src = |n: NodeIndex| {
            g.graph
                .edges_directed(n, petgraph::Direction::Incoming)
                .filter(|e| *e.weight() == Edge::Data)
                .map(|e| g.graph[e.source()])
                .collect::<Vec<_>>()
        };
        assert_eq!(
            src(g.decode[0][1]),
            vec![Node { pass: RunPass::Prefill, pos: 8, work: Work::Copy { block: 1, slot: 0 }, warm: false }]
        );
        assert_eq!(
            src(g.decode[1][1]),
            vec![Node { pass: RunPass::Decode(0), pos: 6, work: Work::Copy { block: 1, slot: 0 }, warm: false }]
        );
        // Prefill's leading copy: warm.
        let pinned = Node { pass: RunPass::Prefill, pos: 1, work: Work::Copy { block: 2, slot: 1 }, warm: true };
        assert_eq!(src(g.decode[0][3]), vec![pinned]);
        assert_eq!(src(g.decode[1][3]), vec![pinned]);
    }
}
