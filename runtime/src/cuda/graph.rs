//! The decode step as CUDA graphs: one per *segment* of the compute lane,
//! captured from the plan's steps on the first decode pass and replayed for
//! every later one.
//!
//! A decode pass enqueues the same work at every position. Its inputs live
//! in device memory — the token id and the pass header
//! (`djinn_core::activations::PASS_WORDS`), copied in from pinned host memory
//! — and the kernels read the position there (`decode.rs`), so work captured
//! once is right at every position. What a graph cannot hold are the plan's
//! cross-lane events and its host computes: a wait must bind to the record
//! the engine issued last, a record must be visible to the copy lane's later
//! waits, and a host compute runs on the CPU between two stretches of device
//! work. So the compute lane's decode steps are cut into segments at every
//! one of those: a segment is a run of consecutive compute steps whose first
//! may wait and whose last may record, with no host compute among them. The
//! waits before a segment and the record after it are issued on the stream
//! as always, around the segment's graph; the copy lane is never captured.
//! A fully resident plan is one segment, which also holds the pass's two
//! input copies (a replay reads the same pinned bytes again).
//!
//! On the first decode pass each segment is captured as the engine issues
//! it (the capture begins at its first step, or with the inputs' copies) and
//! is instantiated and launched at its last step — where the last of that
//! work would have been enqueued. On every later pass the engine's steps are
//! checked against the captured ones (block and weights, in order) and each
//! segment's graph is launched at its last step. The plan's steps stay the
//! contract: the graphs are exactly the work they enqueued, and a pass that
//! issues other steps is an error. A host compute's hand-off (the residual
//! stream written into a pinned buffer) is host work and runs at its step on
//! every pass; only the kernel reading it back is in the graph.
//!
//! Off (the reason in the metrics) on `DJINN_GRAPH=0` or
//! [`super::CudaOptions::graph_off`], with every op checked one by one
//! (`DJINN_CUDA_CHECK=1`), or once a captured op took its position as a
//! launch argument (a fallback path): that segment's capture is launched for
//! its own pass, and the rest is enqueued op by op from then on.

use cudarc::driver::{result, sys};
use djinn_core::plan::{Lane, Op, Plan, Step};

use super::context::Stream;
use super::error::{CudaError, DriverContext};
use super::timing::Timer;

/// A compute step as a graph holds it: block index and arena byte of its weights.
type Issued = (usize, u64);

/// An instantiated graph, destroyed with the graph it was made from.
struct Exec {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: usize,
}

impl Exec {
    fn launch(&self, stream: &Stream) -> Result<(), CudaError> {
        // SAFETY: `exec` is live; the stream belongs to the graph's context.
        unsafe { result::graph::launch(self.exec, stream.raw) }.ctx(|| "launching a decode graph".into())
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

/// Where the decode phase's compute lane is cut (see the module doc), in
/// compute steps: the count of compute steps before each segment, and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segments {
    /// Index (among the decode phase's compute steps) of each segment's first step, ascending.
    starts: Vec<usize>,
    /// The decode phase's compute steps.
    steps: usize,
    /// Whether the first segment begins the compute lane's work (no wait, no
    /// host compute before it), so the pass's input copies open its graph.
    inputs: bool,
}

impl Segments {
    /// The segments of a decode phase's `steps`.
    pub(super) fn of(decode: &[Step]) -> Segments {
        let waits = |s: &Step| !s.wait.is_empty() || !s.wait_prev.is_empty();
        let lane = || decode.iter().filter(|s| s.lane == Lane::Compute);
        let (mut starts, mut steps, mut cut) = (Vec::new(), 0, true);
        for s in lane() {
            if s.op != Op::Compute {
                cut = true;
                continue;
            }
            if cut || waits(s) {
                starts.push(steps);
            }
            steps += 1;
            cut = s.record.is_some();
        }
        let inputs = lane().next().is_some_and(|s| s.op == Op::Compute && !waits(s));
        Segments { starts, steps, inputs }
    }

    /// The segment `step` (a compute step's index) belongs to, and whether it is that segment's last step.
    fn locate(&self, step: usize) -> (usize, bool) {
        let seg = self.starts.partition_point(|&s| s <= step) - 1;
        let end = self.starts.get(seg + 1).copied().unwrap_or(self.steps);
        (seg, step + 1 == end)
    }
}

enum State {
    /// Not used: why.
    Off(String),
    /// The next decode pass is captured.
    Armed,
    /// The current decode pass is being captured: the graphs of its segments
    /// so far, its steps so far, and whether a segment's capture is open.
    Capturing { execs: Vec<Exec>, steps: Vec<Issued>, open: bool },
    /// Captured. `at`: the steps the current pass has issued, or None between passes.
    Ready { execs: Vec<Exec>, steps: Vec<Issued>, at: Option<usize> },
}

/// How a decode pass's work is enqueued (see the module doc).
pub(super) struct DecodeGraph {
    segments: Segments,
    state: State,
    /// Graphs retired while the device may still run them: dropped at the next decode pass.
    retired: Vec<Exec>,
    /// Decode passes replayed from the graphs.
    pub replays: u64,
}

/// What the backend does with the work being enqueued now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Enqueue it on the stream (a prefill pass, between segments, or graphs off).
    Direct,
    /// Enqueue it into the open capture.
    Capture,
    /// Enqueue nothing: a graph holds it.
    Replay,
}

impl DecodeGraph {
    /// Graphs for `plan`'s decode segments, unless `why_not` (what the backend itself rules out).
    pub(super) fn new(plan: &Plan, why_not: Option<&str>) -> DecodeGraph {
        let segments = Segments::of(&plan.decode.steps);
        let state = match why_not {
            Some(why) => State::Off(why.to_string()),
            None if std::env::var_os("DJINN_GRAPH").is_some_and(|v| v == "0") => State::Off("DJINN_GRAPH=0".into()),
            None if segments.steps == 0 => State::Off("the decode phase has no device compute step".into()),
            None => State::Armed,
        };
        DecodeGraph { segments, state, retired: Vec::new(), replays: 0 }
    }

    /// `None` while graphs may be used; else why not.
    pub(super) fn off_reason(&self) -> Option<&str> {
        match &self.state {
            State::Off(why) => Some(why),
            _ => None,
        }
    }

    /// The segments' graphs once captured (empty before): each one's kernel and copy nodes.
    pub(super) fn nodes(&self) -> Vec<usize> {
        match &self.state {
            State::Ready { execs, .. } => execs.iter().map(|e| e.nodes).collect(),
            _ => Vec::new(),
        }
    }

    /// Ends a decode pass abandoned before its end (its engine failed): an
    /// open capture is ended and discarded, and graphs are off from then on,
    /// since a pass half captured cannot be replayed; a replayed pass's
    /// graphs stay for the next.
    pub(super) fn drop_dangling(&mut self, stream: &Stream) {
        match &mut self.state {
            State::Capturing { .. } => self.abort(stream, "a captured decode pass was abandoned before its end"),
            State::Ready { at, .. } => *at = None,
            _ => {}
        }
    }

    /// Starts a decode pass (the device idle: the last pass's token was
    /// read). Returns whether the pass's input copies are captured
    /// ([`Mode::Capture`]: the first segment's capture is now open on
    /// `stream`), already in a graph ([`Mode::Replay`]), or enqueued.
    pub(super) fn begin_decode(&mut self, stream: &Stream) -> Result<Mode, CudaError> {
        self.retired.clear();
        self.drop_dangling(stream);
        let inputs = self.segments.inputs;
        match &mut self.state {
            State::Off(_) => Ok(Mode::Direct),
            State::Armed => {
                self.state = State::Capturing { execs: Vec::new(), steps: Vec::new(), open: false };
                if !inputs {
                    return Ok(Mode::Direct);
                }
                self.open(stream)?;
                Ok(Mode::Capture)
            }
            State::Capturing { .. } => unreachable!("drop_dangling ended it"),
            State::Ready { at, .. } => {
                *at = Some(0);
                Ok(if inputs { Mode::Replay } else { Mode::Direct })
            }
        }
    }

    /// Begins a segment's capture on `stream`.
    fn open(&mut self, stream: &Stream) -> Result<(), CudaError> {
        let State::Capturing { open, .. } = &mut self.state else { unreachable!("only while capturing") };
        // SAFETY: the stream is live and not capturing. Relaxed: this thread's
        // other CUDA calls during the capture (none unsafe: the copy lane's
        // work, event queries) are not checked.
        unsafe { result::stream::begin_capture(stream.raw, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED) }
            .ctx(|| "beginning the capture of a decode segment".into())?;
        *open = true;
        Ok(())
    }

    /// How the work being enqueued now goes: into the open capture, nowhere
    /// (inside a replayed segment), or to the stream (any other time).
    pub(super) fn mode(&self) -> Mode {
        match &self.state {
            State::Capturing { open: true, .. } => Mode::Capture,
            State::Ready { at: Some(at), .. } if self.inside(*at) => Mode::Replay,
            _ => Mode::Direct,
        }
    }

    /// Whether a replay that has issued `at` steps is inside a segment (its
    /// last step's graph not launched yet): at the start of the pass only
    /// where the inputs open the first segment.
    fn inside(&self, at: usize) -> bool {
        if at == 0 {
            return self.segments.inputs;
        }
        at < self.segments.steps && self.segments.starts.binary_search(&at).is_err()
    }

    /// A compute step of the current decode pass, before its work: begins
    /// its segment's capture if it is the first, and says where its work
    /// goes; replaying, checks that it is the graphs' next step.
    pub(super) fn step(&mut self, block: usize, weights: u64, stream: &Stream) -> Result<Mode, CudaError> {
        let total = self.segments.steps;
        match &mut self.state {
            State::Off(_) | State::Armed | State::Ready { at: None, .. } => Ok(Mode::Direct),
            State::Capturing { steps, open, .. } => {
                if steps.len() >= total {
                    return Err(CudaError::Pass(format!(
                        "a decode pass issued more than the plan's {total} compute steps"
                    )));
                }
                steps.push((block, weights));
                if !*open {
                    self.open(stream)?;
                }
                Ok(Mode::Capture)
            }
            State::Ready { steps, at: Some(at), .. } => match steps.get(*at) {
                Some(&s) if s == (block, weights) => Ok(Mode::Replay),
                held => Err(CudaError::Pass(format!(
                    "decode step {at} computes block #{block} from arena byte {weights}; the captured \
                     decode graphs hold {}",
                    match held {
                        Some((b, w)) => format!("block #{b} from arena byte {w} there"),
                        None => format!("{} steps", steps.len()),
                    }
                ))),
            },
        }
    }

    /// After a compute step's work: at its segment's last step, ends and
    /// instantiates the capture and launches it, or launches the captured
    /// graph. The launch is timed by `timer` when it times compute steps
    /// (a trace): one span for the segment's blocks. `positions_baked`:
    /// whether an op captured since the segment began took its position as a
    /// launch argument (then this capture serves its own pass only).
    pub(super) fn end_step(
        &mut self,
        stream: &Stream,
        positions_baked: bool,
        timer: &mut Timer,
    ) -> Result<(), CudaError> {
        let issued = match &mut self.state {
            State::Capturing { steps, .. } => steps.len(),
            State::Ready { at: Some(at), .. } => {
                *at += 1;
                *at
            }
            _ => return Ok(()),
        };
        let (seg, last) = self.segments.locate(issued - 1);
        if !last {
            return Ok(());
        }
        let first = self.segments.starts[seg];
        // The segment's first and last blocks and its step count, for the timer's span.
        let (State::Capturing { steps, .. } | State::Ready { steps, .. }) = &self.state else { unreachable!() };
        let (b0, b1, n) = (steps[first].0, steps[issued - 1].0, issued - first);
        match std::mem::replace(&mut self.state, State::Armed) {
            State::Capturing { mut execs, steps, .. } => {
                let exec = end_capture(stream, seg);
                let launched = exec.and_then(|exec| {
                    timer.time_graph(b0, b1, n, stream, || exec.launch(stream))?;
                    Ok(exec)
                });
                match launched {
                    Ok(exec) if !positions_baked => {
                        execs.push(exec);
                        self.state = State::Capturing { execs, steps, open: false };
                        Ok(())
                    }
                    Ok(exec) => {
                        self.retired.extend(execs);
                        self.retired.push(exec);
                        self.state = State::Off(
                            "an op of the decode step takes its position as a launch argument (a fallback path)".into(),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        // The capture has ended either way: nothing is left open.
                        self.retired.extend(execs);
                        self.state = State::Off(format!("the capture failed: {e}"));
                        Err(e)
                    }
                }
            }
            State::Ready { execs, steps, at } => {
                let launched = timer.time_graph(b0, b1, n, stream, || execs[seg].launch(stream));
                self.state = State::Ready { execs, steps, at };
                launched
            }
            _ => unreachable!("matched above"),
        }
    }

    /// Whether a compute-lane event or host compute (`what`) may be
    /// enqueued now: not inside a segment (the plan's cuts put none there).
    pub(super) fn allows_other(&self, what: &str) -> Result<(), CudaError> {
        match self.mode() {
            Mode::Direct => Ok(()),
            _ => Err(CudaError::Pass(format!("{what} inside a decode segment replayed as a CUDA graph"))),
        }
    }

    /// Ends the current decode pass (its token is chosen next): checks that it
    /// issued every step of the graphs; a captured pass's graphs are ready
    /// from then on. Outside such a pass, nothing.
    pub(super) fn end_decode(&mut self) -> Result<(), CudaError> {
        let total = self.segments.steps;
        match std::mem::replace(&mut self.state, State::Armed) {
            State::Capturing { execs, steps, open } => {
                if open || steps.len() != total {
                    self.retired.extend(execs);
                    self.state = State::Off("the captured decode pass did not issue all its steps".into());
                    return Err(CudaError::Pass(format!(
                        "the captured decode pass issued {} of the plan's {total} compute steps",
                        steps.len()
                    )));
                }
                self.state = State::Ready { execs, steps, at: None };
                Ok(())
            }
            State::Ready { execs, steps, at: Some(issued) } => {
                self.state = State::Ready { execs, steps, at: None };
                if issued != total {
                    return Err(CudaError::Pass(format!(
                        "a decode pass issued {issued} of the {total} steps of its captured graphs"
                    )));
                }
                self.replays += 1;
                Ok(())
            }
            other => {
                self.state = other;
                Ok(())
            }
        }
    }

    /// After a failure inside a captured pass: ends an open capture,
    /// discards it, and turns graphs off (the error that caused it is the
    /// caller's to report). The graphs launched so far are retired.
    pub(super) fn abort(&mut self, stream: &Stream, why: &str) {
        if let State::Capturing { execs, open, .. } = &mut self.state {
            if *open {
                // SAFETY: the stream is capturing; the graph it returns is destroyed at once.
                if let Ok(g) = unsafe { result::stream::end_capture(stream.raw) } {
                    // SAFETY: `g` was just returned by the capture and is not instantiated.
                    let _ = unsafe { result::graph::destroy(g) };
                }
            }
            self.retired.extend(std::mem::take(execs));
        }
        if !matches!(self.state, State::Off(_)) {
            self.state = State::Off(format!("the capture failed: {why}"));
        }
    }
}

/// Ends the capture of segment `seg` on `stream` and instantiates what it holds.
fn end_capture(stream: &Stream, seg: usize) -> Result<Exec, CudaError> {
    // SAFETY: the stream is capturing (DecodeGraph::open began it).
    let graph =
        unsafe { result::stream::end_capture(stream.raw) }.ctx(|| format!("ending decode segment {seg}'s capture"))?;
    let mut nodes = 0usize;
    // SAFETY: `graph` is live; a null array asks for the count only.
    unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut nodes) }
        .result()
        .ctx(|| format!("counting decode segment {seg}'s nodes"))?;
    // SAFETY: `graph` is live and complete.
    match unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) } {
        Ok(exec) => Ok(Exec { graph, exec, nodes }),
        Err(e) => {
            // SAFETY: not instantiated; destroyed once.
            let _ = unsafe { result::graph::destroy(graph) };
            Err(e).ctx(|| format!("instantiating decode segment {seg}'s graph of {nodes} nodes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Segments;
    use djinn_core::plan::{Lane, Op, Step};

    fn step(lane: Lane, op: Op, block: &str, wait: &[&str], record: Option<&str>) -> Step {
        Step {
            lane,
            op,
            block: block.into(),
            wait: wait.iter().map(|s| s.to_string()).collect(),
            slot: None,
            wait_prev: Vec::new(),
            record: record.map(str::to_string),
            warm: false,
            start_us: 0.0,
            end_us: 0.0,
        }
    }

    fn segments(steps: Vec<Step>) -> Segments {
        Segments::of(&steps)
    }

    #[test]
    fn a_resident_decode_is_one_segment_holding_the_inputs() {
        let c = |b| step(Lane::Compute, Op::Compute, b, &[], None);
        let s = segments(vec![c("embed"), c("layer.0"), c("layer.1"), c("norm"), c("lm_head")]);
        assert_eq!(s, Segments { starts: vec![0], steps: 5, inputs: true });
        assert_eq!(s.locate(0), (0, false));
        assert_eq!(s.locate(4), (0, true));
    }

    #[test]
    fn waits_records_and_host_computes_cut_the_compute_lane() {
        let c = |b| step(Lane::Compute, Op::Compute, b, &[], None);
        let s = segments(vec![
            step(Lane::Compute, Op::HostCompute, "embed", &[], None),
            c("layer.0.attn"),
            c("layer.0.gate_up"),
            step(Lane::Compute, Op::HostCompute, "layer.0.down", &[], None),
            c("layer.1.attn"),
            // A copy-lane step among them cuts nothing.
            step(Lane::Copy, Op::Copy, "layer.2.down", &["done:layer.1.down"], Some("ready:layer.2.down")),
            c("layer.1.gate_up"),
            step(Lane::Compute, Op::Compute, "layer.1.down", &["ready:layer.1.down"], Some("done:layer.1.down")),
            c("layer.2.attn"),
            step(Lane::Compute, Op::Compute, "layer.2.gate_up", &[], Some("done:layer.2.gate_up")),
            step(Lane::Compute, Op::Compute, "layer.2.down", &[], None),
            c("norm"),
        ]);
        // Compute steps: 0 l0.attn, 1 l0.gate_up | 2 l1.attn, 3 l1.gate_up | 4 l1.down (waits, records)
        // | 5 l2.attn, 6 l2.gate_up (records) | 7 l2.down, 8 norm.
        assert_eq!(s, Segments { starts: vec![0, 2, 4, 5, 7], steps: 9, inputs: false });
        assert_eq!(s.locate(1), (0, true));
        assert_eq!(s.locate(4), (2, true));
        assert_eq!(s.locate(6), (3, true));
        assert_eq!(s.locate(7), (4, false));
    }

    #[test]
    fn a_wait_on_the_first_step_keeps_the_inputs_out_of_the_graphs() {
        let s = segments(vec![
            step(Lane::Compute, Op::Compute, "embed", &["ready:embed"], None),
            step(Lane::Compute, Op::Compute, "layer.0", &[], None),
        ]);
        assert_eq!(s, Segments { starts: vec![0], steps: 2, inputs: false });
        assert_eq!(segments(vec![]), Segments { starts: vec![], steps: 0, inputs: false });
    }
}
