//! Helpers shared by the test modules.

use std::path::Path;

use djinn_compiler::gpu_presets::load_gpu;
use djinn_compiler::{compile_model, HostCompute, Options};
use djinn_core::gpu::CpuLane;
use djinn_core::model::BlockKind;
use djinn_core::model_presets::load_model;
use djinn_core::plan::{Op, Plan};

/// A `djinn` plan for the model in `dir` whose streamed MLP halves all run
/// their decode steps on the host CPU (`--host-compute all`, which splits the
/// layers: whole layers read the KV cache): GPU preset `gpu` given a CPU
/// lane, at the largest budget below `resident`'s (the all-resident plan of
/// the same options) that streams the MLPs of all but one layer.
pub fn host_compute_plan(dir: &Path, gpu: &str, resident: &Plan, opts: Options) -> Plan {
    let mut gpu = load_gpu(gpu).unwrap();
    gpu.cpu = Some(CpuLane { cores: 16, gemv_f16_gbps: 100.0, gemv_f16_gbps_during_copy: 90.0, ..Default::default() });
    let model = load_model(&dir.display().to_string()).unwrap();
    let layer = resident.model.block("layer.0").unwrap().bytes;
    let layers = resident.model.arch.num_layers;
    // Host-computed MLP halves in decode (the embedding may be held on the host too, which
    // frees more than a layer of a tiny model, so the budget search runs past `layers` cuts).
    // Layers whose MLP (an `mlp` half, or both fine parts: rule `gate-handover`) runs on the host.
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
            let budget = (resident.arena.bytes + opts.runtime_reserve).checked_sub(n * layer)?;
            let opts = Options { budget: Some(budget), host_compute: HostCompute::All, ..opts.clone() };
            compile_model(&model, &gpu, &opts).ok()
        })
        .map(|c| c.plan)
        .find(|p| hosted_mlps(p) >= layers - 1)
        .unwrap_or_else(|| panic!("{}: no budget host-computes the MLPs of {} layers", dir.display(), layers - 1));
    // `all` holds the embedding on the host too: gathered there in prefill and in decode.
    for phase in [&plan.prefill, &plan.decode] {
        assert!(phase.steps.iter().any(|s| s.op == Op::HostCompute && s.block == "embed"), "{}", dir.display());
    }
    plan
}
