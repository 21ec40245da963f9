//! The replay engine: walks a plan's steps and drives a [`Backend`].
//!
//! It decides nothing. [`Replay::new`] runs the verifier (a plan on disk may
//! have been edited or written by a buggy compiler) and resolves every name
//! once — block names to block indices, slots and resident regions to arena
//! offsets, event names to [`EventId`]s. [`Replay::run_pass`] then issues one
//! phase's steps in plan order: for each step, a `wait` for each of its
//! `wait` and `wait_prev` events, the op, and its `record`.
//!
//! `wait_prev` needs no special case: a backend's `wait` binds to the most
//! recent record of the event issued so far (CUDA semantics), and the
//! verifier guarantees that in the decode body a `wait_prev = ["e"]` step is
//! issued before the current iteration's record of `e` — so it binds to the
//! previous iteration's record, or prefill's for the first iteration (see
//! `djinn_core::plan`).
//!
//! Warm copies (prefill's leading `warm` steps) are issued by [`Replay::warm`]
//! when the device is idle, and skipped by the next prefill pass; a prefill
//! that finds the slots not warm (the backend's [`Backend::slots_warm`]) issues
//! them at its head, where the plan lists them. Either way the copy lane runs
//! them before every other step of the pass.

use std::collections::HashMap;

use djinn_core::plan::{Lane, Op, PhaseName, Placement, Plan};
use djinn_core::verify::{step_summary, verify, VerifyError};
use djinn_kernels::SampleParams;
use thiserror::Error;

use crate::backend::{Backend, EventId, Pass};

/// How to replay. The default, and all that code outside the tests can
/// build, verifies the plan first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    skip_verify: bool,
}

impl ReplayOptions {
    /// Replays without verifying: for the tests that prove the adversarial
    /// backend catches plans the verifier rejects. Only with the
    /// `unverified-replay` feature, which only the workspace's tests enable
    /// (the root package's dev-dependency), so no binary can reach it.
    #[cfg(feature = "unverified-replay")]
    pub fn unverified() -> ReplayOptions {
        ReplayOptions { skip_verify: true }
    }
}

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("{0}")]
    Verify(VerifyError),
    #[error("the plan is for batch {0}; djinn-exec runs batch 1 (recompile with --batch 1)")]
    Batch(u64),
    #[error("{phase} step {step} ({what}): {problem}")]
    Resolve { phase: PhaseName, step: usize, what: String, problem: String },
    #[error("a {phase} pass of {tokens} tokens at position {pos0} does not fit the plan ({limit})")]
    PassShape { phase: PhaseName, tokens: u64, pos0: u64, limit: String },
    #[error("{phase} step {step} ({what}): {error}")]
    Backend { phase: PhaseName, step: String, what: String, error: Box<dyn std::error::Error + Send + Sync> },
}

/// What a step does, with every name resolved.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Copy { block: usize, dst: u64, bytes: u64 },
    Compute { block: usize, weights: u64 },
    HostCompute { block: usize },
}

#[derive(Debug, Clone, PartialEq)]
struct Resolved {
    lane: Lane,
    action: Action,
    /// `wait` then `wait_prev`, in the plan's order.
    waits: Vec<EventId>,
    record: Option<EventId>,
    /// `copy layer.3 into slot 1`, for error messages.
    what: String,
}

/// A warm copy: a copy-lane step that waits on nothing (rule `warm`).
#[derive(Debug, Clone, PartialEq)]
struct WarmCopy {
    block: usize,
    dst: u64,
    bytes: u64,
    record: Option<EventId>,
    what: String,
}

/// A verified plan, resolved for replay.
#[derive(Debug, Clone)]
pub struct Replay {
    plan: Plan,
    events: Vec<String>,
    /// Prefill's warm copies (its leading steps marked `warm`).
    warm: Vec<WarmCopy>,
    /// Prefill's other steps.
    prefill: Vec<Resolved>,
    decode: Vec<Resolved>,
}

impl Replay {
    pub fn new(plan: &Plan, opts: ReplayOptions) -> Result<Replay, ReplayError> {
        if !opts.skip_verify {
            verify(plan).map_err(ReplayError::Verify)?;
        }
        if plan.shape.batch != 1 {
            return Err(ReplayError::Batch(plan.shape.batch));
        }
        let mut events = Vec::new();
        let mut ids = HashMap::new();
        let mut resolve = |phase| resolve_phase(plan, phase, &mut events, &mut ids);
        let mut prefill = resolve(PhaseName::Prefill)?;
        let decode = resolve(PhaseName::Decode)?;
        // The verifier proved the warm steps a prefix of prefill, of copies that wait on nothing (rule `warm`).
        let warm_count = plan.warm_steps().len();
        let rest = prefill.split_off(warm_count);
        let mut warm = Vec::with_capacity(warm_count);
        for (i, r) in prefill.into_iter().enumerate() {
            match r.action {
                Action::Copy { block, dst, bytes } if r.waits.is_empty() => {
                    warm.push(WarmCopy { block, dst, bytes, record: r.record, what: r.what })
                }
                _ => {
                    return Err(ReplayError::Resolve {
                        phase: PhaseName::Prefill,
                        step: i,
                        what: r.what,
                        problem: "is marked warm but is not a copy that waits on nothing".into(),
                    })
                }
            }
        }
        Ok(Replay { plan: plan.clone(), events, warm, prefill: rest, decode })
    }

    /// Issues the plan's warm copies now, unless they were issued since the
    /// backend's last pass; returns the bytes copied. Only with the compute
    /// lane idle: before the first pass, or once the last pass's token or
    /// logits have been read (what [`crate::generate`] does at the end of a
    /// request), since the copies overwrite slots without waiting on their
    /// readers (rule `warm`).
    pub fn warm<B: Backend>(&self, backend: &mut B) -> Result<u64, ReplayError> {
        if self.warm.is_empty() || *backend.slots_warm() {
            return Ok(0);
        }
        backend.begin_warm().map_err(|e| ReplayError::Backend {
            phase: PhaseName::Prefill,
            step: "warm".into(),
            what: "starting the warm copies".into(),
            error: Box::new(e),
        })?;
        let copied = issue_warm(backend, &self.warm)?;
        *backend.slots_warm() = true;
        Ok(copied)
    }

    /// [`Replay::warm`], then waits for the copies: what a front end does once
    /// the backend is built, so that the first request finds its slots as
    /// every later one does.
    pub fn warm_at_load<B: Backend>(&self, backend: &mut B) -> Result<u64, ReplayError> {
        let copied = self.warm(backend)?;
        backend.settle().map_err(|e| ReplayError::Backend {
            phase: PhaseName::Prefill,
            step: "warm".into(),
            what: "waiting for the warm copies".into(),
            error: Box::new(e),
        })?;
        Ok(copied)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The event names, indexed by [`EventId`].
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// Issues the steps of `pass.phase` on `backend`; returns the bytes its copy steps move.
    /// A prefill pass feeds at most `prompt_len` tokens, a decode pass one; both end within `max_seq_len`.
    pub fn run_pass<B: Backend>(&self, backend: &mut B, pass: &Pass) -> Result<u64, ReplayError> {
        let shape = &self.plan.shape;
        let n = pass.tokens.len() as u64;
        let (cap, limit) = match pass.phase {
            PhaseName::Prefill => {
                (shape.prompt_len, format!("prefill feeds 1 to {} tokens (prompt_len)", shape.prompt_len))
            }
            PhaseName::Decode => (1, "decode feeds 1 token".to_string()),
        };
        let fits_seq = pass.pos0 + n <= shape.max_seq_len;
        if n == 0 || n > cap || !fits_seq {
            let limit = if fits_seq { limit } else { format!("max_seq_len is {}", shape.max_seq_len) };
            return Err(ReplayError::PassShape { phase: pass.phase, tokens: n, pos0: pass.pos0, limit });
        }
        let fail = |step: String, what: &str| {
            let what = what.to_string();
            move |e: B::Error| ReplayError::Backend { phase: pass.phase, step, what, error: Box::new(e) }
        };
        let warm = std::mem::replace(backend.slots_warm(), false);
        backend.begin_pass(pass).map_err(fail("start".into(), "staging the pass's tokens"))?;
        match pass.phase {
            PhaseName::Prefill => {
                // Not warm (the first chunk after another pass): the warm copies go first, in place.
                let head = if warm { 0 } else { issue_warm(backend, &self.warm)? };
                Ok(head + issue(backend, pass.phase, &self.prefill, self.warm.len(), pass)?)
            }
            PhaseName::Decode => issue(backend, pass.phase, &self.decode, 0, pass),
        }
    }

    /// Waits for the pass's compute and returns the last position's logits.
    pub fn logits<B: Backend>(&self, backend: &mut B, phase: PhaseName) -> Result<Vec<f32>, ReplayError> {
        backend.logits().map_err(|e| ReplayError::Backend {
            phase,
            step: "end".into(),
            what: "reading the logits".into(),
            error: Box::new(e),
        })
    }

    /// Waits for the pass's compute and returns the greedy next token ([`Backend::greedy_token`]).
    pub fn greedy_token<B: Backend>(&self, backend: &mut B, phase: PhaseName) -> Result<u32, ReplayError> {
        backend.greedy_token().map_err(|e| ReplayError::Backend {
            phase,
            step: "end".into(),
            what: "choosing the greedy token".into(),
            error: Box::new(e),
        })
    }

    /// Waits for the pass's compute and returns the token sampled with `u` ([`Backend::sample_token`]).
    pub fn sample_token<B: Backend>(
        &self,
        backend: &mut B,
        phase: PhaseName,
        params: &SampleParams,
        u: f32,
    ) -> Result<u32, ReplayError> {
        backend.sample_token(params, u).map_err(|e| ReplayError::Backend {
            phase,
            step: "end".into(),
            what: "sampling the next token".into(),
            error: Box::new(e),
        })
    }
}

/// Issues `steps`, positions `first..` of their phase's list (for errors), for `pass`;
/// returns the bytes copied.
fn issue<B: Backend>(
    backend: &mut B,
    phase: PhaseName,
    steps: &[Resolved],
    first: usize,
    pass: &Pass,
) -> Result<u64, ReplayError> {
    let mut copied = 0;
    for (i, s) in steps.iter().enumerate() {
        let err = || {
            let (step, what) = ((first + i).to_string(), s.what.clone());
            move |e: B::Error| ReplayError::Backend { phase, step, what, error: Box::new(e) }
        };
        for &e in &s.waits {
            backend.wait(s.lane, e).map_err(err())?;
        }
        match s.action {
            Action::Copy { block, dst, bytes } => {
                backend.copy_block(block, dst).map_err(err())?;
                copied += bytes;
            }
            Action::Compute { block, weights } => backend.compute_block(block, weights, pass).map_err(err())?,
            Action::HostCompute { block } => backend.host_compute_block(block, pass).map_err(err())?,
        }
        if let Some(e) = s.record {
            backend.record(s.lane, e).map_err(err())?;
        }
    }
    Ok(copied)
}

/// Issues the warm copies (prefill's positions `0..`); returns the bytes copied.
fn issue_warm<B: Backend>(backend: &mut B, warm: &[WarmCopy]) -> Result<u64, ReplayError> {
    let mut copied = 0;
    for (i, w) in warm.iter().enumerate() {
        let err = |e: B::Error| ReplayError::Backend {
            phase: PhaseName::Prefill,
            step: i.to_string(),
            what: w.what.clone(),
            error: Box::new(e),
        };
        backend.copy_block(w.block, w.dst).map_err(err)?;
        copied += w.bytes;
        if let Some(e) = w.record {
            backend.record(Lane::Copy, e).map_err(err)?;
        }
    }
    Ok(copied)
}

fn resolve_phase(
    plan: &Plan,
    phase: PhaseName,
    events: &mut Vec<String>,
    ids: &mut HashMap<String, EventId>,
) -> Result<Vec<Resolved>, ReplayError> {
    let mut id = |name: &String| {
        *ids.entry(name.clone()).or_insert_with(|| {
            events.push(name.clone());
            EventId(events.len() - 1)
        })
    };
    let mut out = Vec::new();
    for (i, step) in plan.phase(phase).steps.iter().enumerate() {
        let what = step_summary(step);
        let problem = |p: String| ReplayError::Resolve { phase, step: i, what: what.clone(), problem: p };
        let block = plan.model.block_index(&step.block).ok_or_else(|| problem("no such block in the model".into()))?;
        let slot = |s: Option<u64>| {
            let s = s.ok_or_else(|| problem("names no slot".into()))?;
            plan.slot_region(s).map(|r| r.offset).ok_or_else(|| problem(format!("slot {s} has no region")))
        };
        let action = match step.op {
            Op::Copy => Action::Copy { block, dst: slot(step.slot)?, bytes: plan.model.blocks[block].bytes },
            Op::Compute => {
                let weights = match plan.placement(&step.block) {
                    Some(Placement::Resident { region }) => plan
                        .region(region)
                        .map(|r| r.offset)
                        .ok_or_else(|| problem(format!("resident region `{region}` does not exist")))?,
                    Some(Placement::Streamed) => slot(step.slot)?,
                    None => return Err(problem("the block has no placement".into())),
                };
                Action::Compute { block, weights }
            }
            Op::HostCompute => Action::HostCompute { block },
        };
        out.push(Resolved {
            lane: step.lane,
            action,
            waits: step.wait.iter().chain(&step.wait_prev).map(&mut id).collect(),
            record: step.record.as_ref().map(&mut id),
            what,
        });
    }
    Ok(out)
}
