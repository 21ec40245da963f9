//! Where each block's image may be read and written, from the plan's arena.
//!
//! The verifier proves a plan sound before it runs; these checks are the
//! backend's own last line: a copy must land inside a slot region, a compute
//! must read an image that lies inside its block's resident region or a
//! slot. They cost a few comparisons per step and turn a plan/executor
//! mismatch into an error naming the block instead of a corrupted arena.

use djinn_core::plan::{Placement, Plan, RegionKind};

use super::error::CudaError;

pub struct Placements {
    pub names: Vec<String>,
    /// Image size of each block.
    pub bytes: Vec<u64>,
    /// Per block: its resident region (offset, bytes), if resident.
    pub resident: Vec<Option<(u64, u64)>>,
    /// Slot regions (offset, bytes).
    pub slots: Vec<(u64, u64)>,
    /// The workspace region (offset, bytes).
    pub workspace: (u64, u64),
}

impl Placements {
    pub fn from_plan(plan: &Plan) -> Result<Placements, CudaError> {
        let arena = plan.arena.bytes;
        for r in &plan.arena.regions {
            if r.offset.checked_add(r.bytes).is_none_or(|end| end > arena) {
                return Err(CudaError::Plan(format!(
                    "region `{}` ({}..{}) lies outside the {arena}-byte arena",
                    r.name,
                    r.offset,
                    r.offset.saturating_add(r.bytes)
                )));
            }
        }
        if plan.placements.len() != plan.model.blocks.len() {
            return Err(CudaError::Plan(format!(
                "{} placements for {} blocks",
                plan.placements.len(),
                plan.model.blocks.len()
            )));
        }
        let mut resident = Vec::with_capacity(plan.model.blocks.len());
        for (b, p) in plan.model.blocks.iter().zip(&plan.placements) {
            if p.block != b.name {
                return Err(CudaError::Plan(format!(
                    "placement of `{}` where block `{}` was expected",
                    p.block, b.name
                )));
            }
            resident.push(match &p.placement {
                Placement::Streamed => None,
                Placement::Resident { region } => {
                    let r = plan.region(region).ok_or_else(|| {
                        CudaError::Plan(format!(
                            "block `{}` is resident in region `{region}`, which the arena lacks",
                            b.name
                        ))
                    })?;
                    if r.bytes < b.bytes {
                        return Err(CudaError::Plan(format!(
                            "region `{region}` is {} bytes; block `{}` needs {}",
                            r.bytes, b.name, b.bytes
                        )));
                    }
                    Some((r.offset, r.bytes))
                }
            });
        }
        let slots = (0..plan.slot_count())
            .map(|s| {
                plan.slot_region(s).map(|r| (r.offset, r.bytes)).ok_or_else(|| {
                    CudaError::Plan(format!(
                        "slot regions are not numbered 0..{}: slot.{s} is missing",
                        plan.slot_count()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ws = plan
            .region_of_kind(RegionKind::Workspace)
            .ok_or_else(|| CudaError::Plan("the arena has no workspace region".into()))?;
        Ok(Placements {
            names: plan.model.blocks.iter().map(|b| b.name.clone()).collect(),
            bytes: plan.model.blocks.iter().map(|b| b.bytes).collect(),
            resident,
            slots,
            workspace: (ws.offset, ws.bytes),
        })
    }

    fn in_slot(&self, offset: u64, bytes: u64) -> bool {
        self.slots.iter().any(|&(o, b)| offset >= o && offset + bytes <= o + b)
    }

    /// A copy of `block` to `dst` must fill part of one slot.
    pub fn check_copy(&self, block: usize, dst: u64) -> Result<(), CudaError> {
        let name = self.name(block)?;
        if self.resident[block].is_some() {
            return Err(CudaError::Plan(format!("copy of block `{name}`, which the plan places resident")));
        }
        if !self.in_slot(dst, self.bytes[block]) {
            return Err(CudaError::Plan(format!(
                "copy of block `{name}` ({} bytes) to arena offset {dst} does not fit inside any slot region",
                self.bytes[block]
            )));
        }
        Ok(())
    }

    /// A compute of `block` must read its image from its resident region or a slot.
    pub fn check_compute(&self, block: usize, weights: u64) -> Result<(), CudaError> {
        let name = self.name(block)?;
        let bytes = self.bytes[block];
        let ok = match self.resident[block] {
            Some((o, b)) => weights >= o && weights + bytes <= o + b,
            None => self.in_slot(weights, bytes),
        };
        if !ok {
            return Err(CudaError::Plan(format!(
                "compute of block `{name}` reads its {bytes}-byte image at arena offset {weights}, \
                 outside its resident region and every slot"
            )));
        }
        Ok(())
    }

    fn name(&self, block: usize) -> Result<&str, CudaError> {
        self.names
            .get(block)
            .map(|s| s.as_str())
            .ok_or_else(|| CudaError::Plan(format!("block index {block} out of {}", self.names.len())))
    }
}
