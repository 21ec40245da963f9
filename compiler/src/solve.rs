//! The solver: which blocks stay resident, which layers stream, through how
//! many slots, and the resulting schedule.
//!
//! The streamable units are the model's layer blocks: whole layers, or, in a
//! model whose layers are split ([`ModelSpec::split_layers`]), attention and
//! MLP halves. "Layer" below means such a unit.
//!
//! 1. **Residency.** The embedding, the final norm and the LM head are always
//!    resident (streaming a whole embedding table to gather a few rows would be
//!    absurd). Layers fill what is left of the budget once the KV cache, the
//!    activations, the workspace and the slots are laid out, measured by laying
//!    out the arena for real ([`crate::arena::lay_out`]). If every layer fits,
//!    nothing streams and there are no slots.
//! 2. **Which layers stream.** Spread evenly through the model (`s_i` is the
//!    last layer of the i-th of m equal groups), so every streamed layer's copy
//!    overlaps the computation of the resident layers before it; the last m
//!    layers; and, with split layers, MLP halves first (spread evenly, then
//!    attention halves once every MLP streams): MLPs are the halves the host
//!    can compute. With the fine table, whole MLPs first (both parts of a
//!    layer's MLP), down blocks first, or gate/up blocks first (then the
//!    other part, then attention): the smallest streamed block sizes the slots. Each is simulated; the faster wins (decode time first, then
//!    TTFT; ties go to the even spread).
//! 3. **Slots.** At least 2, each the size of the largest streamed block. Each
//!    k in 2..=8 is tried with the same budget, so more slots mean fewer
//!    resident layers; the fewest slots among the fastest plans win. A streamed
//!    set no larger than k would take no less memory than making it resident,
//!    and the all-resident plan is tried first, so m ≥ k always.
//! 4. **Schedule** ([`crate::schedule`]), unrolled ([`crate::graph`]) and
//!    simulated ([`crate::simulate`]) for every candidate.
//!    Decode may **pin** slots: a pinned slot keeps one copied layer through
//!    the decode loop (what prefill left there, where it can), so decode
//!    copies one layer fewer per pinned slot, while the other copied layers
//!    rotate through fewer slots. The count is simulated ([`pinned_choices`]).
//! 5. **Host compute** (djinn only, when the problem allows it and the cost
//!    model has a host lane). With residency and slots fixed, the host CPU can
//!    run some streamed blocks' decode step from host memory instead of
//!    copying them — only blocks that read no KV cache (MLP halves, or a
//!    fine-table MLP's gate/up and down blocks, each on its own: the runtime
//!    hands the `gate` activation over when they run on different sides),
//!    since the cache lives on the device: the copy lane then moves fewer bytes per
//!    token while the compute lane takes longer, and a run of consecutive host
//!    blocks pays one hand-off. For the best layout of each spread, every host
//!    set of a small set of host-computable streamed blocks
//!    ([`host_candidates`]) with every pinned count is simulated; the fastest
//!    decode wins, ties to fewer host blocks, then fewer pinned slots. Prefill
//!    computes every streamed block on the GPU whatever the host set.
//! 6. **Strategies.** `djinn` as above; `sync` keeps djinn's residency and slots
//!    but serialises copies and computes; `stream-all` keeps only the embedding,
//!    norm and head resident and streams every layer with djinn's schedule.
//!    Neither ablation computes on the host.

use djinn_core::gpu::PhaseKind;
use djinn_core::model::{BlockKind, ModelSpec, Table};
use djinn_core::plan::{Arena, RunShape, Strategy};

use crate::arena::{lay_out, FixedRegions};
use crate::cost::CostModel;
use crate::error::CompileError;
use crate::graph::{unroll, RunGraph};
use crate::schedule::{build, Program};
use crate::simulate::{metrics, simulate, Metrics, Timeline, ITERATIONS};
use crate::HostCompute;

/// Most slots the solver tries.
pub const MAX_SLOTS: u64 = 8;

/// What the solver is asked.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    pub model: &'a ModelSpec,
    pub shape: RunShape,
    pub budget: u64,
    pub strategy: Strategy,
    /// Whether djinn may (or must) compute streamed layers' decode steps on the host CPU.
    pub host_compute: HostCompute,
}

/// Where the streamed layers sit among the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Spread {
    Even,
    Last,
    /// Split layers only: MLP halves first, evenly, then attention halves evenly.
    /// In the fine table: whole MLPs (a layer's gate/up and down together) first.
    MlpFirst,
    /// Fine table only: down blocks first, evenly, then gate/up blocks, then attention.
    DownFirst,
    /// Fine table only: gate/up blocks first, evenly, then down blocks, then attention.
    GateUpFirst,
}

/// A placement of every block and the arena it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Resident blocks, indices into `model.blocks`, ascending.
    pub resident: Vec<usize>,
    /// Streamed blocks (layers), ascending: `s_0 … s_{m-1}`.
    pub streamed: Vec<usize>,
    /// Blocks held in host memory and computed by the host CPU in every pass
    /// (the embedding, whose passes read a few of its rows), ascending.
    pub held: Vec<usize>,
    pub slots: u64,
    pub slot_bytes: u64,
    pub fixed: FixedRegions,
    pub arena: Arena,
}

/// A layout with its schedule, simulated.
#[derive(Debug, Clone)]
pub struct Solution {
    pub strategy: Strategy,
    pub spread: Spread,
    pub layout: Layout,
    /// Streamed blocks whose decode step the host CPU computes, ascending.
    pub host: Vec<usize>,
    /// Slots that keep one copied layer through decode ([`crate::schedule::decode_occupants`]).
    pub pinned: usize,
    pub program: Program,
    pub graph: RunGraph,
    pub timeline: Timeline,
    pub metrics: Metrics,
}

impl Solution {
    /// The ordering key: decode time, TTFT (to 0.1 µs), fewer slots, spread, fewer pinned.
    fn key(&self) -> (i64, i64, u64, Spread, usize) {
        let q = |us: f64| (us * 10.0).round() as i64;
        (q(self.metrics.decode_us), q(self.metrics.ttft_us), self.layout.slots, self.spread, self.pinned)
    }
}

/// Indices of the layer blocks (whole layers or their halves), in model order.
pub fn layer_blocks(model: &ModelSpec) -> Vec<usize> {
    model.blocks.iter().enumerate().filter(|(_, b)| b.kind.is_layer_part()).map(|(i, _)| i).collect()
}

/// The spreads worth trying for `model`.
pub fn spreads(model: &ModelSpec) -> Vec<Spread> {
    let mut s = vec![Spread::Even, Spread::Last];
    if model.is_split() {
        s.push(Spread::MlpFirst);
    }
    if model.table() == Table::Fine {
        s.extend([Spread::DownFirst, Spread::GateUpFirst]);
    }
    s
}

/// `m` of `layers` (the model's [`layer_blocks`]) placed by `spread`, ascending.
pub fn pick_streamed(model: &ModelSpec, layers: &[usize], m: usize, spread: Spread) -> Vec<usize> {
    let l = layers.len();
    assert!(m <= l, "cannot stream {m} of {l} layers");
    // (i+1)·l/m grows by l/m ≥ 1 per step, so the picks are distinct and ascending.
    let even = |of: &[usize], m: usize| (0..m).map(|i| of[(i + 1) * of.len() / m - 1]).collect::<Vec<_>>();
    let of_kind = |kind: BlockKind| layers.iter().copied().filter(|&b| model.blocks[b].kind == kind).collect();
    // `picked`, then up to `m` blocks in all from `tiers` in turn, evenly within each, ascending.
    let tiered_after = |mut picked: Vec<usize>, tiers: &[Vec<usize>]| {
        for tier in tiers {
            let take = (m - picked.len()).min(tier.len());
            picked.extend(even(tier, take));
        }
        picked.sort_unstable();
        picked
    };
    let attns: Vec<usize> = of_kind(BlockKind::Attention);
    match spread {
        Spread::Even => even(layers, m),
        Spread::Last => layers[l - m..].to_vec(),
        Spread::MlpFirst if model.table() == Table::Fine => {
            // Whole MLPs: a layer's gate/up and its down, evenly over the layers; an odd
            // block is the down of the next MLP in the same spread.
            let (ups, downs): (Vec<usize>, Vec<usize>) = (of_kind(BlockKind::GateUp), of_kind(BlockKind::Down));
            let pairs = (m / 2).min(ups.len());
            let mut picked = Vec::with_capacity(m);
            for i in even(&(0..ups.len()).collect::<Vec<_>>(), pairs) {
                picked.extend([ups[i], downs[i]]);
            }
            let rest_downs: Vec<usize> = downs.iter().copied().filter(|d| !picked.contains(d)).collect();
            let rest_ups: Vec<usize> = ups.iter().copied().filter(|u| !picked.contains(u)).collect();
            tiered_after(picked, &[rest_downs, rest_ups, attns])
        }
        Spread::MlpFirst => tiered_after(Vec::with_capacity(m), &[of_kind(BlockKind::Mlp), attns]),
        Spread::DownFirst => {
            tiered_after(Vec::with_capacity(m), &[of_kind(BlockKind::Down), of_kind(BlockKind::GateUp), attns])
        }
        Spread::GateUpFirst => {
            tiered_after(Vec::with_capacity(m), &[of_kind(BlockKind::GateUp), of_kind(BlockKind::Down), attns])
        }
    }
}

/// `h` of `streamed` spread evenly: positions `⌊(i + ½)·m/h⌋`, the middle of
/// each of `h` equal groups (distinct and ascending, since `m/h ≥ 1`).
pub fn pick_host(streamed: &[usize], h: usize) -> Vec<usize> {
    let m = streamed.len();
    assert!(h <= m, "cannot host-compute {h} of {m} streamed layers");
    (0..h).map(|i| streamed[(2 * i + 1) * m / (2 * h)]).collect()
}

/// Lays out the arena with `streamed` going through `slots` slots and every other block resident.
pub fn layout_for(model: &ModelSpec, fixed: &FixedRegions, streamed: &[usize], slots: u64) -> Layout {
    layout_held(model, fixed, streamed, &[], slots)
}

/// [`layout_for`] with the `held` blocks kept in host memory (no region, no slot).
pub fn layout_held(model: &ModelSpec, fixed: &FixedRegions, streamed: &[usize], held: &[usize], slots: u64) -> Layout {
    let resident: Vec<usize> = (0..model.blocks.len()).filter(|b| !streamed.contains(b) && !held.contains(b)).collect();
    let slot_bytes = streamed.iter().map(|&b| model.blocks[b].bytes).max().unwrap_or(0);
    let arena = lay_out(model, &resident, slots, slot_bytes, fixed);
    Layout { resident, streamed: streamed.to_vec(), held: held.to_vec(), slots, slot_bytes, fixed: *fixed, arena }
}

/// Builds, unrolls and simulates the schedule of a layout.
/// `host` (a subset of `layout.streamed`) are computed by the host CPU in
/// decode; `pinned` slots keep one copied layer through decode.
pub fn evaluate(
    model: &ModelSpec,
    layout: Layout,
    host: &[usize],
    pinned: usize,
    spread: Spread,
    strategy: Strategy,
    cost: &dyn CostModel,
) -> Result<Solution, CompileError> {
    let program = build(model.blocks.len(), &layout.streamed, &layout.held, host, layout.slots, pinned, strategy);
    let graph = unroll(&program, ITERATIONS)?;
    let timeline = simulate(&graph, model, cost);
    let metrics = metrics(&graph, &timeline, cost);
    Ok(Solution { strategy, spread, layout, host: host.to_vec(), pinned, program, graph, timeline, metrics })
}

/// `sol` with no warm copies (`--warm-slots off`): prefill issues every copy
/// itself, so TTFT pays for the first ones; re-unrolled and re-simulated.
pub fn without_warm(mut sol: Solution, model: &ModelSpec, cost: &dyn CostModel) -> Result<Solution, CompileError> {
    sol.program.warm = 0;
    sol.graph = unroll(&sol.program, ITERATIONS)?;
    sol.timeline = simulate(&sol.graph, model, cost);
    sol.metrics = metrics(&sol.graph, &sol.timeline, cost);
    Ok(sol)
}

/// The pinned-slot counts worth simulating for `slots` slots (0 and all but one
/// bracket the trade: fewer copies per token against a shallower prefetch).
pub fn pinned_choices(slots: u64) -> Vec<usize> {
    let k = slots as usize;
    let mut p: Vec<usize> = [0, 1, k / 2, k.saturating_sub(1)].into_iter().filter(|&p| p < k.max(1)).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// Streamed sets up to this size have every subset tried as the host set.
pub const EXHAUSTIVE_HOST_SETS: usize = 10;

/// The host sets step 5 simulates for `streamed`: every non-empty subset of a
/// small streamed set; for a large one, per size `h`, the even spread
/// ([`pick_host`]) and `h` consecutive streamed layers at a few offsets (a run
/// hands the residual stream over once).
pub fn host_candidates(streamed: &[usize]) -> Vec<Vec<usize>> {
    let m = streamed.len();
    if m <= EXHAUSTIVE_HOST_SETS {
        return (1u32..1 << m)
            .map(|bits| (0..m).filter(|i| bits >> i & 1 == 1).map(|i| streamed[i]).collect())
            .collect();
    }
    let mut sets = Vec::new();
    for h in 1..=m {
        sets.push(pick_host(streamed, h));
        let stride = ((m - h) / 4).max(1);
        for start in (0..=m - h).step_by(stride) {
            sets.push(streamed[start..start + h].to_vec());
        }
    }
    sets.sort();
    sets.dedup();
    sets
}

/// Whether `a` is the better solution: faster decode (to 0.1 µs), then fewer
/// host layers, then fewer pinned slots, then TTFT.
fn better(a: &Solution, b: &Solution) -> bool {
    let q = |us: f64| (us * 10.0).round() as i64;
    (q(a.metrics.decode_us), a.host.len(), a.pinned, q(a.metrics.ttft_us))
        < (q(b.metrics.decode_us), b.host.len(), b.pinned, q(b.metrics.ttft_us))
}

/// The streamed blocks of `layout` the host lane can compute, ascending:
/// those that read no KV cache and the cost model prices on the host. A
/// fine-table MLP's parts are each one: the runtime hands the `gate`
/// activation across the bus when they run on different sides.
fn host_computable(model: &ModelSpec, layout: &Layout, cost: &dyn CostModel) -> Vec<usize> {
    layout
        .streamed
        .iter()
        .copied()
        .filter(|&b| cost.host_compute_us(&model.blocks[b], PhaseKind::Decode).is_some())
        .collect()
}

/// Step 5: the best set of host blocks and pinned slots for `best`'s layout
/// (`best` itself when none helps), chosen by simulation.
fn choose_host(model: &ModelSpec, best: Solution, cost: &dyn CostModel) -> Result<Solution, CompileError> {
    let computable = host_computable(model, &best.layout, cost);
    if computable.is_empty() {
        return Ok(best);
    }
    let mut best = best;
    for host in host_candidates(&computable) {
        for pinned in pinned_choices(best.layout.slots) {
            let sol = evaluate(model, best.layout.clone(), &host, pinned, best.spread, best.strategy, cost)?;
            if better(&sol, &best) {
                best = sol;
            }
        }
    }
    Ok(best)
}

/// The sets of blocks the host may hold and compute in every pass for
/// `problem`, smallest first: the embedding (a pass reads one row per token
/// of its table), then the embedding and the LM head (a pass multiplies one
/// row by it: the host streams its matrix once a token beside the copy lane,
/// and the device's freed bytes keep streamed blocks resident). Only when the
/// strategy is djinn, host compute is allowed and the cost model prices each
/// block in both phases.
fn holdable(problem: &Problem, cost: &dyn CostModel) -> Vec<Vec<usize>> {
    if problem.strategy != Strategy::Djinn || problem.host_compute == HostCompute::Off {
        return Vec::new();
    }
    let model = problem.model;
    let priced = |i: usize| {
        [PhaseKind::Prefill, PhaseKind::Decode].iter().all(|&p| cost.host_compute_us(&model.blocks[i], p).is_some())
    };
    let of = |kind: BlockKind| (0..model.blocks.len()).find(|&i| model.blocks[i].kind == kind && priced(i));
    let Some(embed) = of(BlockKind::Embedding) else { return Vec::new() };
    let mut sets = vec![vec![embed]];
    if let Some(head) = of(BlockKind::LmHead) {
        sets.push(vec![embed, head]);
    }
    sets
}

/// Solves `problem` with `cost`: with every block on the device, and (when
/// anything streams and the host can hold blocks) with each [`holdable`] set
/// in host memory; the best of them (`--host-compute all`: the largest set).
///
/// A model with tied embeddings holds its embedding in host memory whenever
/// the host can: its LM head is the same matrix, so the device then keeps
/// the table once (as the LM head) instead of twice, and a pass gathers its
/// few rows on the host. Only if no holding plan fits is the device-only
/// layout solved.
pub fn solve(problem: &Problem, cost: &dyn CostModel) -> Result<Solution, CompileError> {
    let sets = holdable(problem, cost);
    let tied = problem.model.arch.tie_word_embeddings && !sets.is_empty();
    let mut best: Option<Result<Solution, CompileError>> = None;
    if !tied {
        let on_device = solve_holding(problem, cost, &[]);
        if sets.is_empty() || matches!(&on_device, Ok(s) if s.layout.streamed.is_empty()) {
            return on_device;
        }
        best = Some(on_device);
    }
    for set in &sets {
        let holding = solve_holding(problem, cost, set);
        best = Some(match (best, holding) {
            (None, h) => h,
            (Some(Ok(b)), Ok(h)) => Ok(if problem.host_compute == HostCompute::All || better(&h, &b) { h } else { b }),
            (Some(Ok(b)), Err(_)) => Ok(b),
            (Some(Err(_)), Ok(h)) => Ok(h),
            // The larger set needs less device memory: its error says what is needed.
            (Some(Err(_)), Err(e)) => Err(e),
        });
    }
    match best {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) if !tied => Err(e),
        _ => solve_holding(problem, cost, &[]),
    }
}

/// [`solve`] with the `held` blocks in host memory.
fn solve_holding(problem: &Problem, cost: &dyn CostModel, held: &[usize]) -> Result<Solution, CompileError> {
    let model = problem.model;
    let fixed = FixedRegions::new(model, &problem.shape);
    let layers = layer_blocks(model);
    let fits = |l: &Layout| l.arena.bytes <= problem.budget;

    let streaming = match problem.strategy {
        Strategy::Djinn | Strategy::Sync => {
            let all = layout_held(model, &fixed, &[], held, 0);
            if fits(&all) {
                return evaluate(model, all, &[], 0, Spread::Even, problem.strategy, cost);
            }
            let mut layouts = Vec::new();
            for k in 2..=MAX_SLOTS.min(layers.len() as u64) {
                for spread in spreads(model) {
                    let found = (k as usize..=layers.len())
                        .map(|m| layout_held(model, &fixed, &pick_streamed(model, &layers, m, spread), held, k))
                        .find(|l| fits(l));
                    layouts.extend(found.map(|l| (l, spread)));
                }
            }
            layouts
        }
        Strategy::StreamAll => {
            if layers.len() < 2 {
                return Err(CompileError::TooFewLayers {
                    strategy: problem.strategy.name(),
                    model: model.name.clone(),
                    layers: layers.len() as u64,
                });
            }
            (2..=MAX_SLOTS.min(layers.len() as u64))
                .map(|k| layout_for(model, &fixed, &layers, k))
                .filter(|l| fits(l))
                .map(|l| (l, Spread::Even))
                .collect()
        }
    };
    if streaming.is_empty() {
        return Err(too_small(problem, &fixed, &layers, held));
    }
    // The best copy-only solution of each spread (and overall).
    let mut best_of: Vec<Solution> = Vec::new();
    for (layout, spread) in streaming {
        // Sync is timed with djinn's choice of layout: pick the layout by djinn's schedule.
        let strategy = if problem.strategy == Strategy::Sync { Strategy::Djinn } else { problem.strategy };
        // The stream-all ablation keeps every layer moving: no pinned slots.
        let pins = if problem.strategy == Strategy::StreamAll { vec![0] } else { pinned_choices(layout.slots) };
        for pinned in pins {
            let sol = evaluate(model, layout.clone(), &[], pinned, spread, strategy, cost)?;
            match best_of.iter_mut().find(|b| b.spread == spread) {
                Some(b) if b.key() <= sol.key() => {}
                Some(b) => *b = sol,
                None => best_of.push(sol),
            }
        }
    }
    best_of.sort_by_key(Solution::key);
    let best = best_of[0].clone();
    match problem.strategy {
        Strategy::Sync => evaluate(model, best.layout, &[], 0, best.spread, Strategy::Sync, cost),
        Strategy::Djinn if problem.host_compute == HostCompute::Auto => {
            let mut winner = best;
            for candidate in best_of {
                let sol = choose_host(model, candidate, cost)?;
                if better(&sol, &winner) {
                    winner = sol;
                }
            }
            Ok(winner)
        }
        Strategy::Djinn if problem.host_compute == HostCompute::All => {
            // The spread whose best layout streams the most host-computable blocks.
            let pick = best_of.iter().max_by_key(|s| host_computable(model, &s.layout, cost).len()).expect("non-empty");
            let host = host_computable(model, &pick.layout, cost);
            if host.is_empty() {
                let reason = match model.blocks.iter().find(|b| b.kind == BlockKind::Mlp || b.kind.is_mlp_part()) {
                    None => {
                        "whole layers read the KV cache, which lives on the device; only MLP halves run on the \
                             host (--units split)"
                    }
                    Some(mlp) if cost.host_compute_us(mlp, PhaseKind::Decode).is_none() => {
                        "the GPU profile has no [cpu] lane (measure one with djinn-profile)"
                    }
                    Some(_) => "the streamed blocks read the KV cache, which lives on the device",
                };
                let b = pick.layout.streamed[0];
                return Err(CompileError::NoHostLane { block: model.blocks[b].name.clone(), reason });
            }
            evaluate(model, pick.layout.clone(), &host, 0, pick.spread, Strategy::Djinn, cost)
        }
        Strategy::Djinn | Strategy::StreamAll => Ok(best),
    }
}

/// The budget error: what the smallest streaming plan (no resident layer, 2 slots) needs.
fn too_small(problem: &Problem, fixed: &FixedRegions, layers: &[usize], held: &[usize]) -> CompileError {
    let model = problem.model;
    let min = layout_held(model, fixed, layers, held, 2);
    let mut needed = min.arena.bytes;
    if problem.strategy != Strategy::StreamAll {
        needed = needed.min(layout_held(model, fixed, &[], held, 0).arena.bytes);
    }
    let fixed_blocks = model
        .blocks
        .iter()
        .enumerate()
        .filter(|(i, b)| !b.kind.is_layer_part() && !held.contains(i))
        .map(|(_, b)| b.bytes)
        .sum();
    CompileError::BudgetTooSmall {
        budget: problem.budget,
        needed,
        reserve: 0,
        kv_hint: String::new(),
        kv_cache: fixed.kv_cache,
        activations: fixed.activations,
        workspace: fixed.workspace,
        slots: 2,
        slot_total: 2 * min.slot_bytes,
        fixed_blocks,
    }
}
