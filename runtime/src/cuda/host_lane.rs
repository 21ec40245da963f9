//! The host side of the plan's `host_compute` steps on the CUDA backend.
//!
//! A `host_compute` runs a streamed layer on the host CPU, from its image in
//! host memory, with the same forward pass and the CPU twins of the kernels.
//! The host works in a mirror of the device arena (lazily zeroed, so only the
//! activations, the touched KV rows and the images cost memory) extended by
//! the images ([`HostImages`]), so every offset means what it means on the
//! device. One step: wait for the compute stream to reach it, bring the
//! residual stream `x` (and any KV rows of the layer the host lacks) down,
//! run the layer, send `x` back on the compute stream, which resumes.
//!
//! KV coherence is bookkeeping, not a decision ([`KvCoherence`]): a
//! computation on either side first fetches the rows `0..pos0` it lacks (in
//! these plans: once, after prefill, for each host-computed layer).

use cudarc::driver::result;

use super::context::Stream;
use super::error::{CudaError, DriverContext};
use crate::backend::Pass;
use crate::cpu::{CpuOps, HostArena};
use crate::forward::Forward;
use crate::host_images::HostImages;
use crate::kv_coherence::{KvCoherence, Side};
use crate::ops::Buf;
use crate::weights::Weights;
use djinn_core::plan::Plan;

pub struct HostLane {
    /// The device arena's mirror, then the host-computed blocks' images.
    mirror: HostArena,
    images: HostImages,
    /// Per block: its layer index, for layer blocks.
    layer_of: Vec<Option<u64>>,
    /// Per block: its name, for errors.
    names: Vec<String>,
    kv: KvCoherence,
}

impl HostLane {
    /// `None` when the plan host-computes nothing.
    pub fn new(plan: &Plan, weights: &Weights) -> Result<Option<HostLane>, CudaError> {
        let images = HostImages::of(plan);
        if images.is_empty() {
            return Ok(None);
        }
        let mirror = images.allocate(weights).ok_or_else(|| CudaError::HostCompute {
            block: "(every host-computed block)".into(),
            message: format!("cannot allocate {} bytes of host memory for the arena's mirror", images.total_bytes),
        })?;
        let layers = plan.model.arch.num_layers as usize;
        Ok(Some(HostLane {
            mirror,
            images,
            layer_of: plan.model.blocks.iter().map(|b| b.layer).collect(),
            names: plan.model.blocks.iter().map(|b| b.name.clone()).collect(),
            kv: KvCoherence::new(layers),
        }))
    }

    /// Before the device computes block `block` for `pass`: uploads the KV
    /// rows below `pos0` that only the host has (on the compute stream).
    pub fn before_device_compute(
        &mut self,
        forward: &Forward,
        block: usize,
        pass: &Pass,
        arena: u64,
        stream: &Stream,
    ) -> Result<(), CudaError> {
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
        let n = pass.tokens.len() as u64;
        let x = forward.activations().x;
        let x = x.slice(0, n * (x.elems / forward.activations().tokens.elems));
        self.down(x, arena, stream, "the residual stream to the host")?;
        if let Some(layer) = self.layer_of[block] {
            let fetch = self.kv.compute(layer as usize, Side::Host, pass.pos0, n);
            if !fetch.is_empty() {
                let (k, v) = forward.kv_rows(layer, fetch);
                self.down(k, arena, stream, "KV rows to the host")?;
                self.down(v, arena, stream, "KV rows to the host")?;
            }
        }
        stream.synchronize()?;
        let mut ops = CpuOps::new(&mut self.mirror);
        forward.compute_block(&mut ops, block, image, pass).map_err(|e| CudaError::HostCompute {
            block: self.names[block].clone(),
            message: format!("the CPU forward pass failed: {e}"),
        })?;
        self.up(x, arena, stream, "the residual stream back to the device")
    }

    /// Enqueues device → mirror for `b` on `stream` (the caller synchronises before reading).
    fn down(&mut self, b: Buf, arena: u64, stream: &Stream, what: &str) -> Result<(), CudaError> {
        let (o, len) = (b.offset as usize, b.bytes() as usize);
        // SAFETY: `b` lies inside the plan's arena (Forward::new checked the layout), which the
        // device allocation and the mirror both cover; the mirror outlives the synchronise.
        unsafe { result::memcpy_dtoh_async(&mut self.mirror[o..o + len], arena + b.offset, stream.raw) }
            .ctx(|| format!("copying {what} ({len} bytes)"))
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
