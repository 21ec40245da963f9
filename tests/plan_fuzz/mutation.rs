//! Structured mutations of a plan: numbers, indices, slot ids, event and
//! block names changed; steps, regions, placements, blocks and tensors
//! deleted, duplicated, swapped or moved.

use djinn_core::plan::{Lane, Op, Phase, Placement, Plan, RegionKind};
use proptest::prelude::*;

/// Numbers that break things: zero, one, powers of two and their neighbours,
/// the verifier's bounds, the ends of `i64` and `u64`, and anything else.
pub(super) fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            2,
            3,
            7,
            8,
            255,
            256,
            257,
            4096,
            (1 << 24) - 1,
            1 << 24,
            (1 << 24) + 1,
            1 << 32,
            1 << 56,
            1 << 62,
            i64::MAX as u64,
            (i64::MAX as u64) + 1,
            u64::MAX - 1,
            u64::MAX,
        ]),
        0u64..100,
        any::<u64>(),
    ]
}

pub(super) fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![0.0, -0.0, -1.0, 1e-300, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        any::<f64>(),
    ]
}

/// Event names: the ones the goldens use, near misses, and anything.
fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..90).prop_map(|l| format!("ready:layer.{l}")),
        (0u64..90).prop_map(|l| format!("done:layer.{l}")),
        prop::sample::select(vec!["done:embed".to_string(), String::new(), "ready:".into(), "\u{0}".into()]),
        ".{0,12}",
    ]
}

/// A block name: usually one of the model's (by index), sometimes not.
#[derive(Debug, Clone)]
pub(super) enum Name {
    Block(usize),
    Other(String),
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![4 => any::<usize>().prop_map(Name::Block), 1 => "[a-z.0-9]{0,10}".prop_map(Name::Other)]
}

/// One edit of a plan. Indices are taken modulo the length they index.
#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Slot {
        decode: bool,
        at: usize,
        slot: Option<u64>,
    },
    Block {
        decode: bool,
        at: usize,
        name: Name,
    },
    Wait {
        decode: bool,
        at: usize,
        prev: bool,
        event: Option<String>,
    },
    Record {
        decode: bool,
        at: usize,
        event: Option<String>,
    },
    LaneOp {
        decode: bool,
        at: usize,
        lane: bool,
        op: u8,
    },
    Times {
        decode: bool,
        at: usize,
        start: f64,
        end: f64,
    },
    Delete {
        decode: bool,
        at: usize,
    },
    Duplicate {
        decode: bool,
        at: usize,
        to: usize,
    },
    Swap {
        decode: bool,
        a: usize,
        b: usize,
    },
    ToOtherPhase {
        decode: bool,
        at: usize,
        to: usize,
    },
    Region {
        at: usize,
        field: u8,
        value: u64,
    },
    RegionKind {
        at: usize,
        kind: u8,
    },
    RegionName {
        at: usize,
        name: Name,
    },
    DeleteRegion {
        at: usize,
    },
    DuplicateRegion {
        at: usize,
    },
    Placement {
        at: usize,
        streamed: bool,
        region: usize,
    },
    DeletePlacement {
        at: usize,
    },
    Arch {
        field: u8,
        value: u64,
    },
    ArchFloat {
        field: bool,
        value: f64,
    },
    Shape {
        field: u8,
        value: u64,
    },
    Arena {
        field: u8,
        value: u64,
    },
    Tensor {
        block: usize,
        tensor: usize,
        field: u8,
        value: u64,
    },
    BlockBytes {
        block: usize,
        value: u64,
    },
    /// A block's kind set to one of every kind (the fine table's `gate_up` and `down` included).
    BlockKind {
        block: usize,
        kind: u8,
    },
    DeleteBlock {
        at: usize,
    },
    DeleteTensor {
        block: usize,
        at: usize,
    },
    Version {
        value: u32,
    },
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    use Mutation as M;
    let at = || any::<usize>();
    let phase = || any::<bool>();
    prop_oneof![
        (phase(), at(), prop::option::of(number())).prop_map(|(decode, at, slot)| M::Slot { decode, at, slot }),
        (phase(), at(), name()).prop_map(|(decode, at, name)| M::Block { decode, at, name }),
        (at(), 0u8..8).prop_map(|(block, kind)| M::BlockKind { block, kind }),
        (phase(), at(), any::<bool>(), prop::option::of(event())).prop_map(|(decode, at, prev, event)| M::Wait {
            decode,
            at,
            prev,
            event
        }),
        (phase(), at(), prop::option::of(event())).prop_map(|(decode, at, event)| M::Record { decode, at, event }),
        (phase(), at(), any::<bool>(), 0u8..3).prop_map(|(decode, at, lane, op)| M::LaneOp { decode, at, lane, op }),
        (phase(), at(), float(), float()).prop_map(|(decode, at, start, end)| M::Times { decode, at, start, end }),
        (phase(), at()).prop_map(|(decode, at)| M::Delete { decode, at }),
        (phase(), at(), at()).prop_map(|(decode, at, to)| M::Duplicate { decode, at, to }),
        (phase(), at(), at()).prop_map(|(decode, a, b)| M::Swap { decode, a, b }),
        (phase(), at(), at()).prop_map(|(decode, at, to)| M::ToOtherPhase { decode, at, to }),
        (at(), 0u8..2, number()).prop_map(|(at, field, value)| M::Region { at, field, value }),
        (at(), 0u8..5).prop_map(|(at, kind)| M::RegionKind { at, kind }),
        (at(), name()).prop_map(|(at, name)| M::RegionName { at, name }),
        at().prop_map(|at| M::DeleteRegion { at }),
        at().prop_map(|at| M::DuplicateRegion { at }),
        (at(), any::<bool>(), at()).prop_map(|(at, streamed, region)| M::Placement { at, streamed, region }),
        at().prop_map(|at| M::DeletePlacement { at }),
        (0u8..8, number()).prop_map(|(field, value)| M::Arch { field, value }),
        (any::<bool>(), float()).prop_map(|(field, value)| M::ArchFloat { field, value }),
        (0u8..3, number()).prop_map(|(field, value)| M::Shape { field, value }),
        (0u8..3, number()).prop_map(|(field, value)| M::Arena { field, value }),
        (at(), at(), 0u8..4, number()).prop_map(|(block, tensor, field, value)| M::Tensor {
            block,
            tensor,
            field,
            value
        }),
        (at(), number()).prop_map(|(block, value)| M::BlockBytes { block, value }),
        at().prop_map(|at| M::DeleteBlock { at }),
        (at(), at()).prop_map(|(block, at)| M::DeleteTensor { block, at }),
        prop::sample::select(vec![0u32, 1, 3, u32::MAX]).prop_map(|value| M::Version { value }),
    ]
}

fn phase_mut(plan: &mut Plan, decode: bool) -> &mut Phase {
    if decode {
        &mut plan.decode
    } else {
        &mut plan.prefill
    }
}

fn block_name(plan: &Plan, name: &Name) -> String {
    match name {
        Name::Block(i) if !plan.model.blocks.is_empty() => plan.model.blocks[i % plan.model.blocks.len()].name.clone(),
        Name::Block(_) => "embed".into(),
        Name::Other(s) => s.clone(),
    }
}

/// Applies `m` to `plan`; edits of an empty list do nothing.
pub(super) fn apply(plan: &mut Plan, m: &Mutation) {
    use Mutation as M;
    let pick = |len: usize, i: usize| (len > 0).then(|| i % len);
    match m {
        M::Slot { decode, at, slot } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                steps[i].slot = *slot;
            }
        }
        M::Block { decode, at, name } => {
            let name = block_name(plan, name);
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                steps[i].block = name;
            }
        }
        M::Wait { decode, at, prev, event } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                let list = if *prev { &mut steps[i].wait_prev } else { &mut steps[i].wait };
                match event {
                    Some(e) => list.push(e.clone()),
                    None => list.clear(),
                }
            }
        }
        M::Record { decode, at, event } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                steps[i].record = event.clone();
            }
        }
        M::LaneOp { decode, at, lane, op } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                steps[i].lane = if *lane { Lane::Copy } else { Lane::Compute };
                steps[i].op = [Op::Copy, Op::Compute, Op::HostCompute][*op as usize];
            }
        }
        M::Times { decode, at, start, end } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                (steps[i].start_us, steps[i].end_us) = (*start, *end);
            }
        }
        M::Delete { decode, at } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                steps.remove(i);
            }
        }
        M::Duplicate { decode, at, to } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(steps.len(), *at) {
                let s = steps[i].clone();
                steps.insert(to % (steps.len() + 1), s);
            }
        }
        M::Swap { decode, a, b } => {
            let steps = &mut phase_mut(plan, *decode).steps;
            if let (Some(a), Some(b)) = (pick(steps.len(), *a), pick(steps.len(), *b)) {
                steps.swap(a, b);
            }
        }
        M::ToOtherPhase { decode, at, to } => {
            let from = &mut phase_mut(plan, *decode).steps;
            if let Some(i) = pick(from.len(), *at) {
                let s = from.remove(i);
                let into = &mut phase_mut(plan, !*decode).steps;
                into.insert(to % (into.len() + 1), s);
            }
        }
        M::Region { at, field, value } => {
            let regions = &mut plan.arena.regions;
            if let Some(i) = pick(regions.len(), *at) {
                let r = &mut regions[i];
                *[&mut r.offset, &mut r.bytes][*field as usize] = *value;
            }
        }
        M::BlockKind { block, kind } => {
            use djinn_core::model::BlockKind as K;
            let blocks = &mut plan.model.blocks;
            if let Some(i) = pick(blocks.len(), *block) {
                blocks[i].kind =
                    [K::Embedding, K::Layer, K::Attention, K::Mlp, K::GateUp, K::Down, K::FinalNorm, K::LmHead]
                        [*kind as usize];
            }
        }
        M::RegionKind { at, kind } => {
            let regions = &mut plan.arena.regions;
            if let Some(i) = pick(regions.len(), *at) {
                regions[i].kind = [
                    RegionKind::Resident,
                    RegionKind::Slot,
                    RegionKind::KvCache,
                    RegionKind::Activations,
                    RegionKind::Workspace,
                ][*kind as usize];
            }
        }
        M::RegionName { at, name } => {
            let name = match name {
                Name::Block(n) => format!("slot.{}", n % 12),
                Name::Other(s) => s.clone(),
            };
            let regions = &mut plan.arena.regions;
            if let Some(i) = pick(regions.len(), *at) {
                regions[i].name = name;
            }
        }
        M::DeleteRegion { at } => {
            let regions = &mut plan.arena.regions;
            if let Some(i) = pick(regions.len(), *at) {
                regions.remove(i);
            }
        }
        M::DuplicateRegion { at } => {
            let regions = &mut plan.arena.regions;
            if let Some(i) = pick(regions.len(), *at) {
                regions.push(regions[i].clone());
            }
        }
        M::Placement { at, streamed, region } => {
            let names: Vec<String> = plan.arena.regions.iter().map(|r| r.name.clone()).collect();
            let placements = &mut plan.placements;
            if let Some(i) = pick(placements.len(), *at) {
                placements[i].placement = match (streamed, pick(names.len(), *region)) {
                    (true, _) | (false, None) => Placement::Streamed,
                    (false, Some(r)) => Placement::Resident { region: names[r].clone() },
                };
            }
        }
        M::DeletePlacement { at } => {
            if let Some(i) = pick(plan.placements.len(), *at) {
                plan.placements.remove(i);
            }
        }
        M::Arch { field, value } => {
            let a = &mut plan.model.arch;
            let fields = [
                &mut a.hidden_size,
                &mut a.intermediate_size,
                &mut a.num_layers,
                &mut a.num_heads,
                &mut a.num_kv_heads,
                &mut a.head_dim,
                &mut a.vocab_size,
                &mut a.max_position_embeddings,
            ];
            *fields.into_iter().nth(*field as usize).unwrap() = *value;
        }
        M::ArchFloat { field, value } => {
            let a = &mut plan.model.arch;
            *(if *field { &mut a.rope_theta } else { &mut a.rms_norm_eps }) = *value;
        }
        M::Shape { field, value } => {
            let s = &mut plan.shape;
            *[&mut s.prompt_len, &mut s.max_seq_len, &mut s.batch][*field as usize] = *value;
        }
        M::Arena { field, value } => {
            let bytes = [&mut plan.arena.bytes, &mut plan.arena.alignment, &mut plan.budget_bytes];
            *bytes.into_iter().nth(*field as usize).unwrap() = *value;
        }
        M::Tensor { block, tensor, field, value } => {
            let blocks = &mut plan.model.blocks;
            let Some(b) = pick(blocks.len(), *block) else { return };
            let tensors = &mut blocks[b].tensors;
            let Some(t) = pick(tensors.len(), *tensor) else { return };
            let t = &mut tensors[t];
            match field {
                0 => t.offset = *value,
                1 => t.bytes = *value,
                2 => {
                    if let Some(d) = t.shape.first_mut() {
                        *d = *value;
                    }
                }
                _ => t.shape.push(*value),
            }
        }
        M::BlockBytes { block, value } => {
            if let Some(b) = pick(plan.model.blocks.len(), *block) {
                plan.model.blocks[b].bytes = *value;
            }
        }
        M::DeleteBlock { at } => {
            if let Some(b) = pick(plan.model.blocks.len(), *at) {
                plan.model.blocks.remove(b);
            }
        }
        M::DeleteTensor { block, at } => {
            if let Some(b) = pick(plan.model.blocks.len(), *block) {
                let tensors = &mut plan.model.blocks[b].tensors;
                if let Some(t) = pick(tensors.len(), *at) {
                    tensors.remove(t);
                }
            }
        }
        M::Version { value } => plan.format_version = *value,
    }
}
