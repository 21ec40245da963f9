//! Rules `arena` and `placement`: the device memory the plan asks for is
//! carved correctly, and every block has a home in it.
//!
//! The executor makes one allocation of `arena.bytes` and hands out regions by
//! offset without looking at them again. Overlapping regions would let a copy
//! clobber the KV cache; an undersized KV or activation region would let a
//! kernel write past it. The required sizes are recomputed with the same
//! functions the runtime carves the regions with ([`crate::activations`]).

use std::collections::{BTreeMap, HashMap};

use super::index::Index;
use super::{Rule, Violation};
use crate::activations::{checked_region_bytes, WORKSPACE_BYTES};
use crate::limits::MAX_DIM;
use crate::model::TENSOR_ALIGN;
use crate::plan::{slot_region_name, Placement, Plan, Region, RegionKind};
use crate::units::fmt_bytes;

/// `arena.alignment`, as docs/plan-format.md fixes it: the tensor alignment of block images.
const ARENA_ALIGNMENT: u64 = TENSOR_ALIGN;

pub(super) fn check_arena(plan: &Plan, out: &mut Vec<Violation>) {
    check_shape(plan, out);
    let arena = &plan.arena;
    let fail = |out: &mut Vec<Violation>, subject: String, message: String| {
        out.push(Violation::new(Rule::Arena, message).subject(subject));
    };
    if arena.bytes > plan.budget_bytes {
        fail(
            out,
            "arena".into(),
            format!(
                "arena.bytes = {} ({}) exceeds budget_bytes = {} ({}); the plan must fit its budget",
                arena.bytes,
                fmt_bytes(arena.bytes),
                plan.budget_bytes,
                fmt_bytes(plan.budget_bytes)
            ),
        );
    }
    if arena.bytes > plan.gpu.memory_bytes {
        fail(
            out,
            "arena".into(),
            format!(
                "arena.bytes = {} ({}) exceeds the memory of GPU {}, memory_bytes = {} ({}); the plan cannot run on \
                 the GPU it was compiled for",
                arena.bytes,
                fmt_bytes(arena.bytes),
                plan.gpu.name,
                plan.gpu.memory_bytes,
                fmt_bytes(plan.gpu.memory_bytes)
            ),
        );
    }
    if arena.alignment != ARENA_ALIGNMENT {
        fail(
            out,
            "arena".into(),
            format!(
                "arena.alignment = {}, but the plan format fixes it at {ARENA_ALIGNMENT} (every tensor of a block \
                 image is {ARENA_ALIGNMENT}-byte aligned, and the executor aligns the arena to that)",
                arena.alignment
            ),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, r) in arena.regions.iter().enumerate() {
        let subject = format!("region {}", r.name);
        if let Some(first) = seen.insert(&r.name, i) {
            fail(
                out,
                subject.clone(),
                format!("arena.regions[{i}] reuses the name of arena.regions[{first}]; region names must be unique"),
            );
        }
        if r.bytes == 0 {
            fail(out, subject.clone(), "is empty (bytes = 0)".into());
        }
        if r.offset % ARENA_ALIGNMENT != 0 {
            fail(
                out,
                subject.clone(),
                format!("starts at offset {}, not a multiple of the arena alignment {ARENA_ALIGNMENT}", r.offset),
            );
        }
        match r.offset.checked_add(r.bytes) {
            Some(end) if end <= arena.bytes => {}
            _ => fail(
                out,
                subject,
                format!(
                    "spans bytes {}..{}, past the end of the arena ({} bytes)",
                    r.offset,
                    r.offset.saturating_add(r.bytes),
                    arena.bytes
                ),
            ),
        }
    }
    check_overlaps(plan, out);
    check_singletons(plan, out);
    check_slot_names(plan, out);
}

/// Regions must be disjoint. Swept in offset order, each region that starts
/// inside an earlier one is reported once, naming the region reaching
/// furthest: O(r log r), and at most one violation per region however many
/// regions a hostile arena stacks on one offset.
fn check_overlaps(plan: &Plan, out: &mut Vec<Violation>) {
    let regions = &plan.arena.regions;
    let end = |r: &Region| r.offset.saturating_add(r.bytes);
    let mut order: Vec<&Region> = regions.iter().filter(|r| r.bytes > 0).collect();
    order.sort_by_key(|r| r.offset); // stable: ties keep list order
    let mut reach: Option<&Region> = None; // the region ending furthest so far
    for b in order {
        match reach {
            Some(a) if b.offset < end(a) => {
                out.push(
                    Violation::new(
                        Rule::Arena,
                        format!(
                            "bytes {}..{} overlap region {} (bytes {}..{}); regions must be disjoint",
                            b.offset,
                            end(b),
                            a.name,
                            a.offset,
                            end(a)
                        ),
                    )
                    .subject(format!("region {}", b.name)),
                );
                if end(b) > end(a) {
                    reach = Some(b);
                }
            }
            _ => reach = Some(b),
        }
    }
}

/// Run-shape sanity (part of rule `arena`: the shape sizes the KV and activation regions).
fn check_shape(plan: &Plan, out: &mut Vec<Violation>) {
    let s = &plan.shape;
    let max_pos = plan.model.arch.max_position_embeddings;
    let mut bad = |m: String| out.push(Violation::new(Rule::Arena, m).subject("shape"));
    if s.prompt_len == 0 {
        bad("shape.prompt_len is 0; prefill needs at least one token".into());
    }
    if s.prompt_len > s.max_seq_len {
        bad(format!(
            "shape.prompt_len = {} exceeds shape.max_seq_len = {}; the KV cache could not hold the prompt",
            s.prompt_len, s.max_seq_len
        ));
    }
    if s.max_seq_len > max_pos {
        bad(format!("shape.max_seq_len = {} exceeds the model's max_position_embeddings = {max_pos}", s.max_seq_len));
    }
    if s.batch == 0 {
        bad("shape.batch is 0; at least one sequence is decoded".into());
    }
}

/// KV cache and activation bytes for the plan's shape, or `None` where a size
/// is zero or so large that the layout arithmetic could overflow.
fn required_sizes(plan: &Plan) -> Option<(u64, u64)> {
    let a = &plan.model.arch;
    let s = &plan.shape;
    let dims =
        [a.hidden_size, a.intermediate_size, a.num_layers, a.num_heads, a.num_kv_heads, a.head_dim, a.vocab_size];
    if dims.iter().any(|&d| d == 0 || d > MAX_DIM) || s.prompt_len == 0 || s.batch == 0 || s.max_seq_len == 0 {
        return None;
    }
    checked_region_bytes(a, plan.model.dtype, s).ok()
}

fn check_singletons(plan: &Plan, out: &mut Vec<Violation>) {
    let sizes = required_sizes(plan);
    let s = &plan.shape;
    let kinds = [
        (RegionKind::KvCache, "kv_cache", sizes.map(|x| x.0), "the KV cache (activations::KvLayout)"),
        (
            RegionKind::Activations,
            "activations",
            sizes.map(|x| x.1),
            "the activation buffers (activations::ActivationLayout)",
        ),
        (
            RegionKind::Workspace,
            "workspace",
            Some(WORKSPACE_BYTES),
            "the GEMM workspace (activations::WORKSPACE_BYTES)",
        ),
    ];
    for (kind, what, need, purpose) in kinds {
        let found: Vec<_> = plan.arena.regions.iter().filter(|r| r.kind == kind).collect();
        if found.len() != 1 {
            let names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
            out.push(
                Violation::new(
                    Rule::Arena,
                    match names.len() {
                        0 => format!("the arena needs exactly one region of kind {what}, found none"),
                        n => format!(
                            "the arena needs exactly one region of kind {what}, found {n}: {}",
                            names.join(", ")
                        ),
                    },
                )
                .subject("arena.regions"),
            );
            continue;
        }
        if let Some(need) = need.filter(|&n| found[0].bytes < n) {
            out.push(
                Violation::new(
                    Rule::Arena,
                    format!(
                        "is {} bytes ({}), but {purpose} for batch {} × max_seq_len {} × prompt_len {} needs {need} \
                         bytes ({}); grow the region",
                        found[0].bytes,
                        fmt_bytes(found[0].bytes),
                        s.batch,
                        s.max_seq_len,
                        s.prompt_len,
                        fmt_bytes(need)
                    ),
                )
                .subject(format!("region {}", found[0].name)),
            );
        }
    }
}

fn check_slot_names(plan: &Plan, out: &mut Vec<Violation>) {
    let n = plan.slot_count();
    let valid = |name: &str| {
        let index = name.strip_prefix("slot.").and_then(|i| i.parse::<u64>().ok());
        index.is_some_and(|i| i < n && slot_region_name(i) == name)
    };
    for r in &plan.arena.regions {
        let subject = format!("region {}", r.name);
        if r.kind == RegionKind::Slot && !valid(&r.name) {
            let last = n.saturating_sub(1);
            out.push(
                Violation::new(
                    Rule::Arena,
                    format!("is a slot region, but with {n} slots they must be named slot.0 … slot.{last}"),
                )
                .subject(subject),
            );
        } else if r.kind != RegionKind::Slot && r.name.starts_with("slot.") {
            out.push(
                Violation::new(
                    Rule::Arena,
                    format!("has kind {:?}, but names slot.N are reserved for regions of kind slot", r.kind),
                )
                .subject(subject),
            );
        }
    }
}

pub(super) fn check_placement(plan: &Plan, index: &Index, out: &mut Vec<Violation>) {
    let blocks = &plan.model.blocks;
    if plan.placements.len() != blocks.len() {
        out.push(
            Violation::new(
                Rule::Placement,
                format!(
                    "plan has {} placements for {} model blocks; it needs one per block, in model order",
                    plan.placements.len(),
                    blocks.len()
                ),
            )
            .subject("placements"),
        );
    }
    let mut users: BTreeMap<&str, &str> = BTreeMap::new(); // resident region -> block
    for (i, (p, b)) in plan.placements.iter().zip(blocks).enumerate() {
        let subject = format!("placements[{i}] (block {})", p.block);
        if p.block != b.name {
            out.push(
                Violation::new(
                    Rule::Placement,
                    format!(
                        "is for block {}, but model block {i} is {}; placements must follow model order",
                        p.block, b.name
                    ),
                )
                .block(&p.block)
                .subject(subject),
            );
            continue;
        }
        let Placement::Resident { region } = &p.placement else { continue };
        let fail = |m: String| Violation::new(Rule::Placement, m).block(&b.name).subject(subject.clone());
        match index.region(region) {
            None => out.push(fail(format!("names region {region}, which the arena does not have"))),
            Some(r) if r.kind != RegionKind::Resident => out.push(fail(format!(
                "names region {region} of kind {:?}; a resident block needs a region of kind resident",
                r.kind
            ))),
            Some(r) if r.bytes < b.bytes => out.push(fail(format!(
                "names region {region} of {} bytes, but the block image is {} bytes ({})",
                r.bytes,
                b.bytes,
                fmt_bytes(b.bytes)
            ))),
            Some(_) => {
                if let Some(other) = users.insert(region, &b.name) {
                    out.push(fail(format!(
                        "names region {region}, which block {other} already uses; each resident block needs its own region"
                    )));
                }
            }
        }
    }
    for r in plan.arena.regions.iter().filter(|r| r.kind == RegionKind::Resident) {
        if !users.contains_key(r.name.as_str()) {
            out.push(
                Violation::new(
                    Rule::Placement,
                    "is a resident region no block is placed in; remove it or place its block there".to_string(),
                )
                .subject(format!("region {}", r.name)),
            );
        }
    }
}
