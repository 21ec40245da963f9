//! Measuring the replay with timing events, without adding synchronisation.
//!
//! Each copy step is bracketed by two timing-enabled events on the copy lane
//! (separate from the plan's sync events, which are created without
//! timing), and each pass starts and ends with one on the compute lane.
//! Compute steps are bracketed too only when asked ([`Timer::new`]'s
//! `compute_steps`: a trace, or `DJINN_STEP_TIMING=1`): an event recorded
//! between two kernels of the compute stream ends the programmatic launch
//! overlap between them (`common.cuh`), so bracketing the ~120 compute steps
//! of a token would itself slow decode. Where decode runs as CUDA graphs
//! (`graph.rs`) a trace brackets each segment's graph launch instead: one
//! span for the segment's blocks, the graph's kernels untouched, so the
//! trace measures what an untraced run does. Times are read only once the
//! events have completed — at `logits()`, which has synchronised the compute
//! lane anyway, and at the end — so measuring never stalls a lane. Events
//! are recycled through a pool; all times are ms from the first pass's start.

use std::time::Instant;

use djinn_core::plan::{Lane, PhaseName};

use super::context::{Event, Gpu, Stream};
use super::error::CudaError;

/// Whether `DJINN_STEP_TIMING=1` asks for every compute step to be timed
/// without a trace (to measure what the bracketing costs).
pub fn step_timing_forced() -> bool {
    std::env::var("DJINN_STEP_TIMING").is_ok_and(|v| v == "1")
}

/// One measured step.
#[derive(Debug, Clone)]
pub struct Span {
    /// The pass it belongs to; for a warm copy (issued between passes), the next pass.
    pub pass: usize,
    /// A warm copy ([`Timer::begin_warm`]): not part of its pass's time.
    pub warm: bool,
    pub lane: Lane,
    /// Index into the plan's block table: the step's block, or a graph's first.
    pub block: usize,
    /// A decode segment's graph ([`Timer::time_graph`]): its last block and
    /// how many compute steps it holds. `None` for one step.
    pub graph: Option<(usize, usize)>,
    /// Bytes moved (copies), 0 for computes.
    pub bytes: u64,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// One pass (prefill, or one decode iteration).
#[derive(Debug, Clone)]
pub struct PassTimes {
    pub phase: PhaseName,
    pub tokens: usize,
    /// Device time of the pass's first compute-lane point, ms from the epoch (once known).
    pub start_ms: Option<f64>,
    pub host_begin: Instant,
    /// When `logits()` returned this pass's logits.
    pub host_logits: Option<Instant>,
    /// Device time of the end of the pass's last compute step, ms from the epoch (once known).
    pub end_ms: Option<f64>,
}

enum What {
    PassStart(usize),
    PassEnd(usize),
    Step { pass: usize, warm: bool, lane: Lane, block: usize, bytes: u64, graph: Option<(usize, usize)> },
}

struct Pending {
    what: What,
    start: Event,
    end: Option<Event>,
}

pub struct Timer {
    gpu: Gpu,
    epoch: Option<Event>,
    pool: Vec<Event>,
    pending: Vec<Pending>,
    open: Option<(Lane, usize, u64, Event)>,
    /// Whether compute steps are bracketed (copy steps always are).
    compute_steps: bool,
    /// Copies issued since [`Timer::begin_warm`] and before the next pass are warm.
    warming: bool,
    pub spans: Vec<Span>,
    pub passes: Vec<PassTimes>,
}

impl Timer {
    /// `compute_steps`: bracket every compute step with events too (see the module doc).
    pub fn new(gpu: &Gpu, compute_steps: bool) -> Timer {
        Timer {
            gpu: gpu.clone(),
            epoch: None,
            pool: Vec::new(),
            pending: Vec::new(),
            open: None,
            compute_steps,
            warming: false,
            spans: Vec::new(),
            passes: Vec::new(),
        }
    }

    fn event(&mut self) -> Result<Event, CudaError> {
        match self.pool.pop() {
            Some(e) => Ok(e),
            None => Event::new(&self.gpu, true),
        }
    }

    /// The copies that follow, until the next pass, are warm copies: timed and
    /// traced, but counted in no pass (they run while the device is idle).
    pub fn begin_warm(&mut self) {
        self.warming = true;
    }

    /// Marks the start of a pass on the compute lane.
    pub fn begin_pass(&mut self, phase: PhaseName, tokens: usize, compute: &Stream) -> Result<(), CudaError> {
        self.warming = false;
        let index = self.passes.len();
        self.passes.push(PassTimes {
            phase,
            tokens,
            start_ms: None,
            host_begin: Instant::now(),
            host_logits: None,
            end_ms: None,
        });
        if self.epoch.is_none() {
            let e = Event::new(&self.gpu, true)?;
            e.record(compute)?;
            self.epoch = Some(e);
            self.passes[index].start_ms = Some(0.0);
            return Ok(());
        }
        let e = self.event()?;
        e.record(compute)?;
        self.pending.push(Pending { what: What::PassStart(index), start: e, end: None });
        Ok(())
    }

    /// Marks the end of the current pass's last compute step on the compute lane.
    pub fn end_pass(&mut self, compute: &Stream) -> Result<(), CudaError> {
        let Some(index) = self.passes.len().checked_sub(1) else { return Ok(()) };
        let e = self.event()?;
        e.record(compute)?;
        self.pending.push(Pending { what: What::PassEnd(index), start: e, end: None });
        Ok(())
    }

    /// Marks the start of a step on `stream` (its lane's stream); a compute
    /// step only when compute steps are bracketed.
    pub fn start_step(&mut self, lane: Lane, block: usize, bytes: u64, stream: &Stream) -> Result<(), CudaError> {
        if lane == Lane::Compute && !self.compute_steps {
            return Ok(());
        }
        if self.epoch.is_none() {
            // Warm copies at load come before the first pass: the epoch is the first of them.
            let e = Event::new(&self.gpu, true)?;
            e.record(stream)?;
            self.epoch = Some(e);
        }
        let e = self.event()?;
        e.record(stream)?;
        self.open = Some((lane, block, bytes, e));
        Ok(())
    }

    /// Marks the end of the step opened by [`Timer::start_step`].
    pub fn end_step(&mut self, stream: &Stream) -> Result<(), CudaError> {
        // A compute step that was not bracketed left nothing open.
        let Some((lane, block, bytes, start)) = self.open.take() else { return Ok(()) };
        let end = self.event()?;
        end.record(stream)?;
        let warm = self.warming && lane == Lane::Copy;
        // A warm copy belongs to the pass that will read it: the next one.
        let pass = if warm { self.passes.len() } else { self.passes.len().saturating_sub(1) };
        let what = What::Step { pass, warm, lane, block, bytes, graph: None };
        self.pending.push(Pending { what, start, end: Some(end) });
        Ok(())
    }

    /// Runs `launch` (a decode segment's graph launch on `stream`, the compute
    /// lane), bracketed by events when compute steps are timed: one span from
    /// block `first` through block `last`, `steps` compute steps.
    pub fn time_graph(
        &mut self,
        first: usize,
        last: usize,
        steps: usize,
        stream: &Stream,
        launch: impl FnOnce() -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        if !self.compute_steps {
            return launch();
        }
        let start = self.event()?;
        start.record(stream)?;
        launch()?;
        let end = self.event()?;
        end.record(stream)?;
        let pass = self.passes.len().saturating_sub(1);
        let what =
            What::Step { pass, warm: false, lane: Lane::Compute, block: first, bytes: 0, graph: Some((last, steps)) };
        self.pending.push(Pending { what, start, end: Some(end) });
        Ok(())
    }

    /// Notes that the current pass's logits have reached the host.
    pub fn logits_returned(&mut self) {
        if let Some(p) = self.passes.last_mut() {
            p.host_logits = Some(Instant::now());
        }
    }

    /// Reads the times of every completed event; the others stay pending.
    pub fn harvest(&mut self) -> Result<(), CudaError> {
        let Some(epoch) = &self.epoch else { return Ok(()) };
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let last = p.end.as_ref().unwrap_or(&p.start);
            if !last.is_complete()? {
                still.push(p);
                continue;
            }
            let start_ms = p.start.ms_since(epoch)? as f64;
            match p.what {
                What::PassStart(i) => self.passes[i].start_ms = Some(start_ms),
                What::PassEnd(i) => self.passes[i].end_ms = Some(start_ms),
                What::Step { pass, warm, lane, block, bytes, graph } => {
                    let end_ms = p.end.as_ref().expect("steps have an end event").ms_since(epoch)? as f64;
                    self.spans.push(Span { pass, warm, lane, block, graph, bytes, start_ms, end_ms });
                }
            }
            self.pool.push(p.start);
            self.pool.extend(p.end);
        }
        self.pending = still;
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
