//! A fuzz test of the plan reader and the verifier, the way `djinn-exec`
//! meets a hostile plan file: whatever the bytes, `Plan::from_toml_str` and
//! `verify` return `Ok` or `Err`; they never panic, and every error renders.
//!
//! Four generators, each run for a fixed number of cases from a fixed seed
//! (so CI is deterministic; `DJINN_FUZZ_CASES` and `DJINN_FUZZ_SEED` run more
//! or other cases locally):
//!
//! * arbitrary bytes, alone or spliced into a golden plan's text;
//! * structured mutations of the golden plans in `plans/` as `Plan` values
//!   (module `mutation`), verified directly and, where the mutated plan is
//!   representable in TOML, through its text;
//! * edits of a golden's TOML tree (module `tree`), which exercise the schema;
//! * bytes spliced into a GPU profile and a `config.json`, whose readers must
//!   likewise return an error naming the file.
//!
//! A panic anywhere fails the case, and proptest shrinks it to a small
//! mutation list. Overflow checks are on in test builds, so arithmetic that
//! wraps fails here too.

mod mutation;
mod tree;

use std::sync::OnceLock;

use djinn_core::plan::Plan;
use djinn_core::verify::verify;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use mutation::{apply, mutation};
use tree::{edit_tree, tree_edit};

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

/// Every golden, with any of its first blocks (or its last) given any other kind, is rejected by
/// rule `model-identity`: in particular a table mixing whole layers, halves and the fine table's
/// `gate_up` / `down` parts.
#[test]
fn a_golden_with_a_block_of_another_kind_breaks_model_identity() {
    use djinn_core::model::BlockKind as K;
    use djinn_core::verify::Rule;
    let kinds = [K::Embedding, K::Layer, K::Attention, K::Mlp, K::GateUp, K::Down, K::FinalNorm, K::LmHead];
    for (name, _, plan) in goldens() {
        let n = plan.model.blocks.len();
        for b in (0..7.min(n)).chain([n - 1]) {
            for &kind in kinds.iter().filter(|&&k| k != plan.model.blocks[b].kind) {
                let mut bad = plan.clone();
                bad.model.blocks[b].kind = kind;
                let err = verify(&bad).expect_err("a block of the wrong kind");
                assert!(err.broke(Rule::ModelIdentity), "{name}: block {b} as {kind:?}: {err}");
            }
        }
    }
}
