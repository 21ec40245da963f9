//! The measuring sequence, in the order that keeps device memory low: the
//! copy buffers (up to 2 GiB on the device, 1 GiB pinned) serve the copy
//! timings and then the CPU lane's "while copying" loop, and are freed before
//! the one-layer arena of the compute timings is allocated.
//!
//! Repetitions are chosen so that a 13B-class model takes seconds: every
//! figure is a median of 5 to 30 timed runs after a few untimed ones.

use std::path::Path;

use djinn_core::model::ModelSpec;
use djinn_core::plan::Plan;
use djinn_runtime::cuda::Gpu;

use crate::assemble::size;
use crate::bench_plan;
use crate::blocks::ComputeRig;
use crate::copy::CopyRig;
use crate::copy_fit::{self, gbps};
use crate::cpu::GemvBench;
use crate::error::{During, ProfileError};
use crate::host_layer::{self, HostLayerRig};
use crate::measurements::{
    Attention, BlockTiming, CopyTiming, CpuGemv, Device, DeviceCopy, Gemm, HostLayer, Launches, Measurements,
};
use crate::pcie::{self, Link};

/// Small host-to-device copies, for the fixed cost: 4 KiB … 4 MiB.
const SMALL_COPIES: [u64; 6] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
/// The curve's sizes double from this…
const CURVE_MIN: u64 = 4 << 20;
/// …to this, or less on a device with less than 8 times it free.
const CURVE_MAX: u64 = 1 << 30;
/// The CPU lane's weight matrix, `[rows, cols]` f16: 256 MiB.
const GEMV_SHAPE: (u64, u64) = (16384, 8192);
/// Copies looped while the CPU lane is timed.
const LOOP_COPY: u64 = 256 << 20;
/// The GEMM for `fp16_tflops`: `GEMM_SIZE`³.
const GEMM_SIZE: u64 = 8192;
/// Query rows (and cached positions) of the prefill attention for
/// `attn_tflops`: a long context, where attention is a large share of a
/// prefill and runs well below the GEMM rate.
const ATTN_TOKENS: u64 = 4096;
/// One-element kernels per timed batch, for `kernel_overhead_us`.
const LAUNCH_BATCH: u64 = 1000;

/// Measures device `ordinal` (opened as `gpu`) and `model`'s blocks for a
/// prompt of `prompt_len`; reports progress through `say`.
pub fn measure(
    gpu: &Gpu,
    ordinal: usize,
    model: &ModelSpec,
    prompt_len: u64,
    say: &mut dyn FnMut(String),
) -> Result<Measurements, ProfileError> {
    let usable = gpu.total_bytes - gpu.used_at_open;
    let device =
        Device { name: gpu.name.clone(), arch: gpu.arch(), memory_bytes: gpu.total_bytes, usable_bytes: usable };
    say(format!(
        "{} ({}): {} MiB, {} MiB free after our context",
        device.name,
        device.arch,
        device.memory_bytes >> 20,
        usable >> 20
    ));

    let mut largest = CURVE_MAX;
    while largest > CURVE_MIN && 8 * largest > usable {
        largest /= 2;
    }
    let mut rig = CopyRig::new(gpu, largest).during("allocating the copy benchmark's buffers")?;
    let (h2d_small, h2d, device_copy) = copies(&rig, say)?;
    let (cpu, sysfs) = cpu_lane(&mut rig, ordinal, say)?;
    // One layer of the model on random weights, laid out as a plan: the host lane's
    // rig and (after the copy buffers are freed) the device's compute rig both run it.
    let one = bench_plan::one_layer(model);
    let plan = bench_plan::profiling_plan(&one, prompt_len, device.memory_bytes, device.usable_bytes)?;
    let host_layer = host_lane(gpu, &mut rig, &plan, say)?;
    drop(rig);
    let link = sysfs.unwrap_or_else(|| pcie::infer(h2d.last().map_or(0.0, |c| gbps(c.bytes, c.time.median_us))));
    say(format!("PCIe gen {} x{} ({})", link.gen, link.lanes, link.how));

    let (blocks, gemm, attention, launches, device_ahead) = compute(gpu, plan, say)?;
    Ok(Measurements {
        device,
        link,
        h2d_small,
        h2d,
        device_copy,
        gemm,
        attention,
        launches,
        model: model.name.clone(),
        prompt_len,
        blocks,
        device_ahead,
        cpu,
        host_layer,
    })
}

/// Small and curve-sized host-to-device copies, and a device-to-device copy.
fn copies(
    rig: &CopyRig,
    say: &mut dyn FnMut(String),
) -> Result<(Vec<CopyTiming>, Vec<CopyTiming>, DeviceCopy), ProfileError> {
    let h2d_small = SMALL_COPIES
        .iter()
        .map(|&b| rig.h2d(b, 3, 20))
        .collect::<Result<Vec<_>, _>>()
        .during("timing small host-to-device copies")?;
    let sizes: Vec<u64> = (0..).map(|i| CURVE_MIN << i).take_while(|&b| b <= rig.bytes()).collect();
    let h2d = sizes
        .iter()
        .map(|&b| rig.h2d(b, 1, 5))
        .collect::<Result<Vec<_>, _>>()
        .during("timing host-to-device copies")?;
    let rates: Vec<String> =
        h2d.iter().map(|c| format!("{} {:.2} GB/s", size(c.bytes), gbps(c.bytes, c.time.median_us))).collect();
    let fixed = copy_fit::fit(&h2d_small).map_or("not fitted".into(), |f| format!("{:.2} us", f.latency_us));
    say(format!("host-to-device, pinned: {}; fixed cost {fixed}", rates.join(", ")));
    let device_copy = rig.d2d(rig.bytes(), 2, 5).during("timing a device-to-device copy")?;
    say(format!(
        "device-to-device: {} in {:.1} us: {:.0} GB/s read + written",
        size(device_copy.bytes),
        device_copy.time.median_us,
        gbps(2 * device_copy.bytes, device_copy.time.median_us)
    ));
    Ok((h2d_small, h2d, device_copy))
}

/// The CPU's matrix-vector rate alone and beside a copy loop, and (while the
/// copies keep the link awake) the link as sysfs reports it.
fn cpu_lane(
    rig: &mut CopyRig,
    ordinal: usize,
    say: &mut dyn FnMut(String),
) -> Result<(CpuGemv, Option<Link>), ProfileError> {
    let mut gemv = GemvBench::new(GEMV_SHAPE.0, GEMV_SHAPE.1);
    let alone = gemv.run(1, 8);
    let address = pcie::pci_address(ordinal);
    let ((during_copy, link), copy_gbps) = rig
        .while_copying(LOOP_COPY.min(rig.bytes()), || {
            let link = address.as_deref().and_then(|a| pcie::read_sysfs(Path::new("/sys/bus/pci/devices"), a));
            (gemv.run(1, 8), link)
        })
        .during("looping host-to-device copies beside the CPU")?;
    let cpu = CpuGemv {
        threads: djinn_kernels::Team::global().threads() as u32,
        rows: gemv.rows,
        cols: gemv.cols,
        alone,
        during_copy,
        copy_gbps,
    };
    say(format!(
        "CPU f16 matrix-vector ({} threads, {}): {:.1} GB/s alone, {:.1} GB/s while copies ran at {:.1} GB/s",
        cpu.threads,
        size(cpu.weight_bytes()),
        gbps(cpu.weight_bytes(), cpu.alone.median_us),
        gbps(cpu.weight_bytes(), cpu.during_copy.median_us),
        cpu.copy_gbps
    ));
    Ok((cpu, link))
}

/// Steps of each host-layer timing.
const HOST_LAYER_REPS: usize = 8;
/// Parked long enough that every worker has gone to sleep (the team's
/// default idle spin is 2 ms).
const PARKED: std::time::Duration = std::time::Duration::from_millis(30);

/// One decode MLP block of `plan`'s model on the host lane: hot, cold, beside the
/// copy loop, a plain read of host memory, and the residual stream's hand-off.
fn host_lane(
    gpu: &Gpu,
    rig: &mut CopyRig,
    plan: &Plan,
    say: &mut dyn FnMut(String),
) -> Result<HostLayer, ProfileError> {
    let (model, prompt_len) = (&plan.model, plan.shape.prompt_len);
    let mut layer = HostLayerRig::new(plan, prompt_len)?;
    let read_gbps = layer.read_gbps(5);
    let hot = layer.hot(HOST_LAYER_REPS)?;
    let cold = layer.cold(HOST_LAYER_REPS, PARKED)?;
    let (during_copy, copy_gbps) = rig
        .while_copying(LOOP_COPY.min(rig.bytes()), || layer.hot(HOST_LAYER_REPS))
        .during("looping host-to-device copies beside the host layer")?;
    let during_copy = during_copy?;
    let x_bytes = model.arch.hidden_size * 4;
    let handoff = host_layer::handoff(gpu, x_bytes, 20).during("timing the residual stream's hand-off")?;
    let threads = djinn_kernels::Team::global().threads() as u32;
    let at = |us: f64| layer.bytes as f64 / us / 1e3;
    say(format!(
        "host MLP block of {} ({}, {} threads, {} images, context {prompt_len}): {:.0} us hot ({:.1} GB/s), {:.0} us \
         cold, {:.0} us ({:.1} GB/s) while copies ran at {:.1} GB/s; plain read {:.1} GB/s; hand-off {:.1} us",
        model.name,
        size(layer.bytes),
        threads,
        layer.images(),
        hot.median_us,
        at(hot.median_us),
        cold.median_us,
        during_copy.median_us,
        at(during_copy.median_us),
        copy_gbps,
        read_gbps,
        handoff.median_us
    ));
    Ok(HostLayer {
        threads,
        bytes: layer.bytes,
        images: layer.images() as u64,
        context: prompt_len,
        hot,
        cold,
        during_copy,
        copy_gbps,
        read_gbps,
        handoff,
        handoff_bytes: x_bytes,
    })
}

/// What [`compute`] measures.
type Compute = (Vec<BlockTiming>, Gemm, Option<Attention>, Launches, bool);

/// Every block kind of `plan`'s model through the forward pass, a GEMM, a
/// long prefill attention, and kernel launches.
fn compute(gpu: &Gpu, plan: Plan, say: &mut dyn FnMut(String)) -> Result<Compute, ProfileError> {
    let offsets = bench_plan::resident_offsets(&plan)?;
    say(format!(
        "loading kernels; one layer of {} on random weights ({} MiB arena)",
        plan.model.name,
        plan.arena.bytes >> 20
    ));
    let mut rig = ComputeRig::new(gpu, plan, offsets, GEMM_SIZE, ATTN_TOKENS).during("setting up the forward pass")?;
    let gemm = rig.gemm(GEMM_SIZE, 3, 10).during("timing a GEMM")?;
    let attention = rig.attention(3, 10).during("timing a prefill attention")?;
    say(match &attention {
        Some(a) => format!(
            "prefill attention over {} tokens ({} heads x {}, {} kv heads, flash kernel): {:.1} us, {:.0} TFLOP/s",
            a.tokens,
            a.num_heads,
            a.head_dim,
            a.num_kv_heads,
            a.time.median_us,
            a.flops() / a.time.median_us / 1e6
        ),
        None => {
            "prefill attention: the flash kernel does not take this model's heads here; attn_tflops not measured".into()
        }
    });
    let blocks = rig.time_blocks(3, (2, 6), 5).during("timing the blocks")?;
    for b in &blocks {
        say(format!(
            "{} {} ({} tokens, context {}): {:.1} us on the device (min {:.1}, max {:.1}), {:.1} us to issue",
            b.phase,
            b.block,
            b.tokens,
            b.context,
            b.device.median_us,
            b.device.min_us,
            b.device.max_us,
            b.host.median_us
        ));
    }
    let launches = rig.launches(LAUNCH_BATCH, 5).during("timing kernel launches")?;
    say(format!(
        "GEMM {GEMM_SIZE}³ {}: {:.0} TFLOP/s; back-to-back kernels: {:.2} us each on the device, {:.2} us to issue",
        gemm.dtype,
        2.0 * (GEMM_SIZE as f64).powi(3) / gemm.time.median_us / 1e6,
        launches.time.median_us / launches.kernels as f64,
        launches.host.median_us / launches.kernels as f64
    ));
    let ahead = rig.stayed_ahead();
    if !ahead {
        say("WARNING: the host fell behind the device; block times include host issue time".into());
    }
    Ok((blocks, gemm, attention, launches, ahead))
}
