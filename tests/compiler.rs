//! Integration tests of `djinn-compile`: the golden plans in `plans/`, their
//! summaries (insta snapshots in `tests/snapshots/`), the verifier on those
//! plans and on corrupted copies, and the command line's errors.
//!
//! The command line is tested through `djinn_compiler::run`, the function the
//! binary's `main` calls with its arguments, so no binary has to be located.
//!
//! Regenerate the golden plans after an intended change with
//! `DJINN_BLESS=1 cargo test --test djinn compiler::goldens`
//! (and accept the summary snapshots with `INSTA_UPDATE=always` or `cargo insta review`).

use std::path::{Path, PathBuf};

use djinn_compiler::{run, CliError, CliOutput, CompileError};
use djinn_core::model::BlockKind;
use djinn_core::plan::{Lane, Op, Placement, Plan};
use djinn_core::verify::verify;

/// Every golden plan: its file in `plans/` and the exact `djinn-compile` arguments that produce it.
const GOLDENS: &[(&str, &[&str])] = &[
    ("l4-llama2-13b.toml", &["--gpu", "l4", "--model", "llama2-13b"]),
    ("l4-llama2-7b.toml", &["--gpu", "l4", "--model", "llama2-7b"]),
    ("h100-sxm-llama2-70b.toml", &["--gpu", "h100-sxm", "--model", "llama2-70b"]),
    ("rtx4090-llama3-8b.toml", &["--gpu", "rtx4090", "--model", "llama3-8b"]),
    ("l4-llama2-13b-sync.toml", &["--gpu", "l4", "--model", "llama2-13b", "--strategy", "sync"]),
    ("l4-llama2-13b-stream-all.toml", &["--gpu", "l4", "--model", "llama2-13b", "--strategy", "stream-all"]),
    ("t4-tinyllama-1.1b.toml", &["--gpu", "t4", "--model", "tinyllama-1.1b", "--budget", "1GiB"]),
    // The families of issue 13: RoPE scaled as Llama 3.1 scales it (resident), Qwen2's q/k/v
    // biases (resident; and 14B on an L4, which streams 18 MLP halves), Qwen3's q/k norms with
    // q_dim 8192 over a 5120 stream (streams 46 of 64 layers).
    ("rtx4090-llama3.1-8b.toml", &["--gpu", "rtx4090", "--model", "llama3.1-8b"]),
    ("rtx4090-qwen2.5-7b.toml", &["--gpu", "rtx4090", "--model", "qwen2.5-7b"]),
    ("l4-qwen2.5-14b.toml", &["--gpu", "l4", "--model", "qwen2.5-14b"]),
    ("l4-qwen3-32b.toml", &["--gpu", "l4", "--model", "qwen3-32b"]),
    // The H200 profile djinn-profile measured (profiles/README.md), at the benchmark's shape and cap.
    ("h200-measured-llama2-13b-22GiB.toml", H200_BENCH),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn plans_dir() -> PathBuf {
    root().join("plans")
}

fn cli(args: &[&str]) -> Result<CliOutput, CliError> {
    run(std::iter::once("djinn-compile").chain(args.iter().copied()))
}

fn cli_err(args: &[&str]) -> String {
    match cli(args) {
        Ok(_) => panic!("djinn-compile {} succeeded", args.join(" ")),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

/// The first differing line of two texts, with three lines of context from each.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    let at = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
    let from = at.saturating_sub(3);
    let show = |lines: &[&str]| {
        lines.iter().enumerate().skip(from).take(7).map(|(i, l)| format!("  {:>6} {l}\n", i + 1)).collect::<String>()
    };
    format!(
        "first difference at line {} ({} lines on disk, {} compiled)\n--- on disk:\n{}+++ compiled:\n{}",
        at + 1,
        w.len(),
        g.len(),
        show(&w),
        show(&g)
    )
}

/// Compiles every golden through the command line and compares it with `plans/`.
/// `DJINN_BLESS=1 cargo test --test djinn compiler::goldens` rewrites them instead.
#[test]
fn goldens() {
    let bless = std::env::var_os("DJINN_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, args) in GOLDENS {
        let out = cli(args).unwrap_or_else(|e| panic!("djinn-compile {}: {e}", args.join(" ")));
        let path = plans_dir().join(file);
        if bless {
            std::fs::create_dir_all(plans_dir()).unwrap();
            std::fs::write(&path, &out.plan_toml).unwrap();
        } else {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != out.plan_toml {
                stale.push(format!(
                    "plans/{file} (djinn-compile {}): {}",
                    args.join(" "),
                    first_difference(&on_disk, &out.plan_toml)
                ));
            }
        }
        let name = format!("summary-{}", file.trim_end_matches(".toml"));
        let description = format!("djinn-compile {}", args.join(" "));
        insta::with_settings!({ description => description, omit_expression => true }, {
            insta::assert_snapshot!(name, out.summary);
        });
    }
    assert!(
        stale.is_empty(),
        "{} golden plan(s) are stale; regenerate with `DJINN_BLESS=1 cargo test --test djinn compiler::goldens`:\n\n{}",
        stale.len(),
        stale.join("\n")
    );
}

#[test]
fn same_inputs_give_byte_identical_plans() {
    let args = ["--gpu", "t4", "--model", "tinyllama-1.1b", "--budget", "1GiB"];
    assert_eq!(cli(&args).unwrap().plan_toml, cli(&args).unwrap().plan_toml);
}

/// Loads every plan file in `plans/`.
fn golden_plans() -> Vec<(String, Plan)> {
    let mut files: Vec<_> = std::fs::read_dir(plans_dir())
        .expect("plans/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut listed: Vec<_> = GOLDENS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed, "every file in plans/ is a golden listed in GOLDENS, and the reverse");
    files.iter().map(|p| (p.display().to_string(), Plan::load(p).unwrap_or_else(|e| panic!("{e}")))).collect()
}

#[test]
fn verifier_accepts_every_golden_plan() {
    for (path, plan) in golden_plans() {
        verify(&plan).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(plan.arena.bytes <= plan.budget_bytes, "{path}");
    }
}

#[test]
fn verifier_rejects_corrupted_goldens() {
    let mut corrupted_waits = 0;
    for (path, plan) in golden_plans() {
        // A streamed compute that no longer waits for its copy.
        if let Some(i) = plan.prefill.steps.iter().position(|s| s.lane == Lane::Compute && s.slot.is_some()) {
            let mut bad = plan.clone();
            bad.prefill.steps[i].wait.clear();
            let err = verify(&bad).expect_err(&format!("{path}: a compute without its copy's wait passes")).to_string();
            assert!(err.contains("rule copy-before-compute broken"), "{path}: {err}");
            assert!(err.contains(&plan.prefill.steps[i].block), "{path}: the message names the block: {err}");
            corrupted_waits += 1;
        }
        // A budget smaller than the arena.
        let mut bad = plan.clone();
        bad.budget_bytes = plan.arena.bytes - 1;
        let err = verify(&bad).expect_err(&format!("{path}: an arena over budget passes")).to_string();
        assert!(err.contains("rule arena broken") && err.contains("exceeds budget_bytes"), "{path}: {err}");
    }
    assert!(corrupted_waits >= 4, "most goldens stream, so most get a corrupted wait");
}

#[test]
fn l4_streams_llama2_13b_through_at_least_two_slots() {
    let out = cli(&["--gpu", "l4", "--model", "llama2-13b"]).unwrap();
    let plan = Plan::from_toml_str(&out.plan_toml, "stdout").unwrap();
    let p = &plan.prediction;
    assert!(p.streamed_blocks > 0 && p.streamed_blocks < 40, "{} of 40 layers stream", p.streamed_blocks);
    assert!(p.slots >= 2);
    assert!(plan.arena.bytes <= plan.gpu.usable_bytes && plan.budget_bytes == plan.gpu.usable_bytes);
    // Prefetching beats the synchronous baseline on the same residency.
    let sync = cli(&["--gpu", "l4", "--model", "llama2-13b", "--strategy", "sync"]).unwrap();
    let sync = Plan::from_toml_str(&sync.plan_toml, "stdout").unwrap();
    assert_eq!(sync.placements, plan.placements);
    assert!(p.decode_ms_per_token < sync.prediction.decode_ms_per_token);
    assert!(p.ttft_ms < sync.prediction.ttft_ms);
}

/// The benchmark's arguments (the measured H200 profile has a `[cpu]` lane).
const H200_BENCH: &[&str] = &[
    "--gpu",
    "profiles/h200-measured.toml",
    "--model",
    "llama2-13b",
    "--budget",
    "22GiB",
    "--prompt-len",
    "512",
    "--max-seq-len",
    "1024",
];

fn host_computes(plan: &Plan) -> Vec<&str> {
    // In prefill the host computes only what it holds (the embedding, the LM head); every streamed
    // layer part runs on the GPU.
    let held: Vec<&str> =
        plan.prefill.steps.iter().filter(|s| s.op == Op::HostCompute).map(|s| s.block.as_str()).collect();
    assert!(held.iter().all(|b| ["embed", "lm_head"].contains(b)), "prefill host-computes {held:?}");
    plan.decode
        .steps
        .iter()
        .filter(|s| s.op == Op::HostCompute && !held.contains(&s.block.as_str()))
        .map(|s| s.block.as_str())
        .collect()
}

#[test]
fn host_compute_is_used_on_a_gpu_with_a_cpu_lane_unless_turned_off() {
    let golden = Plan::load(&plans_dir().join("h200-measured-llama2-13b-22GiB.toml")).unwrap();
    let host = host_computes(&golden);
    assert!(!host.is_empty(), "the h200-measured golden computes some streamed layers on the host");
    for b in &host {
        assert_eq!(golden.placement(b), Some(&djinn_core::plan::Placement::Streamed), "{b}");
    }
    let args_in = |extra: &[&'static str]| -> Plan {
        let mut args = H200_BENCH.to_vec();
        args.extend_from_slice(extra);
        Plan::from_toml_str(&cli(&args).unwrap().plan_toml, "stdout").unwrap()
    };
    // Only MLP blocks run on the host: attention reads the KV cache, which stays on the device.
    for b in &host {
        let kind = golden.model.block(b).map(|b| b.kind).unwrap();
        assert!(kind == BlockKind::Mlp || kind.is_mlp_part(), "{b}: {kind:?}");
    }
    let off = args_in(&["--host-compute", "off"]);
    assert!(host_computes(&off).is_empty());
    assert!(golden.prediction.decode_ms_per_token < off.prediction.decode_ms_per_token);
    assert!(golden.prediction.streamed_bytes_per_token < off.prediction.streamed_bytes_per_token);
    // Whole layers cannot run on the host, so `--units layers` forbids host compute.
    let layers = args_in(&["--units", "layers"]);
    assert!(host_computes(&layers).is_empty() && !layers.model.is_split());
    assert!(golden.prediction.decode_ms_per_token < layers.prediction.decode_ms_per_token);
    assert_eq!(args_in(&["--host-compute", "auto"]), golden);
    // The ablations never compute on the host.
    for strategy in ["sync", "stream-all"] {
        assert!(host_computes(&args_in(&["--strategy", strategy])).is_empty(), "{strategy}");
    }
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--host-compute", "maybe"]);
    assert!(err.contains("--host-compute") && err.contains("auto") && err.contains("off"), "{err}");
    // `all` needs a host to compute on: a preset has no CPU lane.
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-13b", "--host-compute", "all"]);
    assert!(err.contains("--host-compute all") && err.contains("layer.") && err.contains("[cpu]"), "{err}");
    let args: Vec<&str> = H200_BENCH.iter().copied().chain(["--host-compute", "all", "--units", "layers"]).collect();
    let err = cli_err(&args);
    assert!(err.contains("--host-compute all") && err.contains("KV cache") && err.contains("--units split"), "{err}");
    // With one, every streamed MLP block's decode step runs on the host: an MLP half, or a part of
    // a fine-table MLP (its partner may run on the device: the runtime hands `gate` over).
    let all = args_in(&["--host-compute", "all"]);
    let streamed = |b: &str| all.placement(b) == Some(&Placement::Streamed);
    let mlps: Vec<&str> = all
        .model
        .blocks
        .iter()
        .filter(|b| streamed(&b.name) && (b.kind == BlockKind::Mlp || b.kind.is_mlp_part()))
        .map(|b| b.name.as_str())
        .collect();
    assert!(!mlps.is_empty());
    assert_eq!(host_computes(&all), mlps);
}

#[test]
fn plans_of_the_new_families_carry_their_tensors_and_architecture() {
    use djinn_core::model::{ArchFeature, RopeScaling, SlidingWindow, TensorRole};
    let plan = |args: &[&str]| Plan::from_toml_str(&cli(args).unwrap().plan_toml, "stdout").unwrap();
    // Qwen2.5-14B: every attention block holds its three biases, in its image.
    let qwen = plan(&["--gpu", "l4", "--model", "qwen2.5-14b"]);
    let attn: Vec<_> = qwen.model.blocks.iter().filter(|b| b.kind.reads_kv()).collect();
    assert_eq!(attn.len(), 48);
    for b in &attn {
        let (q, k) = (b.tensor(TensorRole::QBias).unwrap(), b.tensor(TensorRole::KBias).unwrap());
        assert_eq!((q.shape.clone(), k.shape.clone()), (vec![5120], vec![1024]), "{}", b.name);
        assert!(b.tensor(TensorRole::VBias).is_some() && b.tensor(TensorRole::OBias).is_none(), "{}", b.name);
        assert!(b.tensors.iter().all(|t| t.offset + t.bytes <= b.bytes), "{}", b.name);
    }
    assert_eq!(qwen.model.arch.features(qwen.shape.max_seq_len), [ArchFeature::QkvBias]);
    // An architecture that disowns the biases its table holds is refused.
    let mut bad = qwen.clone();
    bad.model.arch.qkv_bias = false;
    let err = verify(&bad).unwrap_err().to_string();
    assert!(
        err.contains("rule model-identity broken") && err.contains("qkv_bias is false, but a qwen2 model"),
        "{err}"
    );

    // Qwen3-32B: q_dim 8192 over a 5120 stream sizes the query activations, not the residual.
    let qwen3 = plan(&["--gpu", "l4", "--model", "qwen3-32b"]);
    let shape = qwen3.shape;
    let act = djinn_core::activations::ActivationLayout::new(&qwen3.model.arch, qwen3.model.dtype, &shape);
    assert_eq!((act.buffer("q").elems, act.buffer("x").elems), (512 * 8192, 512 * 5120));
    assert_eq!(qwen3.prediction.activation_bytes, act.bytes);
    assert_eq!(qwen3.model.arch.features(shape.max_seq_len), [ArchFeature::QkNorm]);

    // Llama 3.1's RoPE scaling travels in the plan.
    let llama = plan(&["--gpu", "rtx4090", "--model", "llama3.1-8b"]);
    assert!(matches!(llama.model.arch.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));

    // Mistral v0.1's 4096-position window matters only to a KV cache longer than it.
    let args = ["--gpu", "h100-sxm", "--model", "mistral-7b-v0.1", "--max-seq-len", "8192"];
    let mistral = plan(&args);
    assert_eq!(mistral.model.arch.sliding_window, Some(SlidingWindow { window: 4096, first_layer: 0 }));
    assert_eq!(mistral.model.arch.features(8192), [ArchFeature::SlidingWindow]);
    assert!(mistral.model.arch.features(4096).is_empty());
    // The cache holds every position (the executor decides nothing about windows): 32 layers × K, V × 8192 × 1024 × 2 B.
    assert_eq!(mistral.prediction.kv_cache_bytes, 32 * 2 * 8192 * 1024 * 2);
}

#[test]
fn output_file_holds_the_plan() {
    let dir = scratch_dir("output_file");
    let path = dir.join("plan.toml");
    let out =
        cli(&["--gpu", "t4", "--model", "tinyllama-1.1b", "--budget", "1GiB", "-o", path.to_str().unwrap()]).unwrap();
    assert_eq!(out.written_to.as_deref(), Some(path.as_path()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), out.plan_toml);
}

/// A fresh directory under the system temp dir for one test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("djinn-compiler-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn model_directory_is_named_by_its_last_component() {
    let dir = root().join("tests/fixtures/tiny-llama-gqa");
    let out =
        cli(&["--gpu", "l4", "--model", dir.to_str().unwrap(), "--prompt-len", "16", "--max-seq-len", "64"]).unwrap();
    let plan = Plan::from_toml_str(&out.plan_toml, "stdout").unwrap();
    assert_eq!(plan.model.name, "tiny-llama-gqa");
    assert!(!out.plan_toml.contains(root().to_str().unwrap()), "the plan carries no absolute path");
    assert!(plan.model.arch.tie_word_embeddings && plan.model.arch.num_kv_heads == 2);
    verify(&plan).unwrap();
}

#[test]
fn unknown_gpu_lists_the_presets() {
    let err = cli_err(&["--gpu", "v100", "--model", "llama2-7b"]);
    for name in ["\"v100\"", "l4", "t4", "a10g", "rtx4090", "a100-40gb", "a100-80gb", "h100-pcie", "h100-sxm", "h200"] {
        assert!(err.contains(name), "{name} missing: {err}");
    }
}

#[test]
fn unknown_model_lists_the_presets() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama4-405b"]);
    for name in [
        "\"llama4-405b\"",
        "llama2-7b",
        "llama3.1-70b",
        "llama3.2-3b",
        "mistral-7b-v0.1",
        "qwen2.5-72b",
        "qwen3-32b",
        "tinyllama-1.1b",
    ] {
        assert!(err.contains(name), "{name} missing: {err}");
    }
}

#[test]
fn budget_too_small_names_the_bytes() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-13b", "--budget", "1GiB"]);
    assert!(err.contains("budget 1.00 GiB (1073741824 B) too small: needs at least"), "{err}");
    for part in ["KV cache", "activations", "workspace", "2 slots", "embed/norm/head"] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
}

#[test]
fn bad_budget_string_is_refused() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--budget", "22 parsecs"]);
    assert!(err.contains("22 parsecs") && err.contains("--budget"), "{err}");
    assert!(matches!(cli(&["--gpu", "l4", "--model", "llama2-7b", "--budget", "x"]), Err(CliError::Args(_))));
}

#[test]
fn budget_above_the_gpu_memory_is_refused() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--budget", "80GiB"]);
    assert!(err.contains("exceeds the memory of GPU l4"), "{err}");
}

#[test]
fn prompt_longer_than_the_sequence_is_refused() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--prompt-len", "4096", "--max-seq-len", "1024"]);
    assert!(err.contains("--prompt-len 4096 exceeds --max-seq-len 1024"), "{err}");
    // --max-seq-len is capped at max_position_embeddings (4096 for Llama 2).
    let out = cli(&["--gpu", "h100-sxm", "--model", "llama2-7b", "--max-seq-len", "100000"]).unwrap();
    assert!(out.summary.contains("capped at the model's max_position_embeddings 4096"), "{}", out.summary);
}

#[test]
fn the_kv_cache_is_sized_for_the_run_unless_asked_otherwise() {
    let shape = |args: &[&str]| {
        let mut a = vec!["--gpu", "h100-sxm", "--model", "llama2-7b"];
        a.extend_from_slice(args);
        Plan::from_toml_str(&cli(&a).unwrap().plan_toml, "stdout").unwrap().shape.max_seq_len
    };
    // --prompt-len (512) and --max-new-tokens (512) by default.
    assert_eq!(shape(&[]), 1024);
    assert_eq!(shape(&["--prompt-len", "100", "--max-new-tokens", "28"]), 128);
    assert_eq!(shape(&["--max-seq-len", "2000"]), 2000);
    // The model's maximum only when asked, without a note about capping.
    let out = cli(&["--gpu", "h100-sxm", "--model", "llama2-7b", "--max-seq-len", "max"]).unwrap();
    assert!(!out.summary.contains("capped"), "{}", out.summary);
    assert_eq!(shape(&["--max-seq-len", "max"]), 4096);
    let err = cli_err(&["--gpu", "h100-sxm", "--model", "llama2-7b", "--max-seq-len", "lots"]);
    assert!(err.contains("--max-seq-len") && err.contains("`max`"), "{err}");
}

#[test]
fn a_budget_too_small_says_what_the_kv_cache_costs_and_what_a_shorter_one_would() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-13b", "--budget", "3GiB", "--max-seq-len", "4096"]);
    assert!(err.contains("too small") && err.contains("the KV cache for 4096 positions is 3.12 GiB"), "{err}");
    assert!(
        err.contains("worth") && err.contains("--max-seq-len 640 (--prompt-len and 128 new tokens) needs"),
        "{err}"
    );
}

#[test]
fn malformed_config_json_names_the_file_and_field() {
    let dir = scratch_dir("malformed_config");
    let text = std::fs::read_to_string(root().join("tests/fixtures/tiny-llama-gqa/config.json")).unwrap();
    std::fs::write(dir.join("config.json"), text.replace("\"hidden_size\": 96,", "")).unwrap();
    let err = cli_err(&["--gpu", "l4", "--model", dir.to_str().unwrap()]);
    assert!(err.contains("config.json") && err.contains("hidden_size"), "{err}");
}

#[test]
fn malformed_gpu_profile_names_the_file_and_field() {
    let dir = scratch_dir("malformed_profile");
    let path = dir.join("profile.toml");
    std::fs::write(&path, "name = \"x\"\nsource = \"test\"\nmemory_bytes = 1000\n").unwrap();
    let err = cli_err(&["--gpu", path.to_str().unwrap(), "--model", "llama2-7b"]);
    assert!(err.contains("profile.toml") && err.contains("usable_bytes"), "{err}");
    let err = cli_err(&["--gpu", dir.join("missing.toml").to_str().unwrap(), "--model", "llama2-7b"]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn compile_errors_are_typed() {
    let err = cli(&["--gpu", "l4", "--model", "llama2-7b", "--batch", "0"]).unwrap_err();
    assert!(matches!(err, CliError::Compile(CompileError::Zero { field: "--batch" })), "{err}");
}

/// A copy of `profiles/h200-measured.toml` with `from` replaced by `to`, in a scratch file.
fn edited_profile(test: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("profiles/h200-measured.toml")).unwrap();
    assert!(text.contains(from), "{from:?} not in the profile");
    let path = scratch_dir(test).join("edited.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn a_gpu_profile_with_a_nan_or_zero_rate_is_an_error_naming_file_and_field_not_a_compiler_bug() {
    let cases = [
        (
            "nan_cpu_rate",
            "gemv_f16_gbps_during_copy = ",
            "gemv_f16_gbps_during_copy = nan #",
            "cpu.gemv_f16_gbps_during_copy",
        ),
        (
            "zero_cpu_rate",
            "gemv_f16_gbps_during_copy = ",
            "gemv_f16_gbps_during_copy = 0.0 #",
            "cpu.gemv_f16_gbps_during_copy",
        ),
        ("negative_block_time", "\nus = ", "\nus = -", "block_times[0].us"),
        ("infinite_h2d", "h2d_gbps = ", "h2d_gbps = inf #", "h2d_gbps"),
    ];
    for (test, from, to, field) in cases {
        let path = edited_profile(test, from, to);
        let err = cli_err(&["--gpu", path.to_str().unwrap(), "--model", "llama2-13b", "--budget", "22GiB"]);
        assert!(
            err.contains("edited.toml is invalid") && err.contains(&format!("field `{field}` is ")),
            "{test}: {err}"
        );
        assert!(!err.contains("compiler bug"), "{test}: {err}");
    }
}

#[test]
fn a_gpu_profile_that_is_a_directory_prints_the_cause_once() {
    let dir = scratch_dir("profile_is_a_directory").join("dir.toml");
    std::fs::create_dir_all(&dir).unwrap();
    let err = cli_err(&["--gpu", dir.to_str().unwrap(), "--model", "llama2-7b"]);
    assert!(err.starts_with("cannot read GPU profile ") && err.contains("dir.toml"), "{err}");
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
}

#[test]
fn a_config_json_that_is_a_directory_prints_the_cause_once() {
    let dir = scratch_dir("config_is_a_directory");
    std::fs::create_dir_all(dir.join("config.json")).unwrap();
    let err = cli_err(&["--gpu", "l4", "--model", dir.to_str().unwrap()]);
    assert!(err.starts_with("cannot read config.json at "), "{err}");
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
}

#[test]
fn a_batch_whose_kv_cache_would_wrap_is_an_error_naming_the_flags_not_a_compiler_bug() {
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--batch", "1099511627776"]);
    assert!(err.contains("would not fit a 64-bit byte count") && err.contains("--batch 1099511627776"), "{err}");
    assert!(!err.contains("compiler bug"), "{err}");
}

#[test]
fn a_negative_number_reaches_the_value_parser_which_names_the_flag() {
    let err = cli(&["--gpu", "l4", "--model", "llama2-7b", "--batch", "-1"]).unwrap_err().to_string();
    assert!(err.contains("invalid value '-1' for '--batch <BATCH>'"), "{err}");
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_compiling_and_leaves_the_old_plan_whole() {
    let dir = scratch_dir("unwritable_output");
    let args = |out: &Path| -> Vec<String> {
        ["--gpu", "l4", "--model", "llama2-7b", "-o"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect()
    };
    let run_err = |out: &Path| {
        let a = args(out);
        cli_err(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = run_err(&dir.join("missing/plan.toml"));
    assert!(err.starts_with("cannot write plan ") && err.contains("missing/plan.toml"), "{err}");
    std::fs::create_dir_all(dir.join("a-dir.toml")).unwrap();
    let err = run_err(&dir.join("a-dir.toml"));
    assert!(err.contains("a-dir.toml: it is a directory"), "{err}");
    // A successful write replaces the previous plan in one rename: nothing else is left in the directory.
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, "previous plan").unwrap();
    let a = args(&plan);
    cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    assert!(std::fs::read_to_string(&plan).unwrap().starts_with("format_version = "));
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["a-dir.toml", "plan.toml"]);
}

/// Issue 12's case: Llama-2-13B at 22 GiB on the measured H200 with a 562-position cache. The
/// fine table's slots are sized for a gate/up block (270 MiB) rather than an MLP (405 MiB), so
/// more of the model stays resident; `auto` keeps it, and the summary prices the other tables.
#[test]
fn auto_keeps_the_fine_table_when_its_smaller_slots_pay() {
    let args: Vec<&str> = H200_BENCH.iter().map(|&a| if a == "1024" { "562" } else { a }).collect::<Vec<_>>();
    let auto = cli(&args).unwrap();
    let plan = Plan::from_toml_str(&auto.plan_toml, "stdout").unwrap();
    assert_eq!(plan.model.table(), djinn_core::model::Table::Fine);
    assert!(
        auto.summary.contains("block table: attention, gate/up and down per layer (--units fine)"),
        "{}",
        auto.summary
    );
    for other in ["instead, with --units layers:", "instead, with --units split:"] {
        assert!(auto.summary.contains(other), "{other}\n{}", auto.summary);
    }
    let with = |units: &str| {
        let args: Vec<&str> = args.iter().copied().chain(["--units", units]).collect();
        Plan::from_toml_str(&cli(&args).unwrap().plan_toml, "stdout").unwrap()
    };
    let (split, fine) = (with("split"), with("fine"));
    assert_eq!(fine, plan, "auto's plan is --units fine's");
    assert_eq!(split.model.table(), djinn_core::model::Table::Split);
    // Smaller slots, more weights resident, no slower decode and a faster first token.
    assert!(fine.prediction.slot_bytes < split.prediction.slot_bytes);
    assert!(fine.prediction.resident_bytes > split.prediction.resident_bytes);
    assert!(fine.prediction.decode_ms_per_token <= split.prediction.decode_ms_per_token + 0.005);
    assert!(fine.prediction.ttft_ms < split.prediction.ttft_ms);
    // The host computes fine MLP parts, some whose partner runs on the device (`gate` crosses the bus).
    let host = host_computes(&fine);
    assert!(!host.is_empty() && host.iter().all(|b| b.ends_with(".gate_up") || b.ends_with(".down")), "{host:?}");
    let partner = |b: &str| match b.strip_suffix(".down") {
        Some(layer) => format!("{layer}.gate_up"),
        None => b.replace(".gate_up", ".down"),
    };
    assert!(host.iter().any(|b| !host.contains(&partner(b).as_str())), "{host:?}");
}

/// Without a host lane (the L4 preset) the fine table can stream down blocks alone, through
/// slots a third of an MLP's size.
#[test]
fn the_fine_table_streams_down_blocks_alone_through_small_slots() {
    let plan = Plan::from_toml_str(
        &cli(&["--gpu", "l4", "--model", "llama2-13b", "--units", "fine"]).unwrap().plan_toml,
        "stdout",
    )
    .unwrap();
    let down = plan.model.block("layer.0.down").unwrap().bytes;
    let streamed: Vec<&str> =
        plan.placements.iter().filter(|p| p.placement == Placement::Streamed).map(|p| p.block.as_str()).collect();
    assert!(!streamed.is_empty() && streamed.iter().all(|b| b.ends_with(".down")), "{streamed:?}");
    assert_eq!(plan.prediction.slot_bytes, down);
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-13b", "--units", "finer"]);
    assert!(err.contains("fine") && err.contains("split"), "{err}");
}

/// A model with tied embeddings keeps its one matrix on the device once: with
/// a profile that prices the host lane, the embedding is held in host memory
/// (its rows gathered by the host) and only the LM head is resident, an arena
/// smaller by the table than with the embedding on the device too.
#[test]
fn a_tied_model_keeps_its_table_on_the_device_once() {
    let plan = |extra: &[&str]| {
        let mut args = vec!["--gpu", "profiles/h200-measured.toml", "--model", "llama3.2-3b"];
        args.extend_from_slice(extra);
        Plan::from_toml_str(&cli(&args).unwrap().plan_toml, "stdout").unwrap()
    };
    let tied = plan(&[]);
    assert!(tied.model.arch.tie_word_embeddings);
    assert!(matches!(tied.placement("lm_head"), Some(djinn_core::plan::Placement::Resident { .. })));
    assert!(tied.placement("embed").is_some_and(|p| !matches!(p, djinn_core::plan::Placement::Resident { .. })));
    // Without the host lane the table is on the device twice.
    let twice = plan(&["--host-compute", "off"]);
    assert!(matches!(twice.placement("embed"), Some(djinn_core::plan::Placement::Resident { .. })));
    let table = tied.model.arch.vocab_size * tied.model.arch.hidden_size * 2;
    assert!(twice.arena.bytes >= tied.arena.bytes + table, "{} vs {} + {table}", twice.arena.bytes, tied.arena.bytes);
}

#[test]
fn warm_slots_take_the_first_copies_off_the_ttft_path_unless_turned_off() {
    let with = |extra: &[&'static str]| -> (Plan, String) {
        let mut args = H200_BENCH.to_vec();
        args.extend_from_slice(extra);
        let out = cli(&args).unwrap();
        (Plan::from_toml_str(&out.plan_toml, "stdout").unwrap(), out.summary)
    };
    let (warm, summary) = with(&[]);
    let (cold, cold_summary) = with(&["--warm-slots", "off"]);
    let leading = warm.prefill.steps.iter().take_while(|s| s.warm).count();
    assert_eq!(leading, warm.slot_count() as usize, "one warm copy per slot");
    assert_eq!(warm.prefill.steps.iter().filter(|s| s.warm).count(), leading);
    assert!(cold.prefill.steps.iter().chain(&cold.decode.steps).all(|s| !s.warm));
    // The same residency and decode; only the first copies move off the TTFT path, by their copy time.
    assert_eq!((&warm.placements, &warm.decode), (&cold.placements, &cold.decode));
    let copies: f64 = cold.prefill.steps[..leading].iter().map(|s| s.end_us - s.start_us).sum();
    let saved = (cold.prediction.ttft_ms - warm.prediction.ttft_ms) * 1e3;
    assert!(saved > 0.5 * copies && saved <= copies + 1.0, "saved {saved} µs of {copies} µs of copies");
    assert!(summary.contains("warm slots: 0.down, 2.down (270.00 MiB) copied at load and after each request"));
    assert!(summary.contains("instead, with --warm-slots off: decode"), "{summary}");
    assert!(!cold_summary.contains("warm slots:") && !cold_summary.contains("--warm-slots off"), "{cold_summary}");
    let err = cli_err(&["--gpu", "l4", "--model", "llama2-7b", "--warm-slots", "maybe"]);
    assert!(err.contains("--warm-slots") && err.contains("on") && err.contains("off"), "{err}");
}
