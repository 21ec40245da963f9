//! `djinn-compile`: turns a model and a GPU into a verified execution plan.
//!
//! The plan is XLA-style memory-space assignment made explicit (see
//! `docs/plan-format.md`): which blocks stay in device memory, which stream
//! through a ring of slots, and the exact order of copies and computes on two
//! lanes. The pipeline, one module each:
//!
//! model spec (`djinn_core::model_presets`) → GPU profile ([`gpu_presets`]) → cost model ([`cost`])
//! → residency, slots and schedule ([`solve`], [`schedule`], [`arena`]) →
//! graph ([`graph`]) → simulation ([`simulate`]) → plan ([`emit`]) → the
//! verifier (`djinn_core::verify`, which every plan must pass before it is
//! written) → summary ([`summary`]).
//!
//! [`compile`] is what the binary and the tests call; [`run`] is the whole
//! command line, argument parsing included.

pub mod arena;
pub mod cli;
pub mod cost;
pub mod emit;
pub mod error;
pub mod gpu_presets;
pub mod graph;
pub mod schedule;
pub mod simulate;
pub mod solve;
pub mod summary;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod solver_tests;

use djinn_core::gpu::GpuProfile;
use djinn_core::model::{Dtype, ModelSpec, Table};
use djinn_core::plan::{Plan, RunShape, Strategy};

pub use cli::{run, CliError, CliOutput};
pub use error::CompileError;

/// `--prompt-len` default.
pub const DEFAULT_PROMPT_LEN: u64 = 512;
/// `--max-new-tokens` default: with `--prompt-len`, what the KV cache is sized
/// for when `--max-seq-len` is not given.
pub const DEFAULT_MAX_NEW_TOKENS: u64 = 512;

/// The KV cache length of the profiler's one-layer plans (any length that
/// holds a prompt and a decode position serves: its rows are not timed).
pub const DEFAULT_MAX_SEQ_LEN: u64 = 2048;

/// `--max-seq-len max`: the model's `max_position_embeddings`.
pub const MODEL_MAX_SEQ_LEN: u64 = u64::MAX;

/// Device memory a plan leaves outside its arena for the executor, by default: the
/// NVRTC-compiled kernel modules, cuBLAS's handle and workspace, the driver's
/// per-stream state. `djinn-exec --enforce-budget` counts them against the
/// budget; on the H200 machine (CUDA 13) they measured ~86 MB (the peak
/// device memory of the 2026-12-01 runs less their arenas), so this keeps
/// half again as much.
pub const RUNTIME_RESERVE_BYTES: u64 = 128 << 20;

/// Everything but the model and the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Device memory the plan may use; `None`: the GPU's `usable_bytes`.
    pub budget: Option<u64>,
    pub prompt_len: u64,
    /// KV cache positions. `None`: `prompt_len + max_new_tokens`, the run the
    /// user says they need; [`MODEL_MAX_SEQ_LEN`]: the model's maximum.
    /// Either way capped at `max_position_embeddings`.
    pub max_seq_len: Option<u64>,
    /// Tokens a run generates after its prompt (sizes the KV cache when
    /// `max_seq_len` is `None`).
    pub max_new_tokens: u64,
    pub batch: u64,
    pub strategy: Strategy,
    /// Whether `djinn` may (or must) compute streamed blocks' decode steps on the host CPU.
    pub host_compute: HostCompute,
    /// Whole layers or their halves as the unit of residency and streaming.
    pub units: Units,
    /// Whether prefill's leading copies are warm ([`schedule::Program::warm`];
    /// `--warm-slots`, default on).
    pub warm_slots: bool,
    /// Device memory of the budget kept outside the arena for the executor
    /// (`--runtime-reserve`; default [`RUNTIME_RESERVE_BYTES`]).
    pub runtime_reserve: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            budget: None,
            prompt_len: DEFAULT_PROMPT_LEN,
            max_seq_len: None,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            batch: 1,
            strategy: Strategy::Djinn,
            host_compute: HostCompute::Auto,
            units: Units::Auto,
            warm_slots: true,
            runtime_reserve: RUNTIME_RESERVE_BYTES,
        }
    }
}

/// The unit of residency and streaming (`--units`): a model's block table
/// with whole layers, with each layer split into its attention and its MLP
/// block ([`ModelSpec::split_layers`]), or into its attention, gate/up and
/// down blocks ([`ModelSpec::fine_layers`]). Halves cost more steps but let a
/// plan keep attention (and the KV cache it reads) on the device while the
/// MLP streams or runs on the host, with slots sized for the larger half; the
/// fine table's slots can be sized for a down block (a third of an MLP) or a
/// gate/up block (two thirds), freeing device memory for resident weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Units {
    /// Every table solved and simulated; the faster decode wins, then TTFT,
    /// ties to the coarser table (fewer steps).
    #[default]
    Auto,
    Layers,
    Split,
    Fine,
}

impl Units {
    /// The `--units` flag that asks for this table alone.
    pub fn flag(self) -> &'static str {
        match self {
            Units::Auto => "--units auto",
            Units::Layers => "--units layers",
            Units::Split => "--units split",
            Units::Fine => "--units fine",
        }
    }

    /// The one table a model's block table already is.
    fn of(table: Table) -> Units {
        match table {
            Table::Layers => Units::Layers,
            Table::Split => Units::Split,
            Table::Fine => Units::Fine,
        }
    }
}

/// Whether `djinn` may compute streamed layers' decode steps on the host CPU
/// (`--host-compute`). Only a GPU profile with a `[cpu]` lane has a host to
/// compute on; `sync` and `stream-all` never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostCompute {
    /// Compute on the host when the simulation says decode is faster.
    #[default]
    Auto,
    /// Never: every streamed layer is copied in decode too.
    Off,
    /// Every streamed layer's decode step, whatever the simulation says: for
    /// tests of the host path on models too small for it to pay, and ablations.
    All,
}

/// A compilation as the command line states it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileRequest {
    /// A GPU preset name or a profile file (`*.toml`).
    pub gpu: String,
    /// A model preset name or a Hugging Face model directory.
    pub model: String,
    pub options: Options,
}

/// A verified plan and its human summary.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub plan: Plan,
    pub summary: String,
}

/// What the KV cache costs at this run shape and at a shorter one, for the
/// budget error: the cache is often the part a user can shrink.
fn kv_hint(model: &ModelSpec, shape: &RunShape, opts: &Options) -> String {
    use djinn_core::units::fmt_bytes;
    let kv = |max_seq_len| {
        djinn_core::activations::KvLayout::new(&model.arch, model.dtype, &RunShape { max_seq_len, ..*shape }).bytes()
    };
    let unit = model.blocks.iter().filter(|b| b.kind.is_layer_part()).map(|b| b.bytes).max().unwrap_or(0);
    let units = match model.table() {
        Table::Layers => "layers",
        Table::Split => "MLP halves",
        Table::Fine => "gate/up blocks",
    };
    let now = kv(shape.max_seq_len);
    let mut hint = format!("; the KV cache for {} positions is {}", shape.max_seq_len, fmt_bytes(now));
    if unit > 0 {
        hint += &format!(" ({:.1} {units}' worth)", now as f64 / unit as f64);
    }
    let shorter = opts.prompt_len.saturating_add(opts.max_new_tokens.min(128));
    if shorter < shape.max_seq_len {
        hint +=
            &format!("; --max-seq-len {shorter} (--prompt-len and 128 new tokens) needs {}", fmt_bytes(kv(shorter)));
    }
    hint
}

/// Resolves the GPU and the model, then [`compile_model`].
pub fn compile(req: &CompileRequest) -> Result<Compiled, CompileError> {
    let gpu = gpu_presets::load_gpu(&req.gpu)?;
    let model = djinn_core::model_presets::load_model(&req.model)?;
    compile_model(&model, &gpu, &req.options)
}

/// Compiles `model` for `gpu`: solve, simulate, emit, verify, summarise.
pub fn compile_model(model: &ModelSpec, gpu: &GpuProfile, opts: &Options) -> Result<Compiled, CompileError> {
    for (field, v) in [("--prompt-len", opts.prompt_len), ("--batch", opts.batch)] {
        if v == 0 {
            return Err(CompileError::Zero { field });
        }
    }
    if !matches!(model.dtype, Dtype::F16 | Dtype::Bf16) {
        return Err(CompileError::Dtype { model: model.name.clone(), dtype: model.dtype });
    }
    let mut notes = Vec::new();
    let asked = opts.max_seq_len.unwrap_or(opts.prompt_len.saturating_add(opts.max_new_tokens));
    if asked == 0 {
        return Err(CompileError::Zero { field: "--max-seq-len" });
    }
    let max_pos = model.arch.max_position_embeddings;
    let max_seq_len = asked.min(max_pos);
    if max_seq_len < asked && asked != MODEL_MAX_SEQ_LEN {
        notes.push(format!("max seq len {asked} capped at the model's max_position_embeddings {max_pos}"));
    }
    if opts.prompt_len > max_seq_len {
        return Err(CompileError::PromptTooLong { prompt_len: opts.prompt_len, max_seq_len });
    }
    let budget = opts.budget.unwrap_or(gpu.usable_bytes);
    if budget > gpu.memory_bytes {
        return Err(CompileError::BudgetAboveMemory { budget, gpu: gpu.name.clone(), memory: gpu.memory_bytes });
    }
    let shape = RunShape { prompt_len: opts.prompt_len, max_seq_len, batch: opts.batch };
    djinn_core::activations::checked_region_bytes(&model.arch, model.dtype, &shape)
        .map_err(|what| CompileError::ShapeOverflow { what, model: model.name.clone(), shape })?;
    let (solution, table) = choose(model, gpu, opts, shape, budget)?;
    let plan = emit::emit(&solution, &table, gpu, shape, budget)?;
    djinn_core::verify::verify(&plan).map_err(|e| CompileError::Verify(e.to_string()))?;
    let others = alternatives(model, gpu, opts, shape, budget, &solution, &table);
    let summary = summary::render(&plan, &notes, &others);
    Ok(Compiled { plan, summary })
}

/// Solves every block table `opts.units` allows and keeps the fastest plan
/// (decode, then TTFT; ties to the first, whole layers); returns it with its table.
fn choose(
    model: &ModelSpec,
    gpu: &GpuProfile,
    opts: &Options,
    shape: RunShape,
    budget: u64,
) -> Result<(solve::Solution, ModelSpec), CompileError> {
    // A finer table must still fit the plan's block limit.
    let fits = |t: Table| t.blocks_per_layer() * model.arch.num_layers + 3 <= djinn_core::limits::MAX_BLOCKS as u64;
    let tables = match opts.units {
        Units::Layers => vec![model.clone()],
        Units::Split => vec![model.split_layers()],
        Units::Fine => vec![model.fine_layers()],
        Units::Auto if model.is_split() => vec![model.clone()],
        Units::Auto => {
            let mut t = vec![model.clone()];
            if fits(Table::Split) {
                t.push(model.split_layers());
            }
            if fits(Table::Fine) {
                t.push(model.fine_layers());
            }
            t
        }
    };
    let mut best: Option<(solve::Solution, ModelSpec, (i64, i64))> = None;
    let mut failure = None;
    for table in tables {
        let cost = cost::Roofline::new(gpu, &table, shape);
        let problem = solve::Problem {
            model: &table,
            shape,
            budget: budget.saturating_sub(opts.runtime_reserve),
            strategy: opts.strategy,
            host_compute: opts.host_compute,
        };
        let solved = solve::solve(&problem, &cost).and_then(|sol| {
            if opts.warm_slots {
                Ok(sol)
            } else {
                solve::without_warm(sol, &table, &cost)
            }
        });
        match solved {
            Ok(sol) => {
                let key = |s: &solve::Solution| {
                    ((s.metrics.decode_us * 10.0).round() as i64, (s.metrics.ttft_us * 10.0).round() as i64)
                };
                // The sync ablation keeps djinn's residency, so djinn's plan ranks its table too.
                let rank = if opts.strategy == Strategy::Sync {
                    key(&solve::solve(&solve::Problem { strategy: Strategy::Djinn, ..problem.clone() }, &cost)?)
                } else {
                    key(&sol)
                };
                if !matches!(&best, Some((_, _, r)) if *r <= rank) {
                    best = Some((sol, table, rank));
                }
            }
            // The last table's error (the finest one under `auto`) says the most. The budget
            // error counts the executor's reserve in what the plan needs.
            Err(mut e) => {
                if let CompileError::BudgetTooSmall { budget: b, needed, reserve, kv_hint: hint, .. } = &mut e {
                    (*b, *needed, *reserve) = (budget, *needed + opts.runtime_reserve, opts.runtime_reserve);
                    *hint = kv_hint(&table, &shape, opts);
                }
                failure = Some(e);
            }
        }
    }
    let Some((solution, table, _)) = best else { return Err(failure.expect("a table was tried")) };
    Ok((solution, table))
}

/// What the choices `auto` made were worth: the chosen plan's predictions
/// beside those of the plans the other choices give (the other block table,
/// no host compute, both), one line each, for the summary. Only for djinn.
fn alternatives(
    model: &ModelSpec,
    gpu: &GpuProfile,
    opts: &Options,
    shape: RunShape,
    budget: u64,
    chosen: &solve::Solution,
    table: &ModelSpec,
) -> Vec<summary::Alternative> {
    if opts.strategy != Strategy::Djinn {
        return Vec::new();
    }
    // Under `auto` on a whole-layer model: the tables not chosen, coarsest first.
    let other_units: Vec<Units> = match opts.units {
        Units::Auto if !model.is_split() => {
            [Units::Layers, Units::Split, Units::Fine].into_iter().filter(|&u| u != Units::of(table.table())).collect()
        }
        _ => Vec::new(),
    };
    let off = (opts.host_compute == HostCompute::Auto && (!chosen.host.is_empty() || !chosen.layout.held.is_empty()))
        .then_some((HostCompute::Off, "--host-compute off"));
    let mut variants = Vec::new();
    if opts.warm_slots && chosen.program.warm > 0 {
        variants.push((Options { warm_slots: false, ..opts.clone() }, "--warm-slots off".to_string()));
    }
    for &u in &other_units {
        variants.push((Options { units: u, ..opts.clone() }, u.flag().to_string()));
    }
    if let Some((h, flag)) = off {
        variants.push((Options { host_compute: h, ..opts.clone() }, flag.to_string()));
    }
    if let Some((h, b)) = off {
        for &u in &other_units {
            variants.push((Options { units: u, host_compute: h, ..opts.clone() }, format!("{} {b}", u.flag())));
        }
    }
    let mut out: Vec<summary::Alternative> = Vec::new();
    for (o, flags) in variants {
        let Ok((sol, _)) = choose(model, gpu, &o, shape, budget) else { continue };
        let alt = summary::Alternative { flags, decode_us: sol.metrics.decode_us, ttft_us: sol.metrics.ttft_us };
        // A combination that changes nothing over a single flag (whole layers never run on the host) is not listed.
        let same = |a: &summary::Alternative| {
            (a.decode_us - alt.decode_us).abs() < 0.05 && (a.ttft_us - alt.ttft_us).abs() < 0.05
        };
        if !out.iter().any(same) {
            out.push(alt);
        }
    }
    out
}
