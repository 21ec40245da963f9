//! Whole generations on the GPU: greedy tokens and logits against the
//! fixtures' float32 transformers references, on an all-resident, a
//! stream-everything, a partly-streamed and a host-computing plan (identical tokens), against
//! the CPU backend, with `--enforce-budget` and `--trace`, and continued from the KV cache.

use std::path::{Path, PathBuf};

use djinn_compiler::{compile, CompileRequest, Options, Units};
use djinn_core::plan::{Placement, Plan, RunShape, Strategy};
use djinn_kernels::check::close_f32;
use djinn_runtime::backend::Backend;
use djinn_runtime::cpu::CpuBackend;
use djinn_runtime::cuda::{check_libraries, CudaBackend, CudaError, CudaOptions};
use djinn_runtime::generate::{generate, generate_continuing, generate_with_logits, Flow, GenerateOptions, Sampling};
use djinn_runtime::replay::{Replay, ReplayOptions};
use djinn_runtime::weights::Weights;
use serde_json::Value;

use crate::skip::{skip, Skip};

const NEW_TOKENS: u64 = 32;

/// Every fixture: the two Llama 2 ones, and one per newer family (llama3
/// RoPE, Qwen2 biases in bf16, Qwen3 q/k norms with wide heads and an o bias, Mistral's window).
const FIXTURES: [&str; 6] =
    ["tiny-llama-mha", "tiny-llama-gqa", "tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("reference.json")).expect("tests/fixtures/reference.json");
    serde_json::from_str(&text).expect("reference.json is JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("an array").iter().map(|x| x.as_u64().expect("an id") as u32).collect()
}

fn plan(model: &str, strategy: Strategy, budget: Option<u64>) -> Result<Plan, String> {
    plan_of_units(model, strategy, budget, Units::Auto)
}

fn plan_of_units(model: &str, strategy: Strategy, budget: Option<u64>, units: Units) -> Result<Plan, String> {
    let req = CompileRequest {
        gpu: "h100-sxm".into(),
        model: fixture(model).display().to_string(),
        options: Options {
            budget,
            prompt_len: 32,
            max_seq_len: Some(96),
            batch: 1,
            strategy,
            units,
            ..Options::default()
        },
    };
    compile(&req).map(|c| c.plan).map_err(|e| e.to_string())
}

/// The fine table's plans (attention, gate/up and down blocks): every block
/// streamed, budgets a down and a gate/up block short of residency, the
/// MLPs of all but one layer host-computed in decode, and MLP parts split
/// between the device and the host ([`crate::support::split_mlp_plans`]).
fn fine_plans(model: &str, resident: &Plan) -> Vec<(String, Plan)> {
    let fine = resident.model.fine_layers();
    let reserve = djinn_compiler::RUNTIME_RESERVE_BYTES;
    let mut out =
        vec![("fine stream-all".to_string(), plan_of_units(model, Strategy::StreamAll, None, Units::Fine).unwrap())];
    for part in ["layer.0.down", "layer.0.gate_up"] {
        let short = fine.block(part).unwrap().bytes;
        let budget = resident.arena.bytes + reserve - short;
        out.push((
            format!("fine, {part} short"),
            plan_of_units(model, Strategy::Djinn, Some(budget), Units::Fine).unwrap(),
        ));
    }
    let opts = Options {
        budget: None,
        prompt_len: 32,
        max_seq_len: Some(96),
        batch: 1,
        units: Units::Fine,
        ..Options::default()
    };
    out.push((
        "fine host-compute".into(),
        crate::support::host_compute_plan(&fixture(model), "h100-sxm", resident, opts),
    ));
    let shape = RunShape { prompt_len: 32, max_seq_len: 96, batch: 1 };
    out.extend(crate::support::split_mlp_plans(&fixture(model), "h100-sxm", shape));
    for (name, p) in &out {
        let streamed: Vec<&str> =
            p.placements.iter().filter(|b| b.placement == Placement::Streamed).map(|b| b.block.as_str()).collect();
        assert!(
            streamed.iter().any(|b| b.ends_with(".gate_up") || b.ends_with(".down")),
            "{model} {name}: {streamed:?}"
        );
        println!("{model} {name}: {} slots, streamed {}", p.slot_count(), streamed.join(" "));
    }
    out
}

/// A plan whose streamed layers (all but one) run their decode steps on the
/// host CPU, on an H100 profile given a CPU lane.
fn host_compute_plan(model: &str, resident: &Plan) -> Plan {
    let opts = Options { budget: None, prompt_len: 32, max_seq_len: Some(96), batch: 1, ..Options::default() };
    crate::support::host_compute_plan(&fixture(model), "h100-sxm", resident, opts)
}

/// The fixture's plans: all resident, every layer streamed, and (when the
/// solver finds one) a budget that keeps only some layers resident.
fn plans(model: &str) -> Vec<(String, Plan)> {
    let resident = plan(model, Strategy::Djinn, None).unwrap();
    let streamed = plan(model, Strategy::StreamAll, None).unwrap();
    let layer = resident.model.block("layer.0").unwrap().bytes;
    let mut out = vec![("all-resident".to_string(), resident.clone()), ("stream-all".to_string(), streamed)];
    // The largest budget under all-resident (its arena and the executor's reserve) at which
    // the solver streams some but not all layers (or halves of layers).
    let reserve = djinn_compiler::RUNTIME_RESERVE_BYTES;
    let partial = (1..=8u64)
        .filter_map(|q| plan(model, Strategy::Djinn, Some(resident.arena.bytes + reserve - layer * q / 4)).ok())
        .find(|p| {
            let n = p.placements.iter().filter(|b| b.placement == Placement::Streamed).count();
            n > 0 && n < p.model.blocks.iter().filter(|b| b.kind.is_layer_part()).count()
        });
    match partial {
        Some(p) => out.push(("djinn-partial".into(), p)),
        None => println!("{model}: the solver found no partly-streamed plan"),
    }
    out.push(("host-compute".into(), host_compute_plan(model, &resident)));
    for (name, p) in &out {
        let streamed = p.placements.iter().filter(|b| b.placement == Placement::Streamed).count();
        println!("{model} {name}: {} slots, {streamed} of {} blocks streamed", p.slot_count(), p.placements.len());
    }
    out
}

struct Run {
    tokens: Vec<u32>,
    /// Logits of the last prompt position.
    first: Vec<f32>,
    /// Logits after `check_step` generated tokens went through the KV cache.
    step: Vec<f32>,
}

fn run<B: Backend>(plan: &Plan, backend: &mut B, prompt: &[u32], check_step: usize) -> Run {
    let replay = Replay::new(plan, ReplayOptions::default()).unwrap();
    let opts = GenerateOptions { max_new_tokens: NEW_TOKENS, sampling: Sampling::greedy(), stop_tokens: vec![] };
    let (mut first, mut step) = (Vec::new(), Vec::new());
    let g = generate_with_logits(&replay, backend, prompt, &opts, |e| {
        let logits = e.logits.expect("generate_with_logits keeps the logits");
        if e.index == 0 {
            first = logits.to_vec();
        }
        if e.index == check_step {
            step = logits.to_vec();
        }
        Ok(Flow::Continue)
    })
    .unwrap_or_else(|e| panic!("generation failed: {e}"));
    Run { tokens: g.tokens, first, step }
}

/// Greedy generation without the logits: each token the backend's own
/// argmax (on the device, for CUDA), four bytes back per step.
fn greedy_tokens<B: Backend>(plan: &Plan, backend: &mut B, prompt: &[u32]) -> Vec<u32> {
    let replay = Replay::new(plan, ReplayOptions::default()).unwrap();
    let opts = GenerateOptions { max_new_tokens: NEW_TOKENS, sampling: Sampling::greedy(), stop_tokens: vec![] };
    let g = generate(&replay, backend, prompt, &opts, |e| {
        assert!(e.logits.is_none(), "greedy generation brings no logits to the host");
        Ok(Flow::Continue)
    })
    .unwrap_or_else(|e| panic!("greedy generation failed: {e}"));
    g.tokens
}

/// A CUDA backend, or `None` after printing why the test skips.
fn cuda(test: &str, plan: &Plan, weights: &Weights, opts: &CudaOptions) -> Option<CudaBackend> {
    match CudaBackend::new(plan, weights, opts) {
        Ok(b) => Some(b),
        Err(e) if e.is_absence() => {
            skip(test, Skip::NoGpu, e);
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

fn logits_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    match close_f32(what, got, want, tol, tol) {
        Ok(c) => println!("{what}: max |err| {:.3e} at [{}]", c.max_abs_err, c.at),
        Err(e) => panic!("{e}"),
    }
}

/// Logit tolerance (atol and rtol) against the float32 reference: 1e-2 for
/// fp16 models, as the CPU tests allow; bf16 rounds 8× coarser, and the CPU
/// backend's largest error on the bf16 fixture (6.5e-3) is 5× the fp16
/// ones', so 2e-2 there.
fn reference_tolerance(plan: &Plan) -> f64 {
    if plan.model.dtype == djinn_core::Dtype::Bf16 {
        2e-2
    } else {
        1e-2
    }
}

/// Logit tolerance between the CUDA and CPU backends on one plan: 5e-3 for
/// fp16 (both round the same places, in different summation orders), 8×
/// that for bf16's coarser roundings.
fn backend_tolerance(plan: &Plan) -> f64 {
    if plan.model.dtype == djinn_core::Dtype::Bf16 {
        4e-2
    } else {
        5e-3
    }
}

#[test]
fn cuda_generation_matches_the_references_on_resident_and_streamed_plans() {
    const TEST: &str = "cuda_generation_matches_the_references_on_resident_and_streamed_plans";
    let refs = reference();
    for model in FIXTURES {
        let mut per_plan: Vec<(String, Vec<Run>)> = Vec::new();
        for (name, plan) in plans(model) {
            let weights = Weights::open(&fixture(model), &plan).unwrap();
            let Some(mut backend) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
            let mut runs = Vec::new();
            for p in refs[model]["prompts"].as_array().unwrap() {
                let step = p["decode_check_step"].as_u64().unwrap() as usize;
                let r = run(&plan, &mut backend, &ids(&p["input_ids"]), step);
                let tag = format!("{model} {name} {:?}", p["prompt"].as_str().unwrap());
                // fp16 (bf16) weights and activations against float32 transformers.
                let tol = reference_tolerance(&plan);
                logits_close(&format!("{tag} prompt logits"), &r.first, &floats(&p["last_logits"]), tol);
                logits_close(&format!("{tag} logits after {step} tokens"), &r.step, &floats(&p["step_logits"]), tol);
                assert_eq!(r.tokens, ids(&p["greedy_ids"]), "{tag}: greedy tokens differ from transformers'");
                let chosen = greedy_tokens(&plan, &mut backend, &ids(&p["input_ids"]));
                assert_eq!(chosen, r.tokens, "{tag}: greedy tokens chosen by the backend and on the host");
                runs.push(r);
            }
            println!("{model} {name}: {:?}", backend.metrics().unwrap());
            per_plan.push((name, runs));
        }
        let (base, base_runs) = &per_plan[0];
        for (name, runs) in &per_plan[1..] {
            for (a, b) in base_runs.iter().zip(runs) {
                assert_eq!(a.tokens, b.tokens, "{model}: {name} and {base} generate different tokens");
            }
        }
    }
}

/// The fine table on the GPU: streamed gate_up and down blocks through their
/// slots, host-computed pairs (the host lane computes a layer's gate_up then
/// its down in its copy of the activations, handing over `x` alone) and parts
/// split across the bus (a device gate_up then a host down, or the reverse:
/// `gate` crosses too), give the transformers references' greedy tokens and
/// the all-resident plan's.
#[test]
fn cuda_fine_table_plans_match_the_references_and_the_resident_plan() {
    const TEST: &str = "cuda_fine_table_plans_match_the_references_and_the_resident_plan";
    let refs = reference();
    for model in ["tiny-llama-mha", "tiny-llama-gqa"] {
        let resident = plan(model, Strategy::Djinn, None).unwrap();
        let mut per_plan: Vec<(String, Vec<Vec<u32>>)> = Vec::new();
        for (name, plan) in
            std::iter::once(("all-resident".to_string(), resident.clone())).chain(fine_plans(model, &resident))
        {
            let weights = Weights::open(&fixture(model), &plan).unwrap();
            let Some(mut backend) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
            let mut tokens = Vec::new();
            for p in refs[model]["prompts"].as_array().unwrap() {
                let step = p["decode_check_step"].as_u64().unwrap() as usize;
                let r = run(&plan, &mut backend, &ids(&p["input_ids"]), step);
                let tag = format!("{model} {name} {:?}", p["prompt"].as_str().unwrap());
                logits_close(&format!("{tag} prompt logits"), &r.first, &floats(&p["last_logits"]), 1e-2);
                logits_close(&format!("{tag} logits after {step} tokens"), &r.step, &floats(&p["step_logits"]), 1e-2);
                assert_eq!(r.tokens, ids(&p["greedy_ids"]), "{tag}: greedy tokens differ from transformers'");
                tokens.push(r.tokens);
            }
            println!("{model} {name}: {:?}", backend.metrics().unwrap());
            per_plan.push((name, tokens));
        }
        let (base, want) = &per_plan[0];
        for (name, got) in &per_plan[1..] {
            assert_eq!(got, want, "{model}: {name} and {base} generate different tokens");
        }
    }
}

/// The decode step captured once as a CUDA graph and replayed (`graph.rs`)
/// computes what the same ops enqueued one by one compute, bit for bit:
/// every fixture's resident plan, each prompt on one backend (the later ones
/// replay, at other positions, the graph captured on the first), greedy with
/// the logits brought back, greedy on the device, and sampling on the device.
#[test]
fn cuda_decode_graph_replays_what_the_ops_compute_one_by_one() {
    const TEST: &str = "cuda_decode_graph_replays_what_the_ops_compute_one_by_one";
    let refs = reference();
    for model in FIXTURES {
        let plan = plan(model, Strategy::Djinn, None).unwrap();
        let weights = Weights::open(&fixture(model), &plan).unwrap();
        let Some(mut graph) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
        let mut direct =
            cuda(TEST, &plan, &weights, &CudaOptions { graph_off: true, ..CudaOptions::default() }).unwrap();
        let sampling = Sampling { temperature: 0.8, top_p: 0.9, seed: 7, ..Sampling::greedy() };
        let mut generations = 0;
        for p in refs[model]["prompts"].as_array().unwrap() {
            let (prompt, step) = (ids(&p["input_ids"]), p["decode_check_step"].as_u64().unwrap() as usize);
            let tag = format!("{model} {:?}", p["prompt"].as_str().unwrap());
            let (g, d) = (run(&plan, &mut graph, &prompt, step), run(&plan, &mut direct, &prompt, step));
            assert_eq!(g.tokens, d.tokens, "{tag}: the graph's tokens");
            assert!(g.first == d.first && g.step == d.step, "{tag}: the graph's logits differ from op by op");
            assert_eq!(greedy_tokens(&plan, &mut graph, &prompt), g.tokens, "{tag}: the graph's device greedy");
            let (gs, ds) = (
                sampled_tokens(&plan, &mut graph, &prompt, sampling),
                sampled_tokens(&plan, &mut direct, &prompt, sampling),
            );
            assert_eq!(gs, ds, "{tag}: the graph's sampled tokens");
            generations += 3;
        }
        let (mg, md) = (graph.metrics().unwrap(), direct.metrics().unwrap());
        println!("{model}: {} ({} replays); {}", mg.decode_graph, mg.decode_graph_replays, md.decode_graph);
        assert!(mg.decode_graph.starts_with("one CUDA graph of"), "{model}: {}", mg.decode_graph);
        // Each generation's decode passes (one per token after the first), all but the captured one replayed.
        assert_eq!(mg.decode_graph_replays, generations * (NEW_TOKENS - 1) - 1, "{model}");
        assert!(md.decode_graph.starts_with("enqueued op by op"), "{model}: {}", md.decode_graph);
        assert_eq!(md.decode_graph_replays, 0);
    }
}

/// Streamed and host-computing plans cut their decode step into segments
/// between the plan's events and host computes, each captured once as a CUDA
/// graph and replayed (`graph.rs`): they compute what the same ops enqueued
/// one by one compute, bit for bit, on every streamed, partly streamed,
/// host-computing and split-MLP plan of the two Llama fixtures, each prompt on
/// one backend (the later ones replaying at other positions the graphs
/// captured on the first), with the logits brought back and greedy on the device.
#[test]
fn cuda_segment_graphs_replay_what_streamed_and_host_plans_compute_one_by_one() {
    const TEST: &str = "cuda_segment_graphs_replay_what_streamed_and_host_plans_compute_one_by_one";
    let refs = reference();
    for model in ["tiny-llama-mha", "tiny-llama-gqa"] {
        let resident = plan(model, Strategy::Djinn, None).unwrap();
        let streamed = plans(model).into_iter().filter(|(name, _)| name != "all-resident");
        for (name, plan) in streamed.chain(fine_plans(model, &resident)) {
            let weights = Weights::open(&fixture(model), &plan).unwrap();
            let Some(mut graph) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
            let mut direct =
                cuda(TEST, &plan, &weights, &CudaOptions { graph_off: true, ..CudaOptions::default() }).unwrap();
            let mut generations = 0;
            for p in refs[model]["prompts"].as_array().unwrap() {
                let (prompt, step) = (ids(&p["input_ids"]), p["decode_check_step"].as_u64().unwrap() as usize);
                let tag = format!("{model} {name} {:?}", p["prompt"].as_str().unwrap());
                let (g, d) = (run(&plan, &mut graph, &prompt, step), run(&plan, &mut direct, &prompt, step));
                assert_eq!(g.tokens, d.tokens, "{tag}: the graphs' tokens");
                assert!(g.first == d.first && g.step == d.step, "{tag}: the graphs' logits differ from op by op");
                assert_eq!(greedy_tokens(&plan, &mut graph, &prompt), g.tokens, "{tag}: the graphs' device greedy");
                generations += 2;
            }
            let (mg, md) = (graph.metrics().unwrap(), direct.metrics().unwrap());
            println!("{model} {name}: {} ({} replays)", mg.decode_graph, mg.decode_graph_replays);
            assert!(mg.decode_graph.contains("CUDA graph"), "{model} {name}: {}", mg.decode_graph);
            assert!(!mg.decode_graph.contains("not captured"), "{model} {name}: {}", mg.decode_graph);
            assert_eq!(mg.decode_graph_replays, generations * (NEW_TOKENS - 1) - 1, "{model} {name}");
            assert!(md.decode_graph.starts_with("enqueued op by op"), "{model} {name}: {}", md.decode_graph);
        }
    }
}

/// Tokens sampled on the device under `sampling` (no logits to the host).
fn sampled_tokens<B: Backend>(plan: &Plan, backend: &mut B, prompt: &[u32], sampling: Sampling) -> Vec<u32> {
    let replay = Replay::new(plan, ReplayOptions::default()).unwrap();
    let opts = GenerateOptions { max_new_tokens: NEW_TOKENS, sampling, stop_tokens: vec![] };
    let g = generate(&replay, backend, prompt, &opts, |_| Ok(Flow::Continue))
        .unwrap_or_else(|e| panic!("sampled generation failed: {e}"));
    g.tokens
}

#[test]
fn cuda_and_cpu_backends_agree_on_the_same_plan() {
    const TEST: &str = "cuda_and_cpu_backends_agree_on_the_same_plan";
    let refs = reference();
    for (model, strategy) in FIXTURES[1..].iter().flat_map(|&m| [(m, Strategy::Djinn), (m, Strategy::StreamAll)]) {
        let plan = plan(model, strategy, None).unwrap();
        let weights = Weights::open(&fixture(model), &plan).unwrap();
        let Some(mut gpu) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
        let mut cpu = CpuBackend::new(&plan, &weights).unwrap();
        for p in refs[model]["prompts"].as_array().unwrap() {
            let prompt = ids(&p["input_ids"]);
            let (g, c) = (run(&plan, &mut gpu, &prompt, 16), run(&plan, &mut cpu, &prompt, 16));
            let tag = format!("{model} {} {:?}", strategy.name(), p["prompt"].as_str().unwrap());
            let tol = backend_tolerance(&plan);
            logits_close(&format!("{tag} prompt logits cuda vs cpu"), &g.first, &c.first, tol);
            logits_close(&format!("{tag} step logits cuda vs cpu"), &g.step, &c.step, tol);
            assert_eq!(g.tokens, c.tokens, "{tag}: CUDA and CPU tokens differ");
        }
    }
}

#[test]
fn enforce_budget_and_trace_report_a_streamed_run() {
    const TEST: &str = "enforce_budget_and_trace_report_a_streamed_run";
    let model = "tiny-llama-mha";
    let budget = 1u64 << 30;
    let plan = plan(model, Strategy::StreamAll, Some(budget)).unwrap();
    let weights = Weights::open(&fixture(model), &plan).unwrap();
    let trace = std::env::temp_dir().join(format!("djinn-cuda-trace-{}.json", std::process::id()));
    let opts = CudaOptions { enforce_budget: true, trace: Some(trace.clone()), ..CudaOptions::default() };
    let Some(mut backend) = cuda(TEST, &plan, &weights, &opts) else { return };
    // As djinn-exec does: the warm copies at load; the request's prefill skips them and its end issues them again.
    let (warm, warm_bytes) = (plan.warm_steps().len(), plan.warm_bytes());
    assert!(warm == 2 && warm_bytes > 0, "a stream-all plan fills both slots warm");
    let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
    assert_eq!(replay.warm_at_load(&mut backend).unwrap(), warm_bytes);
    let prompt = ids(&reference()[model]["prompts"][0]["input_ids"]);
    let r = run(&plan, &mut backend, &prompt, 16);
    assert_eq!(r.tokens.len() as u64, NEW_TOKENS);
    let m = backend.metrics().unwrap();
    println!("{m}");
    assert!(m.ttft_ms > 0.0 && m.prefill_device_ms > 0.0, "{m:?}");
    assert_eq!(m.decode_tokens, NEW_TOKENS - 1, "{m:?}");
    assert!(m.decode_ms_per_token > 0.0 && m.decode_device_ms_per_token > 0.0, "{m:?}");
    assert!(m.copy_bytes > 0 && m.copy_gbps > 0.0, "a stream-all plan copies every layer: {m:?}");
    assert!(m.decode_copy_busy > 0.0 && m.decode_copy_busy <= 1.0, "{m:?}");
    assert!(m.peak_device_bytes >= plan.arena.bytes && m.peak_device_bytes <= budget, "{m:?}");
    assert!(m.ballast_bytes > 0, "the GPU has more than 1 GiB free, so a ballast was taken: {m:?}");
    assert_eq!(m.warm_copy_bytes, 2 * warm_bytes, "at load and at the request's end: {m:?}");
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let _ = std::fs::remove_file(&trace);
    let spans = t["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").collect::<Vec<_>>();
    let count = |pid: u64, tid: u64| spans.iter().filter(|e| e["pid"] == pid && e["tid"] == tid).count();
    let passes = NEW_TOKENS as usize; // prefill + 31 decode passes
    let steps =
        |lane: &str, phase: &djinn_core::Phase| phase.steps.iter().filter(|s| format!("{:?}", s.lane) == lane).count();
    let want = |lane| steps(lane, &plan.prefill) + (passes - 1) * steps(lane, &plan.decode);
    // Prefill's compute spans are its steps; decode's, its segments' graphs (`graph.rs`), each
    // covering its steps: together every compute step of every pass, once.
    let compute = spans.iter().filter(|e| e["pid"] == 1 && e["tid"] == 2).collect::<Vec<_>>();
    let covered: u64 = compute.iter().map(|e| e["args"]["graph"]["steps"].as_u64().unwrap_or(1)).sum();
    assert_eq!(covered as usize, want("Compute"), "compute steps covered by the measured compute spans");
    let graphs = compute.iter().filter(|e| e["args"]["graph"].is_object()).count();
    assert!(graphs >= passes - 1, "every decode pass traced as its segments' graphs: {graphs} graph spans");
    assert!(m.decode_graph.contains("CUDA graph"), "{}", m.decode_graph);
    // Every copy step once, but the warm ones twice (at load and after the request), outside the passes.
    assert_eq!(count(1, 1), want("Copy") + warm, "measured copy spans");
    let warm_spans = spans.iter().filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("warm copy "))).count();
    assert_eq!(warm_spans, 2 * warm, "warm copies in the trace");
    assert_eq!(count(2, 1), want("Copy") - warm, "predicted copy spans: the warm ones are not in a pass");
    assert_eq!(count(2, 2), want("Compute"), "predicted compute spans");
    assert_eq!(count(1, 3), passes, "pass spans");
}

#[test]
fn an_arena_over_the_enforced_budget_fails_loudly() {
    const TEST: &str = "an_arena_over_the_enforced_budget_fails_loudly";
    let model = "tiny-llama-mha";
    let mut plan = plan(model, Strategy::Djinn, None).unwrap();
    let weights = Weights::open(&fixture(model), &plan).unwrap();
    plan.budget_bytes = plan.arena.bytes / 2; // what a hand-edited plan could claim
    let opts = CudaOptions { enforce_budget: true, ..CudaOptions::default() };
    match CudaBackend::new(&plan, &weights, &opts) {
        Err(e) if e.is_absence() => skip(TEST, Skip::NoGpu, e),
        Err(e @ CudaError::Budget(_)) => println!("{TEST}: refused as expected: {e}"),
        Err(e) => panic!("{TEST}: wrong error: {e}"),
        Ok(_) => {
            panic!("{TEST}: a {}-byte arena was allocated under a {}-byte budget", plan.arena.bytes, plan.budget_bytes)
        }
    }
}

#[test]
fn missing_cuda_libraries_are_an_error_not_a_panic() {
    let Err(why) = check_libraries() else {
        skip("missing_cuda_libraries_are_an_error_not_a_panic", Skip::GpuPresent, "the CUDA libraries are present");
        return;
    };
    let model = "tiny-llama-mha";
    let plan = plan(model, Strategy::Djinn, None).unwrap();
    let weights = Weights::open(&fixture(model), &plan).unwrap();
    let err = CudaBackend::new(&plan, &weights, &CudaOptions::default()).err().expect("no libraries, no backend");
    assert!(err.is_absence(), "{err}");
    assert_eq!(err.to_string(), why.to_string());
    println!("without CUDA: {err}");
}

/// A sequence continued on the backend that holds its first part in the KV
/// cache ([`generate_continuing`], what `djinn-exec --interactive` does between
/// turns) chooses the tokens that prefilling the whole sequence afresh
/// chooses, on every plan (the host-compute one included) and as the CPU
/// backend does; the continuation is long enough that its later prefill
/// passes are shortened to fit the attention scratch.
#[test]
fn cuda_continuing_from_the_kv_cache_matches_a_full_prefill() {
    const TEST: &str = "cuda_continuing_from_the_kv_cache_matches_a_full_prefill";
    let refs = reference();
    let model = "tiny-llama-gqa";
    let prompts: Vec<Vec<u32>> =
        refs[model]["prompts"].as_array().unwrap().iter().map(|p| ids(&p["input_ids"])).collect();
    let opts = GenerateOptions { max_new_tokens: 8, sampling: Sampling::greedy(), stop_tokens: vec![] };
    for (name, plan) in plans(model) {
        let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
        let weights = Weights::open(&fixture(model), &plan).unwrap();
        let Some(mut gpu) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
        let mut cpu = CpuBackend::new(&plan, &weights).unwrap();
        let first = &prompts[0];
        let gen = generate(&replay, &mut gpu, first, &opts, |_| Ok(Flow::Continue)).unwrap();
        // The cached sequence, then more text (later prompts without their BOS), up to 80 positions.
        let mut seq: Vec<u32> = first.iter().chain(&gen.tokens).copied().take(gen.cache_len()).collect();
        for p in &prompts[1..] {
            seq.extend(&p[1..]);
        }
        seq.truncate(80);
        let cached = gen.cache_len();
        assert!(seq.len() - cached > 32, "{name}: the continuation spans several prefill passes");
        let shrunk = djinn_runtime::generate::prefill_chunks(&plan, cached as u64, seq.len() as u64);
        assert!(shrunk.iter().any(|&(_, n)| n < plan.shape.prompt_len), "{name}: {shrunk:?}");
        let continued = generate_continuing(&replay, &mut gpu, &seq, cached, &opts, |_| Ok(Flow::Continue)).unwrap();
        assert_eq!(continued.cached_tokens, cached);
        let fresh = generate(&replay, &mut gpu, &seq, &opts, |_| Ok(Flow::Continue)).unwrap();
        assert_eq!(continued.tokens, fresh.tokens, "{model} {name}: continued vs prefilled whole on the GPU");
        generate(&replay, &mut cpu, first, &opts, |_| Ok(Flow::Continue)).unwrap();
        let on_cpu = generate_continuing(&replay, &mut cpu, &seq, cached, &opts, |_| Ok(Flow::Continue)).unwrap();
        assert_eq!(continued.tokens, on_cpu.tokens, "{model} {name}: continued on the GPU vs on the CPU");
        println!("{model} {name}: {cached} cached, {} prefilled in {shrunk:?}", seq.len() - cached);
    }
}

/// Sampling on the device (`generate` without a repetition penalty: the
/// sampling kernel, four bytes back per token) chooses the tokens that
/// sampling on the host from the same backend's logits does
/// (`generate_with_logits`: the twin), for the same seed, under several
/// settings, on every fixture; and brings no logits back. The CPU backend's
/// tokens are printed beside them (its logits differ from the GPU's in the
/// last bits, so a draw at a boundary may go the other way).
#[test]
fn cuda_sampling_on_the_device_matches_sampling_on_the_host() {
    const TEST: &str = "cuda_sampling_on_the_device_matches_sampling_on_the_host";
    let refs = reference();
    let settings = [
        Sampling { temperature: 1.0, ..Sampling::greedy() },
        Sampling { temperature: 0.8, top_p: 0.9, top_k: 40, min_p: 0.02, seed: 7, ..Sampling::greedy() },
        Sampling { temperature: 1.3, top_p: 0.5, seed: 11, ..Sampling::greedy() },
        Sampling { temperature: 0.7, top_k: 5, seed: 3, ..Sampling::greedy() },
    ];
    for model in FIXTURES {
        let prompt = ids(&refs[model]["prompts"][0]["input_ids"]);
        let plan = plan(model, Strategy::Djinn, None).unwrap();
        let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
        let weights = Weights::open(&fixture(model), &plan).unwrap();
        let Some(mut gpu) = cuda(TEST, &plan, &weights, &CudaOptions::default()) else { return };
        let mut cpu = CpuBackend::new(&plan, &weights).unwrap();
        for sampling in settings {
            let opts = GenerateOptions { max_new_tokens: NEW_TOKENS, sampling, stop_tokens: vec![] };
            let device = generate(&replay, &mut gpu, &prompt, &opts, |e| {
                assert!(e.logits.is_none(), "sampling without a penalty brings no logits to the host");
                Ok(Flow::Continue)
            })
            .unwrap();
            let host = generate_with_logits(&replay, &mut gpu, &prompt, &opts, |_| Ok(Flow::Continue)).unwrap();
            assert_eq!(device.tokens, host.tokens, "{model} {sampling:?}: the kernel vs the twin on the GPU's logits");
            let on_cpu = generate(&replay, &mut cpu, &prompt, &opts, |_| Ok(Flow::Continue)).unwrap();
            let same = device.tokens.iter().zip(&on_cpu.tokens).take_while(|(a, b)| a == b).count();
            println!(
                "{model} T {}: {same} of {} tokens as on the CPU backend",
                sampling.temperature,
                device.tokens.len()
            );
        }
    }
}
