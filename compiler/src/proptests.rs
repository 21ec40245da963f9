//! Property tests over random small Llama architectures, shapes, budgets,
//! strategies and GPUs (the L4 preset, optionally with a slow PCIe link and a
//! host CPU lane, so that host compute is sometimes chosen), with the real
//! cost model: every plan the compiler emits passes the verifier and fits its
//! budget, more budget never means fewer resident bytes, and only djinn on a
//! GPU with a CPU lane ever computes on the host.

use djinn_core::gpu::{CpuLane, GpuProfile};
use djinn_core::model::{Architecture, Dtype, ModelSpec};
use djinn_core::plan::{Op, Plan, Strategy as PlanStrategy};
use proptest::prelude::*;

use crate::{compile_model, CompileError, Options};

fn arch() -> impl Strategy<Value = Architecture> {
    (
        prop::sample::select(vec![32u64, 64, 96, 128]),
        prop::sample::select(vec![(2u64, 1u64), (2, 2), (4, 2), (4, 4), (8, 2)]),
        1u64..=16,
        2u64..=12,
        50u64..=3000,
        any::<bool>(),
    )
        .prop_map(|(hidden, (heads, kv), inter_x32, layers, vocab, tied)| Architecture {
            family: "llama".into(),
            hidden_size: hidden,
            intermediate_size: inter_x32 * 32,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: hidden / heads,
            vocab_size: vocab,
            rope_theta: 1e4,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 4096,
            tie_word_embeddings: tied,
            ..Default::default()
        })
}

fn strategy() -> impl Strategy<Value = PlanStrategy> {
    prop::sample::select(PlanStrategy::ALL.to_vec())
}

/// The GPU of a case: the L4 preset, its link optionally slowed to `h2d` GB/s,
/// with a CPU lane of `cpu` GB/s when given.
fn gpu_for(h2d: Option<f64>, cpu: Option<f64>) -> GpuProfile {
    let mut gpu = crate::gpu_presets::load_gpu("l4").unwrap();
    if let Some(rate) = h2d {
        gpu.h2d_gbps = rate;
        gpu.h2d_curve.clear();
    }
    gpu.cpu = cpu.map(|rate| CpuLane {
        cores: 8,
        gemv_f16_gbps: rate,
        gemv_f16_gbps_during_copy: rate,
        ..Default::default()
    });
    gpu
}

fn compile_at(model: &ModelSpec, opts: &Options, budget: u64) -> Result<Plan, CompileError> {
    compile_on(model, &gpu_for(None, None), opts, budget)
}

fn compile_on(model: &ModelSpec, gpu: &GpuProfile, opts: &Options, budget: u64) -> Result<Plan, CompileError> {
    compile_model(model, gpu, &Options { budget: Some(budget), ..opts.clone() }).map(|c| c.plan)
}

/// f32 checkpoints are refused up front, with a typed error, not by the verifier.
#[test]
fn f32_models_are_refused_before_solving() {
    let model = ModelSpec::from_arch("f32-model", tiny(), Dtype::F32);
    let err = compile_at(&model, &Options::default(), 1 << 30).unwrap_err();
    assert!(matches!(err, CompileError::Dtype { dtype: Dtype::F32, .. }), "{err}");
}

fn tiny() -> Architecture {
    Architecture {
        family: "llama".into(),
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 16,
        vocab_size: 50,
        rope_theta: 1e4,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plans_verify_fit_and_grow_with_the_budget(
        arch in arch(),
        dtype in prop::sample::select(vec![Dtype::F16, Dtype::Bf16]),
        prompt_len in 1u64..=64,
        extra_seq in 0u64..=256,
        batch in 1u64..=3,
        strategy in strategy(),
        budget_frac in 0.2f64..1.3,
        delta_frac in 0.0f64..0.5,
        h2d in prop::sample::select(vec![None, Some(0.5)]),
        cpu in prop::sample::select(vec![None, Some(5.0), Some(100.0)]),
    ) {
        let gpu = gpu_for(h2d, cpu);
        let model = ModelSpec::from_arch("prop", arch, dtype);
        let opts = Options {
            budget: None,
            prompt_len,
            max_seq_len: Some(prompt_len + extra_seq),
            batch,
            strategy,
            ..Options::default()
        };
        // Budgets around the interesting range: the regions every plan needs,
        // plus a fraction (0.2 to 1.3) of the layers' bytes.
        let shape = djinn_core::plan::RunShape { prompt_len, max_seq_len: prompt_len + extra_seq, batch };
        let fixed = crate::arena::FixedRegions::new(&model, &shape);
        let layer_bytes: u64 =
            model.blocks.iter().filter(|b| b.kind == djinn_core::BlockKind::Layer).map(|b| b.bytes).sum();
        let base = fixed.kv_cache + fixed.activations + fixed.workspace + model.total_bytes() - layer_bytes;
        let budget = base + (layer_bytes as f64 * budget_frac) as u64;
        let delta = (layer_bytes as f64 * delta_frac) as u64 + 1;
        let small = compile_on(&model, &gpu, &opts, budget);
        let large = compile_on(&model, &gpu, &opts, budget + delta);
        match (&small, &large) {
            (Err(CompileError::BudgetTooSmall { .. }), Err(CompileError::BudgetTooSmall { .. })) => {}
            (Err(CompileError::BudgetTooSmall { .. }), Ok(_)) => {}
            (Ok(a), Ok(b)) => {
                for (plan, budget) in [(a, budget), (b, budget + delta)] {
                    prop_assert!(plan.arena.bytes <= budget);
                    prop_assert_eq!(plan.budget_bytes, budget);
                    if let Err(e) = djinn_core::verify::verify(plan) {
                        prop_assert!(false, "emitted plan fails verification: {}", e);
                    }
                    let host = plan.decode.steps.iter().filter(|s| s.op == Op::HostCompute).count();
                    if strategy != PlanStrategy::Djinn || cpu.is_none() {
                        prop_assert_eq!(host, 0, "{:?} with cpu lane {:?} computes on the host", strategy, cpu);
                    }
                    let text = plan.to_toml_string();
                    prop_assert_eq!(&Plan::from_toml_str(&text, "mem").unwrap(), plan);
                }
                prop_assert!(
                    b.prediction.resident_bytes >= a.prediction.resident_bytes,
                    "budget {} → {} resident bytes, budget {} → {}",
                    budget, a.prediction.resident_bytes, budget + delta, b.prediction.resident_bytes
                );
                if strategy != PlanStrategy::StreamAll && a.prediction.streamed_blocks > 0 {
                    prop_assert!(a.prediction.slots >= 2);
                }
            }
            (a, b) => prop_assert!(false, "budget {}: {:?}; budget {}: {:?}", budget, a.as_ref().err(), budget + delta, b.as_ref().err()),
        }
    }
}
