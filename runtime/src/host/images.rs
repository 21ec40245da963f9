//! Where the host CPU finds the blocks a plan `host_compute`s.
//!
//! A `host_compute` step runs a streamed block on the host from its image in
//! host memory. Both backends run it with the same [`crate::forward`] pass
//! over a host buffer laid out like the device arena (so every activation and
//! KV-cache offset means the same bytes), extended past the arena's end with
//! the packed image of each host-computed block. This module fixes that
//! extension: one image per block, in block order, 256-byte aligned.

use djinn_core::activations::BUFFER_ALIGN;
use djinn_core::plan::{Op, Plan};

use crate::cpu::HostArena;
use crate::weights::Weights;

/// The images of the host-computed blocks, after the plan's arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostImages {
    /// Per block (index into the plan's block table): its image's offset in the extended buffer.
    pub offset: Vec<Option<u64>>,
    /// Bytes of the extended buffer: the arena, then the images.
    pub total_bytes: u64,
}

impl HostImages {
    pub fn of(plan: &Plan) -> HostImages {
        let mut offset = vec![None; plan.model.blocks.len()];
        let mut end = plan.arena.bytes.div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN;
        for b in plan.blocks_with_op(Op::HostCompute) {
            offset[b] = Some(end);
            end = (end + plan.model.blocks[b].bytes).div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN;
        }
        HostImages { offset, total_bytes: end }
    }

    /// Whether the plan host-computes anything.
    pub fn is_empty(&self) -> bool {
        self.offset.iter().all(Option::is_none)
    }

    /// The extended buffer, zeroed (lazily, by the OS), with every
    /// host-computed block's image packed in; `None` if it cannot be allocated.
    pub fn allocate(&self, weights: &Weights) -> Option<HostArena> {
        let mut buf = HostArena::zeroed(self.total_bytes)?;
        self.write(weights, &mut buf);
        Some(buf)
    }

    fn write(&self, weights: &Weights, buf: &mut [u8]) {
        for (b, off) in self.offset.iter().enumerate() {
            if let Some(off) = *off {
                let bytes = weights.spec().blocks[b].bytes as usize;
                weights.write_block_image(b, &mut buf[off as usize..off as usize + bytes]);
            }
        }
    }
}
