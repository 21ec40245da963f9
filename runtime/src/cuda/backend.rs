//! [`CudaBackend`]: the replay engine's [`Backend`] on one GPU.
//!
//! Load: the plan's arena is one `cuMemAlloc` (after the budget ballast, if
//! asked); every streamed block's image is packed once into its own pinned
//! host buffer; every resident block is packed into a pinned staging buffer
//! (two, alternating, so packing overlaps the DMA) and copied to its region.
//! Replay: copies go on the copy stream (highest priority), computes run the
//! shared forward pass on the compute stream, and the plan's records and
//! waits are CUDA events — the only ordering between the lanes. The host
//! waits only in `logits()`, on the compute stream. The decode step's
//! device work is captured once as CUDA graphs, one per segment of the
//! compute lane between the plan's events and host computes, and replayed
//! (`graph.rs`).

use std::path::PathBuf;

use djinn_core::activations::PASS_WORDS;
use djinn_core::plan::{Lane, Phase, PhaseName, Placement, Plan};
use djinn_kernels::SampleParams;

use super::budget::Memory;
use super::context::{DeviceBuffer, Event, Gpu, Stream};
use super::error::CudaError;
use super::graph::{DecodeGraph, Mode};
use super::host_lane::HostLane;
use super::metrics::CudaMetrics;
use super::ops::{pass_words, CudaOps};
use super::pinned::PinnedBuffer;
use super::placement::Placements;
use super::timing::{step_timing_forced, Timer};
use super::trace;
use crate::backend::{Backend, EventId, Pass};
use crate::forward::Forward;
use crate::ops::Buf;
use crate::weights::{progress_bar, Weights};

/// Options of the CUDA backend.
#[derive(Debug, Clone, Default)]
pub struct CudaOptions {
    /// Allocate a ballast of all free device memory beyond the plan's budget first.
    pub enforce_budget: bool,
    /// Write a Chrome/Perfetto trace (measured and predicted lanes) here at [`CudaBackend::metrics`].
    pub trace: Option<PathBuf>,
    /// CUDA device ordinal.
    pub device: usize,
    /// Enqueue decode passes op by op, never as the captured decode graph
    /// (`graph.rs`; `DJINN_GRAPH=0` does the same): to compare the two.
    pub graph_off: bool,
}

pub struct CudaBackend {
    forward: Forward,
    places: Placements,
    copy: Stream,
    /// The plan's events, by the engine's numbering; created on first use, without timing.
    events: Vec<Option<Event>>,
    /// Per block: the pinned image of a streamed block.
    images: Vec<Option<PinnedBuffer>>,
    /// The next pass's inputs as they are copied in: the pass header
    /// (`PASS_WORDS` u32), then `[prompt_len]` u32 token ids.
    tokens_host: PinnedBuffer,
    /// Recorded after the inputs' upload: the pinned buffer is free again once it completes.
    tokens_done: Event,
    /// The decode step's segments as CUDA graphs, or why not (`graph.rs`); how the current pass's work is enqueued.
    graph: DecodeGraph,
    /// `[vocab]` f32 logits read back.
    logits_host: PinnedBuffer,
    timer: Timer,
    memory: Memory,
    prefill: Phase,
    decode: Phase,
    vocab: u64,
    max_seq_len: u64,
    base_metrics: CudaMetrics,
    trace: Option<PathBuf>,
    /// The host side of the plan's `host_compute` steps, if it has any.
    host: Option<HostLane>,
    ops: CudaOps,
    /// [`Backend::slots_warm`].
    slots_warm: bool,
}

impl CudaBackend {
    pub fn new(plan: &Plan, weights: &Weights, opts: &CudaOptions) -> Result<CudaBackend, CudaError> {
        let gpu = Gpu::open(opts.device)?;
        let forward = Forward::new(plan).map_err(|e| CudaError::Plan(e.to_string()))?;
        let places = Placements::from_plan(plan)?;
        let compute = Stream::new(&gpu, false)?;
        let copy = Stream::new(&gpu, true)?;
        let mut memory = Memory::new(&gpu);
        let (arena_bytes, budget) = (plan.arena.bytes, plan.budget_bytes);
        let mut ops = CudaOps::new(gpu.clone(), compute, places.workspace, |gpu| {
            if opts.enforce_budget {
                memory.enforce(gpu, budget)?;
            }
            DeviceBuffer::alloc(gpu, arena_bytes, "the plan's arena").map_err(|e| match e {
                CudaError::Driver { source, .. } if opts.enforce_budget => CudaError::Budget(format!(
                    "the {arena_bytes}-byte arena does not fit in the plan's budget of {budget} bytes \
                     next to what this process already holds: {source}"
                )),
                e => e,
            })
        })?;
        memory.sample()?;

        // The host lane first: it holds the images of the blocks it computes, page-locked,
        // and the copy lane reads those from there rather than from a pinned copy of its own.
        let host = HostLane::new(&gpu, plan, &forward, weights)?;
        let (images, pinned_bytes) = load_weights(plan, weights, &places, host.as_ref(), &mut ops, &copy)?;
        let act = *forward.activations();
        let tokens_host = PinnedBuffer::new(&gpu, ((PASS_WORDS + act.tokens.elems) * 4) as usize, "the pass's inputs")?;
        let logits_host = PinnedBuffer::new(&gpu, (act.logits.elems * 4) as usize, "the logits")?;
        let tokens_done = Event::new(&gpu, false)?;
        memory.sample()?;
        let base_metrics = CudaMetrics {
            device: format!("{} ({})", gpu.name, gpu.arch()),
            arena_bytes,
            budget_bytes: budget,
            ballast_bytes: memory.ballast_bytes,
            pinned_bytes,
            ..CudaMetrics::default()
        };
        let step_timing = opts.trace.is_some() || step_timing_forced();
        let why_not = if opts.graph_off {
            Some("graphs off (CudaOptions::graph_off)")
        } else if ops.checks_each_op() {
            Some("every op is checked as it is enqueued (DJINN_CUDA_CHECK=1)")
        } else {
            None
        };
        let graph = DecodeGraph::new(plan, why_not);
        let mut backend = CudaBackend {
            forward,
            places,
            copy,
            events: Vec::new(),
            images,
            tokens_host,
            tokens_done,
            graph,
            logits_host,
            timer: Timer::new(&gpu, step_timing),
            memory,
            prefill: plan.prefill.clone(),
            decode: plan.decode.clone(),
            vocab: plan.model.arch.vocab_size,
            max_seq_len: plan.shape.max_seq_len,
            base_metrics,
            trace: opts.trace.clone(),
            host,
            ops,
            slots_warm: false,
        };
        backend.warm_up(plan)?;
        Ok(backend)
    }

    /// Runs one layer (or one of each half) at the prefill shape and at the decode shape, and the
    /// LM head, once before the first pass and outside every measurement, so
    /// that cuBLAS's lazily loaded kernels and first-call heuristics are paid
    /// at load time rather than inside the first token. It reads whatever the
    /// weight regions hold (values do not matter) and writes only activations
    /// and rows `0..=prompt_len` of one layer's KV cache, each of which a real
    /// pass writes before it reads it.
    fn warm_up(&mut self, plan: &Plan) -> Result<(), CudaError> {
        use djinn_core::model::BlockKind;
        let image = |kind: BlockKind| {
            let i = plan.model.blocks.iter().position(|b| b.kind == kind)?;
            let first_resident = plan.model.blocks.iter().enumerate().find_map(|(j, b)| {
                (b.kind == kind).then_some(self.places.resident[j]).flatten().map(|(offset, _)| (j, offset))
            });
            first_resident.or_else(|| self.places.slots.first().map(|&(offset, _)| (i, offset)))
        };
        let prompt = plan.shape.prompt_len.max(1);
        let decode_pos = prompt.min(plan.shape.max_seq_len.saturating_sub(1));
        let passes = [
            Pass { tokens: vec![0; prompt as usize], pos0: 0, phase: PhaseName::Prefill },
            Pass { tokens: vec![0], pos0: decode_pos, phase: PhaseName::Decode },
        ];
        let header = self.forward.activations().pass;
        for kind in [BlockKind::Layer, BlockKind::Attention, BlockKind::Mlp, BlockKind::GateUp, BlockKind::Down] {
            if let Some((layer, offset)) = image(kind) {
                for pass in &passes {
                    self.ops.write_pass(header, pass.pos0, pass.tokens.len() as u64)?;
                    self.forward.compute_block(&mut self.ops, layer, offset, pass)?;
                }
            }
        }
        if let Some((head, offset)) = image(BlockKind::LmHead) {
            self.forward.compute_block(&mut self.ops, head, offset, &passes[1])?;
        }
        self.ops.synchronize()
    }

    /// Waits for both lanes, reads every timing event and returns what the
    /// run measured; writes the trace if [`CudaOptions::trace`] was given.
    /// May be called more than once (each call covers the run so far).
    pub fn metrics(&mut self) -> Result<CudaMetrics, CudaError> {
        self.ops.gpu().bind()?;
        self.graph.drop_dangling(self.ops.stream());
        self.copy.synchronize()?;
        self.ops.synchronize()?;
        self.timer.harvest()?;
        self.memory.sample()?;
        let mut m = self.base_metrics.clone();
        m.timings(&self.timer);
        m.decode_graph_replays = self.graph.replays;
        let nodes = self.graph.nodes();
        m.decode_graph = match (self.graph.off_reason(), nodes.len()) {
            (Some(why), _) => format!("enqueued op by op: {why}"),
            (None, 0) => "CUDA graphs, not captured yet".into(),
            (None, 1) => format!("one CUDA graph of {} nodes", nodes[0]),
            (None, n) => format!(
                "{n} CUDA graphs (segments between the plan's events and host computes) of {} nodes in all",
                nodes.iter().sum::<usize>()
            ),
        };
        m.peak_device_bytes = self.memory.peak_bytes;
        if let Some(path) = &self.trace {
            trace::write(path, &trace::to_json(&self.timer, &self.places.names, &self.prefill, &self.decode))?;
        }
        Ok(m)
    }

    /// After the pass's result has been queued for the host: reads the timing
    /// events of earlier passes and samples device memory while the device
    /// still runs this one, then waits for it.
    fn end_pass(&mut self) -> Result<(), CudaError> {
        self.timer.harvest()?;
        self.memory.sample()?;
        self.ops.synchronize()?;
        self.timer.logits_returned();
        Ok(())
    }

    /// The next token: `on_device` writes it from the device's logits into the
    /// pass's first token slot (the next pass stages its own token there
    /// anyway) and four bytes come back; where the host's LM head computed
    /// the logits (a plan holding it in host memory), `twin` (the kernel's CPU
    /// twin) chooses from them there.
    fn choose_token(
        &mut self,
        on_device: impl FnOnce(&mut CudaOps, Buf, Buf) -> Result<(), CudaError>,
        twin: impl FnOnce(&[f32]) -> usize,
    ) -> Result<u32, CudaError> {
        if self.host.as_ref().is_some_and(HostLane::holds_logits) {
            return Ok(twin(&self.logits()?) as u32);
        }
        self.end_graph_pass()?;
        let act = *self.forward.activations();
        let slot = act.tokens.slice(0, 1);
        self.timer.end_pass(self.ops.stream())?;
        on_device(&mut self.ops, slot, act.logits)?;
        let stream = self.ops.stream().raw;
        // SAFETY: the token slot lies inside the arena (Forward::new checked the layout).
        unsafe { self.logits_host.copy_from_device(0, 4, self.ops.arena_ptr() + slot.offset, stream)? };
        self.end_pass()?;
        let b = &self.logits_host.as_slice()[..4];
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn gpu(&self) -> &Gpu {
        self.ops.gpu()
    }

    /// The end of a pass's work: a captured or replayed decode pass is
    /// checked to have issued all its graphs' steps (each segment's graph was
    /// launched at its last step).
    fn end_graph_pass(&mut self) -> Result<(), CudaError> {
        let result = self.graph.end_decode();
        if let Err(e) = &result {
            self.graph.abort(self.ops.stream(), &e.to_string());
        }
        result
    }

    /// Enqueues the copies of the pass header and `n` token ids from the
    /// pinned buffer into their activation buffers; outside a capture, marks
    /// when the buffer is free again.
    fn stage_inputs(&mut self, n: u64) -> Result<(), CudaError> {
        let act = *self.forward.activations();
        let (header_bytes, arena, compute) = ((PASS_WORDS * 4) as usize, self.ops.arena_ptr(), self.ops.stream());
        // SAFETY: both buffers lie inside the arena (Forward::new checked the layout).
        unsafe {
            self.tokens_host.copy_to_device(0, header_bytes, arena + act.pass.offset, compute.raw)?;
            self.tokens_host.copy_to_device(header_bytes, (n * 4) as usize, arena + act.tokens.offset, compute.raw)?;
        }
        if self.graph.mode() == Mode::Direct {
            self.tokens_done.record(compute)?;
        }
        Ok(())
    }

    /// `result`, after discarding a capture it failed inside of.
    fn in_capture<T>(&mut self, result: Result<T, CudaError>) -> Result<T, CudaError> {
        if let Err(e) = &result {
            if self.graph.mode() == Mode::Capture {
                self.graph.abort(self.ops.stream(), &e.to_string());
            }
        }
        result
    }

    fn stream(&self, lane: Lane) -> &Stream {
        match lane {
            Lane::Copy => &self.copy,
            Lane::Compute => self.ops.stream(),
        }
    }

    fn event(&mut self, id: EventId) -> Result<&Event, CudaError> {
        if self.events.len() <= id.0 {
            self.events.resize_with(id.0 + 1, || None);
        }
        if self.events[id.0].is_none() {
            self.events[id.0] = Some(Event::new(self.ops.gpu(), false)?);
        }
        Ok(self.events[id.0].as_ref().expect("just created"))
    }
}

/// Packs the streamed blocks (but those `host` holds) into pinned buffers and
/// copies the resident ones into their regions. Returns the streamed images
/// and their total bytes.
fn load_weights(
    plan: &Plan,
    weights: &Weights,
    places: &Placements,
    host: Option<&HostLane>,
    ops: &mut CudaOps,
    copy: &Stream,
) -> Result<(Vec<Option<PinnedBuffer>>, u64), CudaError> {
    let gpu = ops.gpu().clone();
    let bar = progress_bar(plan.model.total_bytes(), "loading weights");
    let mut images = Vec::with_capacity(places.names.len());
    let mut pinned = 0;
    for (i, p) in plan.placements.iter().enumerate() {
        images.push(match p.placement {
            Placement::Streamed if host.is_some_and(|h| h.image(i).is_some()) => {
                bar.inc(places.bytes[i]);
                None
            }
            Placement::Streamed => {
                let mut buf =
                    PinnedBuffer::new(&gpu, places.bytes[i] as usize, &format!("block `{}`", places.names[i]))?;
                weights.write_block_image(i, buf.as_mut_slice());
                pinned += places.bytes[i];
                bar.inc(places.bytes[i]);
                Some(buf)
            }
            Placement::Resident { .. } => None,
        });
    }
    let largest = (0..places.names.len()).filter(|&i| places.resident[i].is_some()).map(|i| places.bytes[i]).max();
    if let Some(largest) = largest {
        let mut staging = Vec::new();
        for k in 0..2 {
            staging.push((
                PinnedBuffer::new(&gpu, largest as usize, "staging resident blocks")?,
                Event::new(&gpu, false)?,
                k,
            ));
        }
        let mut next = 0;
        for (i, r) in places.resident.iter().enumerate() {
            let Some((offset, _)) = *r else { continue };
            let (buf, done, _) = &mut staging[next];
            done.synchronize()?; // its previous copy has finished reading it
            let bytes = places.bytes[i] as usize;
            weights.write_block_image(i, &mut buf.as_mut_slice()[..bytes]);
            // SAFETY: the region lies inside the arena (Placements checked it); the copy stream is live.
            unsafe { buf.copy_to_device(0, bytes, ops.arena_ptr() + offset, copy.raw)? };
            done.record(copy)?;
            bar.inc(bytes as u64);
            next = 1 - next;
        }
        copy.synchronize()?;
    }
    bar.finish_and_clear();
    Ok((images, pinned))
}

impl Backend for CudaBackend {
    type Error = CudaError;

    fn slots_warm(&mut self) -> &mut bool {
        &mut self.slots_warm
    }

    fn begin_warm(&mut self) -> Result<(), CudaError> {
        self.ops.gpu().bind()?;
        self.timer.begin_warm();
        Ok(())
    }

    fn settle(&mut self) -> Result<(), CudaError> {
        self.ops.gpu().bind()?;
        self.graph.drop_dangling(self.ops.stream());
        self.copy.synchronize()?;
        self.ops.synchronize()
    }

    fn begin_pass(&mut self, pass: &Pass) -> Result<(), CudaError> {
        self.ops.gpu().bind()?;
        let n = pass.tokens.len() as u64;
        let act = *self.forward.activations();
        if n == 0 || n > act.tokens.elems {
            return Err(CudaError::Pass(format!(
                "{} tokens in one pass; the plan's buffers hold 1..={}",
                n, act.tokens.elems
            )));
        }
        if pass.pos0 + n > self.max_seq_len {
            return Err(CudaError::Pass(format!(
                "positions {}..{} exceed the plan's max_seq_len {}",
                pass.pos0,
                pass.pos0 + n,
                self.max_seq_len
            )));
        }
        if let Some(&bad) = pass.tokens.iter().find(|&&t| t as u64 >= self.vocab) {
            return Err(CudaError::Pass(format!("token id {bad} outside the vocabulary of {}", self.vocab)));
        }
        // Before anything is enqueued: a pass abandoned mid-capture leaves the stream capturing.
        self.graph.drop_dangling(self.ops.stream());
        // The previous upload has normally long finished (logits() waited for
        // the compute lane); this only guards the pinned buffer's reuse.
        self.tokens_done.synchronize()?;
        let header = pass_words("the pass", pass.pos0, n)?;
        let inputs = header.iter().chain(&pass.tokens);
        for (chunk, t) in self.tokens_host.as_mut_slice().chunks_exact_mut(4).zip(inputs) {
            chunk.copy_from_slice(&t.to_le_bytes());
        }
        self.timer.begin_pass(pass.phase, pass.tokens.len(), self.ops.stream())?;
        let mode = match pass.phase {
            PhaseName::Decode => self.graph.begin_decode(self.ops.stream())?,
            PhaseName::Prefill => Mode::Direct,
        };
        if mode == Mode::Capture {
            self.ops.take_positions_baked();
        }
        // A replay's copies are the graph's first nodes, reading the same pinned bytes.
        if mode != Mode::Replay {
            let staged = self.stage_inputs(n);
            self.in_capture(staged)?;
        }
        self.ops.note_pass(act.pass, pass.pos0, n);
        Ok(())
    }

    fn copy_block(&mut self, block: usize, dst_offset: u64) -> Result<(), CudaError> {
        // The copy lane is never captured: its steps may fall among a segment's.
        self.places.check_copy(block, dst_offset)?;
        let bytes = self.places.bytes[block];
        let dst = self.ops.arena_ptr() + dst_offset;
        self.timer.start_step(Lane::Copy, block, bytes, &self.copy)?;
        match (&self.images[block], self.host.as_ref().and_then(|h| h.image(block))) {
            // SAFETY: check_copy proved the destination a slot region inside the arena.
            (Some(image), _) => unsafe { image.copy_to_device(0, bytes as usize, dst, self.copy.raw)? },
            // SAFETY: as above; the host lane's images are page-locked and live as long as `self`.
            (None, Some(image)) => unsafe { cudarc::driver::result::memcpy_htod_async(dst, image, self.copy.raw) }
                .map_err(|source| CudaError::Driver {
                    what: format!("enqueueing a {bytes}-byte host-to-device copy of a host-computed block"),
                    source,
                })?,
            (None, None) => {
                return Err(CudaError::Plan(format!(
                    "block `{}` is streamed but has no host image",
                    self.places.names[block]
                )))
            }
        }
        self.timer.end_step(&self.copy)
    }

    fn compute_block(&mut self, block: usize, weights_offset: u64, pass: &Pass) -> Result<(), CudaError> {
        self.places.check_compute(block, weights_offset)?;
        if self.graph.mode() != Mode::Capture {
            // What ops bake a position is noted from a segment's first captured op on.
            self.ops.take_positions_baked();
        }
        let mode = self.graph.step(block, weights_offset, self.ops.stream())?;
        let uploads = match &mut self.host {
            Some(host) => host.before_device_compute(&self.forward, block),
            None => Vec::new(),
        };
        if mode == Mode::Direct {
            // Steps in graphs are timed (when asked) as their segment's launch.
            self.timer.start_step(Lane::Compute, block, 0, self.ops.stream())?;
        }
        if mode != Mode::Replay {
            let done = uploads
                .iter()
                .try_for_each(|u| u.enqueue(&mut self.ops))
                .and_then(|()| self.forward.compute_block(&mut self.ops, block, weights_offset, pass));
            self.in_capture(done)?;
        }
        if mode == Mode::Direct {
            self.timer.end_step(self.ops.stream())?;
        }
        // Noted since the segment's capture began (cleared above only outside one).
        let baked = mode == Mode::Capture && self.ops.positions_baked;
        let ended = self.graph.end_step(self.ops.stream(), baked, &mut self.timer);
        self.in_capture(ended)
    }

    fn host_compute_block(&mut self, block: usize, pass: &Pass) -> Result<(), CudaError> {
        self.graph.allows_other("a host_compute step")?;
        let Some(host) = &mut self.host else {
            return Err(CudaError::HostCompute {
                block: self.places.names[block].clone(),
                message: "the plan has no host_compute step, so no host images were prepared".into(),
            });
        };
        self.timer.start_step(Lane::Compute, block, 0, self.ops.stream())?;
        host.compute(&self.forward, block, pass, self.ops.arena_ptr(), self.ops.stream())?;
        self.timer.end_step(self.ops.stream())
    }

    fn record(&mut self, lane: Lane, event: EventId) -> Result<(), CudaError> {
        if lane == Lane::Compute {
            self.graph.allows_other("a compute-lane event record")?;
        }
        let e = self.event(event)?.raw;
        // SAFETY: `e` is owned by `self.events`; the stream by `self`.
        unsafe { cudarc::driver::result::event::record(e, self.stream(lane).raw) }.map_err(|source| CudaError::Driver {
            what: format!("recording plan event #{} on the {lane:?} lane", event.0),
            source,
        })
    }

    fn wait(&mut self, lane: Lane, event: EventId) -> Result<(), CudaError> {
        if lane == Lane::Compute {
            self.graph.allows_other("a compute-lane event wait")?;
        }
        self.event(event)?;
        let e = self.events[event.0].as_ref().expect("created above");
        self.stream(lane).wait(e)
    }

    fn logits(&mut self) -> Result<Vec<f32>, CudaError> {
        self.end_graph_pass()?;
        if let Some(l) = self.host.as_ref().and_then(|h| h.logits(&self.forward)) {
            // The host's LM head ran last; the device holds nothing newer.
            self.timer.end_pass(self.ops.stream())?;
            self.end_pass()?;
            return Ok(l);
        }
        let logits = self.forward.activations().logits;
        let ptr = self.ops.arena_ptr() + logits.offset;
        self.timer.end_pass(self.ops.stream())?;
        let stream = self.ops.stream().raw;
        // SAFETY: `logits` lies inside the arena (Forward::new checked the layout).
        unsafe { self.logits_host.copy_from_device(0, (logits.elems * 4) as usize, ptr, stream)? };
        self.end_pass()?;
        Ok(self.logits_host.as_slice().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The argmax on the device (its twin [`djinn_kernels::argmax_f32`]) and four bytes back.
    fn greedy_token(&mut self) -> Result<u32, CudaError> {
        self.choose_token(|ops, slot, logits| ops.argmax(slot, logits, logits.elems), djinn_kernels::argmax_f32)
    }

    /// The sampling kernel on the device (`sample.cu`, the twin's token) and four bytes back.
    fn sample_token(&mut self, params: &SampleParams, u: f32) -> Result<u32, CudaError> {
        self.choose_token(
            |ops, slot, logits| ops.sample(slot, logits, logits.elems, params, u),
            |l| djinn_kernels::sample_f32_with(l, params, &[], u),
        )
    }

    fn describe(&self) -> String {
        format!("cuda ({})", self.ops.gpu().name)
    }

    fn peak_device_bytes(&self) -> Option<u64> {
        Some(self.memory.peak_bytes)
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // In-flight copies read the pinned buffers freed below.
        let _ = self.ops.gpu().bind();
        self.graph.drop_dangling(self.ops.stream());
        let _ = self.copy.synchronize();
        let _ = self.ops.synchronize();
    }
}
