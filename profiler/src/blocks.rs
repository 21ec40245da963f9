//! Compute measurements on the GPU: every block kind through the shared
//! forward pass, one large GEMM, one long prefill attention, and the cost of
//! a kernel launch.
//!
//! One [`CudaOps`] over one arena: the profiling plan's regions
//! ([`crate::bench_plan`]) followed by scratch for GEMM operands and for the
//! attention's query, keys, values and output. The weights
//! are random ([`crate::random`]); a block runs exactly as in djinn-exec —
//! `Forward::compute_block` issuing our kernels and cuBLAS on the compute
//! stream — bracketed by timing events.
//!
//! **Device time and host time, separately.** A block holds the compute
//! lane for its device time when the host issues its kernels faster than the
//! device runs them (the device finds them queued), and for the host's issue
//! time when the host is slower (the device waits). Timing passes issued into
//! an idle device mixes the two. So each timed group is issued *behind a
//! blocker*: GEMMs queued first keep the device busy while the host issues
//! the group, and the device then runs it back to back. The blocker's
//! completion event is queried once the group is issued: still pending means
//! the device never waited for the host (otherwise the group runs again
//! behind a longer blocker). The events give each block's device time; the
//! host clock around each block's issue gives its host time; the profile
//! takes the larger ([`BlockTiming::lane_us`]).
//!
//! Passes run in model order (embedding, layer, final norm, LM head), as a
//! real pass would. Prefill runs first: its passes write the layer's KV cache
//! rows `0..prompt_len`, so each decode pass (one token at position
//! `prompt_len`) attends over a full prompt's cache, as the first generated
//! token does — the context the compiler prices decode at.

use std::time::Instant;

use djinn_core::activations::BUFFER_ALIGN;
use djinn_core::plan::{PhaseName, Plan, RegionKind};
use djinn_core::units::align_up;
use djinn_core::Dtype;
use djinn_runtime::backend::Pass;
use djinn_runtime::cuda::{CudaError, CudaOps, DeviceBuffer, Event, Gpu, Stream};
use djinn_runtime::forward::Forward;
use djinn_runtime::ops::{AttnShape, Buf, Ops, RopeTable};

use crate::clock::Stopwatch;
use crate::measurements::{Attention, BlockTiming, Gemm, Launches};
use crate::random;
use crate::stats::Timing;

/// Random data is uploaded in tiles of this size (repeated over larger regions).
const TILE_BYTES: usize = 64 << 20;
/// Side of the blocker's square GEMMs (a fraction of a millisecond each on a large GPU).
const BLOCKER_SIZE: u64 = 4096;
/// Blocker GEMMs queued first; multiplied by 4 after each group the host fell behind on.
const BLOCKER_START: usize = 8;
/// Groups issued behind ever longer blockers before giving up on getting ahead
/// (at most 128 GEMMs, well inside a stream's queue, so issuing never blocks).
const BLOCKER_TRIES: usize = 3;

pub struct ComputeRig {
    gpu: Gpu,
    ops: CudaOps,
    forward: Forward,
    plan: Plan,
    /// Arena offset of each block's image, in block-table order.
    offsets: Vec<u64>,
    /// The GEMM operands `x`, `w`, `out` (each `gemm_size`² in the model
    /// dtype), then two one-element operands for the launch test.
    scratch: Scratch,
    /// Blocker GEMMs to queue before a timed group.
    blocker: usize,
    /// Whether every timed group so far found the device busy when issued.
    ahead: bool,
}

#[derive(Debug, Clone, Copy)]
struct Scratch {
    base: u64,
    /// Bytes of each GEMM operand.
    one: u64,
    size: u64,
    /// Where the attention's operands start (after the GEMM's and the launch test's).
    attn_base: u64,
    /// Query rows of the attention its operands are sized for.
    attn_tokens: u64,
}

/// A group of timed work, issued behind a blocker.
struct Issued {
    stopwatch: Stopwatch,
    /// Host time spent issuing each timed unit (a block, a batch), µs.
    host_us: Vec<f64>,
}

impl ComputeRig {
    /// Bytes of scratch for GEMMs of `size` in `dtype` and the launch test.
    pub fn scratch_bytes(size: u64, dtype: Dtype) -> u64 {
        3 * align_up(size * size * dtype.size(), BUFFER_ALIGN) + 2 * BUFFER_ALIGN
    }

    /// Bytes of one attention operand of `tokens` rows of `width` values in `dtype`.
    fn attn_operand_bytes(tokens: u64, width: u64, dtype: Dtype) -> u64 {
        align_up(tokens * width * dtype.size(), BUFFER_ALIGN)
    }

    /// Loads the kernels, allocates the plan's arena plus scratch for GEMMs
    /// of `gemm_size` (at least the blocker's) and for a prefill attention of
    /// `attn_tokens` rows with the model's heads, and fills every block image,
    /// the GEMM and attention inputs with random values and the token ids
    /// with random tokens.
    pub fn new(
        gpu: &Gpu,
        plan: Plan,
        offsets: Vec<u64>,
        gemm_size: u64,
        attn_tokens: u64,
    ) -> Result<ComputeRig, CudaError> {
        let forward = Forward::new(&plan).map_err(|e| CudaError::Plan(e.to_string()))?;
        let ws = plan
            .region_of_kind(RegionKind::Workspace)
            .ok_or_else(|| CudaError::Plan("the profiling plan has no workspace region".into()))?;
        let dtype = plan.model.dtype;
        let (q_dim, kv_dim) = (plan.model.arch.q_dim(), plan.model.arch.kv_dim());
        let size = gemm_size.max(BLOCKER_SIZE);
        let base = align_up(plan.arena.bytes, 2 << 20);
        let attn_base = base + Self::scratch_bytes(size, dtype);
        // Query and output [tokens, q_dim], keys and values [tokens, kv_dim].
        let attn_bytes = 2 * Self::attn_operand_bytes(attn_tokens, q_dim, dtype)
            + 2 * Self::attn_operand_bytes(attn_tokens, kv_dim, dtype);
        let scratch =
            Scratch { base, one: align_up(size * size * dtype.size(), BUFFER_ALIGN), size, attn_base, attn_tokens };
        let arena_bytes = attn_base + attn_bytes;
        let stream = Stream::new(gpu, false)?;
        let ops = CudaOps::new(gpu.clone(), stream, (ws.offset, ws.bytes), |gpu| {
            DeviceBuffer::alloc(gpu, arena_bytes, "the profiling arena")
        })?;
        let mut rig =
            ComputeRig { gpu: gpu.clone(), ops, forward, plan, offsets, scratch, blocker: BLOCKER_START, ahead: true };
        let sizes: Vec<u64> = rig.plan.model.blocks.iter().map(|b| b.bytes).collect();
        for (i, bytes) in sizes.into_iter().enumerate() {
            rig.fill(rig.offsets[i], bytes, dtype, i as u64)?;
        }
        rig.fill(base, 2 * scratch.one, dtype, 21)?;
        rig.ops.fill(base + 3 * scratch.one, 2 * BUFFER_ALIGN, 0)?;
        rig.fill(attn_base, attn_bytes, dtype, 31)?;
        let act = *rig.forward.activations();
        let ids = random::token_ids(act.tokens.elems, rig.plan.model.arch.vocab_size, 11);
        rig.ops.upload(act.tokens.offset, &ids)?;
        Ok(rig)
    }

    /// Whether the device was busy whenever a timed group was issued (so
    /// every timing is device time); `false` if the host fell behind even
    /// the longest blocker.
    pub fn stayed_ahead(&self) -> bool {
        self.ahead
    }

    /// Fills `bytes` at arena `offset` with random `dtype` values (one tile, repeated).
    fn fill(&mut self, offset: u64, bytes: u64, dtype: Dtype, seed: u64) -> Result<(), CudaError> {
        let mut tile = vec![0u8; TILE_BYTES.min(bytes as usize)];
        random::fill(&mut tile, dtype, seed);
        let mut done = 0;
        while done < bytes {
            let n = (bytes - done).min(tile.len() as u64);
            self.ops.upload(offset + done, &tile[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// The square GEMM operands of side `size`, inside the scratch.
    fn gemm_operands(&self, size: u64) -> (Buf, Buf, Buf) {
        let (s, dtype) = (self.scratch, self.plan.model.dtype);
        let buf = |i: u64| Buf { offset: s.base + i * s.one, elems: size * size, dtype };
        (buf(0), buf(1), buf(2))
    }

    /// Queues the blocker, then `issue`; repeats behind a longer blocker
    /// while the device finished the blocker before the host finished issuing.
    fn behind_blocker(
        &mut self,
        mut issue: impl FnMut(&mut ComputeRig) -> Result<Issued, CudaError>,
    ) -> Result<Issued, CudaError> {
        let (x, w, out) = self.gemm_operands(BLOCKER_SIZE);
        let n = BLOCKER_SIZE;
        for attempt in 1..=BLOCKER_TRIES {
            let blocked = Event::new(&self.gpu, false)?;
            for _ in 0..self.blocker {
                self.ops.matmul(out, x, w, n, n, n)?;
            }
            blocked.record(self.ops.stream())?;
            let issued = issue(self)?;
            let ahead = !blocked.is_complete()?;
            self.ops.synchronize()?;
            if ahead || attempt == BLOCKER_TRIES {
                self.ahead &= ahead;
                return Ok(issued);
            }
            self.blocker *= 4;
        }
        unreachable!("the last attempt returns")
    }

    /// Times every block of the plan for a prefill of `prompt_len` tokens,
    /// then for a decode step at position `prompt_len`: `groups` groups of
    /// `passes` passes each, after `warm` untimed passes.
    pub fn time_blocks(
        &mut self,
        warm: usize,
        (prefill_groups, decode_groups): (usize, usize),
        passes: usize,
    ) -> Result<Vec<BlockTiming>, CudaError> {
        let prompt_len = self.plan.shape.prompt_len;
        let mut blocks = self.time_phase(PhaseName::Prefill, prompt_len, 0, warm, prefill_groups, passes)?;
        blocks.extend(self.time_phase(PhaseName::Decode, 1, prompt_len, warm, decode_groups, passes)?);
        Ok(blocks)
    }

    fn time_phase(
        &mut self,
        phase: PhaseName,
        n: u64,
        pos0: u64,
        warm: usize,
        groups: usize,
        passes: usize,
    ) -> Result<Vec<BlockTiming>, CudaError> {
        let name = match phase {
            PhaseName::Prefill => PhaseName::Prefill,
            PhaseName::Decode => PhaseName::Decode,
        };
        // Only the count and position matter: the ids were uploaded once; the
        // position goes into the pass header, as a backend stages it.
        let pass = Pass { tokens: vec![0; n as usize], pos0, phase: name };
        self.ops.write_pass(self.forward.activations().pass, pos0, n)?;
        let offsets = self.offsets.clone();
        for _ in 0..warm {
            for (i, &offset) in offsets.iter().enumerate() {
                self.forward.compute_block(&mut self.ops, i, offset, &pass)?;
            }
        }
        self.ops.synchronize()?;
        // Per timed block, in issue order: device µs and host µs.
        let (mut device, mut host) = (Vec::new(), Vec::new());
        for _ in 0..groups {
            let issued = self.behind_blocker(|rig| {
                let mut stopwatch = Stopwatch::new(&rig.gpu, passes * offsets.len())?;
                let mut host_us = Vec::with_capacity(passes * offsets.len());
                for _ in 0..passes {
                    for (i, &offset) in offsets.iter().enumerate() {
                        let t = Instant::now();
                        stopwatch.start(rig.ops.stream())?;
                        rig.forward.compute_block(&mut rig.ops, i, offset, &pass)?;
                        stopwatch.stop(rig.ops.stream())?;
                        host_us.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                }
                Ok(Issued { stopwatch, host_us })
            })?;
            device.extend(issued.stopwatch.times_us()?);
            host.extend(issued.host_us);
        }
        let k = offsets.len();
        let of = |v: &[f64], i: usize| Timing::of(&v.iter().skip(i).step_by(k).copied().collect::<Vec<_>>());
        Ok(self
            .plan
            .model
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| BlockTiming {
                block: b.name.clone(),
                kind: b.kind,
                phase,
                tokens: n,
                context: pos0 + n,
                bytes: b.bytes,
                device: of(&device, i),
                host: of(&host, i),
            })
            .collect())
    }

    /// A `size`³ GEMM (at most the scratch's) in the model dtype through the
    /// ops' matmul; long enough to keep the device ahead of the host unaided.
    pub fn gemm(&mut self, size: u64, warm: usize, reps: usize) -> Result<Gemm, CudaError> {
        assert!(size <= self.scratch.size, "GEMM of {size} in scratch for {}", self.scratch.size);
        let (x, w, out) = self.gemm_operands(size);
        for _ in 0..warm {
            self.ops.matmul(out, x, w, size, size, size)?;
        }
        let mut sw = Stopwatch::new(&self.gpu, reps)?;
        for _ in 0..reps {
            sw.start(self.ops.stream())?;
            self.ops.matmul(out, x, w, size, size, size)?;
            sw.stop(self.ops.stream())?;
        }
        self.ops.synchronize()?;
        Ok(Gemm { m: size, n: size, k: size, dtype: self.plan.model.dtype, time: Timing::of(&sw.times_us()?) })
    }

    /// The attention's query, keys, values and output inside the scratch, `[tokens, width]` each.
    fn attn_operands(&self) -> [Buf; 4] {
        let (s, dtype, arch) = (self.scratch, self.plan.model.dtype, &self.plan.model.arch);
        let mut at = s.attn_base;
        [arch.q_dim(), arch.kv_dim(), arch.kv_dim(), arch.q_dim()].map(|width| {
            let buf = Buf { offset: at, elems: s.attn_tokens * width, dtype };
            at += Self::attn_operand_bytes(s.attn_tokens, width, dtype);
            buf
        })
    }

    /// Causal prefill attention over the scratch's `attn_tokens` positions
    /// (the keys and values of all of them in the cache, no window) by the
    /// flash kernel, with the model's heads; timed like [`Self::gemm`], long
    /// enough to keep the device ahead of the host unaided. `None` where the
    /// kernel does not take the shape (`CudaOps::try_attn_prefill`: a head
    /// size it does not tile, a device before compute capability 8.0).
    pub fn attention(&mut self, warm: usize, reps: usize) -> Result<Option<Attention>, CudaError> {
        let arch = &self.plan.model.arch;
        let rope = RopeTable::of(arch)
            .ok_or_else(|| CudaError::Plan(format!("heads of {} dimensions have no RoPE table", arch.head_dim)))?;
        let shape = AttnShape {
            tokens: self.scratch.attn_tokens,
            pos0: 0,
            num_heads: arch.num_heads,
            num_kv_heads: arch.num_kv_heads,
            head_dim: arch.head_dim,
            rope,
            window: None,
            header: None,
        };
        let [q, k, v, out] = self.attn_operands();
        // Every run is checked: the kernel either takes the shape each time or never.
        for _ in 0..warm.max(1) {
            if !self.ops.try_attn_prefill(out, q, k, v, shape)? {
                return Ok(None);
            }
        }
        let mut sw = Stopwatch::new(&self.gpu, reps)?;
        for _ in 0..reps {
            sw.start(self.ops.stream())?;
            let ran = self.ops.try_attn_prefill(out, q, k, v, shape)?;
            sw.stop(self.ops.stream())?;
            if !ran {
                return Ok(None);
            }
        }
        self.ops.synchronize()?;
        Ok(Some(Attention {
            tokens: shape.tokens,
            num_heads: shape.num_heads,
            num_kv_heads: shape.num_kv_heads,
            head_dim: shape.head_dim,
            dtype: self.plan.model.dtype,
            time: Timing::of(&sw.times_us()?),
        }))
    }

    /// `batches` batches of `kernels` one-element residual adds, each issued
    /// behind a blocker so the device runs them back to back.
    pub fn launches(&mut self, kernels: u64, batches: usize) -> Result<Launches, CudaError> {
        let s = self.scratch;
        let x = Buf { offset: s.base + 3 * s.one, elems: 1, dtype: Dtype::F32 };
        let y = Buf { offset: s.base + 3 * s.one + BUFFER_ALIGN, elems: 1, dtype: self.plan.model.dtype };
        for _ in 0..kernels {
            self.ops.add(x, y, 1)?; // warm-up
        }
        let (mut us, mut host_us) = (Vec::new(), Vec::new());
        for _ in 0..batches {
            let issued = self.behind_blocker(|rig| {
                let mut stopwatch = Stopwatch::new(&rig.gpu, 1)?;
                let t = Instant::now();
                stopwatch.start(rig.ops.stream())?;
                for _ in 0..kernels {
                    rig.ops.add(x, y, 1)?;
                }
                stopwatch.stop(rig.ops.stream())?;
                Ok(Issued { stopwatch, host_us: vec![t.elapsed().as_secs_f64() * 1e6] })
            })?;
            us.extend(issued.stopwatch.times_us()?);
            host_us.extend(issued.host_us);
        }
        Ok(Launches { kernels, time: Timing::of(&us), host: Timing::of(&host_us) })
    }
}
