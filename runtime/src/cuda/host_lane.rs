//! The host side of the plan's `host_compute` steps on the CUDA backend.
//!
//! A `host_compute` runs a streamed layer on the host CPU, from its image in
//! host memory, with the same forward pass and the CPU twins of the kernels
//! (run by the kernels' thread [`Team`]). The host works in a copy of the
//! device arena (lazily zeroed, so only the activations and the touched KV
//! rows cost memory) extended by the images ([`HostImages`]), so every offset
//! means what it means on the device. The images' range is page-locked: the
//! copy lane's prefill copies of these blocks read the same bytes, so each
//! host-computed block is held once in host memory.
//!
//! One step, on the critical path of decode: wake the team (its workers spin
//! while the device catches up), copy the residual stream `x` down into a
//! small pinned buffer behind the compute stream's earlier work and spin on
//! its event (a blocking wait would add a wake-up per layer), run the layer.
//! `x` goes back up on the compute stream before the next device compute
//! ([`HostLane::before_device_compute`]), so a run of consecutive host layers
//! hands it over once.
//!
//! KV coherence is bookkeeping, not a decision ([`KvCoherence`]): a
//! computation on either side first fetches the rows `0..pos0` it lacks (in
//! these plans: once, after prefill, for each host-computed layer).

use std::time::Duration;

use cudarc::driver::result;
use djinn_core::plan::Plan;
use djinn_kernels::Team;

use super::context::{Event, Gpu, Stream};
use super::error::{CudaError, DriverContext};
use super::pinned::{HostRegistration, PinnedBuffer};
use crate::backend::Pass;
use crate::cpu::CpuOps;
use crate::forward::Forward;
use crate::host::{HostArena, HostImages};
use crate::kv_coherence::{KvCoherence, Side};
use crate::ops::Buf;
use crate::weights::Weights;

/// How long the team's idle workers spin between host-computed layers before
/// they park: longer than the device layers between two host layers of a
/// decode step usually take, so a token's host layers find the team hot.
const TEAM_IDLE_SPIN: Duration = Duration::from_millis(20);

pub struct HostLane {
    /// Page-locks `mirror`'s images; declared first, so it is dropped first.
    _registration: HostRegistration,
    /// The device arena's host copy, then the host-computed blocks' images.
    mirror: HostArena,
    images: HostImages,
    /// `x` of one pass on its way down and back up.
    x_host: PinnedBuffer,
    x_down: Event,
    /// The rows of `x` the host holds and the device lacks (bytes), after a
    /// host compute: uploaded before the next device compute, so a run of
    /// consecutive host-computed layers hands `x` over once.
    x_pending: Option<Buf>,
    /// Per block: its layer index, for layer blocks.
    layer_of: Vec<Option<u64>>,
    /// Per block: its name, for errors.
    names: Vec<String>,
    kv: KvCoherence,
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
        let x = forward.activations().x;
        let x_host = PinnedBuffer::new(gpu, x.bytes() as usize, "the residual stream's hand-over")?;
        Team::global().set_idle_spin(TEAM_IDLE_SPIN);
        let layers = plan.model.arch.num_layers as usize;
        Ok(Some(HostLane {
            _registration: registration,
            mirror,
            images,
            x_host,
            x_down: Event::new(gpu, false)?,
            x_pending: None,
            layer_of: plan.model.blocks.iter().map(|b| b.layer).collect(),
            names: plan.model.blocks.iter().map(|b| b.name.clone()).collect(),
            kv: KvCoherence::new(layers),
        }))
    }

    /// Block `block`'s image in page-locked host memory, if the lane holds it:
    /// the copy lane's source for that block.
    pub fn image(&self, block: usize) -> Option<&[u8]> {
        let off = self.images.offset.get(block).copied().flatten()? as usize;
        Some(&self.mirror[off..off + self.images.bytes[block] as usize])
    }

    /// Before the device computes block `block` for `pass`: uploads the
    /// residual stream if the host has it (after host-computed layers) and the
    /// KV rows below `pos0` that only the host has (on the compute stream).
    pub fn before_device_compute(
        &mut self,
        forward: &Forward,
        block: usize,
        pass: &Pass,
        arena: u64,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        if let Some(x) = self.x_pending.take() {
            let len = x.bytes() as usize;
            // The previous pass's upload from `x_host` finished before this pass's download
            // into it (both on the compute stream), so the buffer was free to refill.
            self.x_host.as_mut_slice()[..len].copy_from_slice(&self.mirror[x.offset as usize..][..len]);
            // SAFETY: `x` lies inside the plan's arena (Forward::new checked the layout); the
            // buffer is not written again before the stream has passed this copy (the next
            // write follows the next download's event).
            unsafe { self.x_host.copy_to_device(0, len, arena + x.offset, stream.raw)? };
        }
        let Some(layer) = self.layer_of[block] else { return Ok(()) };
        let fetch = self.kv.compute(layer as usize, Side::Device, pass.pos0, pass.tokens.len() as u64);
        if !fetch.is_empty() {
            let (k, v) = forward.kv_rows(layer, fetch);
            for b in [k, v] {
                self.up(b, arena, stream, "KV rows to the device")?;
            }
        }
        Ok(())
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
        Team::global().wake();
        let n = pass.tokens.len() as u64;
        let act = forward.activations();
        let x = act.x.slice(0, n * (act.x.elems / act.tokens.elems));
        if let Some(layer) = self.layer_of[block] {
            let fetch = self.kv.compute(layer as usize, Side::Host, pass.pos0, n);
            if !fetch.is_empty() {
                let (k, v) = forward.kv_rows(layer, fetch);
                self.down(k, arena, stream, "KV rows to the host")?;
                self.down(v, arena, stream, "KV rows to the host")?;
            }
        }
        if self.x_pending.is_none() {
            let len = x.bytes() as usize;
            // SAFETY: `x` lies inside the plan's arena (Forward::new checked the layout); the
            // pinned buffer holds it and is read only after the event below completes.
            unsafe { self.x_host.copy_from_device(0, len, arena + x.offset, stream.raw)? };
            self.x_down.record(stream)?;
            self.x_down.spin_until_complete()?;
            self.mirror[x.offset as usize..][..len].copy_from_slice(&self.x_host.as_slice()[..len]);
        }
        let mut ops = CpuOps::new(&mut self.mirror);
        forward.compute_block(&mut ops, block, image, pass).map_err(|e| CudaError::HostCompute {
            block: self.names[block].clone(),
            message: format!("the CPU forward pass failed: {e}"),
        })?;
        self.x_pending = Some(x);
        Ok(())
    }

    /// Device → host copy for `b` on `stream`, waited for before it returns
    /// (once per layer after prefill: the KV rows the host lacks).
    fn down(&mut self, b: Buf, arena: u64, stream: &Stream, what: &str) -> Result<(), CudaError> {
        let (o, len) = (b.offset as usize, b.bytes() as usize);
        // SAFETY: `b` lies inside the plan's arena (Forward::new checked the layout), which the
        // device allocation and the mirror both cover; the mirror outlives the synchronise.
        unsafe { result::memcpy_dtoh_async(&mut self.mirror[o..o + len], arena + b.offset, stream.raw) }
            .ctx(|| format!("copying {what} ({len} bytes)"))?;
        stream.synchronize()
    }

    /// Enqueues mirror → device for `b` on `stream`. From pageable memory the
    /// driver stages the bytes before returning, so the mirror may change after.
    fn up(&self, b: Buf, arena: u64, stream: &Stream, what: &str) -> Result<(), CudaError> {
        let (o, len) = (b.offset as usize, b.bytes() as usize);
        // SAFETY: as in `down`.
        unsafe { result::memcpy_htod_async(arena + b.offset, &self.mirror[o..o + len], stream.raw) }
            .ctx(|| format!("copying {what} ({len} bytes)"))
    }
}
