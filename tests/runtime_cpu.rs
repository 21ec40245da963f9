//! Integration tests: runtime_cpu — `djinn-exec`'s CPU backend end to end on
//! the tiny fixtures (written by transformers, with float32 reference
//! logits and greedy tokens in `tests/fixtures/reference.json`), on plans
//! compiled by the compiler library: two Llama 2 ones, and one for each
//! newer family with what it computes differently (Llama 3's scaled RoPE,
//! Qwen2's q/k/v biases, Qwen3's q/k norms, wide heads and o bias, Mistral's sliding
//! window), every test run on each.
//!
//! * [`numerics`]: logits against the reference within a stated tolerance,
//!   greedy tokens identical, the tokenizer's ids (BOS once);
//! * [`replay`]: streaming is bit-identical to residency, adversarial replay
//!   is bit-identical to in-order, and a plan missing a wait is rejected by
//!   the verifier and, forced past it, races under adversarial replay;
//! * [`errors`]: every bad input gets a clear message naming what is wrong;
//! * [`cli`]: `djinn-compile` then `djinn-exec`, through their library entry points;
//! * [`interactive`]: `djinn-exec --interactive` over piped stdin: the history,
//!   the KV cache carried across turns, `/reset`, overflow;
//! * [`warm`]: warm copies between requests and in chunked prompts, bit-identical to residency.

mod cli;
mod errors;
mod interactive;
mod numerics;
mod replay;
mod warm;

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
/// Llama 3.x: llama3 RoPE scaling, grouped-query, tied; a 4.x-form config.json.
pub const LLAMA3: &str = "tiny-llama3";
/// Qwen2.5: q/k/v projection biases, bf16 weights, tied.
pub const QWEN2: &str = "tiny-qwen2";
/// Qwen3: per-head q/k RMSNorm, head_dim 16 with 4 heads over a 32-wide stream, tied, with
/// `attention_bias` (q/k/v and o biases: the fixture that runs an o bias).
pub const QWEN3: &str = "tiny-qwen3";
/// Mistral v0.1: a 12-position sliding window, shorter than a prompt plus its greedy tokens.
pub const MISTRAL: &str = "tiny-mistral";
pub const FIXTURES: [&str; 6] = [MHA, GQA, LLAMA3, QWEN2, QWEN3, MISTRAL];

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

fn reference_json() -> &'static Value {
    static JSON: OnceLock<Value> = OnceLock::new();
    JSON.get_or_init(|| serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap())
}

fn parse_prompts(entry: &Value) -> Vec<RefPrompt> {
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    entry["prompts"]
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
        .collect()
}

/// The reference prompts of fixture `name`.
pub fn reference(name: &str) -> &'static [RefPrompt] {
    static REF: OnceLock<Vec<(String, Vec<RefPrompt>)>> = OnceLock::new();
    let all =
        REF.get_or_init(|| FIXTURES.iter().map(|&f| (f.to_string(), parse_prompts(&reference_json()[f]))).collect());
    &all.iter().find(|(n, _)| n == name).unwrap().1
}

/// A variant of a fixture in `reference.json` (its `base` fixture's weights
/// under a changed config.json; no files of its own): a scratch copy of the
/// base with the variant's `config` keys applied (null deletes a key), and
/// its reference prompts.
pub fn variant(scratch: &Scratch, name: &str) -> (PathBuf, Vec<RefPrompt>) {
    let entry = &reference_json()[name];
    let dir = scratch.copy_fixture(entry["base"].as_str().unwrap());
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, v) in entry["config"].as_object().unwrap() {
        match v {
            Value::Null => config.as_object_mut().unwrap().remove(k),
            v => config.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    std::fs::write(&path, config.to_string()).unwrap();
    (dir, parse_prompts(entry))
}

/// A plan for fixture `name` compiled by the compiler library for a T4.
pub fn plan_for(name: &str, strategy: Strategy, budget: Option<u64>, prompt_len: u64, max_seq_len: u64) -> Plan {
    plan_for_dir(&fixture(name), strategy, budget, prompt_len, max_seq_len)
}

/// [`plan_for`] the model in `dir`.
pub fn plan_for_dir(dir: &Path, strategy: Strategy, budget: Option<u64>, prompt_len: u64, max_seq_len: u64) -> Plan {
    let name = dir.display();
    let req = CompileRequest {
        gpu: "t4".into(),
        model: dir.display().to_string(),
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
    run_dir(plan, &fixture(name), prompt, n, mode, opts)
}

/// [`run`] on the model in `dir`.
pub fn run_dir(plan: &Plan, dir: &Path, prompt: &[u32], n: u64, mode: Mode, opts: ReplayOptions) -> Run {
    let weights = Weights::open(dir, plan).unwrap();
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
