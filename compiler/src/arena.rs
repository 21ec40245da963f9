//! Lays out the device arena: the one allocation every region is carved from.
//!
//! The solver decides residency by laying out the arena for real, with this
//! function, and comparing its size to the budget; the emitter writes the same
//! layout into the plan. So the accounting cannot drift from what the executor
//! allocates: padding included.
//!
//! Regions go in a fixed order: resident blocks in model order, slots, KV cache,
//! activations, workspace. Each starts at a multiple of [`ARENA_ALIGN`], the
//! contract's one alignment (`djinn_core::units::ALIGN`, 256 B, which says why):
//! block images keep their tensors at offsets of the same, so every tensor stays
//! aligned in device memory. 2 MiB (large-page) alignment would waste up to
//! 2 MiB per region, ~90 MiB for a 40-layer model: a seventh of a 13B layer,
//! for no gain a plan could measure (the arena is one `cudaMalloc`, already
//! large-page backed as a whole).

use djinn_core::activations::{ActivationLayout, KvLayout, WORKSPACE_BYTES};
use djinn_core::model::ModelSpec;
use djinn_core::plan::{resident_region_name, slot_region_name, Arena, Region, RegionKind, RunShape};
use djinn_core::units::{align_up, ALIGN};

/// Alignment of every region offset in the arena: the contract's one [`ALIGN`].
pub const ARENA_ALIGN: u64 = ALIGN;

/// The fixed regions' sizes, which depend only on the model and the run shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedRegions {
    pub kv_cache: u64,
    pub activations: u64,
    pub workspace: u64,
}

impl FixedRegions {
    pub fn new(model: &ModelSpec, shape: &RunShape) -> FixedRegions {
        FixedRegions {
            kv_cache: KvLayout::new(&model.arch, model.dtype, shape).bytes(),
            activations: ActivationLayout::new(&model.arch, model.dtype, shape).bytes,
            workspace: WORKSPACE_BYTES,
        }
    }
}

/// Lays out the arena for `resident` blocks (indices into `model.blocks`, any
/// order; emitted in model order) and `slots` slots of `slot_bytes` each.
pub fn lay_out(model: &ModelSpec, resident: &[usize], slots: u64, slot_bytes: u64, fixed: &FixedRegions) -> Arena {
    let mut resident = resident.to_vec();
    resident.sort_unstable();
    resident.dedup();
    let mut regions = Vec::with_capacity(resident.len() + slots as usize + 3);
    let mut offset = 0;
    let mut push = |name: String, kind: RegionKind, bytes: u64| {
        offset = align_up(offset, ARENA_ALIGN);
        regions.push(Region { name, kind, offset, bytes });
        offset += bytes;
    };
    for &b in &resident {
        let block = &model.blocks[b];
        push(resident_region_name(&block.name), RegionKind::Resident, block.bytes);
    }
    for s in 0..slots {
        push(slot_region_name(s), RegionKind::Slot, slot_bytes);
    }
    push("kv_cache".into(), RegionKind::KvCache, fixed.kv_cache);
    push("activations".into(), RegionKind::Activations, fixed.activations);
    push("workspace".into(), RegionKind::Workspace, fixed.workspace);
    Arena { bytes: align_up(offset, ARENA_ALIGN), alignment: ARENA_ALIGN, regions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use djinn_core::model::{Architecture, Dtype};

    fn model() -> ModelSpec {
        let arch = Architecture {
            family: "llama".into(),
            hidden_size: 64,
            intermediate_size: 100, // 64·100·2 B = 12800 B per MLP matrix: not a multiple of 256 B
            num_layers: 3,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            vocab_size: 99,
            rope_theta: 1e4,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 64,
            tie_word_embeddings: false,
            ..Default::default()
        };
        ModelSpec::from_arch("t", arch, Dtype::F16)
    }

    #[test]
    fn regions_are_aligned_disjoint_in_order_and_inside_the_arena() {
        let m = model();
        let fixed = FixedRegions::new(&m, &RunShape { prompt_len: 5, max_seq_len: 9, batch: 1 });
        let arena = lay_out(&m, &[4, 0, 2], 2, 1000, &fixed);
        let names: Vec<_> = arena.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "resident.embed",
                "resident.layer.1",
                "resident.norm",
                "slot.0",
                "slot.1",
                "kv_cache",
                "activations",
                "workspace"
            ]
        );
        let mut end = 0;
        for r in &arena.regions {
            assert_eq!(r.offset % ARENA_ALIGN, 0, "{}", r.name);
            assert!(r.offset >= end, "{} overlaps", r.name);
            end = r.offset + r.bytes;
        }
        assert!(end <= arena.bytes && arena.bytes - end < ARENA_ALIGN);
        // The padding after the 1000-byte slot is counted.
        let s1 = arena.regions.iter().find(|r| r.name == "slot.1").unwrap();
        assert_eq!(s1.offset - arena.regions.iter().find(|r| r.name == "slot.0").unwrap().offset, 1024);
    }
}
