//! From measurements to the profile `djinn-compile --gpu FILE.toml` reads,
//! and its TOML text, whose header comments say where each figure comes
//! from (as the presets in `compiler/presets/gpus/` do).
//!
//! How each field follows from what was timed:
//!
//! * `h2d_curve`, `h2d_gbps`, `copy_latency_us`: see [`crate::copy_fit`];
//!   `h2d_gbps` is the largest copy's point.
//! * `hbm_gbps`: a device-to-device copy of `B` bytes reads `B` and writes
//!   `B`; `2B / time` is the memory's throughput, the ceiling of a pure read
//!   stream — "effective read bandwidth" as the H100 preset counts it.
//! * `fp16_tflops`: `2mnk / time` of one large GEMM through our matmul (cuBLAS,
//!   fp32 accumulation) in the model dtype.
//! * `attn_tflops`: `2 · T² · heads · head_dim / time` of one causal prefill
//!   attention over `T` positions by the flash kernel with the model's heads:
//!   the cost model's prefill count, `4 · T · attended · q_dim` with
//!   `attended = T / 2`. Absent where the kernel does not take those heads.
//! * `kernel_overhead_us`: the device time per kernel of one-element kernels
//!   run back to back: launch and tail, with nothing to compute (the host's
//!   issue time per kernel is in the comments and the log).
//! * `block_times`: per block kind and pass shape, the larger of the median
//!   device time and the median host issue time (the time the block holds the
//!   compute lane), with the model's name, so the cost model uses them
//!   instead of its roofline.
//! * `cpu`: weight bytes over the matrix-vector time, alone and during copies.

use djinn_core::gpu::{BlockTime, CpuLane, GpuProfile, HostBlockTime};
use djinn_core::model::BlockKind;

use crate::copy_fit::{self, gbps};
use crate::measurements::Measurements;
use crate::stats::round_to;

/// Who made the profile, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// `--name`; `None`: the device name, as a slug.
    pub name: Option<String>,
    /// The command line, as typed.
    pub command: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Whether djinn-profile was a debug build (its CPU and launch figures then read slow).
    pub debug_build: bool,
}

/// `NVIDIA H100 80GB HBM3` → `nvidia-h100-80gb-hbm3`.
pub fn slug(device: &str) -> String {
    let s: String =
        device.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    if s.is_empty() {
        "gpu".to_string()
    } else {
        s
    }
}

/// The copies' fixed cost: fitted, or (a degenerate fit) the smallest copy's time.
fn latency_us(m: &Measurements) -> f64 {
    copy_fit::fit(&m.h2d_small)
        .map(|f| f.latency_us)
        .or_else(|| m.h2d_small.iter().map(|c| c.time.median_us).reduce(f64::min))
        .unwrap_or(0.0)
}

/// The profile `m` implies.
pub fn assemble(m: &Measurements, p: &Provenance) -> GpuProfile {
    let latency = latency_us(m);
    let h2d_curve = copy_fit::curve(&m.h2d, latency);
    let h2d_gbps = h2d_curve.last().map(|p| p.gbps).unwrap_or(0.0);
    let dc = &m.device_copy;
    let g = &m.gemm;
    let flops = 2.0 * (g.m * g.n * g.k) as f64;
    let (cpu, hl) = (&m.cpu, &m.host_layer);
    GpuProfile {
        name: p.name.clone().unwrap_or_else(|| slug(&m.device.name)),
        source: format!("measured by djinn-profile on {} {}: {}", m.device.name, p.date, p.command),
        memory_bytes: m.device.memory_bytes,
        usable_bytes: m.device.usable_bytes,
        hbm_gbps: round_to(gbps(2 * dc.bytes, dc.time.median_us), 1),
        fp16_tflops: round_to(flops / g.time.median_us / 1e6, 1),
        attn_tflops: m.attention.as_ref().map(|a| round_to(a.flops() / a.time.median_us / 1e6, 1)),
        pcie_gen: m.link.gen,
        pcie_lanes: m.link.lanes,
        h2d_gbps,
        copy_latency_us: round_to(latency, 2),
        kernel_overhead_us: round_to(m.launches.time.median_us / m.launches.kernels as f64, 2),
        h2d_curve,
        block_times: m
            .blocks
            .iter()
            .map(|b| BlockTime {
                model: m.model.clone(),
                kind: b.kind,
                phase: b.phase,
                tokens: b.tokens,
                us: round_to(b.lane_us(), 2),
            })
            .collect(),
        cpu: Some(CpuLane {
            cores: cpu.threads,
            gemv_f16_gbps: round_to(gbps(cpu.weight_bytes(), cpu.alone.median_us), 1),
            gemv_f16_gbps_during_copy: round_to(gbps(cpu.weight_bytes(), cpu.during_copy.median_us), 1),
            host_read_gbps: Some(round_to(hl.read_gbps, 1)),
            handoff_us: Some(round_to(hl.handoff.median_us, 1)),
            h2d_gbps_during_host: Some(round_to(hl.copy_gbps, 1)),
            block_times: vec![HostBlockTime {
                model: m.model.clone(),
                kind: BlockKind::Mlp,
                context: hl.context,
                us: round_to(hl.during_copy.median_us, 1),
                hot_us: round_to(hl.hot.median_us, 1),
                cold_us: round_to(hl.cold.median_us, 1),
            }],
        }),
    }
}

/// `4 KiB`, `64 MiB`, `1 GiB`, or bytes.
pub fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// The profile as TOML, with header comments on how each figure was measured.
pub fn render(profile: &GpuProfile, m: &Measurements, p: &Provenance) -> String {
    let mut c = Vec::new();
    let d = &m.device;
    c.push(format!("GPU profile of {} ({}), measured by djinn-profile on {}:", d.name, d.arch, p.date));
    c.push(format!("  {}", p.command));
    c.push("Read by `djinn-compile --gpu FILE.toml`. Times are medians of CUDA-event timings after warm-up.".into());
    if p.debug_build {
        c.push("WARNING: measured by a debug build of djinn-profile: cpu and kernel_overhead_us read slow.".into());
    }
    c.push(format!(
        "memory_bytes / usable_bytes: cuMemGetInfo total, and free right after our context was created ({} MiB).",
        d.usable_bytes >> 20
    ));
    let raw: Vec<String> = m.h2d.iter().map(|x| format!("{} {:.1} us", size(x.bytes), x.time.median_us)).collect();
    c.push(format!(
        "h2d_curve / h2d_gbps: pinned (page-locked, not write-combined) host-to-device copies, median of {} each: {}.",
        m.h2d.first().map_or(0, |x| x.time.runs),
        raw.join(", ")
    ));
    c.push(
        "  Each point's gbps excludes copy_latency_us, so copy_latency_us + bytes / gbps is the measured time.".into(),
    );
    let small: Vec<String> =
        m.h2d_small.iter().map(|x| format!("{} {:.2} us", size(x.bytes), x.time.median_us)).collect();
    c.push(format!(
        "copy_latency_us: t = latency + bytes / rate fitted (relative least squares) to small copies: {}.",
        small.join(", ")
    ));
    let dc = &m.device_copy;
    c.push(format!(
        "hbm_gbps: a device-to-device copy of {} took {:.1} us; it reads and writes {} each, so 2 x {} / time",
        size(dc.bytes),
        dc.time.median_us,
        size(dc.bytes),
        size(dc.bytes)
    ));
    c.push("  is the memory's throughput, the ceiling of a read stream (as the H100 preset counts it).".into());
    let g = &m.gemm;
    c.push(format!(
        "fp16_tflops: {}x{}x{} {} GEMM through djinn's matmul (cuBLAS, fp32 accumulation), {:.1} us.",
        g.m, g.n, g.k, g.dtype, g.time.median_us
    ));
    c.push(match &m.attention {
        Some(a) => format!(
            "attn_tflops: causal prefill attention over {} tokens by the flash kernel (attn_prefill.cu), {} heads x {} \
             ({} kv heads), {}, {:.1} us;",
            a.tokens, a.num_heads, a.head_dim, a.num_kv_heads, a.dtype, a.time.median_us
        ),
        None => "attn_tflops: not measured: the flash prefill kernel does not take this model's heads on this device;"
            .into(),
    });
    c.push(match &m.attention {
        Some(a) => format!(
            "  counted as 2 x {}^2 x {} x {} flops (4 x T x T/2 x q_dim, as the cost model counts causal prefill).",
            a.tokens, a.num_heads, a.head_dim
        ),
        None => "  djinn-compile times attention's flops at fp16_tflops.".into(),
    });
    c.push(format!(
        "kernel_overhead_us: {} one-element kernels ran back to back in {:.1} us of device time (the host took {:.1} us to",
        m.launches.kernels, m.launches.time.median_us, m.launches.host.median_us
    ));
    c.push("  issue them; each batch was issued while earlier GEMMs kept the device busy).".into());
    c.push(format!(
        "block_times: djinn's forward pass (runtime/src/forward.rs, CUDA ops) over one layer of {} on random",
        m.model
    ));
    c.push(format!(
        "  weights resident in device memory; prefill = {} tokens at positions 0.., decode = 1 token over {} cached;",
        m.prompt_len, m.prompt_len
    ));
    c.push(
        "  each figure is the block's device time (CUDA events, issued behind GEMMs that kept the device busy)".into(),
    );
    c.push("  or the host's time to issue it, whichever is longer: how long it holds the compute lane.".into());
    for b in &m.blocks {
        c.push(format!(
            "    {} {}: device {:.1} us, host {:.1} us",
            b.phase, b.block, b.device.median_us, b.host.median_us
        ));
    }
    if !m.device_ahead {
        c.push(
            "WARNING: the host fell behind the device even behind the longest blocker: device times include waits."
                .into(),
        );
    }
    let cpu = &m.cpu;
    c.push(format!(
        "cpu: the kernels crate's matmul twin, m = 1, {} threads, [{}, {}] f16 weights ({}); during copy: while",
        cpu.threads,
        cpu.rows,
        cpu.cols,
        size(cpu.weight_bytes())
    ));
    c.push(format!("  pinned host-to-device copies looped (they ran at {:.1} GB/s meanwhile).", cpu.copy_gbps));
    let hl = &m.host_layer;
    c.push(format!(
        "cpu.block_times: one decode step of an MLP block of {} ({}) computed by the host lane (the forward pass, the CPU twins",
        m.model,
        size(hl.bytes)
    ));
    c.push(format!(
        "  on a team of {} threads) cycling through {} distinct images, context {}; us = while pinned copies looped",
        hl.threads, hl.images, hl.context
    ));
    c.push(format!(
        "  (at {:.1} GB/s meanwhile: h2d_gbps_during_host), hot_us back to back, cold_us each after the team parked.",
        hl.copy_gbps
    ));
    c.push(format!(
        "cpu.host_read_gbps: a plain read of those images on the team. cpu.handoff_us: {} bytes down into pinned",
        hl.handoff_bytes
    ));
    c.push("  memory, an event spun on, and back up, as the host lane hands the residual stream over.".into());
    c.push(format!("pcie_gen / pcie_lanes: {}.", m.link.how));
    let mut out: String = c.iter().map(|l| format!("# {l}\n")).collect();
    out.push_str(&toml::to_string(profile).expect("a GpuProfile always serializes to TOML"));
    out
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
