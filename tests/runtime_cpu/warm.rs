//! Warm copies (prefill's leading copies, issued while the device is idle):
//! issued once between requests, skipped by the prefill that follows, issued
//! in place by a prefill that finds the slots cold (the next chunk of a long
//! prompt), and never a different bit from residency, in order or adversarial.

use djinn_core::plan::{PhaseName, Strategy};
use djinn_runtime::backend::{Backend, Pass};
use djinn_runtime::cpu::{AdversarialCpu, CpuBackend};
use djinn_runtime::generate::{generate_with_logits, Flow, GenerateOptions, Sampling};
use djinn_runtime::replay::{Replay, ReplayOptions};
use djinn_runtime::weights::Weights;

use super::*;

/// Greedy logits of `n` tokens after `prompt` on `backend` (which may have served requests before).
fn request<B: Backend>(replay: &Replay, backend: &mut B, prompt: &[u32], n: u64) -> Run {
    let opts = GenerateOptions { max_new_tokens: n, sampling: Sampling::greedy(), stop_tokens: vec![] };
    let mut logits = Vec::new();
    let gen = generate_with_logits(replay, backend, prompt, &opts, |e| {
        logits.push(e.logits.expect("kept").to_vec());
        Ok(Flow::Continue)
    })
    .unwrap();
    Run { logits, tokens: gen.tokens }
}

fn same_bits(what: &str, got: &Run, want: &Run) {
    assert_eq!(got.tokens, want.tokens, "{what}: tokens");
    assert!(got.bits() == want.bits(), "{what}: logits differ");
}

/// Two prompts of the fixture's references, the longer first.
fn prompts(name: &str) -> (Vec<u32>, Vec<u32>) {
    let mut r: Vec<Vec<u32>> = reference(name).iter().map(|r| r.input_ids.clone()).collect();
    r.sort_by_key(|p| std::cmp::Reverse(p.len()));
    (r[0].clone(), r[r.len() - 1].clone())
}

#[test]
fn warm_copies_are_issued_once_between_requests_and_skipped_by_the_next_prefill() {
    for name in [MHA, GQA] {
        let plan = stream_all_plan(name);
        let w = plan.warm_bytes();
        assert!(w > 0 && plan.warm_steps().len() == 2, "{name}: two warm slots");
        let weights = Weights::open(&fixture(name), &plan).unwrap();
        let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
        let (long, _) = prompts(name);
        let pass = Pass { tokens: long.clone(), pos0: 0, phase: PhaseName::Prefill };

        // Cold: the prefill pass issues its warm copies itself, at its head.
        let mut cold = CpuBackend::new(&plan, &weights).unwrap();
        let all = replay.run_pass(&mut cold, &pass).unwrap();
        let cold_logits = replay.logits(&mut cold, PhaseName::Prefill).unwrap();
        // Warm: issued once (a second call finds them issued), then skipped by the pass.
        let mut warm = CpuBackend::new(&plan, &weights).unwrap();
        assert_eq!(replay.warm_at_load(&mut warm).unwrap(), w, "{name}");
        assert_eq!(replay.warm(&mut warm).unwrap(), 0, "{name}: already warm");
        assert_eq!(replay.run_pass(&mut warm, &pass).unwrap(), all - w, "{name}");
        let warm_logits = replay.logits(&mut warm, PhaseName::Prefill).unwrap();
        assert!(
            cold_logits.iter().map(|v| v.to_bits()).eq(warm_logits.iter().map(|v| v.to_bits())),
            "{name}: the same prefill logits cold and warm"
        );
        // The pass left the slots cold: the next warm call copies again.
        assert_eq!(replay.warm(&mut warm).unwrap(), w, "{name}");
    }
}

#[test]
fn requests_back_to_back_on_one_backend_are_bit_identical_to_residency_in_order_and_adversarial() {
    for name in FIXTURES {
        let resident = resident_plan(name);
        let (a, b) = prompts(name);
        let want_a = run(&resident, name, &a, 6, Mode::InOrder, ReplayOptions::default());
        let want_b = run(&resident, name, &b, 6, Mode::InOrder, ReplayOptions::default());
        for plan in [stream_all_plan(name), stream_all_fine_plan(name)] {
            assert!(plan.warm_bytes() > 0, "{name}");
            let weights = Weights::open(&fixture(name), &plan).unwrap();
            let replay = Replay::new(&plan, ReplayOptions::default()).unwrap();
            // Each later request's prefill reads the warm copies the one before issued at its end.
            let mut cpu = CpuBackend::new(&plan, &weights).unwrap();
            replay.warm_at_load(&mut cpu).unwrap();
            let mut adv = AdversarialCpu::new(&plan, &weights).unwrap();
            replay.warm_at_load(&mut adv).unwrap();
            for (i, (p, want)) in [(&a, &want_a), (&b, &want_b), (&a, &want_a)].into_iter().enumerate() {
                let what = format!("{name} ({}), request {i}", plan.model.table().blocks_per_layer());
                same_bits(&format!("{what}, in order"), &request(&replay, &mut cpu, p, 6), want);
                same_bits(&format!("{what}, adversarial"), &request(&replay, &mut adv, p, 6), want);
                // The request ended by issuing them for the next one.
                assert_eq!(replay.warm(&mut cpu).unwrap(), 0, "{what}: warm after the request");
                assert_eq!(replay.warm(&mut adv).unwrap(), 0, "{what}: warm after the request");
            }
        }
    }
}

#[test]
fn a_prompt_in_chunks_issues_the_warm_copies_for_every_chunk_after_the_first() {
    for name in [MHA, QWEN3] {
        let (long, _) = prompts(name);
        let chunk = 4;
        assert!(long.len() > 2 * chunk, "{name}: a prompt of three chunks or more");
        let resident = plan_for(name, Strategy::Djinn, None, chunk as u64, 256);
        assert_eq!(resident.slot_count(), 0);
        let want = run(&resident, name, &long, 4, Mode::InOrder, ReplayOptions::default());
        let streamed = plan_for(name, Strategy::StreamAll, None, chunk as u64, 256);
        assert!(streamed.warm_bytes() > 0, "{name}");
        let weights = Weights::open(&fixture(name), &streamed).unwrap();
        let replay = Replay::new(&streamed, ReplayOptions::default()).unwrap();
        let mut adv = AdversarialCpu::new(&streamed, &weights).unwrap();
        replay.warm_at_load(&mut adv).unwrap();
        same_bits(&format!("{name}: chunked, adversarial"), &request(&replay, &mut adv, &long, 4), &want);
        let got = run(&streamed, name, &long, 4, Mode::InOrder, ReplayOptions::default());
        same_bits(&format!("{name}: chunked, in order, cold at the start"), &got, &want);
    }
}
