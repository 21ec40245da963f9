//! The plan's name lookups, built once per verification.
//!
//! `Plan::block`, `Plan::placement` and `Plan::region` search a list, which
//! is fine for the executor's few calls but made the rules that look up every
//! step's block, placement and slot cost steps × blocks: a hostile plan with
//! many of both took minutes. Every lookup here is a hash probe and returns
//! what the list search would (the first entry of that name), so the rules
//! report exactly what they did before.

use std::collections::HashMap;

use crate::model::Block;
use crate::plan::{slot_region_name, Placement, Plan, Region, RegionKind};

pub(super) struct Index<'p> {
    blocks: HashMap<&'p str, &'p Block>,
    placements: HashMap<&'p str, &'p Placement>,
    regions: HashMap<&'p str, &'p Region>,
    slots: u64,
}

impl<'p> Index<'p> {
    pub(super) fn new(plan: &'p Plan) -> Index<'p> {
        let mut blocks = HashMap::new();
        for b in &plan.model.blocks {
            blocks.entry(b.name.as_str()).or_insert(b);
        }
        let mut placements = HashMap::new();
        for p in &plan.placements {
            placements.entry(p.block.as_str()).or_insert(&p.placement);
        }
        let mut regions = HashMap::new();
        for r in &plan.arena.regions {
            regions.entry(r.name.as_str()).or_insert(r);
        }
        Index { blocks, placements, regions, slots: plan.slot_count() }
    }

    /// As [`Plan::block`].
    pub(super) fn block(&self, name: &str) -> Option<&'p Block> {
        self.blocks.get(name).copied()
    }

    /// As [`Plan::placement`].
    pub(super) fn placement(&self, block: &str) -> Option<&'p Placement> {
        self.placements.get(block).copied()
    }

    /// As [`Plan::region`].
    pub(super) fn region(&self, name: &str) -> Option<&'p Region> {
        self.regions.get(name).copied()
    }

    /// As [`Plan::slot_region`].
    pub(super) fn slot_region(&self, slot: u64) -> Option<&'p Region> {
        self.region(&slot_region_name(slot)).filter(|r| r.kind == RegionKind::Slot)
    }

    /// As [`Plan::slot_count`].
    pub(super) fn slot_count(&self) -> u64 {
        self.slots
    }

    /// Whether `block` is placed as streamed.
    pub(super) fn is_streamed(&self, block: &str) -> bool {
        self.placement(block) == Some(&Placement::Streamed)
    }
}
