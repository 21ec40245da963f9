//! The host side of the plan's `host_compute` steps on the CUDA backend.
//!
//! A `host_compute` runs a streamed block on the host CPU, from its image in
//! host memory, with the same forward pass and the CPU twins of the kernels
//! (run by the kernels' thread [`Team`]). The host works in a copy of the
//! device arena (lazily zeroed, so only the activations cost memory) extended
//! by the images ([`HostImages`]), so every offset
//! means what it means on the device. The images' range is page-locked: the
//! copy lane's prefill copies of these blocks read the same bytes, so each
//! host-computed block is held once in host memory.
//!
//! The embedding may be held here too (the plan host-computes it in every
//! pass): its rows are gathered from the table in host memory and go up as
//! the residual stream, with nothing to bring down first.
//!
//! One step, on the critical path of decode: wake the team (its workers spin
//! while the device catches up), copy what the block reads and the device
//! holds newer (the residual stream `x`; for a `down` block after a device
//! `gate_up`, also `gate`) down into small pinned buffers behind the compute
//! stream's earlier work and spin on their event (a blocking wait would add a
//! wake-up per layer), run the block. What the host wrote goes back up on the
//! compute stream (a kernel reading the pinned buffer) before the next device
//! compute that reads it ([`HostLane::before_device_compute`]), so a run of
//! consecutive host layers hands `x` over once; [`Handover`] keeps the books.
//!
//! The KV cache lives on the device only: a plan host-computes only blocks
//! that do not read it (MLP halves and parts of layers; the verifier's rule
//! `step-shape` refuses the others), so `x` and `gate` are all that cross.

use std::time::Duration;

use djinn_core::model::BlockKind;
use djinn_core::plan::{Plan, RegionKind};
use djinn_core::Dtype;
use djinn_kernels::Team;

use super::context::{Event, Gpu, Stream};
use super::error::CudaError;
use super::ops::CudaOps;
use super::pinned::{HostRegistration, PinnedBuffer};
use crate::backend::Pass;
use crate::cpu::CpuOps;
use crate::forward::Forward;
use crate::host::{Act, Handover, HostArena, HostImages, Side};
use crate::ops::Buf;
use crate::weights::Weights;

/// What of activation `act` a pass of `tokens` tokens hands over: its first
/// `tokens` rows (`xn`: the final norm's one row; the logits: all of them).
fn rows(forward: &Forward, act: Act, tokens: u64) -> Buf {
    let a = forward.activations();
    let per_row = |buf: Buf| buf.elems / a.tokens.elems;
    match act {
        Act::X => a.x.slice(0, tokens * per_row(a.x)),
        Act::Gate => a.gate.slice(0, tokens * per_row(a.gate)),
        Act::Xn => a.xn.slice(0, per_row(a.xn)),
        Act::Logits => a.logits,
    }
}

/// Rows the host wrote, staged in a pinned buffer, for the device to read
/// back before a compute ([`HostLane::before_device_compute`]).
pub struct Upload {
    /// Where they go: the activation's rows as 4-byte words.
    words: Buf,
    /// The pinned buffer's address in the device's address space, and its length.
    from: u64,
    from_bytes: u64,
}

impl Upload {
    /// Enqueues the kernel that copies the rows in, on `ops`'s stream. The
    /// pinned buffer is not written again before the stream has passed it
    /// (the next write follows the next download's event).
    pub fn enqueue(&self, ops: &mut CudaOps) -> Result<(), CudaError> {
        ops.copy_from_host(self.words, self.from, self.from_bytes, self.words.elems)
    }
}

/// Hand-overs at least this long are copied by the whole team (a prefill's
/// residual stream is megabytes; decode's one row is not worth waking it for).
const PARALLEL_COPY_BYTES: usize = 1 << 20;

/// `dst.copy_from_slice(src)`, split over the kernels' team when it is long.
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    if dst.len() < PARALLEL_COPY_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    Team::global().split_mut(dst, 4096, |start, piece| piece.copy_from_slice(&src[start..start + piece.len()]));
}

/// Writes every page of `range` of `mirror` once (with the zero it already
/// reads as), so that the first prefill's writes of its activations (megabytes
/// at 512 tokens) do not take a page fault each on the TTFT path: a fault
/// costs microseconds, more in a virtual machine. On the H200 machine the
/// 512-token embedding's host step took 4.98 ms and the device step after it
/// (which uploads its rows) 2.0 ms; 2.5 and 0.95 ms with this and the team's
/// copies (BENCHMARKS.md section 1h).
fn prefault(mirror: &mut HostArena, range: std::ops::Range<usize>) {
    Team::global().split_mut(&mut mirror[range], 4096, |_, piece| {
        for page in piece.chunks_mut(4096) {
            // SAFETY: `page` is a valid, exclusively borrowed, non-empty slice.
            unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
        }
    });
}

/// How long the team's idle workers spin between host-computed layers before
/// they park: longer than the device layers between two host layers of a
/// decode step usually take, so a token's host layers find the team hot.
const TEAM_IDLE_SPIN: Duration = Duration::from_millis(20);

/// [`TEAM_IDLE_SPIN`], or `DJINN_TEAM_SPIN_US` microseconds when set (to
/// measure the trade-off: spinning workers keep the team hot but take the
/// cores the thread issuing the device's next kernels needs).
fn team_idle_spin() -> Duration {
    std::env::var("DJINN_TEAM_SPIN_US").ok().and_then(|v| v.parse().ok()).map_or(TEAM_IDLE_SPIN, Duration::from_micros)
}

pub struct HostLane {
    /// Page-locks `mirror`'s images; declared first, so it is dropped first.
    _registration: HostRegistration,
    /// The device arena's host copy, then the host-computed blocks' images.
    mirror: HostArena,
    images: HostImages,
    /// Per [`Act`] that crosses (`x`, `gate`, `xn`): the pinned buffer its
    /// rows of one pass cross through, and that buffer's address in the
    /// device's address space.
    pinned: [PinnedBuffer; 3],
    pinned_device: [u64; 3],
    /// Completes when the downloads of a host compute have landed.
    down: Event,
    /// Which side holds the newest of each activation that may cross.
    handover: Handover,
    /// Tokens of the pass whose host-written activations are pending upload.
    tokens: u64,
    /// Per block: its kind (blocks that read the KV cache never run here; the
    /// embedding starts the residual stream, so nothing comes down before it).
    kinds: Vec<BlockKind>,
    /// Per block: its name, for errors.
    names: Vec<String>,
}

impl HostLane {
    /// `None` when the plan host-computes nothing.
    pub fn new(gpu: &Gpu, plan: &Plan, forward: &Forward, weights: &Weights) -> Result<Option<HostLane>, CudaError> {
        let images = HostImages::of(plan);
        if images.is_empty() {
            return Ok(None);
        }
        let mut mirror = images.allocate(weights).ok_or_else(|| CudaError::HostCompute {
            block: "(every host-computed block)".into(),
            message: format!("cannot allocate {} bytes of host memory for the arena's host copy", images.total_bytes),
        })?;
        let range = images.images_range();
        // SAFETY: the range lies inside `mirror` (a mapping that starts page-aligned, the
        // range on a huge-page boundary), which the lane owns and drops after the registration.
        let registration = unsafe {
            HostRegistration::new(
                gpu,
                mirror.as_mut_ptr().add(range.start as usize),
                (range.end - range.start) as usize,
                "the host-computed blocks' images",
            )?
        };
        if let Some(r) = plan.region_of_kind(RegionKind::Activations) {
            prefault(&mut mirror, r.offset as usize..(r.offset + r.bytes) as usize);
        }
        let act = forward.activations();
        let xn_row = act.xn.bytes() / act.tokens.elems;
        let pinned = [
            PinnedBuffer::new(gpu, act.x.bytes() as usize, "the residual stream's hand-over")?,
            PinnedBuffer::new(gpu, act.gate.bytes() as usize, "the gate activation's hand-over")?,
            PinnedBuffer::new(gpu, xn_row as usize, "the final norm's hand-over")?,
        ];
        let pinned_device = [pinned[0].device_ptr()?, pinned[1].device_ptr()?, pinned[2].device_ptr()?];
        Team::global().set_idle_spin(team_idle_spin());
        Ok(Some(HostLane {
            _registration: registration,
            mirror,
            images,
            pinned,
            pinned_device,
            down: Event::new(gpu, false)?,
            handover: Handover::new(),
            tokens: 0,
            kinds: plan.model.blocks.iter().map(|b| b.kind).collect(),
            names: plan.model.blocks.iter().map(|b| b.name.clone()).collect(),
        }))
    }

    /// Block `block`'s image in page-locked host memory, if the lane holds it:
    /// the copy lane's source for that block.
    pub fn image(&self, block: usize) -> Option<&[u8]> {
        let off = self.images.offset.get(block).copied().flatten()? as usize;
        Some(&self.mirror[off..off + self.images.bytes[block] as usize])
    }

    /// Before the device computes block `block`: stages what the block reads
    /// and the host wrote last (`x` after host-computed blocks, `gate` after a
    /// host `gate_up`) in its pinned buffer, and returns the uploads that put
    /// it back, for the compute stream. A kernel reads each from the pinned
    /// buffer over the bus ([`CudaOps::copy_from_host`], [`Upload::enqueue`]):
    /// an H2D copy would queue behind the copy lane's slot copy on the same
    /// engine, ~1.3 ms a host block on the H200 (BENCHMARKS.md, section 1a).
    /// The staging is host work, done on every pass; a decode graph holds the
    /// uploads' kernels (`graph.rs`), so a replay does not enqueue them again.
    pub fn before_device_compute(&mut self, forward: &Forward, block: usize) -> Vec<Upload> {
        let tokens = self.tokens;
        let mut uploads = Vec::new();
        for act in self.handover.before(self.kinds[block], Side::Device) {
            let buf = rows(forward, act, tokens);
            let len = buf.bytes() as usize;
            let pinned = &mut self.pinned[act as usize];
            // The previous pass's read of the pinned buffer finished before this pass's
            // download into it (both on the compute stream), so it was free to refill.
            copy_bytes(&mut pinned.as_mut_slice()[..len], &self.mirror[buf.offset as usize..][..len]);
            // The rows' bits, as 4-byte words (a row of gate holds an even count of 2-byte values).
            let words = Buf { offset: buf.offset, elems: buf.bytes() / 4, dtype: Dtype::F32 };
            uploads.push(Upload { words, from: self.pinned_device[act as usize], from_bytes: pinned.len() as u64 });
        }
        self.handover.after(self.kinds[block], Side::Device);
        uploads
    }

    /// Whether the host's LM head computed the newest logits.
    pub fn holds_logits(&self) -> bool {
        self.handover.logits_on_host()
    }

    /// The logits, when the host's LM head computed the newest (a plan that
    /// holds the LM head in host memory): they are read here, never uploaded.
    pub fn logits(&self, forward: &Forward) -> Option<Vec<f32>> {
        if !self.holds_logits() {
            return None;
        }
        let l = rows(forward, Act::Logits, 1);
        let bytes = &self.mirror[l.offset as usize..][..l.bytes() as usize];
        Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The `host_compute` of block `block` for `pass`; see the module doc.
    pub fn compute(
        &mut self,
        forward: &Forward,
        block: usize,
        pass: &Pass,
        arena: u64,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        let fail = |message: String| CudaError::HostCompute { block: self.names[block].clone(), message };
        let image =
            self.images.offset[block].ok_or_else(|| fail("the plan never host-computes it: no host image".into()))?;
        if self.kinds[block].reads_kv() {
            return Err(fail("it reads the KV cache, which lives on the device only".into()));
        }
        Team::global().wake();
        let n = pass.tokens.len() as u64;
        let kind = self.kinds[block];
        if kind == BlockKind::Embedding {
            // The pass's token ids, where the forward pass reads them (u32 in 4-byte slots).
            let at = forward.activations().tokens.offset as usize;
            for (slot, t) in self.mirror[at..at + 4 * n as usize].chunks_exact_mut(4).zip(&pass.tokens) {
                slot.copy_from_slice(&t.to_le_bytes());
            }
        }
        let crossing = self.handover.before(kind, Side::Host);
        for &act in &crossing {
            let buf = rows(forward, act, n);
            // SAFETY: `buf` lies inside the plan's arena (Forward::new checked the layout); the
            // pinned buffer holds it and is read only after the event below completes.
            unsafe {
                self.pinned[act as usize].copy_from_device(0, buf.bytes() as usize, arena + buf.offset, stream.raw)?
            };
        }
        if !crossing.is_empty() {
            self.down.record(stream)?;
            self.down.spin_until_complete()?;
        }
        for &act in &crossing {
            let buf = rows(forward, act, n);
            let len = buf.bytes() as usize;
            copy_bytes(&mut self.mirror[buf.offset as usize..][..len], &self.pinned[act as usize].as_slice()[..len]);
        }
        let mut ops = CpuOps::new(&mut self.mirror);
        forward.compute_block(&mut ops, block, image, pass).map_err(|e| CudaError::HostCompute {
            block: self.names[block].clone(),
            message: format!("the CPU forward pass failed: {e}"),
        })?;
        self.handover.after(kind, Side::Host);
        self.tokens = n;
        Ok(())
    }
}
