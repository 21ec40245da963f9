//! Where the host CPU finds the blocks a plan `host_compute`s.
//!
//! A `host_compute` step runs a streamed block on the host from its image in
//! host memory, with the same [`crate::forward`] pass, over the host buffer
//! of this module's parent. This module fixes the buffer's extension past the
//! plan's arena: one image per host-computed block, in block order, each
//! starting on a huge-page boundary ([`HUGE_PAGE`]), so that each image is
//! backed by huge pages of its own and the whole range of images can be
//! page-locked for the copy engine in one piece ([`HostImages::images_range`]).

use djinn_core::plan::{Op, Plan};

use super::arena::{HostArena, HUGE_PAGE};
use crate::weights::Weights;

/// The images of the host-computed blocks, after the plan's arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostImages {
    /// Per block (index into the plan's block table): its image's offset in the extended buffer.
    pub offset: Vec<Option<u64>>,
    /// Per block: its image's bytes (0 for blocks without an image).
    pub bytes: Vec<u64>,
    /// Bytes of the extended buffer: the arena, then the images.
    pub total_bytes: u64,
    /// Where the first image starts (the arena's end, rounded up to a huge page).
    pub images_start: u64,
}

impl HostImages {
    pub fn of(plan: &Plan) -> HostImages {
        let blocks = &plan.model.blocks;
        let mut offset = vec![None; blocks.len()];
        let mut bytes = vec![0; blocks.len()];
        let images_start = plan.arena.bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let mut end = images_start;
        for b in plan.blocks_with_op(Op::HostCompute) {
            offset[b] = Some(end);
            bytes[b] = blocks[b].bytes;
            end = (end + blocks[b].bytes).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        }
        let total_bytes = if end == images_start { plan.arena.bytes } else { end };
        HostImages { offset, bytes, total_bytes, images_start }
    }

    /// Whether the plan host-computes anything.
    pub fn is_empty(&self) -> bool {
        self.offset.iter().all(Option::is_none)
    }

    /// The byte range of the extended buffer that holds the images (empty if none).
    pub fn images_range(&self) -> std::ops::Range<u64> {
        self.images_start.min(self.total_bytes)..self.total_bytes
    }

    /// The extended buffer, zeroed (lazily, by the OS), with every
    /// host-computed block's image packed in on huge pages; `None` if it
    /// cannot be allocated.
    pub fn allocate(&self, weights: &Weights) -> Option<HostArena> {
        let mut buf = HostArena::zeroed(self.total_bytes)?;
        let images = self.images_range();
        buf.advise_huge(images.start, images.end - images.start);
        for (b, off) in self.offset.iter().enumerate() {
            if let Some(off) = *off {
                let end = (off + self.bytes[b]) as usize;
                weights.write_block_image(b, &mut buf[off as usize..end]);
            }
        }
        Some(buf)
    }
}
