//! The decode step as one CUDA graph: captured from the plan's steps on the
//! first decode pass, replayed for every later one.
//!
//! A decode phase of compute-lane computes only (a fully resident plan: no
//! copies, no host computes, no events) enqueues the same work at every
//! position. The pass's inputs live in device memory — the token id and the
//! pass header (`djinn_core::activations::PASS_WORDS`), copied in by the
//! pass's first two copies from pinned host memory, which a replay reads
//! again — and the kernels read the position there (`decode.rs`). So the
//! backend captures the first decode pass as the replay engine issues it:
//! those two copies, then every kernel of every compute step, with their
//! programmatic launch edges. It instantiates the graph once and from then
//! on, for each decode pass, checks that the engine issues the same steps
//! (block and weights, in order) and launches the graph at the pass's end,
//! before the token is chosen — where the last of that work would have been
//! enqueued. The plan's steps stay the contract: the graph is exactly the
//! work they enqueued, and a pass that issues other steps is an error.
//!
//! Off (the reason in the metrics) where that does not hold: a decode phase
//! with copies, host computes or events; compute steps timed by events (a
//! trace); ops checked one by one (`DJINN_CUDA_CHECK=1`); `DJINN_GRAPH=0`;
//! or a captured op that took its position as a launch argument (a fallback
//! path): that one capture is launched for its own pass, then graphs are off.

use cudarc::driver::{result, sys};
use djinn_core::plan::{Lane, Op, Plan};

use super::context::Stream;
use super::error::{CudaError, DriverContext};

/// A compute step as the graph holds it: block index and arena byte of its weights.
type Step = (usize, u64);

/// An instantiated graph, destroyed with the graph it was made from.
struct Exec {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: usize,
}

impl Exec {
    fn launch(&self, stream: &Stream) -> Result<(), CudaError> {
        // SAFETY: `exec` is live; the stream belongs to the graph's context.
        unsafe { result::graph::launch(self.exec, stream.raw) }.ctx(|| "launching the decode graph".into())
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: both handles are live and owned here. Callers drop an Exec
        // only once the stream it was launched on is idle.
        unsafe {
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
}

enum State {
    /// Not used: why.
    Off(String),
    /// The next decode pass is captured.
    Armed,
    /// A decode pass is being captured: the steps issued so far.
    Capturing(Vec<Step>),
    /// Captured. `at`: the steps the current pass has issued, or None between passes.
    Ready { exec: Exec, steps: Vec<Step>, at: Option<usize> },
}

/// How a decode pass's work is enqueued (see the module doc).
pub(super) struct DecodeGraph {
    state: State,
    /// A graph retired while the device may still run it: dropped at the next pass.
    retired: Option<Exec>,
    /// Decode passes replayed from the graph.
    pub replays: u64,
}

/// What the backend does with a pass's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Enqueue it (a prefill pass, or graphs off).
    Direct,
    /// Enqueue it into the capture.
    Capture,
    /// Enqueue nothing: the graph holds it.
    Replay,
}

impl DecodeGraph {
    /// Whether `plan`'s decode steps can be one graph; `why_not` names what the backend itself rules out.
    pub(super) fn new(plan: &Plan, why_not: Option<&str>) -> DecodeGraph {
        let state = match why_not {
            Some(why) => State::Off(why.to_string()),
            None if std::env::var_os("DJINN_GRAPH").is_some_and(|v| v == "0") => State::Off("DJINN_GRAPH=0".into()),
            None => match plan.decode.steps.iter().find(|s| {
                s.lane != Lane::Compute
                    || s.op != Op::Compute
                    || s.record.is_some()
                    || !s.wait.is_empty()
                    || !s.wait_prev.is_empty()
            }) {
                Some(s) => State::Off(format!(
                    "the decode phase has a {:?} step on the {:?} lane or an event (block `{}`)",
                    s.op, s.lane, s.block
                )),
                None => State::Armed,
            },
        };
        DecodeGraph { state, retired: None, replays: 0 }
    }

    /// `None` while graphs may be used; else why not.
    pub(super) fn off_reason(&self) -> Option<&str> {
        match &self.state {
            State::Off(why) => Some(why),
            _ => None,
        }
    }

    /// Kernel and copy nodes of the captured graph (0 before a capture).
    pub(super) fn nodes(&self) -> usize {
        match &self.state {
            State::Ready { exec, .. } => exec.nodes,
            _ => 0,
        }
    }

    /// Ends a capture whose pass was abandoned (its engine failed before the
    /// pass's end): the stream must not stay capturing. Its work never ran,
    /// and graphs are off from then on.
    pub(super) fn drop_dangling(&mut self, stream: &Stream) {
        if let State::Capturing(_) = self.state {
            self.abort(stream, "a captured decode pass was abandoned before its end");
        }
    }

    /// Starts a decode pass (the device idle: the last pass's token was read):
    /// begins the capture on `stream` if armed.
    pub(super) fn begin_decode(&mut self, stream: &Stream) -> Result<Mode, CudaError> {
        self.retired = None;
        self.drop_dangling(stream);
        match &mut self.state {
            State::Off(_) => Ok(Mode::Direct),
            State::Armed => {
                // SAFETY: the stream is live and not capturing. Relaxed: this
                // thread's other CUDA calls during the capture (none unsafe) are not checked.
                unsafe {
                    result::stream::begin_capture(stream.raw, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                }
                .ctx(|| "beginning the capture of the decode step".into())?;
                self.state = State::Capturing(Vec::new());
                Ok(Mode::Capture)
            }
            State::Capturing(_) => unreachable!("drop_dangling ended it"),
            State::Ready { at, .. } => {
                *at = Some(0);
                Ok(Mode::Replay)
            }
        }
    }

    /// How the work being enqueued now goes: into the capture, nowhere (a
    /// replayed pass), or to the stream (any other time).
    pub(super) fn mode(&self) -> Mode {
        match self.state {
            State::Capturing(_) => Mode::Capture,
            State::Ready { at: Some(_), .. } => Mode::Replay,
            _ => Mode::Direct,
        }
    }

    /// A compute step of the current decode pass: whether to enqueue its
    /// work (capturing), or, replaying, a check that it is the graph's next step.
    pub(super) fn step(&mut self, block: usize, weights: u64) -> Result<bool, CudaError> {
        match &mut self.state {
            State::Off(_) | State::Armed => Ok(true),
            State::Capturing(steps) => {
                steps.push((block, weights));
                Ok(true)
            }
            State::Ready { steps, at: Some(at), .. } => {
                if steps.get(*at) != Some(&(block, weights)) {
                    return Err(CudaError::Pass(format!(
                        "decode step {at} computes block #{block} from arena byte {weights}; the captured \
                         decode graph holds {}",
                        match steps.get(*at) {
                            Some((b, w)) => format!("block #{b} from arena byte {w} there"),
                            None => format!("{} steps", steps.len()),
                        }
                    )));
                }
                *at += 1;
                Ok(false)
            }
            State::Ready { at: None, .. } => Ok(true),
        }
    }

    /// Whether a copy, host compute or event may be enqueued now: not inside
    /// a captured or replayed pass (such a plan's graph is never armed).
    pub(super) fn allows_other(&self, what: &str) -> Result<(), CudaError> {
        match self.mode() {
            Mode::Direct => Ok(()),
            _ => Err(CudaError::Pass(format!("{what} inside a decode pass replayed as a CUDA graph"))),
        }
    }

    /// Ends the current decode pass's work on `stream`: ends and instantiates
    /// the capture and launches it, or launches the graph after checking the
    /// pass issued all its steps; outside such a pass, nothing.
    /// `positions_baked`: whether a captured op took its position as a launch
    /// argument (then this capture is its pass's only).
    pub(super) fn end_decode(&mut self, stream: &Stream, positions_baked: bool) -> Result<(), CudaError> {
        match std::mem::replace(&mut self.state, State::Armed) {
            State::Capturing(steps) => {
                let exec = end_capture(stream)?;
                exec.launch(stream)?;
                if positions_baked {
                    self.retired = Some(exec);
                    self.state = State::Off(
                        "an op of the decode step takes its position as a launch argument (a fallback path)".into(),
                    );
                } else {
                    self.state = State::Ready { exec, steps, at: None };
                }
                Ok(())
            }
            State::Ready { exec, steps, at: Some(issued) } => {
                let result = if issued == steps.len() {
                    self.replays += 1;
                    exec.launch(stream)
                } else {
                    Err(CudaError::Pass(format!(
                        "a decode pass issued {issued} of the {} steps of its captured graph",
                        steps.len()
                    )))
                };
                self.state = State::Ready { exec, steps, at: None };
                result
            }
            other => {
                self.state = other;
                Ok(())
            }
        }
    }

    /// After a failure inside a captured pass: ends the capture, discards it,
    /// and turns graphs off (the error that caused it is the caller's to report).
    pub(super) fn abort(&mut self, stream: &Stream, why: &str) {
        if let State::Capturing(_) = self.state {
            // SAFETY: the stream is capturing; the graph it returns is destroyed at once.
            if let Ok(g) = unsafe { result::stream::end_capture(stream.raw) } {
                // SAFETY: `g` was just returned by the capture and is not instantiated.
                let _ = unsafe { result::graph::destroy(g) };
            }
        }
        if !matches!(self.state, State::Off(_)) {
            self.state = State::Off(format!("the capture failed: {why}"));
        }
    }
}

/// Ends the capture on `stream` and instantiates what it holds.
fn end_capture(stream: &Stream) -> Result<Exec, CudaError> {
    // SAFETY: the stream is capturing (begin_decode began it).
    let graph = unsafe { result::stream::end_capture(stream.raw) }.ctx(|| "ending the decode step's capture".into())?;
    let mut nodes = 0usize;
    // SAFETY: `graph` is live; a null array asks for the count only.
    unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut nodes) }
        .result()
        .ctx(|| "counting the decode graph's nodes".into())?;
    // SAFETY: `graph` is live and complete.
    match unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) } {
        Ok(exec) => Ok(Exec { graph, exec, nodes }),
        Err(e) => {
            // SAFETY: not instantiated; destroyed once.
            let _ = unsafe { result::graph::destroy(graph) };
            Err(e).ctx(|| format!("instantiating the decode graph of {nodes} nodes"))
        }
    }
}
