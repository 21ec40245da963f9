//! A fuzz test of the plan reader and the verifier, the way `djinn-exec`
//! meets a hostile plan file: whatever the bytes, `Plan::from_toml_str` and
//! `verify` return `Ok` or `Err`; they never panic, and every error renders.
//!
//! Three generators, each run for a fixed number of cases from a fixed seed
//! (so CI is deterministic; `DJINN_FUZZ_CASES` and `DJINN_FUZZ_SEED` run more
//! or other cases locally):
//!
//! * arbitrary bytes, alone or spliced into a golden plan's text;
//! * structured mutations of the golden plans in `plans/` as `Plan` values
//!   (numbers, indices, slot ids, event names, block names; steps deleted,
//!   duplicated, swapped or moved between phases), verified directly and,
//!   where the mutated plan is representable in TOML, through its text;
//! * mutations of a golden's TOML tree (any value replaced by one of any type,
//!   keys and array elements deleted or duplicated), which exercise the schema;
//! * bytes spliced into a GPU profile and a `config.json`, whose readers must
//!   likewise return an error naming the file.
//!
//! A panic anywhere fails the case, and proptest shrinks it to a small
//! mutation list. Overflow checks are on in test builds, so arithmetic that
//! wraps fails here too.

use std::sync::OnceLock;

use djinn_core::plan::{Lane, Op, Phase, Placement, Plan, RegionKind};
use djinn_core::verify::verify;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// The golden plans, parsed once: (file name, text, plan).
fn goldens() -> &'static [(String, String, Plan)] {
    static GOLDENS: OnceLock<Vec<(String, String, Plan)>> = OnceLock::new();
    GOLDENS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let plan = Plan::from_toml_str(&text, &name).unwrap_or_else(|e| panic!("{e}"));
                verify(&plan).unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, text, plan)
            })
            .collect()
    })
}

fn config(default_cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("DJINN_FUZZ_CASES").map_or(default_cases, |n| n as u32),
        rng_seed: RngSeed::Fixed(env("DJINN_FUZZ_SEED").unwrap_or(0x0d1e_5eed)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Verifies `plan`: `Ok`, or an error with at least one violation that renders.
fn verify_returns(plan: &Plan) {
    match verify(plan) {
        Ok(()) => {}
        Err(e) => {
            assert!(!e.violations.is_empty());
            assert!(e.to_string().starts_with("the plan is not safe to run"));
        }
    }
}

/// Parses `text` and, if it is a plan, verifies it. Neither may panic.
fn parse_and_verify(text: &str) {
    match Plan::from_toml_str(text, "fuzzed.toml") {
        Ok(plan) => verify_returns(&plan),
        Err(e) => assert!(e.to_string().contains("fuzzed.toml"), "the error does not name the file: {e}"),
    }
}

/// Numbers that break things: zero, one, powers of two and their neighbours,
/// the verifier's bounds, the ends of `i64` and `u64`, and anything else.
fn number() -> impl Strategy<Value = u64> {
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

fn float() -> impl Strategy<Value = f64> {
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
enum Name {
    Block(usize),
    Other(String),
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![4 => any::<usize>().prop_map(Name::Block), 1 => "[a-z.0-9]{0,10}".prop_map(Name::Other)]
}

/// One edit of a plan. Indices are taken modulo the length they index.
#[derive(Debug, Clone)]
enum Mutation {
    Slot { decode: bool, at: usize, slot: Option<u64> },
    Block { decode: bool, at: usize, name: Name },
    Wait { decode: bool, at: usize, prev: bool, event: Option<String> },
    Record { decode: bool, at: usize, event: Option<String> },
    LaneOp { decode: bool, at: usize, lane: bool, op: u8 },
    Times { decode: bool, at: usize, start: f64, end: f64 },
    Delete { decode: bool, at: usize },
    Duplicate { decode: bool, at: usize, to: usize },
    Swap { decode: bool, a: usize, b: usize },
    ToOtherPhase { decode: bool, at: usize, to: usize },
    Region { at: usize, field: u8, value: u64 },
    RegionKind { at: usize, kind: u8 },
    RegionName { at: usize, name: Name },
    DeleteRegion { at: usize },
    DuplicateRegion { at: usize },
    Placement { at: usize, streamed: bool, region: usize },
    DeletePlacement { at: usize },
    Arch { field: u8, value: u64 },
    ArchFloat { field: bool, value: f64 },
    Shape { field: u8, value: u64 },
    Arena { field: u8, value: u64 },
    Tensor { block: usize, tensor: usize, field: u8, value: u64 },
    BlockBytes { block: usize, value: u64 },
    DeleteBlock { at: usize },
    DeleteTensor { block: usize, at: usize },
    Version { value: u32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use Mutation as M;
    let at = || any::<usize>();
    let phase = || any::<bool>();
    prop_oneof![
        (phase(), at(), prop::option::of(number())).prop_map(|(decode, at, slot)| M::Slot { decode, at, slot }),
        (phase(), at(), name()).prop_map(|(decode, at, name)| M::Block { decode, at, name }),
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
fn apply(plan: &mut Plan, m: &Mutation) {
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

/// One edit of a TOML tree: a path of indices (each taken modulo the width
/// of the table or array it indexes) and what to do at its end.
#[derive(Debug, Clone)]
enum TreeEdit {
    Replace(toml::Value),
    Remove,
    Duplicate,
}

fn toml_leaf() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    prop_oneof![
        any::<i64>().prop_map(V::Integer),
        prop::sample::select(vec![0i64, -1, 1, 256, i64::MAX, i64::MIN]).prop_map(V::Integer),
        float().prop_map(V::Float),
        ".{0,8}".prop_map(V::String),
        any::<bool>().prop_map(V::Boolean),
        Just(V::Array(vec![])),
        Just(V::Table(toml::Table::new())),
    ]
}

fn tree_edit() -> impl Strategy<Value = (Vec<usize>, TreeEdit)> {
    let edit = prop_oneof![4 => toml_leaf().prop_map(TreeEdit::Replace), 1 => Just(TreeEdit::Remove), 1 => Just(TreeEdit::Duplicate)];
    (prop::collection::vec(any::<usize>(), 1..6), edit)
}

/// Applies `edit` at the end of `path` in `value` (stopping early at a leaf).
fn edit_tree(value: &mut toml::Value, path: &[usize], edit: &TreeEdit) {
    let Some((&i, rest)) = path.split_first() else { return };
    match value {
        toml::Value::Table(t) if !t.is_empty() => {
            let key = t.keys().nth(i % t.len()).unwrap().clone();
            let is_leaf = !matches!(t[&key], toml::Value::Table(_) | toml::Value::Array(_));
            if rest.is_empty() || is_leaf {
                match edit {
                    TreeEdit::Replace(v) => {
                        t.insert(key, v.clone());
                    }
                    TreeEdit::Remove => {
                        t.remove(&key);
                    }
                    TreeEdit::Duplicate => {
                        let v = t[&key].clone();
                        t.insert(format!("{key}_copy"), v);
                    }
                }
            } else {
                edit_tree(t.get_mut(&key).unwrap(), rest, edit);
            }
        }
        toml::Value::Array(a) if !a.is_empty() => {
            let n = i % a.len();
            let is_leaf = !matches!(a[n], toml::Value::Table(_) | toml::Value::Array(_));
            if rest.is_empty() || is_leaf {
                match edit {
                    TreeEdit::Replace(v) => a[n] = v.clone(),
                    TreeEdit::Remove => {
                        a.remove(n);
                    }
                    TreeEdit::Duplicate => {
                        let v = a[n].clone();
                        a.insert(n, v);
                    }
                }
            } else {
                edit_tree(&mut a[n], rest, edit);
            }
        }
        _ => {}
    }
}

/// Text of a golden with `bytes` written over `len` bytes at `at` (lossily decoded as UTF-8).
fn splice(text: &str, at: usize, len: usize, bytes: &[u8]) -> String {
    let raw = text.as_bytes();
    let at = at % (raw.len() + 1);
    let end = (at + len).min(raw.len());
    let mut out = raw[..at].to_vec();
    out.extend_from_slice(bytes);
    out.extend_from_slice(&raw[end..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes that look like TOML often enough to reach past the first character.
fn tomlish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"[]{}=\"'.,#\n\r\t -+_:0123456789eEinfatrus\\xyz\xc3\xa9\xff\x00".to_vec();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(prop::sample::select(alphabet), 0..512),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in tomlish_bytes(), golden in any::<usize>(), at in any::<usize>(),
                                   len in 0usize..64, alone in any::<bool>()) {
        if alone {
            parse_and_verify(&String::from_utf8_lossy(&bytes));
        } else {
            let g = &goldens()[golden % goldens().len()];
            parse_and_verify(&splice(&g.1, at, len, &bytes));
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_golden_plans_never_panic(golden in any::<usize>(),
                                        mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut plan = goldens()[golden % goldens().len()].2.clone();
        for m in &mutations {
            apply(&mut plan, m);
        }
        verify_returns(&plan);
        // Through the text as well, where TOML can hold the values (its integers are i64).
        if let Ok(text) = toml::to_string(&plan) {
            parse_and_verify(&text);
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn mutated_golden_toml_never_panics(golden in any::<usize>(), edits in prop::collection::vec(tree_edit(), 1..4)) {
        let mut tree: toml::Value = toml::from_str(&goldens()[golden % goldens().len()].1).unwrap();
        for (path, edit) in &edits {
            edit_tree(&mut tree, path, edit);
        }
        if let Ok(text) = toml::to_string(&tree) {
            parse_and_verify(&text);
        }
    }
}

/// A GPU profile's text: a golden's `[gpu]` section.
fn profile_text(golden: usize) -> String {
    let plan = &goldens()[golden % goldens().len()].2;
    toml::to_string(&plan.gpu).unwrap()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn gpu_profiles_and_config_json_never_panic(bytes in tomlish_bytes(), golden in any::<usize>(),
                                                at in any::<usize>(), len in 0usize..32) {
        let text = splice(&profile_text(golden), at, len, &bytes);
        if let Err(e) = djinn_core::gpu::GpuProfile::from_toml_str(&text, "fuzzed.toml") {
            assert!(e.to_string().contains("fuzzed.toml"), "{e}");
        }
        let config = include_str!("fixtures/tiny-llama-gqa/config.json");
        let text = splice(config, at, len, &bytes);
        if let Err(e) = djinn_core::hf::parse_config(&text, "fuzzed.json") {
            assert!(e.to_string().contains("fuzzed.json"), "{e}");
        }
    }
}
