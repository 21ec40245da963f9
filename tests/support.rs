//! Helpers shared by the test modules.

use std::path::Path;

use djinn_compiler::arena::FixedRegions;
use djinn_compiler::cost::Roofline;
use djinn_compiler::emit::emit;
use djinn_compiler::gpu_presets::load_gpu;
use djinn_compiler::solve::{evaluate, layout_held, Spread};
use djinn_compiler::{compile_model, HostCompute, Options};
use djinn_core::gpu::{CpuLane, GpuProfile};
use djinn_core::model::BlockKind;
use djinn_core::model_presets::load_model;
use djinn_core::plan::{Op, Plan, RunShape, Strategy};

/// A `djinn` plan for the model in `dir` whose streamed MLP halves all run
/// their decode steps on the host CPU (`--host-compute all`, which splits the
/// layers: whole layers read the KV cache): GPU preset `gpu` given a CPU
/// lane, at the largest budget below `resident`'s (the all-resident plan of
/// the same options) that streams the MLPs of all but one layer.
pub fn host_compute_plan(dir: &Path, gpu: &str, resident: &Plan, opts: Options) -> Plan {
    let mut gpu = load_gpu(gpu).unwrap();
    with_cpu_lane(&mut gpu);
    let model = load_model(&dir.display().to_string()).unwrap();
    let layer = resident.model.block("layer.0").unwrap().bytes;
    let layers = resident.model.arch.num_layers;
    // Host-computed MLP halves in decode. `all` holds the embedding and the LM head on the host
    // too, which frees many layers' worth of a tiny model: the search starts below that.
    // Layers whose MLP (an `mlp` half, or a fine part of it) runs on the host.
    let hosted_mlps = |p: &Plan| {
        let mut layers: Vec<u64> = p
            .decode
            .steps
            .iter()
            .filter(|s| s.op == Op::HostCompute)
            .filter_map(|s| p.model.block(&s.block))
            .filter(|b| b.kind == BlockKind::Mlp || b.kind.is_mlp_part())
            .filter_map(|b| b.layer)
            .collect();
        layers.dedup();
        layers.len() as u64
    };
    let plan = (1..=64 * layers)
        .filter_map(|n| {
            let held = ["embed", "lm_head"].iter().map(|b| resident.model.block(b).unwrap().bytes).sum::<u64>();
            let budget = (resident.arena.bytes + opts.runtime_reserve).checked_sub(held + n * layer)?;
            let opts = Options { budget: Some(budget), host_compute: HostCompute::All, ..opts.clone() };
            compile_model(&model, &gpu, &opts).ok()
        })
        .map(|c| c.plan)
        .find(|p| hosted_mlps(p) >= layers - 1)
        .unwrap_or_else(|| panic!("{}: no budget host-computes the MLPs of {} layers", dir.display(), layers - 1));
    // `all` holds the embedding and the LM head on the host too: computed there in prefill and in decode.
    for phase in [&plan.prefill, &plan.decode] {
        for held in ["embed", "lm_head"] {
            assert!(phase.steps.iter().any(|s| s.op == Op::HostCompute && s.block == held), "{}", dir.display());
        }
    }
    plan
}

/// Gives `gpu` a host CPU lane (no preset has one) for plans that compute on the host.
fn with_cpu_lane(gpu: &mut GpuProfile) {
    gpu.cpu = Some(CpuLane { cores: 16, gemv_f16_gbps: 100.0, gemv_f16_gbps_during_copy: 90.0, ..Default::default() });
}

/// Fine-table plans for the model in `dir` that run a layer's two MLP parts on
/// different sides in decode, so the `gate` activation crosses the bus
/// (`runtime/src/host/handover.rs`), each named by what it does:
/// every down streamed and host-computed after its resident gate/up on the
/// device; every gate/up streamed and host-computed before its resident down;
/// every MLP part streamed with layer 0's gate/up and the last layer's
/// down on the host, their partners copied through the slots; and the first
/// with the embedding and the LM head held in host memory (the final norm's
/// row crosses down, the logits are read there). The host sets are written
/// here rather than chosen by the solver, and every plan is verified.
pub fn split_mlp_plans(dir: &Path, gpu: &str, shape: RunShape) -> Vec<(String, Plan)> {
    let mut gpu = load_gpu(gpu).unwrap();
    with_cpu_lane(&mut gpu);
    let model = load_model(&dir.display().to_string()).unwrap().fine_layers();
    let fixed = FixedRegions::new(&model, &shape);
    let cost = Roofline::new(&gpu, &model, shape);
    let of = |kind: BlockKind| -> Vec<usize> {
        model.blocks.iter().enumerate().filter(|(_, b)| b.kind == kind).map(|(i, _)| i).collect()
    };
    let (ups, downs) = (of(BlockKind::GateUp), of(BlockKind::Down));
    let mut both: Vec<usize> = ups.iter().chain(&downs).copied().collect();
    both.sort_unstable();
    let held = [of(BlockKind::Embedding)[0], of(BlockKind::LmHead)[0]];
    let cases = [
        ("device gate_up, host down", downs.clone(), downs.clone(), vec![]),
        ("host gate_up, device down", ups.clone(), ups.clone(), vec![]),
        ("split parts, partners streamed", both, vec![ups[0], downs[downs.len() - 1]], vec![]),
        ("host down, embedding and LM head held", downs.clone(), downs.clone(), held.to_vec()),
    ];
    cases
        .into_iter()
        .map(|(name, streamed, mut host, held)| {
            host.sort_unstable();
            let layout = layout_held(&model, &fixed, &streamed, &held, 2);
            let sol = evaluate(&model, layout, &host, 0, Spread::Even, Strategy::Djinn, &cost).unwrap();
            let plan = emit(&sol, &model, &gpu, shape, sol.layout.arena.bytes).unwrap();
            djinn_core::verify::verify(&plan).unwrap_or_else(|e| panic!("{}: {name}: {e}", dir.display()));
            let hosted: Vec<&str> =
                plan.decode.steps.iter().filter(|s| s.op == Op::HostCompute).map(|s| s.block.as_str()).collect();
            assert_eq!(hosted.len(), host.len() + held.len(), "{}: {name}: {hosted:?}", dir.display());
            (name.to_string(), plan)
        })
        .collect()
}
