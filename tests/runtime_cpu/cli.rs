//! End to end, as a user runs it: `djinn-compile` writes a plan for a
//! fixture, `djinn-exec` replays it on the CPU — both through their library
//! entry points (`djinn_compiler::cli::run`, `djinn_runtime::exec::run`),
//! which are exactly what the binaries run — and the text on stdout is the
//! text transformers generated greedily (`reference.json`).

use djinn_runtime::report::Report;

use super::*;

/// `djinn-compile` with `args` (program name excluded) writing `out`.
fn compile_cli(args: &[&str], out: &Path) {
    let argv =
        ["djinn-compile"].iter().chain(args).map(|s| s.to_string()).chain(["-o".into(), out.display().to_string()]);
    let done = djinn_compiler::cli::run(argv).unwrap_or_else(|e| panic!("djinn-compile {args:?}: {e}"));
    assert_eq!(done.written_to.as_deref(), Some(out));
}

/// What `djinn-exec` printed and returned.
struct Exec {
    stdout: String,
    stderr: String,
    report: Report,
}

fn exec_cli(args: &[String]) -> Exec {
    let argv = std::iter::once("djinn-exec".to_string()).chain(args.iter().cloned());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let report =
        djinn_runtime::exec::run(argv, &mut out, &mut err).unwrap_or_else(|e| panic!("djinn-exec {args:?}: {e}"));
    Exec { stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap(), report }
}

/// The generated text against transformers' decode of the same tokens (which
/// drops the leading SentencePiece space that a continuation keeps).
fn assert_reference_text(what: &str, run: &Exec, r: &RefPrompt) {
    assert_eq!(run.report.tokens, r.greedy_ids, "{what}: tokens");
    let text = run.report.text.as_deref().expect("a tokenizer was found, so the report has the text");
    assert_eq!(run.stdout, format!("{text}\n"), "{what}: stdout is the streamed text and a newline");
    assert_eq!(text.trim_start(), r.greedy_text.trim_start(), "{what}: text");
}

/// The README's quick start (relative paths resolve from the repository
/// root, where cargo runs the tests), with `--prompt-len 64` — the default
/// of 512 exceeds the fixture's 256 positions, so djinn-compile refuses
/// without it — and `--json`.
#[test]
fn compile_then_exec_generates_the_reference_greedy_text() {
    let scratch = Scratch::new("cli_quick_start");
    let plan = scratch.0.join("tiny.toml");
    compile_cli(&["--gpu", "t4", "--model", "tests/fixtures/tiny-llama-mha", "--prompt-len", "64"], &plan);
    let json = scratch.0.join("metrics.json");
    let r = reference(MHA).iter().find(|r| r.prompt == "Once upon a time").unwrap();
    let run = exec_cli(&[
        plan.display().to_string(),
        "--weights".into(),
        "tests/fixtures/tiny-llama-mha".into(),
        "--prompt".into(),
        r.prompt.clone(),
        "--max-new-tokens".into(),
        "32".into(),
        "--json".into(),
        json.display().to_string(),
    ]);
    assert_reference_text("quick start", &run, r);
    for line in ["backend", "prompt tokens", "TTFT", "decode", "throughput", "copy lane", "peak host memory"] {
        assert!(run.stderr.contains(line), "the report on stderr lacks {line:?}:\n{}", run.stderr);
    }

    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let number = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("metrics.json: `{k}` is not a number: {m}"));
    assert_eq!(m["backend"], "cpu");
    assert_eq!(number("prompt_tokens"), r.input_ids.len() as f64);
    assert_eq!(number("generated_tokens"), 32.0);
    assert_eq!(m["stop_reason"], "max_new_tokens");
    assert!(number("ttft_ms") > 0.0);
    assert_eq!(
        m["decode_step_ms"].as_array().map(Vec::len),
        Some(31),
        "one entry per decode pass after the first token"
    );
    assert!(number("decode_ms_per_token") > 0.0 && number("tokens_per_s") > 0.0);
    assert_eq!(number("copy_bytes_per_token"), 0.0, "the default T4 budget holds the tiny model: nothing streamed");
    assert!(number("peak_host_rss_bytes") > 0.0);
    for k in ["predicted_ttft_ms", "predicted_decode_ms_per_token", "predicted_copy_bytes_per_token"] {
        number(k);
    }
    assert!(m["peak_method"].is_string());
    let tokens: Vec<u32> = serde_json::from_value(m["tokens"].clone()).unwrap();
    assert_eq!(tokens, r.greedy_ids);
    assert_eq!(m["text"].as_str(), run.report.text.as_deref());
}

/// Every fixture and reference prompt through a plan that streams every
/// layer: the copy lane moves what the plan predicts, and the text is the
/// reference's; the same with `--replay adversarial`.
#[test]
fn stream_all_plans_generate_the_reference_text_for_every_prompt() {
    let scratch = Scratch::new("cli_stream_all");
    for name in FIXTURES {
        let plan = scratch.0.join(format!("{name}.toml"));
        let model = fixture(name).display().to_string();
        compile_cli(&["--gpu", "t4", "--model", &model, "--strategy", "stream-all", "--prompt-len", "32"], &plan);
        for (i, r) in reference(name).iter().enumerate() {
            let mut args = vec![
                plan.display().to_string(),
                "--weights".into(),
                model.clone(),
                "--prompt".into(),
                r.prompt.clone(),
                "--max-new-tokens".into(),
                r.greedy_ids.len().to_string(),
            ];
            if i == 0 {
                args.extend(["--replay".into(), "adversarial".into()]);
            }
            let run = exec_cli(&args);
            assert_reference_text(&format!("{name} {:?}", r.prompt), &run, r);
            let copied = run.report.copy_bytes_per_token.expect("decode passes ran");
            assert!(copied > 0.0, "{name}: every layer streams");
            assert_eq!(copied, run.report.predicted_copy_bytes_per_token as f64, "{name}: bytes copied per token");
        }
    }
}

/// A copy of the MHA fixture in `scratch` (its files free to edit) and a T4
/// plan for it at `--prompt-len 64`.
fn fixture_copy_with_plan(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let dir = scratch.0.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(fixture(MHA)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let plan = scratch.0.join("tiny.toml");
    compile_cli(&["--gpu", "t4", "--model", dir.to_str().unwrap(), "--prompt-len", "64"], &plan);
    (dir, plan)
}

/// The tokens `djinn-exec plan --weights dir args…` generates, or its error as printed.
fn exec_tokens(plan: &Path, dir: &Path, args: &[&str]) -> Result<Vec<u32>, String> {
    let argv = ["djinn-exec".to_string(), plan.display().to_string(), "--weights".into(), dir.display().to_string()]
        .into_iter()
        .chain(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    djinn_runtime::exec::run(argv, &mut out, &mut err).map(|r| r.tokens).map_err(|e| format!("{e:#}"))
}

/// `generation_config.json` as a user's model ships it: its end tokens stop
/// generation beside `config.json`'s, its sampling values apply only when it
/// says `do_sample` and the flags name none, and a malformed one is an error
/// naming the file and the field.
#[test]
fn the_models_generation_config_stops_and_samples_unless_the_flags_say_otherwise() {
    let scratch = Scratch::new("cli_generation_config");
    let (dir, plan) = fixture_copy_with_plan(&scratch);
    let r = reference(MHA).iter().find(|r| r.prompt == "Once upon a time").unwrap();
    let run = |config: &str, extra: &[&str]| {
        std::fs::write(dir.join("generation_config.json"), config).unwrap();
        exec_tokens(&plan, &dir, &[&["--prompt", &r.prompt, "--max-new-tokens", "32"], extra].concat())
    };
    // A generated token that does not occur before it, listed as an end token: generation stops there.
    let at = (3..r.greedy_ids.len()).find(|&i| !r.greedy_ids[..i].contains(&r.greedy_ids[i])).unwrap();
    let stop = format!(r#"{{"eos_token_id": [2, {}]}}"#, r.greedy_ids[at]);
    assert_eq!(run(&stop, &[]).unwrap(), r.greedy_ids[..at]);
    assert_eq!(run(&stop, &["--ignore-eos"]).unwrap(), r.greedy_ids, "--ignore-eos ignores it");
    // The model samples hot, but keeps one token (top_k 1): greedy whatever the temperature.
    let hot = r#"{"do_sample": true, "temperature": 5.0, "top_k": 1}"#;
    assert_eq!(run(hot, &[]).unwrap(), r.greedy_ids);
    // The flags win: no top-k cut at that temperature is not greedy.
    assert_ne!(run(hot, &["--top-k", "0"]).unwrap(), r.greedy_ids);
    // Without do_sample the model's sampling values are not used.
    assert_eq!(run(r#"{"temperature": 5.0}"#, &[]).unwrap(), r.greedy_ids);
    // A repetition penalty applies even when greedy, and changes what is chosen here.
    assert_ne!(run("{}", &["--repetition-penalty", "3"]).unwrap(), r.greedy_ids);
    let e = run(r#"{"top_k": "many"}"#, &[]).unwrap_err();
    assert!(e.contains("generation_config.json") && e.contains("top_k") && e.contains("expected"), "{e}");
    let e = run("{}", &["--min-p", "2"]).unwrap_err();
    assert!(e.contains("--min-p 2") && e.contains("[0, 1]"), "{e}");
}

/// `--stop`: the text ends just before the first stop string, which is not printed,
/// and the report says why it stopped.
#[test]
fn a_stop_string_ends_the_text_before_it() {
    let scratch = Scratch::new("cli_stop_string");
    let plan = scratch.0.join("tiny.toml");
    compile_cli(&["--gpu", "t4", "--model", "tests/fixtures/tiny-llama-mha", "--prompt-len", "64"], &plan);
    let r = reference(MHA).iter().find(|r| r.prompt == "Once upon a time").unwrap();
    let full = r.greedy_text.trim_start().to_string();
    // A stop string from the middle of the reference text (past its first few characters).
    let start = full.char_indices().map(|(i, _)| i).find(|&i| i >= full.len() / 2).unwrap();
    let end = full[start..].char_indices().map(|(i, _)| start + i).nth(3).unwrap_or(full.len());
    let stop = full[start..end].to_string();
    let cut = full.find(&stop).unwrap();
    let run = exec_cli(&[
        plan.display().to_string(),
        "--weights".into(),
        "tests/fixtures/tiny-llama-mha".into(),
        "--prompt".into(),
        r.prompt.clone(),
        "--max-new-tokens".into(),
        "32".into(),
        "--stop".into(),
        stop.clone(),
    ]);
    let text = run.report.text.clone().unwrap();
    assert_eq!(text.trim_start(), &full[..cut], "stop {stop:?}");
    assert_eq!(run.stdout, format!("{text}\n"));
    assert!(!run.stdout.contains(&stop));
    assert_eq!(run.report.stop_reason, "stop_string");
    assert!(run.report.tokens.len() < r.greedy_ids.len() && r.greedy_ids.starts_with(&run.report.tokens));
}

/// `--chat` (with `--system`) renders the model's chat template and runs the
/// result: the same tokens as its text given as ids; a model without a template
/// is an error naming the file.
#[test]
fn chat_messages_go_through_the_models_chat_template() {
    let scratch = Scratch::new("cli_chat");
    let (dir, plan) = fixture_copy_with_plan(&scratch);
    let exec = |extra: &[&str]| exec_tokens(&plan, &dir, &[&["--max-new-tokens", "8"], extra].concat());
    let e = exec(&["--chat", "Hi"]).unwrap_err();
    assert!(e.contains("tokenizer_config.json") && e.contains("no chat_template"), "{e}");
    let config_path = dir.join("tokenizer_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["chat_template"] = Value::String(
        "{% for m in messages %}{% if m.role == 'system' %}<<SYS>> {{ m.content }} <</SYS>> {% else %}{{ bos_token }}[INST] {{ m.content.strip() }} [/INST]{% endif %}{% endfor %}"
            .into(),
    );
    std::fs::write(&config_path, config.to_string()).unwrap();
    let chat = exec(&["--system", "Be brief.", "--chat", " Tell me a story "]).unwrap();
    let tok = djinn_runtime::tokenizer::Tokenizer::load(&dir, None, Some(1)).unwrap();
    let ids = tok.encode_rendered("<<SYS>> Be brief. <</SYS>> <s>[INST] Tell me a story [/INST]").unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == 1).count(), 1, "the template's bos_token is the BOS token, once");
    let ids_file = scratch.0.join("ids.txt");
    std::fs::write(&ids_file, ids.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")).unwrap();
    assert_eq!(chat, exec(&["--prompt-ids", ids_file.to_str().unwrap()]).unwrap());
    let e = exec(&["--system", "Be brief.", "--prompt", "x"]).unwrap_err();
    assert!(e.contains("--system") && e.contains("--chat"), "{e}");
}

/// Llama 3.1's scaled RoPE, which djinn-exec refused by name until its
/// forward pass took the frequency table, now runs (and rotates differently
/// from the unscaled model); a RoPE type core cannot describe (`yarn`, which
/// also scales the attention logits) is refused by name when the plan is
/// compiled, so no plan of it reaches djinn-exec.
#[test]
fn cli_runs_llama3_rope_and_refuses_by_name_a_rope_type_it_cannot_run() {
    let scratch = Scratch::new("cli_unsupported_feature");
    let (dir, unscaled_plan) = fixture_copy_with_plan(&scratch);
    let args = ["--prompt", "Once upon a time", "--max-new-tokens", "8"];
    let unscaled = exec_tokens(&unscaled_plan, &dir, &args).unwrap();
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let llama3 = serde_json::json!({
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64
    });
    config["rope_parameters"] = llama3.clone();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let plan = scratch.0.join("scaled.toml");
    compile_cli(&["--gpu", "t4", "--model", dir.to_str().unwrap(), "--prompt-len", "64"], &plan);
    let scaled = exec_tokens(&plan, &dir, &args).unwrap();
    assert_ne!(scaled, unscaled, "the scaled table rotates differently");

    let mut yarn = llama3;
    yarn["rope_type"] = "yarn".into();
    config["rope_parameters"] = yarn;
    std::fs::write(&config_path, config.to_string()).unwrap();
    let yarn_plan = scratch.0.join("yarn.toml").display().to_string();
    let argv =
        ["djinn-compile", "--gpu", "t4", "--model", dir.to_str().unwrap(), "--prompt-len", "64", "-o", &yarn_plan]
            .map(|s| s.to_string());
    let Err(err) = djinn_compiler::cli::run(argv) else { panic!("a yarn config is refused") };
    let err = format!("{err:#}");
    assert!(err.contains("\"yarn\" is not supported") && err.contains("scales the attention logits"), "{err}");
    // The plan compiled for the llama3 table no longer matches the weights' config: refused too.
    let err = exec_tokens(&plan, &dir, &args).unwrap_err();
    assert!(err.contains("yarn"), "{err}");
}
