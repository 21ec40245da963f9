//! What the replay engine asks of a backend.
//!
//! The engine ([`crate::replay`]) walks a plan's steps and calls these
//! methods in plan order; a backend turns them into work on its lanes. The
//! CUDA backend maps lanes to streams and events to CUDA events; the CPU
//! backend runs each call to completion, so its events are trivially
//! satisfied (its adversarial mode instead defers work as far as the
//! declared events allow). Neither decides anything: which block, which
//! slot, which event all come from the plan.

use djinn_core::plan::{Lane, PhaseName};
use djinn_kernels::SampleParams;

/// A plan event, numbered by the engine (index into its table of event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub usize);

/// One forward pass: the tokens it feeds and where they sit in the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Token ids of this pass (the prompt for prefill, the last token for decode).
    pub tokens: Vec<u32>,
    /// Tokens already in the KV cache before this pass.
    pub pos0: u64,
    /// The plan phase whose steps run this pass.
    pub phase: PhaseName,
}

pub trait Backend {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Called once per pass before its first step: stage the pass's token ids.
    fn begin_pass(&mut self, pass: &Pass) -> Result<(), Self::Error>;

    /// Copy lane: copy block `block` (index into `plan.model.blocks`) from host
    /// memory into the arena at byte `dst_offset` (a slot region's offset).
    fn copy_block(&mut self, block: usize, dst_offset: u64) -> Result<(), Self::Error>;

    /// Compute lane: run block `block`'s forward computation for the current
    /// pass, reading its image at arena byte `weights_offset`.
    fn compute_block(&mut self, block: usize, weights_offset: u64, pass: &Pass) -> Result<(), Self::Error>;

    /// Compute lane: have the host CPU run streamed block `block` for the
    /// current pass from its image in host memory (the plan's `host_compute`).
    /// The lane hands over the residual stream and resumes once it is back;
    /// the block's KV-cache rows are kept coherent between device and host.
    fn host_compute_block(&mut self, block: usize, pass: &Pass) -> Result<(), Self::Error>;

    /// Whether the plan's warm copies were issued since this backend's last
    /// pass ([`crate::replay::Replay::warm`]): the replay engine's note, kept
    /// with the backend because it describes this backend's slots. The engine
    /// sets it when it issues them and clears it at every pass.
    fn slots_warm(&mut self) -> &mut bool;

    /// Called before warm copies are issued outside a pass, so that a backend
    /// that times its lanes can tell them from the next pass's steps.
    fn begin_warm(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Waits until everything issued on both lanes has completed (at load: the
    /// warm copies land before the first request, as they do between requests).
    fn settle(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Mark the completion of everything issued so far on `lane` as `event`.
    fn record(&mut self, lane: Lane, event: EventId) -> Result<(), Self::Error>;

    /// Hold `lane` until the most recent record of `event` has completed.
    fn wait(&mut self, lane: Lane, event: EventId) -> Result<(), Self::Error>;

    /// Wait for the compute lane and return the last position's logits, `[vocab]` f32.
    fn logits(&mut self) -> Result<Vec<f32>, Self::Error>;

    /// Wait for the compute lane and return the greedy choice, the index of
    /// the largest logit ([`djinn_kernels::argmax_f32`]: the first on ties,
    /// never a NaN). A backend with a device picks it there and brings back
    /// one token id instead of the whole `[vocab]` row.
    fn greedy_token(&mut self) -> Result<u32, Self::Error> {
        Ok(djinn_kernels::argmax_f32(&self.logits()?) as u32)
    }

    /// Wait for the compute lane and return the token sampled under `params`
    /// with the uniform `u` in `[0, 1)`: [`djinn_kernels::sample_f32_with`]
    /// on the logits, without the repetition penalty (it needs the sequence;
    /// a caller with one brings the logits to the host and samples there). A
    /// backend with a device samples there (the twin's kernel, the same token
    /// for the same `u`) and brings back one token id instead of the row.
    fn sample_token(&mut self, params: &SampleParams, u: f32) -> Result<u32, Self::Error> {
        Ok(djinn_kernels::sample_f32_with(&self.logits()?, params, &[], u) as u32)
    }

    /// A short name for reports (`cpu`, `cpu-adversarial`, `cuda (NVIDIA L4)`).
    fn describe(&self) -> String {
        std::any::type_name::<Self>().rsplit("::").next().unwrap_or("backend").to_string()
    }

    /// Peak device memory in bytes, for backends with a device (the CPU backend has none).
    fn peak_device_bytes(&self) -> Option<u64> {
        None
    }
}
