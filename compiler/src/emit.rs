//! Turns a solution into a [`Plan`]: placements, the arena, the two step lists
//! with their events and predicted times, and the prediction.
//!
//! Events come from the run graph's cross-lane edges. A step waits on the
//! event of each cross-lane predecessor, keeping per source lane only the
//! latest one (a lane is FIFO, so a later event on it implies the earlier
//! ones): `wait` when the predecessor is in the same pass, `wait_prev` when it
//! is in the previous one. A copy records `ready:<block>`, a compute
//! `done:<block>`, and only when someone waits on it. Decode's events are read
//! from iteration 1 (whose previous pass is a decode iteration); iteration 0's
//! `wait_prev` edges into prefill must name the same events, or the compiler
//! has a bug.
//!
//! Times are rounded to 0.1 µs, so the same inputs give byte-identical plans.

use std::collections::BTreeSet;

use djinn_core::gpu::GpuProfile;
use djinn_core::model::ModelSpec;
use djinn_core::plan::{
    resident_region_name, BlockPlacement, Lane, Op, Phase, Placement, Plan, Prediction, RunShape, Step, FORMAT_VERSION,
};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::error::CompileError;
use crate::graph::{RunGraph, RunPass};
use crate::schedule::Work;
use crate::solve::Solution;

/// The `generator` field of every plan.
pub fn generator() -> String {
    format!("djinn-compile {}", env!("CARGO_PKG_VERSION"))
}

/// Rounds µs to 0.1 µs.
pub fn round_us(us: f64) -> f64 {
    (us * 10.0).round() / 10.0
}

/// µs to ms, rounded to 0.1 µs (one division of an integer, so the decimal prints exactly).
fn ms(us: f64) -> f64 {
    (us * 10.0).round() / 1e4
}

fn round_frac(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The event a node records.
fn event(g: &RunGraph, model: &ModelSpec, n: NodeIndex) -> String {
    let node = g.graph[n];
    let name = &model.blocks[node.work.block()].name;
    if node.work.is_copy() {
        format!("ready:{name}")
    } else {
        format!("done:{name}")
    }
}

/// Cross-lane predecessors a node must wait on: per source lane, the latest.
fn kept_preds(g: &RunGraph, n: NodeIndex) -> Vec<NodeIndex> {
    let mut latest: [Option<NodeIndex>; 2] = [None, None];
    for e in g.graph.edges_directed(n, Direction::Incoming) {
        if !e.weight().needs_event() {
            continue;
        }
        let lane = match g.graph[e.source()].lane() {
            Lane::Copy => 0,
            Lane::Compute => 1,
        };
        if !matches!(latest[lane], Some(l) if l >= e.source()) {
            latest[lane] = Some(e.source());
        }
    }
    latest.into_iter().flatten().collect()
}

/// A step's `wait` and `wait_prev`.
type Waits = (Vec<String>, Vec<String>);

/// `wait` and `wait_prev` of every node of `pass`.
fn waits(g: &RunGraph, model: &ModelSpec, pass: RunPass) -> Result<Vec<Waits>, CompileError> {
    let prev = match pass {
        RunPass::Prefill => None,
        RunPass::Decode(0) => Some(RunPass::Prefill),
        RunPass::Decode(t) => Some(RunPass::Decode(t - 1)),
    };
    let mut out = Vec::new();
    for &n in g.nodes_of(pass) {
        let (mut wait, mut wait_prev) = (Vec::new(), Vec::new());
        for p in kept_preds(g, n) {
            let from = g.graph[p].pass;
            if from == pass {
                wait.push(event(g, model, p));
            } else if Some(from) == prev || from == RunPass::Prefill {
                // From prefill in a later iteration: a pinned slot's copy, whose event no
                // body step records, so `wait_prev` binds to prefill's record every time.
                wait_prev.push(event(g, model, p));
            } else {
                return Err(CompileError::Internal(format!("{pass:?} step depends on {from:?}, two passes back")));
            }
        }
        out.push((wait, wait_prev));
    }
    Ok(out)
}

/// Nodes of `pass` some node of `pass` or of `next` waits on.
fn recorders(g: &RunGraph, pass: RunPass, next: RunPass) -> BTreeSet<NodeIndex> {
    let mut set = BTreeSet::new();
    for &n in g.nodes_of(pass).iter().chain(g.nodes_of(next)) {
        set.extend(kept_preds(g, n).into_iter().filter(|&p| g.graph[p].pass == pass));
    }
    set
}

fn steps(
    g: &RunGraph,
    model: &ModelSpec,
    pass: RunPass,
    next: RunPass,
    times: &[NodeIndex],
    origin: f64,
    sol: &Solution,
) -> Result<Vec<Step>, CompileError> {
    let waits = waits(g, model, pass)?;
    let records = recorders(g, pass, next);
    let mut out = Vec::new();
    for (pos, &n) in g.nodes_of(pass).iter().enumerate() {
        let node = g.graph[n];
        let (lane, op, slot) = match node.work {
            Work::Copy { slot, .. } => (Lane::Copy, Op::Copy, Some(slot)),
            Work::Compute { slot, .. } => (Lane::Compute, Op::Compute, slot),
            Work::HostCompute { .. } => (Lane::Compute, Op::HostCompute, None),
        };
        let timed = times[pos].index();
        let (wait, wait_prev) = waits[pos].clone();
        out.push(Step {
            lane,
            op,
            block: model.blocks[node.work.block()].name.clone(),
            slot,
            wait,
            wait_prev,
            record: records.contains(&n).then(|| event(g, model, n)),
            warm: node.warm,
            start_us: round_us(sol.timeline.start[timed] - origin),
            end_us: round_us(sol.timeline.end[timed] - origin),
        });
    }
    Ok(out)
}

/// Builds the plan. The caller verifies it.
pub fn emit(
    sol: &Solution,
    model: &ModelSpec,
    gpu: &GpuProfile,
    shape: RunShape,
    budget: u64,
) -> Result<Plan, CompileError> {
    let g = &sol.graph;
    if g.decode.len() < 3 {
        return Err(CompileError::Internal("emission needs at least 3 simulated decode iterations".into()));
    }
    // Iteration 0's loop-carried waits (into prefill) must match the steady state's.
    let first = waits(g, model, RunPass::Decode(0))?;
    let steady = waits(g, model, RunPass::Decode(1))?;
    if first != steady {
        return Err(CompileError::Internal(
            "decode iteration 0 waits on prefill differently than later iterations wait on their predecessor".into(),
        ));
    }
    let last = g.decode.len() - 1;
    let prefill = steps(g, model, RunPass::Prefill, RunPass::Decode(0), &g.prefill, 0.0, sol)?;
    let decode = steps(
        g,
        model,
        RunPass::Decode(1),
        RunPass::Decode(2),
        &g.decode[last],
        sol.metrics.last_iteration_start_us,
        sol,
    )?;

    let layout = &sol.layout;
    let placements = model
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| BlockPlacement {
            block: b.name.clone(),
            placement: if layout.streamed.contains(&i) || layout.held.contains(&i) {
                Placement::Streamed
            } else {
                Placement::Resident { region: resident_region_name(&b.name) }
            },
        })
        .collect();
    let m = &sol.metrics;
    let prediction = Prediction {
        ttft_ms: ms(m.ttft_us),
        decode_ms_per_token: ms(m.decode_us),
        decode_copy_busy: round_frac(m.decode_copy_busy),
        prefill_copy_busy: round_frac(m.prefill_copy_busy),
        resident_blocks: layout.resident.len() as u64,
        streamed_blocks: (layout.streamed.len() + layout.held.len()) as u64,
        resident_bytes: layout.resident.iter().map(|&b| model.blocks[b].bytes).sum(),
        streamed_bytes_per_token: sol
            .program
            .decode
            .iter()
            .filter(|it| it.work.is_copy())
            .map(|it| model.blocks[it.work.block()].bytes)
            .sum(),
        slots: layout.slots,
        slot_bytes: layout.slot_bytes,
        kv_cache_bytes: layout.fixed.kv_cache,
        activation_bytes: layout.fixed.activations,
        workspace_bytes: layout.fixed.workspace,
    };
    Ok(Plan {
        format_version: FORMAT_VERSION,
        generator: generator(),
        strategy: sol.strategy,
        budget_bytes: budget,
        shape,
        prediction,
        arena: layout.arena.clone(),
        placements,
        prefill: Phase { steps: prefill },
        decode: Phase { steps: decode },
        gpu: gpu.clone(),
        model: model.clone(),
    })
}
