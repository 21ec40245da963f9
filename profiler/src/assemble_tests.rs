//! Profile assembly: the figures follow from the measurements, the TOML
//! round-trips through `GpuProfile`, and the compiler uses what it reads.

use djinn_compiler::cost::Roofline;
use djinn_compiler::gpu_presets::parse_gpu_profile;
use djinn_compiler::{compile_model, Options};
use djinn_core::gpu::GpuProfile;
use djinn_core::model::BlockKind;
use djinn_core::model_presets::load_model;
use djinn_core::phase::PhaseName;
use djinn_core::plan::RunShape;
use djinn_core::Dtype;

use super::*;
use crate::measurements::{BlockTiming, CopyTiming, CpuGemv, Device, DeviceCopy, Gemm, HostLayer, Launches};
use crate::pcie::Link;
use crate::stats::Timing;

/// Copies cost 3 µs plus 50 GB/s, with ±1% spread around the median.
fn copy(bytes: u64) -> CopyTiming {
    let t = 3.0 + bytes as f64 / 50e3;
    CopyTiming { bytes, time: Timing::of(&[t * 0.99, t, t * 1.01]) }
}

fn t(us: f64) -> Timing {
    Timing::of(&[us])
}

/// Made-up figures for a Llama-2-13B-shaped run on an 80 GiB device.
pub(super) fn sample() -> Measurements {
    // Device µs, host µs: the host is slower than the device on the small blocks.
    let block = |block: &str, kind, phase, tokens, (device, host)| BlockTiming {
        block: block.into(),
        kind,
        phase,
        tokens,
        context: if phase == PhaseName::Prefill { tokens } else { 513 },
        bytes: 1,
        device: t(device),
        host: t(host),
    };
    use BlockKind::*;
    use PhaseName::*;
    Measurements {
        device: Device {
            name: "NVIDIA H100 80GB HBM3".into(),
            arch: "sm_90".into(),
            memory_bytes: 80 << 30,
            usable_bytes: 79 << 30,
        },
        link: Link { gen: 5, lanes: 16, how: "sysfs 0000:1b:00.0, current link while copying".into() },
        h2d_small: [4u64 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20].map(copy).to_vec(),
        h2d: (22..=30).map(|s| copy(1 << s)).collect(),
        device_copy: DeviceCopy { bytes: 1 << 30, time: t(700.0) },
        gemm: Gemm { m: 8192, n: 8192, k: 8192, dtype: Dtype::F16, time: t(1500.0) },
        attention: Some(crate::measurements::Attention {
            tokens: 4096,
            num_heads: 40,
            num_kv_heads: 40,
            head_dim: 128,
            dtype: Dtype::F16,
            time: t(814.0),
        }),
        launches: Launches { kernels: 2000, time: t(5000.0), host: t(8000.0) },
        model: "llama2-13b".into(),
        prompt_len: 512,
        blocks: vec![
            block("embed", Embedding, Prefill, 512, (10.0, 6.0)),
            block("layer.0", Layer, Prefill, 512, (1000.0, 90.0)),
            block("norm", FinalNorm, Prefill, 512, (4.0, 6.5)),
            block("lm_head", LmHead, Prefill, 512, (150.0, 8.0)),
            block("embed", Embedding, Decode, 1, (3.0, 6.0)),
            block("layer.0", Layer, Decode, 1, (250.0, 80.0)),
            block("norm", FinalNorm, Decode, 1, (3.5, 6.5)),
            block("lm_head", LmHead, Decode, 1, (140.0, 8.0)),
        ],
        device_ahead: true,
        cpu: CpuGemv {
            threads: 16,
            rows: 16384,
            cols: 8192,
            alone: t(10_000.0),
            during_copy: t(12_500.0),
            copy_gbps: 51.0,
        },
        host_layer: HostLayer {
            threads: 16,
            bytes: 634 << 20,
            images: 4,
            context: 512,
            hot: t(6_200.0),
            cold: t(6_900.0),
            during_copy: t(10_500.0),
            copy_gbps: 50.5,
            read_gbps: 112.3,
            handoff: t(31.0),
            handoff_bytes: 20480,
        },
    }
}

fn provenance(name: Option<&str>) -> Provenance {
    Provenance {
        name: name.map(str::to_string),
        command: "djinn-profile --model llama2-13b --prompt-len 512 -o profile.toml".into(),
        date: "2026-11-30".into(),
        debug_build: false,
    }
}

#[test]
fn figures_follow_from_the_measurements() {
    let p = assemble(&sample(), &provenance(None));
    assert_eq!(p.name, "nvidia-h100-80gb-hbm3");
    assert_eq!(
        p.source,
        "measured by djinn-profile on NVIDIA H100 80GB HBM3 2026-11-30: \
         djinn-profile --model llama2-13b --prompt-len 512 -o profile.toml"
    );
    assert_eq!((p.memory_bytes, p.usable_bytes), (80 << 30, 79 << 30));
    // 2 GiB moved (read + written) in 700 µs.
    assert_eq!(p.hbm_gbps, round_to(2.0 * (1u64 << 30) as f64 / 700.0 / 1e3, 1));
    // 2·8192³ flops in 1.5 ms.
    assert_eq!(p.fp16_tflops, round_to(2.0 * 8192f64.powi(3) / 1500.0 / 1e6, 1));
    // 2·4096²·40·128 = 171.8 Gflop of causal attention in 814 µs.
    assert_eq!(p.attn_tflops, Some(211.1));
    assert_eq!(p.kernel_overhead_us, 2.5);
    assert!((p.copy_latency_us - 3.0).abs() < 0.01, "{}", p.copy_latency_us);
    assert_eq!(p.h2d_curve.len(), 9);
    assert!(p.h2d_curve.iter().all(|b| (b.gbps - 50.0).abs() < 0.02), "{:?}", p.h2d_curve);
    assert_eq!(p.h2d_gbps, p.h2d_curve[8].gbps);
    assert_eq!((p.pcie_gen, p.pcie_lanes), (5, 16));
    assert_eq!(p.block_times.len(), 8);
    assert!(p.block_times.iter().all(|b| b.model == "llama2-13b"));
    // Each block holds the lane for the longer of its device and host times.
    let us: Vec<f64> = p.block_times.iter().map(|b| b.us).collect();
    assert_eq!(us, [10.0, 1000.0, 6.5, 150.0, 6.0, 250.0, 6.5, 140.0]);
    let cpu = p.cpu.unwrap();
    // 256 MiB in 10 ms and in 12.5 ms.
    assert_eq!((cpu.cores, cpu.gemv_f16_gbps, cpu.gemv_f16_gbps_during_copy), (16, 26.8, 21.5));
    // The host lane: the MLP block beside the copy loop is what the compiler prices.
    assert_eq!((cpu.host_read_gbps, cpu.handoff_us, cpu.h2d_gbps_during_host), (Some(112.3), Some(31.0), Some(50.5)));
    let lt = &cpu.block_times[..];
    assert_eq!(lt.len(), 1);
    assert_eq!((lt[0].model.as_str(), lt[0].kind, lt[0].context), ("llama2-13b", BlockKind::Mlp, 512));
    assert_eq!((lt[0].us, lt[0].hot_us, lt[0].cold_us), (10_500.0, 6_200.0, 6_900.0));
    assert_eq!(assemble(&sample(), &provenance(Some("h200-measured"))).name, "h200-measured");
}

#[test]
fn toml_round_trips_through_the_compilers_reader() {
    let m = sample();
    let prov = provenance(Some("h100-measured"));
    let p = assemble(&m, &prov);
    let text = render(&p, &m, &prov);
    assert!(text.lines().take_while(|l| l.starts_with('#')).count() >= 10, "{text}");
    assert!(text.contains("# hbm_gbps: a device-to-device copy of 1 GiB took 700.0 us"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    assert!(text.contains("# kernel_overhead_us: 2000 one-element kernels ran back to back in 5000.0 us"), "{text}");
    assert!(text.contains("#     decode norm: device 3.5 us, host 6.5 us"), "{text}");
    assert!(
        text.contains(
            "# attn_tflops: causal prefill attention over 4096 tokens by the flash kernel (attn_prefill.cu), \
             40 heads x 128 (40 kv heads), f16, 814.0 us;\n#   counted as 2 x 4096^2 x 40 x 128 flops"
        ),
        "{text}"
    );
    let back = parse_gpu_profile(&text, "profile.toml").unwrap();
    assert_eq!(back, p);
    let debug = render(&p, &m, &Provenance { debug_build: true, ..prov.clone() });
    assert!(debug.contains("# WARNING: measured by a debug build"), "{debug}");
    assert_eq!(parse_gpu_profile(&debug, "profile.toml").unwrap(), p);
    let behind = Measurements { device_ahead: false, ..m.clone() };
    assert!(render(&p, &behind, &prov).contains("# WARNING: the host fell behind"));
    // Where the flash kernel did not run, the profile has no attn_tflops and says why.
    let unmeasured = Measurements { attention: None, ..m.clone() };
    let p = assemble(&unmeasured, &prov);
    assert_eq!(p.attn_tflops, None);
    let text = render(&p, &unmeasured, &prov);
    assert!(text.contains("# attn_tflops: not measured: the flash prefill kernel does not take"), "{text}");
    assert!(!text.contains("\nattn_tflops ="), "{text}");
    assert_eq!(parse_gpu_profile(&text, "profile.toml").unwrap(), p);
}

/// The profiler's attention flops are the cost model's: two profiles that
/// differ only in `attn_tflops` price a compute-bound prefill attention half
/// over the measured length apart by exactly `flops · (1/a − 1/b)`.
#[test]
fn attention_flops_are_counted_as_the_cost_model_counts_them() {
    let m = sample();
    let a = m.attention.clone().unwrap();
    let mut p = assemble(&m, &provenance(None));
    p.block_times.clear();
    let model = load_model("llama2-13b").unwrap().split_layers();
    assert_eq!((model.arch.num_heads, model.arch.head_dim), (a.num_heads, a.head_dim));
    let half = model.block("layer.0.attn").unwrap();
    let shape = RunShape { prompt_len: a.tokens, max_seq_len: a.tokens, batch: 1 };
    let at = |tflops: f64| {
        let gpu = GpuProfile { attn_tflops: Some(tflops), ..p.clone() };
        Roofline::new(&gpu, &model, shape).estimate_us(half, PhaseName::Prefill, a.tokens, a.tokens)
    };
    let flops = (at(100.0) - at(200.0)) / (1.0 / 100e6 - 1.0 / 200e6);
    assert!((flops / a.flops() - 1.0).abs() < 1e-9, "cost model {flops}, profiler {}", a.flops());
}

#[test]
fn compiler_prices_copies_of_measured_sizes_at_their_measured_time() {
    let m = sample();
    let p = assemble(&m, &provenance(None));
    let model = load_model("llama2-13b").unwrap();
    let r = Roofline::new(&p, &model, RunShape { prompt_len: 512, max_seq_len: 2048, batch: 1 });
    for c in &m.h2d {
        let want = c.time.median_us;
        let got = r.copy_bytes_us(c.bytes);
        assert!((got - want).abs() / want < 1e-3, "{}: {got} vs measured {want}", size(c.bytes));
    }
}

/// TTFT and decode of an all-resident plan: the sum of one pass's block
/// times (40 layers) plus the host turnaround, in ms.
fn resident_prediction(m: &Measurements, phase: PhaseName) -> f64 {
    let us = |kind| m.blocks.iter().find(|b| b.kind == kind && b.phase == phase).unwrap().lane_us();
    let pass =
        us(BlockKind::Embedding) + 40.0 * us(BlockKind::Layer) + us(BlockKind::FinalNorm) + us(BlockKind::LmHead);
    (pass + djinn_compiler::cost::HOST_TURNAROUND_US) / 1e3
}

#[test]
fn compiler_plans_from_the_measured_block_times_of_its_model() {
    let m = sample();
    let prov = provenance(None);
    let text = render(&assemble(&m, &prov), &m, &prov);
    let gpu = parse_gpu_profile(&text, "profile.toml").unwrap();
    let model = load_model("llama2-13b").unwrap();
    let plan = compile_model(&model, &gpu, &Options::default()).unwrap().plan;
    assert_eq!(plan.prediction.streamed_blocks, 0, "24 GiB of weights fit in 79 GiB");
    let (ttft, decode) = (plan.prediction.ttft_ms, plan.prediction.decode_ms_per_token);
    let (want_ttft, want_decode) =
        (resident_prediction(&m, PhaseName::Prefill), resident_prediction(&m, PhaseName::Decode));
    assert!((ttft - want_ttft).abs() < 0.01, "ttft {ttft} ms, block times say {want_ttft}");
    assert!((decode - want_decode).abs() < 0.01, "decode {decode} ms, block times say {want_decode}");

    // Another model's plan ignores them: its roofline estimate differs.
    let mut other = m.clone();
    other.model = "llama2-7b".into();
    let gpu7 = assemble(&other, &prov);
    let mut bare = gpu7.clone();
    bare.block_times.clear();
    let model7 = load_model("llama2-7b").unwrap();
    let with = compile_model(&model7, &gpu7, &Options::default()).unwrap().plan.prediction;
    let renamed = compile_model(&model7, &gpu, &Options::default()).unwrap().plan.prediction;
    let without = compile_model(&model7, &bare, &Options::default()).unwrap().plan.prediction;
    assert_eq!(renamed.decode_ms_per_token, without.decode_ms_per_token, "llama2-13b's times are not llama2-7b's");
    assert_ne!(with.decode_ms_per_token, without.decode_ms_per_token);
}

#[test]
fn slugs_and_sizes() {
    assert_eq!(slug("NVIDIA H200"), "nvidia-h200");
    assert_eq!(slug("  Tesla T4 (PCIe) "), "tesla-t4-pcie");
    assert_eq!(slug("???"), "gpu");
    assert_eq!(size(4 << 10), "4 KiB");
    assert_eq!(size(64 << 20), "64 MiB");
    assert_eq!(size(1 << 30), "1 GiB");
    assert_eq!(size(1000), "1000 B");
}
