//! Integration tests: runtime_cpu — `djinn-exec`'s CPU backend end to end on
//! the tiny Llama fixtures (written by transformers, with float32 reference
//! logits and greedy tokens in `tests/fixtures/reference.json`), on plans
//! compiled by the compiler library.
//!
//! * [`numerics`]: logits against the reference within a stated tolerance,
//!   greedy tokens identical, the tokenizer's ids (BOS once);
//! * [`replay`]: streaming is bit-identical to residency, adversarial replay
//!   is bit-identical to in-order, and a plan missing a wait is rejected by
//!   the verifier and, forced past it, races under adversarial replay;
//! * [`errors`]: every bad input gets a clear message naming what is wrong;
//! * [`cli`]: `djinn-compile` then `djinn-exec`, through their library entry points.

mod cli;
mod errors;
mod numerics;
mod replay;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use djinn_compiler::{compile, CompileRequest, Options, Units};
use djinn_core::plan::{Plan, Strategy};
use djinn_runtime::cpu::{AdversarialCpu, CpuBackend};
use djinn_runtime::generate::{generate_with_logits, Flow, GenerateOptions, Sampling};
use djinn_runtime::replay::{Replay, ReplayOptions};
use djinn_runtime::weights::Weights;
use serde_json::Value;

pub const MHA: &str = "tiny-llama-mha";
pub const GQA: &str = "tiny-llama-gqa";
pub const FIXTURES: [&str; 2] = [MHA, GQA];

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// One prompt of `reference.json`.
pub struct RefPrompt {
    pub prompt: String,
    pub input_ids: Vec<u32>,
    pub last_logits: Vec<f64>,
    /// Logits predicting greedy token `decode_check_step` (after that many went through the KV cache).
    pub decode_check_step: usize,
    pub step_logits: Vec<f64>,
    pub greedy_ids: Vec<u32>,
    pub greedy_text: String,
}

/// The reference prompts of fixture `name`.
pub fn reference(name: &str) -> &'static [RefPrompt] {
    static REF: OnceLock<Vec<(String, Vec<RefPrompt>)>> = OnceLock::new();
    let all = REF.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("reference.json")).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
        FIXTURES
            .iter()
            .map(|&f| {
                let prompts = json[f]["prompts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| RefPrompt {
                        prompt: p["prompt"].as_str().unwrap().to_string(),
                        input_ids: ids(&p["input_ids"]),
                        last_logits: floats(&p["last_logits"]),
                        decode_check_step: p["decode_check_step"].as_u64().unwrap() as usize,
                        step_logits: floats(&p["step_logits"]),
                        greedy_ids: ids(&p["greedy_ids"]),
                        greedy_text: p["greedy_text"].as_str().unwrap().to_string(),
                    })
                    .collect();
                (f.to_string(), prompts)
            })
            .collect()
    });
    &all.iter().find(|(n, _)| n == name).unwrap().1
}

/// A plan for fixture `name` compiled by the compiler library for a T4.
pub fn plan_for(name: &str, strategy: Strategy, budget: Option<u64>, prompt_len: u64, max_seq_len: u64) -> Plan {
    let req = CompileRequest {
        gpu: "t4".into(),
        model: fixture(name).display().to_string(),
        options: Options {
            budget,
            prompt_len,
            max_seq_len: Some(max_seq_len),
            batch: 1,
            strategy,
            // Budgets here are cut from arena sizes; the CPU backend holds nothing outside the arena.
            runtime_reserve: 0,
            ..Options::default()
        },
    };
    compile(&req).unwrap_or_else(|e| panic!("compiling {name} ({strategy:?}, budget {budget:?}): {e}")).plan
}

/// All blocks resident.
pub fn resident_plan(name: &str) -> Plan {
    let plan = plan_for(name, Strategy::Djinn, None, 64, 256);
    assert_eq!(plan.slot_count(), 0, "the default T4 budget holds the tiny model whole");
    plan
}

/// Every layer streamed.
pub fn stream_all_plan(name: &str) -> Plan {
    plan_with_units(name, Strategy::StreamAll, Units::Layers)
}

/// Every layer's attention and MLP half streamed through two slots.
pub fn stream_all_split_plan(name: &str) -> Plan {
    plan_with_units(name, Strategy::StreamAll, Units::Split)
}

/// Every layer's attention, gate/up and down block streamed through two slots.
pub fn stream_all_fine_plan(name: &str) -> Plan {
    plan_with_units(name, Strategy::StreamAll, Units::Fine)
}

/// A `djinn` plan of the fine table at a budget `short` bytes below the
/// all-resident one: some blocks resident, some streamed.
pub fn fine_plan_short_by(name: &str, short: u64) -> Plan {
    let budget = resident_plan(name).arena.bytes - short;
    let req = CompileRequest {
        gpu: "t4".into(),
        model: fixture(name).display().to_string(),
        options: Options {
            budget: Some(budget),
            prompt_len: 64,
            max_seq_len: Some(256),
            units: Units::Fine,
            runtime_reserve: 0,
            ..Options::default()
        },
    };
    compile(&req).unwrap_or_else(|e| panic!("compiling {name} (fine, budget {budget}): {e}")).plan
}

fn plan_with_units(name: &str, strategy: Strategy, units: Units) -> Plan {
    let req = CompileRequest {
        gpu: "t4".into(),
        model: fixture(name).display().to_string(),
        options: Options {
            prompt_len: 64,
            max_seq_len: Some(256),
            strategy,
            units,
            runtime_reserve: 0,
            ..Options::default()
        },
    };
    compile(&req).unwrap_or_else(|e| panic!("compiling {name} ({strategy:?}, {units:?}): {e}")).plan
}

/// A `djinn` plan whose streamed layers (all but one) run their decode steps
/// on the host CPU, on a T4 given a CPU lane.
pub fn host_compute_plan(name: &str) -> Plan {
    let opts = Options { budget: None, prompt_len: 64, max_seq_len: Some(256), batch: 1, ..Options::default() };
    crate::support::host_compute_plan(&fixture(name), "t4", &resident_plan(name), opts)
}

/// [`host_compute_plan`] of the fine table: the gate/up and down blocks of
/// all but one layer streamed and computed on the host in decode.
pub fn fine_host_compute_plan(name: &str) -> Plan {
    let opts = Options {
        budget: None,
        prompt_len: 64,
        max_seq_len: Some(256),
        batch: 1,
        units: Units::Fine,
        ..Options::default()
    };
    crate::support::host_compute_plan(&fixture(name), "t4", &resident_plan(name), opts)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    InOrder,
    Adversarial,
}

/// What a greedy run produced: the logits behind each emitted token, and the tokens.
pub struct Run {
    pub logits: Vec<Vec<f32>>,
    pub tokens: Vec<u32>,
}

impl Run {
    /// The logits as bits, for bit-identity checks (NaN payloads included).
    pub fn bits(&self) -> Vec<Vec<u32>> {
        self.logits.iter().map(|l| l.iter().map(|v| v.to_bits()).collect()).collect()
    }
}

/// Greedy generation of `n` tokens (EOS ignored) on the CPU backend.
pub fn run(plan: &Plan, name: &str, prompt: &[u32], n: u64, mode: Mode, opts: ReplayOptions) -> Run {
    let weights = Weights::open(&fixture(name), plan).unwrap();
    let replay = Replay::new(plan, opts).unwrap();
    let gen_opts = GenerateOptions { max_new_tokens: n, sampling: Sampling::greedy(), stop_tokens: vec![] };
    let mut logits = Vec::new();
    let gen = match mode {
        Mode::InOrder => {
            let mut b = CpuBackend::new(plan, &weights).unwrap();
            generate_with_logits(&replay, &mut b, prompt, &gen_opts, |e| {
                let _: () = logits.push(e.logits.expect("kept").to_vec());
                Ok(Flow::Continue)
            })
        }
        Mode::Adversarial => {
            let mut b = AdversarialCpu::new(plan, &weights).unwrap();
            generate_with_logits(&replay, &mut b, prompt, &gen_opts, |e| {
                let _: () = logits.push(e.logits.expect("kept").to_vec());
                Ok(Flow::Continue)
            })
        }
    }
    .unwrap();
    Run { logits, tokens: gen.tokens }
}

/// A scratch directory under the system temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("djinn-runtime-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A copy of fixture `name` inside the scratch directory.
    pub fn copy_fixture(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
