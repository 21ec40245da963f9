//! The CPU backend: the plan's arena is one host buffer, copy steps copy a
//! streamed block's packed image (held in host memory) into its slot, and
//! compute steps run [`Forward`] with [`CpuOps`] over the arena.
//!
//! It exists so that everything but CUDA — the plan's memory map, the block
//! images, the forward pass, the replay — is proven on any machine. Its
//! in-order mode ([`CpuBackend`]) runs every call to completion as it is
//! issued, so events need no work. Its adversarial mode ([`AdversarialCpu`])
//! instead runs the steps as late or as early as the plan's declared events
//! allow, to show that a plan's dependencies are complete.

mod adversarial;
mod ops;

use djinn_core::model::Dtype;
use djinn_core::plan::{Lane, Op, Placement, Plan};
use thiserror::Error;

pub use adversarial::AdversarialCpu;
pub use ops::CpuOps;

use crate::backend::{Backend, EventId, Pass};
use crate::forward::{Forward, ForwardError};
use crate::host::{HostArena, HostImages};
use crate::weights::Weights;

#[derive(Debug, Error)]
pub enum CpuError {
    #[error("{0}")]
    Forward(ForwardError),
    #[error("cannot allocate the {bytes}-byte arena of the plan in host memory")]
    Alloc { bytes: u64 },
    #[error("the weights were checked against a different plan than the one given to the CPU backend")]
    OtherPlan,
    #[error("region `{region}` of block `{block}` ({offset} + {bytes} bytes) lies outside the {arena}-byte arena")]
    Region { region: String, block: String, offset: u64, bytes: u64, arena: u64 },
    #[error("block `{block}` is resident, or is never copied or host-computed by the plan: no host image")]
    NoImage { block: String },
    #[error("copy of block `{block}` ({bytes} bytes) to arena offset {dst} overruns the {arena}-byte arena")]
    CopyOutOfArena { block: String, dst: u64, bytes: u64, arena: u64 },
    #[error("a pass of {tokens} tokens does not fit the activation buffers, sized for {capacity}")]
    TooManyTokens { tokens: u64, capacity: u64 },
    #[error("{op}: operand of dtype {dtype} is not what the op takes")]
    Dtype { op: &'static str, dtype: Dtype },
    #[error("{op}: operand at arena offset {offset} ({bytes} bytes) lies outside the {arena}-byte arena")]
    OutOfArena { op: &'static str, offset: u64, bytes: u64, arena: u64 },
    #[error("{op}: operand at arena offset {offset} is not aligned for {dtype}")]
    Misaligned { op: &'static str, offset: u64, dtype: Dtype },
    #[error("{op}: operands at arena offsets {a} and {b} overlap and one is written")]
    Overlap { op: &'static str, a: u64, b: u64 },
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("token id {token} is outside the model's vocabulary of {vocab}")]
    Token { token: u32, vocab: u64 },
    #[error("adversarial replay is stuck: {0}")]
    Stuck(String),
}

impl From<ForwardError> for CpuError {
    fn from(e: ForwardError) -> CpuError {
        CpuError::Forward(e)
    }
}

/// The in-order CPU backend (and the machine under the adversarial one).
pub struct CpuBackend {
    arena: HostArena,
    forward: Forward,
    names: Vec<String>,
    /// Host images of the blocks the plan copies, by block index.
    images: Vec<Option<Vec<u8>>>,
    /// Where the images of host-computed blocks sit in `arena`, past the plan's arena.
    host: HostImages,
    /// [`Backend::slots_warm`].
    slots_warm: bool,
}

impl CpuBackend {
    /// Allocates the arena, packs resident blocks into their regions and the
    /// blocks the plan copies into host images.
    pub fn new(plan: &Plan, weights: &Weights) -> Result<CpuBackend, CpuError> {
        if weights.spec() != &plan.model {
            return Err(CpuError::OtherPlan);
        }
        let forward = Forward::new(plan)?;
        // The plan's arena, extended by the images of the blocks it host-computes.
        let host = HostImages::of(plan);
        let mut arena = host.allocate(weights).ok_or(CpuError::Alloc { bytes: host.total_bytes })?;
        let blocks = &plan.model.blocks;
        let resident: Vec<(usize, u64)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match plan.placement(&b.name) {
                Some(Placement::Resident { region }) => Some((i, region)),
                _ => None,
            })
            .map(|(i, region)| {
                let b = &blocks[i];
                match plan.region(region).filter(|r| r.offset + b.bytes <= arena.len() as u64 && b.bytes <= r.bytes) {
                    Some(r) => Ok((i, r.offset)),
                    None => Err(CpuError::Region {
                        region: region.clone(),
                        block: b.name.clone(),
                        offset: plan.region(region).map_or(0, |r| r.offset),
                        bytes: b.bytes,
                        arena: arena.len() as u64,
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        let bar = crate::weights::progress_bar(
            resident.iter().map(|&(i, _)| blocks[i].bytes).sum(),
            "loading resident blocks",
        );
        for &(i, offset) in &resident {
            let bytes = blocks[i].bytes as usize;
            weights.write_block_image(i, &mut arena[offset as usize..offset as usize + bytes]);
            bar.inc(bytes as u64);
        }
        bar.finish_and_clear();
        let copied = plan.blocks_with_op(Op::Copy);
        let mut images: Vec<Option<Vec<u8>>> = vec![None; blocks.len()];
        for (i, image) in copied.iter().zip(weights.pack_blocks(&copied)) {
            images[*i] = Some(image);
        }
        let names = blocks.iter().map(|b| b.name.clone()).collect();
        Ok(CpuBackend { arena, forward, names, images, host, slots_warm: false })
    }

    /// Bytes of block `block`'s image, as the copy lane moves them.
    fn copy(&mut self, block: usize, dst: u64) -> Result<(), CpuError> {
        let Some(image) = self.images.get(block).and_then(|i| i.as_ref()) else {
            return Err(CpuError::NoImage { block: self.name(block) });
        };
        let end = dst.checked_add(image.len() as u64).filter(|&e| e <= self.arena.len() as u64);
        if end.is_none() {
            return Err(CpuError::CopyOutOfArena {
                block: self.name(block),
                dst,
                bytes: image.len() as u64,
                arena: self.arena.len() as u64,
            });
        }
        self.arena[dst as usize..dst as usize + image.len()].copy_from_slice(image);
        Ok(())
    }

    /// The byte range a copy of `block` to `dst` writes (for poisoning).
    fn image_len(&self, block: usize) -> u64 {
        self.images.get(block).and_then(|i| i.as_ref()).map_or(0, |i| i.len() as u64)
    }

    /// Where block `block`'s host image lies in the arena, for a `host_compute`.
    fn host_image(&self, block: usize) -> Result<u64, CpuError> {
        self.host.offset.get(block).copied().flatten().ok_or_else(|| CpuError::NoImage { block: self.name(block) })
    }

    fn compute(&mut self, block: usize, weights: u64, pass: &Pass) -> Result<(), CpuError> {
        let mut ops = CpuOps::new(&mut self.arena);
        self.forward.compute_block(&mut ops, block, weights, pass)
    }

    fn stage(&mut self, pass: &Pass) -> Result<(), CpuError> {
        let slots = self.forward.activations().tokens;
        let n = pass.tokens.len() as u64;
        if n == 0 || n > slots.elems {
            return Err(CpuError::TooManyTokens { tokens: n, capacity: slots.elems });
        }
        for (i, t) in pass.tokens.iter().enumerate() {
            let at = slots.offset as usize + 4 * i;
            self.arena[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        Ok(())
    }

    fn read_logits(&self) -> Vec<f32> {
        let l = self.forward.activations().logits;
        let bytes = &self.arena[l.offset as usize..(l.offset + l.bytes()) as usize];
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// Fills `bytes` bytes at `offset` with 0xFF: NaN as f16, bf16 and f32 alike.
    fn poison(&mut self, offset: u64, bytes: u64) {
        let end = (offset + bytes).min(self.arena.len() as u64);
        self.arena[offset.min(end) as usize..end as usize].fill(0xFF);
    }

    fn name(&self, block: usize) -> String {
        self.names.get(block).cloned().unwrap_or_else(|| format!("#{block}"))
    }
}

impl Backend for CpuBackend {
    type Error = CpuError;

    fn slots_warm(&mut self) -> &mut bool {
        &mut self.slots_warm
    }

    fn begin_pass(&mut self, pass: &Pass) -> Result<(), CpuError> {
        self.stage(pass)
    }

    fn copy_block(&mut self, block: usize, dst_offset: u64) -> Result<(), CpuError> {
        self.copy(block, dst_offset)
    }

    fn compute_block(&mut self, block: usize, weights_offset: u64, pass: &Pass) -> Result<(), CpuError> {
        self.compute(block, weights_offset, pass)
    }

    /// The host is where this backend computes anyway: the block runs from its host image.
    fn host_compute_block(&mut self, block: usize, pass: &Pass) -> Result<(), CpuError> {
        let image = self.host_image(block)?;
        self.compute(block, image, pass)
    }

    /// In order, every call has completed when it returns: nothing to record.
    fn record(&mut self, _lane: Lane, _event: EventId) -> Result<(), CpuError> {
        Ok(())
    }

    /// In order, every earlier record has completed: nothing to wait for.
    fn wait(&mut self, _lane: Lane, _event: EventId) -> Result<(), CpuError> {
        Ok(())
    }

    fn logits(&mut self) -> Result<Vec<f32>, CpuError> {
        Ok(self.read_logits())
    }

    fn describe(&self) -> String {
        "cpu".into()
    }
}
