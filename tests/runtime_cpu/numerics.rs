//! The CPU forward pass against transformers' float32 reference.
//!
//! **Tolerance.** The reference runs the fp16 checkpoint's values in float32
//! end to end. The runtime keeps the residual stream and every accumulation
//! and softmax in f32 too, but — like any fp16 inference engine, and as the
//! activation layout of the plan prescribes — rounds the operands and
//! results of the matrix products to f16: per layer `xn`, `q`, `k`, `v`,
//! `attn`, `proj`, `xn`, `gate`, `up`, `silu·up`, `proj` (11 roundings, each
//! off by up to 2^-11 ≈ 4.9e-4 relative, ~2.8e-4 rms), plus the final `xn`.
//! Independent roundings add in quadrature, so over L = 3–4 layers the
//! hidden state is off by ≈ sqrt(11·4+1)·2.8e-4 ≈ 1.9e-3 relative, and a
//! logit — a dot product of that state with an exact weight row — by about
//! that fraction of the logits' scale (|logit| ≲ 3.7 here): a few 1e-3.
//! Measured: max |err| 3.6e-3 over all prompts, both fixtures, prefill and
//! decode logits (mean |err| ≈ 5e-4). We allow `atol 1e-2 + rtol 1e-2·|ref|`,
//! ≈ 3× the measured maximum; a structural bug (RoPE convention, GQA head
//! mapping, KV positions, a missing norm weight) moves logits by 0.1 or more.
//! The newer families' fixtures (hidden 16–32) land inside the same bounds:
//! max |err| ≤ 1.3e-3 for the fp16 ones; the bf16 one (tiny-qwen2, 8× coarser
//! roundings) max 6.5e-3 and mean 1.2e-3, the closest to the bounds.

use djinn_kernels::check::close;
use djinn_runtime::generate::generate;
use djinn_runtime::replay::ReplayOptions;
use djinn_runtime::tokenizer::{TextStream, Tokenizer};

use super::*;

const ATOL: f64 = 1e-2;
const RTOL: f64 = 1e-2;
/// The mean error is bounded too: a bias shared by all logits would hide under the max.
const MEAN_ATOL: f64 = 1.5e-3;

fn check_logits(what: &str, got: &[f32], want: &[f64]) {
    let c = close(what, got, want, ATOL, RTOL).unwrap_or_else(|e| panic!("{e}"));
    let mean = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).sum::<f64>() / want.len() as f64;
    println!("{what}: max |err| {:.2e} at token {}, mean |err| {mean:.2e}", c.max_abs_err, c.at);
    assert!(mean <= MEAN_ATOL, "{what}: mean |err| {mean:.3e} > {MEAN_ATOL:e}");
}

#[test]
fn prefill_and_decode_logits_match_the_float32_reference() {
    for name in FIXTURES {
        let plan = resident_plan(name);
        for r in reference(name) {
            let step = r.decode_check_step;
            let run = run(&plan, name, &r.input_ids, step as u64 + 1, Mode::InOrder, ReplayOptions::default());
            check_logits(&format!("{name} {:?} prefill logits", r.prompt), &run.logits[0], &r.last_logits);
            check_logits(
                &format!("{name} {:?} decode logits at step {step}", r.prompt),
                &run.logits[step],
                &r.step_logits,
            );
        }
    }
}

#[test]
fn greedy_tokens_match_the_reference_for_32_tokens() {
    for name in FIXTURES {
        let plan = resident_plan(name);
        for r in reference(name) {
            let run =
                run(&plan, name, &r.input_ids, r.greedy_ids.len() as u64, Mode::InOrder, ReplayOptions::default());
            assert_eq!(run.tokens, r.greedy_ids, "{name} {:?}", r.prompt);
        }
    }
}

/// The longest reference prompt (32 tokens) through plans whose prefill is
/// sized for 7: it runs as prefill passes of 7, 7, 7, 7 and 4 tokens,
/// each attending over the cache the earlier ones filled; resident, and
/// streamed under adversarial replay (a prefill pass after a prefill pass,
/// which no plan of one prefill exercises).
#[test]
fn a_prompt_longer_than_prompt_len_runs_as_several_prefill_passes() {
    let resident = plan_for(GQA, Strategy::Djinn, None, 7, 256);
    let streamed = plan_for(GQA, Strategy::StreamAll, None, 7, 256);
    let r = reference(GQA).iter().max_by_key(|r| r.input_ids.len()).unwrap();
    assert!(
        r.input_ids.len() > 14 && r.input_ids.len() % 7 != 0,
        "{} tokens: several chunks, the last short",
        r.input_ids.len()
    );
    for (what, plan, mode) in [("resident", &resident, Mode::InOrder), ("stream-all", &streamed, Mode::Adversarial)] {
        let run = run(plan, GQA, &r.input_ids, 32, mode, ReplayOptions::default());
        check_logits(&format!("{GQA} {what} {:?} prefill logits (chunked)", r.prompt), &run.logits[0], &r.last_logits);
        assert_eq!(run.tokens, r.greedy_ids, "{what}");
    }
}

/// The same prompt through a plan of 8-token prefill passes: every pass but
/// the last is full width however far into the sequence it starts, and the
/// plan's `scores` scratch (sized for decode: one row per head over the cache,
/// and the decode partials) is far smaller than a materialised `[heads, 8,
/// pos0 + 8]` of the later passes — prefill attention streams.
#[test]
fn prefill_passes_far_into_the_sequence_are_full_width_without_a_score_scratch() {
    let r = reference(GQA).iter().max_by_key(|r| r.input_ids.len()).unwrap();
    let n = r.input_ids.len() as u64;
    let plan = plan_for(GQA, Strategy::Djinn, None, 8, n + 8);
    let chunks = djinn_runtime::generate::prefill_chunks(&plan, 0, n);
    assert_eq!(chunks.len(), n.div_ceil(8) as usize, "{chunks:?}");
    assert!(chunks[..chunks.len() - 1].iter().all(|&(_, t)| t == 8), "{chunks:?}");
    assert_eq!(chunks.iter().map(|c| c.1).sum::<u64>(), n);
    assert!(chunks.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
    let layout = djinn_core::activations::ActivationLayout::new(&plan.model.arch, plan.model.dtype, &plan.shape);
    let (heads, &(p, t)) = (plan.model.arch.num_heads, chunks.last().unwrap());
    assert!(layout.buffer("scores").elems < heads * t * (p + t), "the scratch could hold the last pass's scores");
    let run = run(&plan, GQA, &r.input_ids, 8, Mode::InOrder, ReplayOptions::default());
    check_logits(&format!("{GQA} {:?} prefill logits (8-token passes)", r.prompt), &run.logits[0], &r.last_logits);
    assert_eq!(run.tokens, r.greedy_ids[..8]);
}

#[test]
fn tokenizer_gives_the_reference_ids_with_bos_exactly_once() {
    for name in FIXTURES {
        let dir = fixture(name);
        let tok = Tokenizer::load(&dir, None, Some(1)).unwrap();
        for r in reference(name) {
            let ids = tok.encode(&r.prompt).unwrap();
            assert_eq!(ids, r.input_ids, "{name} {:?}", r.prompt);
            assert_eq!(ids.iter().filter(|&&t| t == 1).count(), 1);
        }
    }
}

/// Streaming pieces concatenate to the decode of the whole sequence after the
/// prompt — multi-byte characters built from byte-fallback tokens included.
#[test]
fn streamed_text_equals_the_reference_decode() {
    let tok = Tokenizer::load(&fixture(MHA), None, Some(1)).unwrap();
    // <0xE2> <0x96> <0x81> is "▁" (U+2581) in three byte-fallback tokens; 29871 is "▁" (a space).
    let bytes =
        [tok.token_to_id("<0xE2>").unwrap(), tok.token_to_id("<0x96>").unwrap(), tok.token_to_id("<0x81>").unwrap()];
    let mut cases: Vec<(Vec<u32>, Vec<u32>)> =
        FIXTURES.iter().flat_map(|n| reference(n)).map(|r| (r.input_ids.clone(), r.greedy_ids.clone())).collect();
    cases.push((vec![1, 9038], [&bytes[..], &[2501], &bytes[..2], &[263]].concat()));
    for (prompt, gen) in cases {
        let mut stream = TextStream::new(&prompt);
        let mut pieces = Vec::new();
        for &t in &gen {
            pieces.extend(stream.push(&tok, t).unwrap());
        }
        pieces.extend(stream.finish(&tok).unwrap());
        let all = tok.decode(&[&prompt[..], &gen[..]].concat()).unwrap();
        let head = tok.decode(&prompt).unwrap();
        assert_eq!(pieces.concat(), all[head.len()..], "prompt {prompt:?} gen {gen:?}");
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')) || !gen.ends_with(&bytes[..2]));
    }
    for r in reference(MHA) {
        let mut stream = TextStream::new(&r.input_ids);
        let text: String = r.greedy_ids.iter().filter_map(|&t| stream.push(&tok, t).unwrap()).collect();
        assert_eq!(text.trim_start(), r.greedy_text.trim_start());
    }
}

/// A byte-fallback token that turns text already streamed into an invalid
/// sequence (`<0x41>` "A", then `<0x96>`) does not stop the stream: what
/// follows still streams. (tokenizers' own `DecodeStream` fails with
/// `InvalidPrefix` from that token on, which is why `TextStream` stays ours.)
#[test]
fn a_byte_token_that_invalidates_streamed_text_does_not_stop_the_stream() {
    let tok = Tokenizer::load(&fixture(MHA), None, Some(1)).unwrap();
    let (a, b) = (tok.token_to_id("<0x41>").unwrap(), tok.token_to_id("<0x96>").unwrap());
    let mut stream = TextStream::new(&[1, 9038]);
    let pieces: Vec<Option<String>> = [263, a, b, 263, 931].iter().map(|&t| stream.push(&tok, t).unwrap()).collect();
    assert_eq!(pieces[..3], [Some(" a".to_string()), Some("A".to_string()), None]);
    assert!(pieces[3].as_deref().is_some_and(|p| p.ends_with(" a")), "{pieces:?}");
    assert_eq!(pieces[4].as_deref(), Some(" time"));
}

/// The Mistral fixture's window (12 positions) must matter, or its test
/// would pass with full attention: the same weights with `sliding_window:
/// null` in config.json (full attention) give logits the reference rejects,
/// past the window (the long prompt's prefill and the 16th decode step),
/// while inside it (the short prompt's 6 positions) nothing changes.
#[test]
fn the_sliding_window_fixture_fails_its_reference_under_full_attention() {
    let scratch = Scratch::new("window_matters");
    let dir = scratch.copy_fixture(MISTRAL);
    let config_path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["sliding_window"] = Value::Null;
    std::fs::write(&config_path, config.to_string()).unwrap();
    let windowed = resident_plan(MISTRAL);
    let full = plan_for_dir(&dir, Strategy::Djinn, None, 64, 256);
    let window = windowed.model.arch.window_of(0).expect("every Mistral layer has a window");
    assert_eq!(full.model.arch.window_of(0), None);
    for r in reference(MISTRAL) {
        let step = r.decode_check_step;
        let (n, opts) = (step as u64 + 1, ReplayOptions::default());
        let w = run(&windowed, MISTRAL, &r.input_ids, n, Mode::InOrder, opts);
        let f = run_dir(&full, &dir, &r.input_ids, n, Mode::InOrder, opts);
        let off = |got: &[f32], want: &[f64]| close("", got, want, ATOL, RTOL).is_err();
        assert!(!off(&w.logits[step], &r.step_logits), "{:?}: the windowed run matches", r.prompt);
        assert!(off(&f.logits[step], &r.step_logits), "{:?}: full attention past the window must miss", r.prompt);
        let prefill_past_window = r.input_ids.len() as u64 > window;
        assert_eq!(off(&f.logits[0], &r.last_logits), prefill_past_window, "{:?} prefill", r.prompt);
        if !prefill_past_window {
            assert_eq!(w.logits[0], f.logits[0], "{:?}: inside the window the two are the same computation", r.prompt);
        }
    }
}

/// Likewise the Llama 3 fixture's RoPE scaling: with `rope_scaling: null`
/// (the unscaled theta table) the decode-step logits miss the reference.
#[test]
fn the_llama3_fixture_fails_its_reference_with_unscaled_rope() {
    let scratch = Scratch::new("rope_scaling_matters");
    let dir = scratch.copy_fixture(LLAMA3);
    let config_path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(config["rope_scaling"]["rope_type"], "llama3", "the fixture keeps the 4.x form");
    config["rope_scaling"] = Value::Null;
    std::fs::write(&config_path, config.to_string()).unwrap();
    let unscaled = plan_for_dir(&dir, Strategy::Djinn, None, 64, 256);
    assert!(unscaled.model.arch.rope_scaling.is_default());
    for r in reference(LLAMA3) {
        let step = r.decode_check_step;
        let run = run_dir(&unscaled, &dir, &r.input_ids, step as u64 + 1, Mode::InOrder, ReplayOptions::default());
        assert!(close("", &run.logits[step], &r.step_logits, ATOL, RTOL).is_err(), "{:?}", r.prompt);
    }
}

/// Qwen2's `use_sliding_window`, in both config forms, against transformers:
/// the 4.x form (no `layer_types`: layer 0 attends to everything, layers 1
/// and 2, from `max_window_layers` = 1, through a 5-position window) and the
/// 5.x form (`layer_types` slides only the last layer, over the
/// `max_window_layers` of 28 the config also has). Logits and greedy tokens
/// on a resident and a streamed plan (adversarial), so each layer's own
/// window is honoured.
#[test]
fn qwen2_sliding_windows_apply_to_the_layers_either_config_form_names() {
    for (name, windows) in
        [("tiny-qwen2-windowed", [None, Some(5), Some(5)]), ("tiny-qwen2-layer-types", [None, None, Some(5)])]
    {
        let scratch = Scratch::new(name);
        let (dir, refs) = variant(&scratch, name);
        let resident = plan_for_dir(&dir, Strategy::Djinn, None, 64, 256);
        let arch = &resident.model.arch;
        assert_eq!((0..3).map(|l| arch.window_of(l)).collect::<Vec<_>>(), windows, "{name}");
        let streamed = plan_for_dir(&dir, Strategy::StreamAll, None, 64, 256);
        for r in &refs {
            let step = r.decode_check_step;
            for (what, plan, mode) in
                [("resident", &resident, Mode::InOrder), ("stream-all", &streamed, Mode::Adversarial)]
            {
                let n = r.greedy_ids.len() as u64;
                let run = run_dir(plan, &dir, &r.input_ids, n, mode, ReplayOptions::default());
                check_logits(&format!("{name} {what} prefill logits"), &run.logits[0], &r.last_logits);
                check_logits(&format!("{name} {what} logits at step {step}"), &run.logits[step], &r.step_logits);
                assert_eq!(run.tokens, r.greedy_ids, "{name} {what}");
            }
        }
    }
}

/// Sampling through `generate` (the backend's `sample_token`, with the
/// uniform drawn by the loop) chooses the tokens that sampling on the host
/// (`generate_with_logits`: `sample_f32` on the row) does for the same seed:
/// one draw per token either way. Without a penalty `generate` brings no
/// logits back; with one it samples on the host and shows them.
#[test]
fn sampling_through_the_backend_matches_sampling_on_the_host() {
    let name = GQA;
    let plan = resident_plan(name);
    let weights = Weights::open(&fixture(name), &plan).unwrap();
    let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
    let prompt = &reference(name)[0].input_ids;
    let mut b = CpuBackend::new(&plan, &weights).unwrap();
    let greedy = Sampling::greedy();
    for (sampling, penalty) in [
        (Sampling { temperature: 1.0, seed: 1, ..greedy }, false),
        (Sampling { temperature: 0.8, top_p: 0.9, top_k: 20, min_p: 0.02, seed: 2, ..greedy }, false),
        (Sampling { temperature: 1.5, top_p: 0.6, seed: 3, ..greedy }, false),
        (Sampling { temperature: 0.9, repetition_penalty: 1.3, seed: 4, ..greedy }, true),
    ] {
        let opts = GenerateOptions { max_new_tokens: 12, sampling, stop_tokens: vec![] };
        let via_backend = generate(&replay, &mut b, prompt, &opts, |e| {
            assert_eq!(e.logits.is_some(), penalty, "{sampling:?}: logits on the host only under a penalty");
            Ok(Flow::Continue)
        })
        .unwrap();
        let on_host = generate_with_logits(&replay, &mut b, prompt, &opts, |_| Ok(Flow::Continue)).unwrap();
        assert_eq!(via_backend.tokens, on_host.tokens, "{sampling:?}");
        println!("{sampling:?}: {:?}", via_backend.tokens);
    }
}
