//! The host lane as a whole: one decode step of the model's MLP block (the
//! half of a layer a plan may host-compute) computed on the host CPU exactly
//! as a plan's `host_compute` runs it (the one
//! forward pass, the CPU twins on the kernels' thread team, a host arena laid
//! out like the plan's), so the compiler prices host layers with what they
//! take rather than with a matrix-vector loop.
//!
//! The rig holds several distinct images of the layer, more bytes together
//! than the last-level cache, and each timed step reads the next one: every
//! step streams its weights from DRAM, as in decode. It times the step with
//! the team hot (steps back to back), cold (parked, then woken as the host
//! lane wakes it) and hot beside the copy loop (the profile's priced figure),
//! and a plain read of the same images on every core: the host lane's bound.

use std::hint::black_box;
use std::time::{Duration, Instant};

use djinn_core::model::{BlockKind, Dtype};
use djinn_core::plan::{PhaseName, Plan};
use djinn_kernels::team::{part, Team};
use djinn_runtime::backend::Pass;
use djinn_runtime::cpu::CpuOps;
use djinn_runtime::forward::Forward;
use djinn_runtime::host::{HostArena, HUGE_PAGE};

use djinn_runtime::cuda::{CudaError, DeviceBuffer, Event, Gpu, PinnedBuffer, Stream};

use crate::error::ProfileError;
use crate::random;
use crate::stats::Timing;

/// Bytes of distinct layer images the rig cycles through: well past a
/// server's last-level cache (hundreds of MiB).
const IMAGES_BYTES: u64 = 2 << 30;

pub struct HostLayerRig {
    forward: Forward,
    arena: HostArena,
    /// Offsets of the layer's images in `arena`.
    images: Vec<u64>,
    layer: usize,
    /// Bytes from one image's start to the next (the layer's, rounded up to a huge page).
    stride: u64,
    pub bytes: u64,
    pass: Pass,
    next: usize,
}

impl HostLayerRig {
    /// A rig for `plan` (a one-layer profiling plan) decoding at position `context`.
    pub fn new(plan: &Plan, context: u64) -> Result<HostLayerRig, ProfileError> {
        let fail = |message: String| ProfileError::Plan { model: plan.model.name.clone(), message };
        let forward = Forward::new(plan).map_err(|e| fail(e.to_string()))?;
        let layer = plan
            .model
            .blocks
            .iter()
            .position(|b| b.kind == BlockKind::Mlp)
            .ok_or_else(|| fail("the profiling model has no MLP block".into()))?;
        let bytes = plan.model.blocks[layer].bytes;
        let count = IMAGES_BYTES.div_ceil(bytes).clamp(2, 64);
        let stride = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let start = plan.arena.bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let total = start + count * stride;
        let mut arena = HostArena::zeroed(total).ok_or(ProfileError::HostMemory { bytes: total })?;
        arena.advise_huge(start, count * stride);
        let images: Vec<u64> = (0..count).map(|i| start + i * stride).collect();
        for (i, &off) in images.iter().enumerate() {
            random::fill(&mut arena[off as usize..(off + bytes) as usize], plan.model.dtype, 100 + i as u64);
        }
        // The KV cache the step attends over: random rows, as after a prompt.
        if let Some(kv) = plan.region_of_kind(djinn_core::plan::RegionKind::KvCache) {
            random::fill(&mut arena[kv.offset as usize..(kv.offset + kv.bytes) as usize], plan.model.dtype, 7);
        }
        let x = forward.activations().x;
        random::fill(&mut arena[x.offset as usize..(x.offset + x.bytes()) as usize], Dtype::F32, 8);
        let pass = Pass { tokens: vec![1], pos0: context.min(plan.shape.max_seq_len - 1), phase: PhaseName::Decode };
        Ok(HostLayerRig { forward, arena, images, layer, stride, bytes, pass, next: 0 })
    }

    /// Distinct images the steps cycle through.
    pub fn images(&self) -> usize {
        self.images.len()
    }

    /// One step over the next image, µs.
    fn step(&mut self) -> Result<f64, ProfileError> {
        let image = self.images[self.next];
        self.next = (self.next + 1) % self.images.len();
        let t = Instant::now();
        let mut ops = CpuOps::new(&mut self.arena);
        self.forward
            .compute_block(&mut ops, self.layer, image, &self.pass)
            .map_err(|e| ProfileError::HostLayer(e.to_string()))?;
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// `reps` steps back to back after a full warm-up cycle over the images.
    pub fn hot(&mut self, reps: usize) -> Result<Timing, ProfileError> {
        for _ in 0..self.images.len() {
            self.step()?;
        }
        let us = (0..reps).map(|_| self.step()).collect::<Result<Vec<_>, _>>()?;
        Ok(Timing::of(&us))
    }

    /// `reps` steps, each after the team has parked (`idle` past its idle
    /// spin), woken first as the host lane wakes it.
    pub fn cold(&mut self, reps: usize, idle: Duration) -> Result<Timing, ProfileError> {
        let mut us = Vec::with_capacity(reps);
        for _ in 0..reps {
            std::thread::sleep(idle);
            let t = Instant::now();
            Team::global().wake();
            self.step()?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(Timing::of(&us))
    }

    /// A plain read of every image on the whole team, GB/s (median of `reps`).
    pub fn read_gbps(&self, reps: usize) -> f64 {
        let team = Team::global();
        let (base, len) = (self.images[0] as usize, self.images.len() * self.stride as usize);
        let data = &self.arena[base..base + len];
        let mut us = Vec::with_capacity(reps);
        for _ in 0..reps + 1 {
            let t = Instant::now();
            team.run(&|w, n| {
                let lines = part(len / 64, w, n);
                read_lines(&data[lines.start * 64..lines.end * 64]);
            });
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let t = Timing::of(&us[1..]);
        len as f64 / t.median_us / 1e3
    }
}

/// Reads every whole 64-byte line of `bytes` once, as plainly as the CPU can
/// (eight words folded per line, the fold kept from the optimiser): a read of
/// host memory with no arithmetic to speak of.
pub fn read_lines(bytes: &[u8]) {
    let mut acc = [0u64; 8];
    for line in bytes.chunks_exact(64) {
        for (a, c) in acc.iter_mut().zip(line.chunks_exact(8)) {
            *a ^= u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        }
    }
    black_box(acc);
}

/// The residual stream's round trip around a run of host layers, as the host
/// lane makes it: `bytes` down into pinned memory behind the stream, a spin on
/// the event, then up again on the stream (µs to the upload's completion).
pub fn handoff(gpu: &Gpu, bytes: u64, reps: usize) -> Result<Timing, CudaError> {
    let stream = Stream::new(gpu, false)?;
    let device = DeviceBuffer::alloc(gpu, bytes, "the hand-off benchmark")?;
    let mut pinned = PinnedBuffer::new(gpu, bytes as usize, "the hand-off benchmark")?;
    let (down, up) = (Event::new(gpu, false)?, Event::new(gpu, false)?);
    let mut mirror = vec![0u8; bytes as usize];
    let mut us = Vec::with_capacity(reps);
    for i in 0..reps + 2 {
        let t = Instant::now();
        // SAFETY: both ranges are `bytes` long and owned here; each copy is waited for below.
        unsafe { pinned.copy_from_device(0, bytes as usize, device.ptr, stream.raw)? };
        down.record(&stream)?;
        down.spin_until_complete()?;
        mirror.copy_from_slice(pinned.as_slice());
        pinned.as_mut_slice().copy_from_slice(&mirror);
        // SAFETY: as above.
        unsafe { pinned.copy_to_device(0, bytes as usize, device.ptr, stream.raw)? };
        up.record(&stream)?;
        up.spin_until_complete()?;
        if i >= 2 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(Timing::of(&us))
}
