//! [`CudaOps`]: the forward pass's [`Ops`] on the GPU.
//!
//! Every call checks its operands against the arena (a wrong offset is an
//! error naming the op and operand, never a stray write), then enqueues its
//! kernels and cuBLAS GEMMs on the compute stream and returns: nothing here
//! waits for the device. Set `DJINN_CUDA_CHECK=1` to synchronise after every
//! op, which pins an asynchronous fault on the op that caused it.
//!
//! Products run by shape: up to [`GEMV_MAX_M`] input rows (decode) on the
//! GEMV kernels of `gemv.cu`, which stream the weights once and finish in
//! an epilogue (the fused [`Ops`] methods: q/k/v in one launch, gate/up with
//! SiLU, the residual add); more rows (prefill) on cuBLAS, the products
//! that share their input and shape (q/k/v, gate/up) as one batched GEMM
//! where they are equally spaced (`batched.rs`; `DJINN_BATCHED=0` turns it
//! off). Decode attention
//! is split along the sequence (`attn_decode.cu`), prefill attention is one
//! flash kernel (`prefill.rs`; two cuBLAS GEMMs around a softmax for other
//! head sizes, or with `DJINN_FLASH=0`). `DJINN_FUSED=0` turns the decode kernels
//! off (every product on cuBLAS, every op unfused), for side-by-side
//! measurements of the two paths in one run. Kernels launch with
//! programmatic stream serialisation where the device has it (compute
//! capability 9.0 and later; `DJINN_PDL=0` turns it off): each may be
//! scheduled while the one before it drains, and waits on the device for
//! it (`grid_dependency` in `common.cuh`), which saves most of the launch
//! gap between the ~9 short kernels of a decode layer; the decode products
//! and decode attention issue their first loads of what no recent kernel
//! wrote (weights; cache rows before the newest) ahead of that wait.

use std::ffi::c_void;

use cudarc::driver::{result, sys};
use djinn_core::activations::{BUFFER_ALIGN, PASS_WORDS, WORKSPACE_BYTES};
use djinn_core::Dtype;
use djinn_kernels::cuda::Kernel;
use djinn_kernels::{SampleParams, SAMPLE_MAX_VOCAB};

use super::blas::{Blas, Strided};
use super::context::{DeviceBuffer, Gpu, Stream};
use super::error::{CudaError, DriverContext};
use super::gemv::Epilogue;
use super::nvrtc::{kernel_constant, Kernels};
use crate::ops::{unfused, AttnShape, Buf, Ops, MAX_ROPE_PAIRS};

/// One kernel argument, passed by value.
pub(super) enum Arg {
    Ptr(u64),
    U32(u32),
    F32(f32),
    /// A struct passed by value, as its bytes (RoPE's frequency table).
    Bytes(Vec<u8>),
}

/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;

/// Score values each thread of `attn_softmax.cu` holds (its MAX_PER_THREAD).
const SOFTMAX_PER_THREAD: u64 = 16;
/// The longest attention row `attn_softmax.cu` handles: 1024 threads × 16 values.
pub const MAX_SOFTMAX_ROW: u64 = 1024 * SOFTMAX_PER_THREAD;

/// Rows per block of `head_rmsnorm.cu` (its `HEAD_NORM_ROWS`), one warp each.
const HEAD_NORM_ROWS: u64 = 8;
/// The longest row `head_rmsnorm.cu` takes: 32 lanes × its `HEAD_NORM_MAX_PER_LANE`.
const HEAD_NORM_MAX_DIM: u64 = 32 * 8;

/// The kernel of `dtype` (the model dtype), `f16` or `bf16`.
pub(super) fn kname(dtype: Dtype, f16: Kernel, bf16: Kernel, op: &'static str) -> Result<Kernel, CudaError> {
    match dtype {
        Dtype::F16 => Ok(f16),
        Dtype::Bf16 => Ok(bf16),
        Dtype::F32 => Err(not_half(op)),
    }
}

/// The error of an op given f32 where the model dtype is required.
pub(super) fn not_half(op: &'static str) -> CudaError {
    CudaError::BadOperands { op, message: "the model dtype must be f16 or bf16, not f32".into() }
}

pub(super) fn u32_of(op: &'static str, what: &str, v: u64) -> Result<u32, CudaError> {
    u32::try_from(v)
        .map_err(|_| CudaError::BadOperands { op, message: format!("{what} = {v} does not fit in 32 bits") })
}

/// `(kv_dim, pos0 + tokens)` of a pass that writes cache rows
/// `pos0..pos0+tokens`, after checking both cache planes hold them.
pub(super) fn kv_rows(op: &'static str, k_cache: Buf, v_cache: Buf, s: AttnShape) -> Result<(u64, u64), CudaError> {
    let kv_dim = s.num_kv_heads * s.head_dim;
    let rows = s.pos0 + s.tokens;
    if rows * kv_dim > k_cache.elems.min(v_cache.elems) {
        return Err(CudaError::BadOperands {
            op,
            message: format!("KV cache full: rows {}..{rows} of a {}-row cache", s.pos0, k_cache.elems / kv_dim.max(1)),
        });
    }
    Ok((kv_dim, rows))
}

/// A sliding window as the attention kernels take it: 0 for none. (A window
/// of 0 positions would see nothing; no architecture has one.)
pub(super) fn window_arg(op: &'static str, window: Option<u64>) -> Result<u32, CudaError> {
    match window {
        None => Ok(0),
        Some(0) => Err(CudaError::BadOperands { op, message: "a sliding window of 0 positions sees nothing".into() }),
        // Wider than any cache row count the kernels take: the same as none.
        Some(w) => Ok(u32::try_from(w).unwrap_or(u32::MAX)),
    }
}

/// RoPE's table as a kernel argument, after checking it covers `head_dim / 2` pairs.
pub(super) fn rope_arg(op: &'static str, s: &AttnShape) -> Result<Arg, CudaError> {
    if !s.head_dim.is_multiple_of(2) || s.head_dim / 2 > MAX_ROPE_PAIRS as u64 {
        return Err(CudaError::BadOperands {
            op,
            message: format!("head_dim {} must be even and at most {}", s.head_dim, 2 * MAX_ROPE_PAIRS),
        });
    }
    Ok(Arg::Bytes(s.rope.as_bytes()))
}

/// Threads of an `rmsnorm.cu` block for rows of `dim`: where the row is
/// whole quads, enough warps that each thread holds at most the kernel's
/// RMS_HELD of them (its vector path; 160 threads at 5120); otherwise one
/// value a thread. Never more than its RMS_THREADS, the bound it is compiled
/// for. Both constants read once from its text or its override.
fn rmsnorm_threads(dim: u64) -> u32 {
    static CONSTS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    let (held, most) = *CONSTS.get_or_init(|| {
        let get = |name| {
            kernel_constant(Kernel::RmsnormF16, name).expect("rmsnorm.cu defines RMS_HELD and RMS_THREADS (tested)")
        };
        (get("RMS_HELD"), get("RMS_THREADS"))
    });
    let quads = dim / 4;
    if dim.is_multiple_of(4) && quads <= held * most {
        return quads.div_ceil(held).next_multiple_of(32).clamp(32, most) as u32;
    }
    if dim >= 4096 {
        most as u32
    } else {
        THREADS.min(most as u32)
    }
}

/// Blocks of THREADS for the elementwise kernels that take eight values a
/// thread (`add.cu`, `silu_mul.cu`; their grid-stride loops cover any n with any grid).
fn grid_for_vec8(n: u64) -> u32 {
    grid_for(n.div_ceil(8))
}

/// The pass header's words for a pass of `tokens` at `pos0` (`[pos0, tokens]`, then zeros:
/// decode attention's counters start at zero in every pass).
pub(crate) fn pass_words(what: &'static str, pos0: u64, tokens: u64) -> Result<[u32; PASS_WORDS as usize], CudaError> {
    let mut w = [0u32; PASS_WORDS as usize];
    w[0] = u32_of(what, "pos0", pos0)?;
    w[1] = u32_of(what, "tokens", tokens)?;
    Ok(w)
}

pub(super) fn grid_for(n: u64) -> u32 {
    n.div_ceil(THREADS as u64).clamp(1, 1 << 20) as u32
}

pub struct CudaOps {
    kernels: Kernels,
    pub(super) blas: Blas,
    pub(super) arena: DeviceBuffer,
    stream: Stream,
    gpu: Gpu,
    check_each_op: bool,
    /// The decode kernels (GEMV, fused RoPE + store, split attention); off with `DJINN_FUSED=0`.
    pub(super) fused: bool,
    /// Programmatic dependent launch (compute capability 9.0 and later); off with `DJINN_PDL=0`.
    pdl: bool,
    /// Prefill attention by the flash kernel (`prefill.rs`); off with `DJINN_FLASH=0`.
    flash: bool,
    /// Prefill products of one input and shape as one batched GEMM (`batched.rs`); off with `DJINN_BATCHED=0`.
    pub(super) batched: bool,
    /// cuBLAS's workspace: device address and bytes.
    workspace: (u64, u64),
    /// The pass header as last noted ([`CudaOps::note_pass`]): where it is,
    /// and the `(pos0, tokens)` it holds once the copies enqueued so far have run.
    pub(super) pass: Option<(Buf, u64, u64)>,
    /// Whether an op has been enqueued with a sequence position among its
    /// launch arguments (rather than read from the pass header) since
    /// [`CudaOps::take_positions_baked`]: a graph capturing it replays right
    /// at that position only.
    pub(super) positions_baked: bool,
}

impl CudaOps {
    /// Ops issuing on `stream`: loads the kernels and creates the cuBLAS
    /// handle, then calls `alloc_arena` for the plan's one allocation (last,
    /// so a budget ballast taken inside it sees everything else allocated),
    /// and gives cuBLAS `workspace` = (offset, bytes) inside the arena.
    /// Public for djinn-profile, which lays out its own arena.
    pub fn new(
        gpu: Gpu,
        stream: Stream,
        workspace: (u64, u64),
        alloc_arena: impl FnOnce(&Gpu) -> Result<DeviceBuffer, CudaError>,
    ) -> Result<CudaOps, CudaError> {
        let kernels = Kernels::load(&gpu)?;
        let blas = Blas::new(&gpu, stream.raw)?;
        let arena = alloc_arena(&gpu)?;
        if workspace.0 + workspace.1 > arena.bytes {
            return Err(CudaError::Plan(format!(
                "workspace region {}..{} lies outside the {}-byte arena",
                workspace.0,
                workspace.0 + workspace.1,
                arena.bytes
            )));
        }
        let workspace_ptr = arena.ptr + workspace.0;
        blas.set_workspace(workspace_ptr, workspace.1)?;
        let check_each_op = std::env::var_os("DJINN_CUDA_CHECK").is_some_and(|v| v == "1");
        let fused = std::env::var_os("DJINN_FUSED").is_none_or(|v| v != "0");
        let pdl = gpu.cc.0 >= 9 && std::env::var_os("DJINN_PDL").is_none_or(|v| v != "0");
        let flash = std::env::var_os("DJINN_FLASH").is_none_or(|v| v != "0");
        let batched = std::env::var_os("DJINN_BATCHED").is_none_or(|v| v != "0");
        Ok(CudaOps {
            kernels,
            blas,
            arena,
            stream,
            gpu,
            check_each_op,
            fused,
            pdl,
            flash,
            batched,
            workspace: (workspace_ptr, workspace.1),
            pass: None,
            positions_baked: false,
        })
    }

    /// Ops on device 0 over a fresh arena of `bytes` (plus a cuBLAS workspace
    /// after it), for tests and benchmarks of single kernels.
    pub fn standalone(bytes: u64) -> Result<CudaOps, CudaError> {
        let gpu = Gpu::open(0)?;
        let ws_offset = bytes.div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN;
        let stream = Stream::new(&gpu, false)?;
        CudaOps::new(gpu, stream, (ws_offset, WORKSPACE_BYTES), |gpu| {
            DeviceBuffer::alloc(gpu, ws_offset + WORKSPACE_BYTES, "the standalone arena")
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The stream every op issues on (djinn-profile times work on it).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn arena_ptr(&self) -> sys::CUdeviceptr {
        self.arena.ptr
    }

    pub fn arena_bytes(&self) -> u64 {
        self.arena.bytes
    }

    /// Writes `bytes` at arena byte `offset` and waits for the copy.
    pub fn upload(&mut self, offset: u64, bytes: &[u8]) -> Result<(), CudaError> {
        self.range("upload", "destination", offset, bytes.len() as u64)?;
        self.gpu.bind()?;
        // SAFETY: the destination range was checked against the arena.
        unsafe { result::memcpy_htod_async(self.arena.ptr + offset, bytes, self.stream.raw) }
            .ctx(|| format!("uploading {} bytes to arena offset {offset}", bytes.len()))?;
        self.stream.synchronize()
    }

    /// Waits for the compute stream, then reads `len` bytes at arena byte `offset`.
    pub fn download(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, CudaError> {
        self.range("download", "source", offset, len)?;
        self.gpu.bind()?;
        let mut out = vec![0u8; len as usize];
        // SAFETY: the source range was checked against the arena.
        unsafe { result::memcpy_dtoh_async(&mut out, self.arena.ptr + offset, self.stream.raw) }
            .ctx(|| format!("downloading {len} bytes from arena offset {offset}"))?;
        self.stream.synchronize()?;
        Ok(out)
    }

    /// Fills `len` bytes at `offset` with `byte` (0xFF poisons f16, bf16 and f32 as NaN).
    pub fn fill(&mut self, offset: u64, len: u64, byte: u8) -> Result<(), CudaError> {
        self.range("fill", "destination", offset, len)?;
        // SAFETY: the range was checked against the arena.
        unsafe { result::memset_d8_async(self.arena.ptr + offset, byte, len as usize, self.stream.raw) }
            .ctx(|| format!("filling {len} bytes at arena offset {offset}"))
    }

    /// Copies `bytes` from arena byte `src` to arena byte `dst` on the device
    /// (ranges must not overlap): the device-to-device bandwidth that
    /// benchmarks set their kernels' figures beside.
    pub fn copy_within(&mut self, dst: u64, src: u64, bytes: u64) -> Result<(), CudaError> {
        self.range("copy_within", "source", src, bytes)?;
        self.range("copy_within", "destination", dst, bytes)?;
        if src < dst + bytes && dst < src + bytes {
            return Err(CudaError::BadOperands { op: "copy_within", message: "the ranges overlap".into() });
        }
        // SAFETY: both ranges were checked against the arena and do not overlap.
        unsafe {
            result::memcpy_dtod_async(self.arena.ptr + dst, self.arena.ptr + src, bytes as usize, self.stream.raw)
        }
        .ctx(|| format!("copying {bytes} bytes within the arena"))
    }

    /// Notes that the pass header `header` (`PASS_WORDS` f32-typed words in
    /// the arena) holds `(pos0, tokens)` once the copies enqueued on this
    /// stream so far have run: the backend stages it with the token ids. The
    /// decode kernels of a shape naming this header read the position there
    /// (checked against this note when they are enqueued).
    pub fn note_pass(&mut self, header: Buf, pos0: u64, tokens: u64) {
        self.pass = Some((header, pos0, tokens));
    }

    /// Writes the pass header now (a synchronous upload) and notes it: for
    /// tests and benchmarks that drive the ops without a backend.
    pub fn write_pass(&mut self, header: Buf, pos0: u64, tokens: u64) -> Result<(), CudaError> {
        let words = pass_words("pass header", pos0, tokens)?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.operand("pass header", "header", header, PASS_WORDS, Some(Dtype::F32))?;
        self.upload(header.offset, &bytes)?;
        self.note_pass(header, pos0, tokens);
        Ok(())
    }

    /// Whether an op was enqueued with a position among its launch arguments
    /// since the last call ([`CudaOps::positions_baked`]); clears the note.
    pub(super) fn take_positions_baked(&mut self) -> bool {
        std::mem::take(&mut self.positions_baked)
    }

    /// Whether every op is waited for and checked as it is enqueued (`DJINN_CUDA_CHECK=1`).
    pub(super) fn checks_each_op(&self) -> bool {
        self.check_each_op
    }

    /// Turns the decode kernels on or off (as `DJINN_FUSED=0` does at start),
    /// for benchmarks that time both paths in one run.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    /// Turns programmatic dependent launch on or off (as `DJINN_PDL=0` does at
    /// start; it is only ever on where the device has it).
    pub fn set_pdl(&mut self, on: bool) {
        self.pdl = on && self.gpu.cc.0 >= 9;
    }

    /// Turns the flash prefill kernel on or off (as `DJINN_FLASH=0` does at
    /// start); off, prefill attention runs on cuBLAS, in chunks of query rows
    /// where the `[heads, tokens, seq]` scores do not fit the scratch.
    pub fn set_flash(&mut self, on: bool) {
        self.flash = on;
    }

    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize()
    }

    /// Device argmax of `n` f32 logits into the u32 at `out` (a 4-byte slot).
    pub fn argmax(&mut self, out: Buf, logits: Buf, n: u64) -> Result<(), CudaError> {
        const OP: &str = "argmax";
        let o = self.operand(OP, "out", out, 1, None)?;
        let l = self.operand(OP, "logits", logits, n, Some(Dtype::F32))?;
        let n = u32_of(OP, "n", n)?;
        self.launch(OP, Kernel::ArgmaxF32, 1, 1024, 0, &mut [Arg::Ptr(o), Arg::Ptr(l), Arg::U32(n)])
    }

    /// Device sampling from `n` f32 logits into the u32 at `out` (a 4-byte
    /// slot): the token [`djinn_kernels::sample_f32_with`] chooses under `p`
    /// for the uniform `u`, without the repetition penalty (`sample.cu`; the
    /// caller applies a penalty on the host, where the sequence is).
    pub fn sample(&mut self, out: Buf, logits: Buf, n: u64, p: &SampleParams, u: f32) -> Result<(), CudaError> {
        const OP: &str = "sample";
        if n > SAMPLE_MAX_VOCAB as u64 {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("{n} logits: sampling takes at most {SAMPLE_MAX_VOCAB} (its fixed-point masses)"),
            });
        }
        let o = self.operand(OP, "out", out, 1, None)?;
        let l = self.operand(OP, "logits", logits, n, Some(Dtype::F32))?;
        let n = u32_of(OP, "n", n)?;
        let top_k = u32::try_from(p.top_k).unwrap_or(u32::MAX);
        let mut args = [
            Arg::Ptr(o),
            Arg::Ptr(l),
            Arg::U32(n),
            Arg::F32(p.temperature),
            Arg::U32(top_k),
            Arg::F32(p.top_p),
            Arg::F32(p.min_p),
            Arg::F32(u),
        ];
        self.launch(OP, Kernel::SampleF32, 1, 1024, 0, &mut args)
    }

    /// The causal softmax between attention's GEMMs (`attn_softmax.cu`; its
    /// twin is `djinn_kernels::attn_softmax_{f16,bf16}`): `rows` f32 score rows
    /// (row `r` at `r * stride`, query row `r % tokens`) into `probs` rows of
    /// `pos0 + tokens` elements at `r * out_stride`, zero outside the
    /// positions the row sees (with a sliding `window`, only its last
    /// `window`). `probs` may alias `scores` when `out_stride == 2 * stride`
    /// (each row written over the first half of its own input row).
    #[allow(clippy::too_many_arguments)]
    pub fn attn_softmax(
        &mut self,
        probs: Buf,
        scores: Buf,
        rows: u64,
        tokens: u64,
        pos0: u64,
        stride: u64,
        out_stride: u64,
        window: Option<u64>,
    ) -> Result<(), CudaError> {
        const OP: &str = "attn_softmax";
        let name = kname(probs.dtype, Kernel::AttnSoftmaxF16, Kernel::AttnSoftmaxBf16, OP)?;
        let seq = pos0 + tokens;
        if tokens == 0 || !rows.is_multiple_of(tokens) || seq > MAX_SOFTMAX_ROW || stride < seq || out_stride < seq {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!(
                    "{rows} rows of {tokens} tokens at position {pos0}, stride {stride}: rows must be whole heads \
                     and at most {MAX_SOFTMAX_ROW} positions long, strides at least pos0 + tokens"
                ),
            });
        }
        let last_in = (rows - 1) * stride + pos0 + tokens;
        let last_out = (rows - 1) * out_stride + seq;
        let ps = self.operand(OP, "scores", scores, last_in, Some(Dtype::F32))?;
        let pp = self.operand(OP, "probs", probs, last_out, None)?;
        let threads = (seq.div_ceil(SOFTMAX_PER_THREAD).div_ceil(32) * 32).clamp(128, 1024) as u32;
        let mut a = [
            Arg::Ptr(pp),
            Arg::Ptr(ps),
            Arg::U32(u32_of(OP, "tokens", tokens)?),
            Arg::U32(u32_of(OP, "pos0", pos0)?),
            Arg::U32(u32_of(OP, "stride", stride)?),
            Arg::U32(u32_of(OP, "out_stride", out_stride)?),
            Arg::U32(window_arg(OP, window)?),
        ];
        self.launch(OP, name, u32_of(OP, "rows", rows)?.max(1), threads, 0, &mut a)
    }

    pub(super) fn range(
        &self,
        op: &'static str,
        operand: &'static str,
        offset: u64,
        bytes: u64,
    ) -> Result<(), CudaError> {
        let end = offset.saturating_add(bytes);
        if end > self.arena.bytes {
            return Err(CudaError::OutOfArena { op, operand, offset, end, arena: self.arena.bytes });
        }
        Ok(())
    }

    /// The device address of `b`, after checking it holds `elems` elements
    /// (of `dtype`, if given), is aligned, and lies inside the arena.
    pub(super) fn operand(
        &self,
        op: &'static str,
        operand: &'static str,
        b: Buf,
        elems: u64,
        dtype: Option<Dtype>,
    ) -> Result<sys::CUdeviceptr, CudaError> {
        let bad = |message: String| CudaError::BadOperands { op, message: format!("operand {operand}: {message}") };
        if let Some(d) = dtype {
            if b.dtype != d {
                return Err(bad(format!("dtype {} where {d} is required", b.dtype)));
            }
        }
        if b.elems < elems {
            return Err(bad(format!("{} elements where {elems} are needed", b.elems)));
        }
        if !b.offset.is_multiple_of(b.dtype.size()) {
            return Err(bad(format!("offset {} is not aligned to its {}-byte elements", b.offset, b.dtype.size())));
        }
        self.range(op, operand, b.offset, elems * b.dtype.size())?;
        Ok(self.arena.ptr + b.offset)
    }

    /// Prefill products of one input and shape as one batched GEMM, or one by
    /// one (for tests and benchmarks; `DJINN_BATCHED=0` turns it off at start).
    pub fn set_batched(&mut self, on: bool) {
        self.batched = on;
    }

    /// cuBLAS's workspace region: device address and bytes.
    pub(super) fn workspace(&self) -> (u64, u64) {
        self.workspace
    }

    pub(super) fn launch(
        &mut self,
        op: &'static str,
        kernel: Kernel,
        grid: u32,
        block: u32,
        smem: u32,
        args: &mut [Arg],
    ) -> Result<(), CudaError> {
        self.launch_grid(op, kernel, (grid, 1), block, smem, args)
    }

    /// [`CudaOps::launch`] on a two-dimensional grid.
    pub(super) fn launch_2d(
        &mut self,
        op: &'static str,
        kernel: Kernel,
        grid: (u32, u32),
        block: u32,
        args: &mut [Arg],
    ) -> Result<(), CudaError> {
        self.launch_grid(op, kernel, grid, block, 0, args)
    }

    fn launch_grid(
        &mut self,
        op: &'static str,
        kernel: Kernel,
        (gx, gy): (u32, u32),
        block: u32,
        smem: u32,
        args: &mut [Arg],
    ) -> Result<(), CudaError> {
        let f = self.kernels.get(kernel)?;
        let mut ptrs: [*mut c_void; 16] = [std::ptr::null_mut(); 16];
        for (p, a) in ptrs.iter_mut().zip(args.iter_mut()) {
            *p = match a {
                Arg::Ptr(v) => v as *mut u64 as *mut c_void,
                Arg::U32(v) => v as *mut u32 as *mut c_void,
                Arg::F32(v) => v as *mut f32 as *mut c_void,
                Arg::Bytes(v) => v.as_mut_ptr() as *mut c_void,
            };
        }
        // Programmatic stream serialisation: this kernel may be scheduled
        // before the one ahead of it has finished; it waits for it on the
        // device (`grid_dependency` in common.cuh: at the first instruction,
        // or after loads of what the kernel ahead cannot be writing).
        // SAFETY: a plain C struct (an id and a union of integers) for which all-zero bytes are valid.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: gx,
            gridDimY: gy,
            gridDimZ: 1,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: smem,
            hStream: self.stream.raw,
            attrs: &mut attr,
            numAttrs: u32::from(self.pdl),
        };
        // SAFETY: `f` is a live kernel whose parameter list matches `args`
        // (the .cu signatures), every pointer was bounds-checked, and `args`
        // and `attr` outlive the call (the driver copies the values at launch).
        unsafe { sys::cuLaunchKernelEx(&config, f, ptrs.as_mut_ptr(), std::ptr::null_mut()).result() }
            .ctx(|| format!("launching {} (grid {gx}x{gy}, block {block}, {smem} B shared)", kernel.name()))?;
        self.after(op)
    }

    pub(super) fn after(&self, op: &'static str) -> Result<(), CudaError> {
        if self.check_each_op {
            self.stream
                .synchronize()
                .map_err(|e| CudaError::BadOperands { op, message: format!("failed on the device: {e}") })?;
        }
        Ok(())
    }
}

impl Drop for CudaOps {
    fn drop(&mut self) {
        // Nothing may still run on the arena when it is freed.
        let _ = self.gpu.bind();
        let _ = self.stream.synchronize();
    }
}

impl Ops for CudaOps {
    type Error = CudaError;

    fn embed(&mut self, x: Buf, table: Buf, tokens: Buf, n: u64, hidden: u64) -> Result<(), CudaError> {
        const OP: &str = "embed";
        let name = kname(table.dtype, Kernel::EmbedF16, Kernel::EmbedBf16, OP)?;
        if hidden == 0 || !table.elems.is_multiple_of(hidden) {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("table of {} elements is not [vocab, {hidden}]", table.elems),
            });
        }
        let px = self.operand(OP, "x", x, n * hidden, Some(Dtype::F32))?;
        let pt = self.operand(OP, "table", table, table.elems, None)?;
        let pk = self.operand(OP, "tokens", tokens, n, Some(Dtype::F32))?;
        let vocab = u32_of(OP, "vocab", table.elems / hidden)?;
        let (nn, hh) = (u32_of(OP, "n", n)?, u32_of(OP, "hidden", hidden)?);
        let mut a = [Arg::Ptr(px), Arg::Ptr(pt), Arg::Ptr(pk), Arg::U32(nn), Arg::U32(hh), Arg::U32(vocab)];
        self.launch(OP, name, nn.max(1), THREADS, 0, &mut a)
    }

    fn rmsnorm(&mut self, out: Buf, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), CudaError> {
        const OP: &str = "rmsnorm";
        let name = kname(w.dtype, Kernel::RmsnormF16, Kernel::RmsnormBf16, OP)?;
        let po = self.operand(OP, "out", out, rows * dim, Some(w.dtype))?;
        let px = self.operand(OP, "x", x, rows * dim, Some(Dtype::F32))?;
        let pw = self.operand(OP, "w", w, dim, None)?;
        let threads = rmsnorm_threads(dim);
        let (r, d) = (u32_of(OP, "rows", rows)?, u32_of(OP, "dim", dim)?);
        let mut a = [Arg::Ptr(po), Arg::Ptr(px), Arg::Ptr(pw), Arg::U32(r), Arg::U32(d), Arg::F32(eps as f32)];
        self.launch(OP, name, r.max(1), threads, 0, &mut a)
    }

    fn matmul(&mut self, out: Buf, x: Buf, w: Buf, m: u64, n: u64, k: u64) -> Result<(), CudaError> {
        const OP: &str = "matmul";
        if w.dtype == Dtype::F32 {
            return Err(not_half(OP));
        }
        if out.dtype != w.dtype && out.dtype != Dtype::F32 {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("output dtype {} with {} weights", out.dtype, w.dtype),
            });
        }
        if x.dtype == w.dtype && self.try_gemv(OP, &[(out, w, n)], x, m, k, Epilogue::Store)? {
            return Ok(());
        }
        let po = self.operand(OP, "out", out, m * n, None)?;
        let px = self.operand(OP, "x", x, m * k, Some(w.dtype))?;
        let pw = self.operand(OP, "w", w, n * k, None)?;
        let dim = |what, v: u64| {
            i32::try_from(v)
                .map_err(|_| CudaError::BadOperands { op: OP, message: format!("{what} = {v} exceeds i32") })
        };
        self.blas.matmul(po, out.dtype, px, pw, w.dtype, dim("m", m)?, dim("n", n)?, dim("k", k)?)?;
        self.after(OP)
    }

    fn rope(&mut self, q: Buf, k: Buf, s: AttnShape) -> Result<(), CudaError> {
        const OP: &str = "rope";
        let name = kname(q.dtype, Kernel::RopeF16, Kernel::RopeBf16, OP)?;
        let table = rope_arg(OP, &s)?;
        let pq = self.operand(OP, "q", q, s.tokens * s.num_heads * s.head_dim, None)?;
        let pk = self.operand(OP, "k", k, s.tokens * s.num_kv_heads * s.head_dim, Some(q.dtype))?;
        let total = s.tokens * (s.num_heads + s.num_kv_heads) * (s.head_dim / 2);
        let mut a = [
            Arg::Ptr(pq),
            Arg::Ptr(pk),
            Arg::U32(u32_of(OP, "tokens", s.tokens)?),
            Arg::U32(u32_of(OP, "pos0", s.pos0)?),
            Arg::U32(u32_of(OP, "num_heads", s.num_heads)?),
            Arg::U32(u32_of(OP, "num_kv_heads", s.num_kv_heads)?),
            Arg::U32(u32_of(OP, "head_dim", s.head_dim)?),
            table,
        ];
        self.launch(OP, name, grid_for(total), THREADS, 0, &mut a)
    }

    fn kv_store(&mut self, k_cache: Buf, v_cache: Buf, k: Buf, v: Buf, s: AttnShape) -> Result<(), CudaError> {
        const OP: &str = "kv_store";
        let name = kname(k.dtype, Kernel::KvStoreF16, Kernel::KvStoreBf16, OP)?;
        let (kv_dim, rows) = kv_rows(OP, k_cache, v_cache, s)?;
        let pkc = self.operand(OP, "k_cache", k_cache, rows * kv_dim, Some(k.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, rows * kv_dim, Some(k.dtype))?;
        let pk = self.operand(OP, "k", k, s.tokens * kv_dim, None)?;
        let pv = self.operand(OP, "v", v, s.tokens * kv_dim, Some(k.dtype))?;
        let mut a = [
            Arg::Ptr(pkc),
            Arg::Ptr(pvc),
            Arg::Ptr(pk),
            Arg::Ptr(pv),
            Arg::U32(u32_of(OP, "tokens", s.tokens)?),
            Arg::U32(u32_of(OP, "pos0", s.pos0)?),
            Arg::U32(u32_of(OP, "kv_dim", kv_dim)?),
        ];
        self.launch(OP, name, grid_for(s.tokens * kv_dim), THREADS, 0, &mut a)
    }

    fn attention(
        &mut self,
        out: Buf,
        q: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        s: AttnShape,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention";
        if q.dtype == Dtype::F32 {
            return Err(not_half(OP));
        }
        if self.try_attn_decode(out, q, None, k_cache, v_cache, scores, s)? {
            return Ok(());
        }
        // Every other path takes the position as launch arguments.
        self.positions_baked = true;
        if self.flash && s.tokens > 1 && self.try_attn_prefill(out, q, k_cache, v_cache, s)? {
            return Ok(());
        }
        if self.try_attn_prefill_in_chunks(out, q, k_cache, v_cache, scores, s)? {
            return Ok(());
        }
        if s.num_kv_heads == 0 || !s.num_heads.is_multiple_of(s.num_kv_heads) {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("{} heads over {} kv heads", s.num_heads, s.num_kv_heads),
            });
        }
        let (t, seq, d, kv) = (s.tokens, s.pos0 + s.tokens, s.head_dim, s.num_kv_heads);
        let (group, q_dim, kv_dim, rows) = (s.num_heads / kv, s.num_heads * d, kv * d, s.num_heads * t);
        if d == 0 || seq > MAX_SOFTMAX_ROW {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("head_dim {d} and {seq} positions: 1..={MAX_SOFTMAX_ROW} positions are supported"),
            });
        }
        // Score rows are padded to 8 floats where the scratch has room, so
        // that the 16-bit probability rows stay 16-byte aligned for tensor cores.
        let padded = seq.div_ceil(8) * 8;
        let stride = if rows * padded <= scores.elems { padded } else { seq };
        let po = self.operand(OP, "out", out, t * q_dim, Some(q.dtype))?;
        let pq = self.operand(OP, "q", q, t * q_dim, None)?;
        let pkc = self.operand(OP, "k_cache", k_cache, seq * kv_dim, Some(q.dtype))?;
        let pvc = self.operand(OP, "v_cache", v_cache, seq * kv_dim, Some(q.dtype))?;
        let ps = self.operand(OP, "scores", scores, rows * stride, Some(Dtype::F32))?;
        let (dt, es) = (q.dtype, q.dtype.size());
        let i64_ = |v: u64| v as i64;
        // In cuBLAS's column-major terms, per kv head g and query head
        // h = g·group + i (one strided batch over g for each i):
        //   S_h (seq × t, ld stride)  = scale · K_gᵀ (K_g: d × seq, ld kv_dim) · Q_h (d × t, ld q_dim)
        //   P_h = softmax(S_h), written as 16-bit rows over the first half of S_h's rows
        //   O_h (d × t, ld q_dim)     = V_g (d × seq, ld kv_dim) · P_h (seq × t, ld 2·stride)
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        for i in 0..group {
            self.blas.gemm_strided_batched(
                true,
                (i64_(seq), i64_(t), i64_(d)),
                scale,
                Strided { ptr: pkc, dtype: dt, ld: i64_(kv_dim), stride: i64_(d) },
                Strided { ptr: pq + i * d * es, dtype: dt, ld: i64_(q_dim), stride: i64_(group * d) },
                Strided {
                    ptr: ps + i * t * stride * 4,
                    dtype: Dtype::F32,
                    ld: i64_(stride),
                    stride: i64_(group * t * stride),
                },
                i64_(kv),
            )?;
        }
        // In place: the 16-bit rows land over the first half of their own score rows.
        let probs = Buf { offset: scores.offset, elems: scores.elems * 2, dtype: dt };
        let scores = Buf { elems: rows * stride, ..scores };
        self.attn_softmax(probs, scores, rows, t, s.pos0, stride, 2 * stride, s.window)?;
        for i in 0..group {
            self.blas.gemm_strided_batched(
                false,
                (i64_(d), i64_(t), i64_(seq)),
                1.0,
                Strided { ptr: pvc, dtype: dt, ld: i64_(kv_dim), stride: i64_(d) },
                Strided {
                    ptr: ps + i * t * stride * 4,
                    dtype: dt,
                    ld: i64_(2 * stride),
                    stride: i64_(group * t * 2 * stride),
                },
                Strided { ptr: po + i * d * es, dtype: dt, ld: i64_(q_dim), stride: i64_(group * d) },
                i64_(kv),
            )?;
        }
        self.after(OP)
    }

    fn silu_mul(&mut self, gate: Buf, up: Buf, n: u64) -> Result<(), CudaError> {
        const OP: &str = "silu_mul";
        let name = kname(gate.dtype, Kernel::SiluMulF16, Kernel::SiluMulBf16, OP)?;
        let pg = self.operand(OP, "gate", gate, n, None)?;
        let pu = self.operand(OP, "up", up, n, Some(gate.dtype))?;
        let mut a = [Arg::Ptr(pg), Arg::Ptr(pu), Arg::U32(u32_of(OP, "n", n)?)];
        self.launch(OP, name, grid_for_vec8(n), THREADS, 0, &mut a)
    }

    fn add_bias(&mut self, out: Buf, bias: Buf, rows: u64, n: u64) -> Result<(), CudaError> {
        const OP: &str = "add_bias";
        let name = kname(out.dtype, Kernel::AddBiasF16, Kernel::AddBiasBf16, OP)?;
        let po = self.operand(OP, "out", out, rows * n, None)?;
        let pb = self.operand(OP, "bias", bias, n, Some(out.dtype))?;
        let (r, nn) = (u32_of(OP, "rows", rows)?, u32_of(OP, "n", n)?);
        let mut a = [Arg::Ptr(po), Arg::Ptr(pb), Arg::U32(r), Arg::U32(nn)];
        self.launch(OP, name, grid_for(rows * n), THREADS, 0, &mut a)
    }

    fn head_rmsnorm(&mut self, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), CudaError> {
        const OP: &str = "head_rmsnorm";
        let name = kname(x.dtype, Kernel::HeadRmsnormF16, Kernel::HeadRmsnormBf16, OP)?;
        if dim == 0 || dim > HEAD_NORM_MAX_DIM {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("rows of {dim} values: 1..={HEAD_NORM_MAX_DIM} are supported"),
            });
        }
        let px = self.operand(OP, "x", x, rows * dim, None)?;
        let pw = self.operand(OP, "w", w, dim, Some(x.dtype))?;
        let (r, d) = (u32_of(OP, "rows", rows)?, u32_of(OP, "dim", dim)?);
        let mut a = [Arg::Ptr(px), Arg::Ptr(pw), Arg::U32(r), Arg::U32(d), Arg::F32(eps as f32)];
        let grid = rows.div_ceil(HEAD_NORM_ROWS).clamp(1, u32::MAX as u64) as u32;
        self.launch(OP, name, grid, 32 * HEAD_NORM_ROWS as u32, 0, &mut a)
    }

    fn add(&mut self, x: Buf, y: Buf, n: u64) -> Result<(), CudaError> {
        const OP: &str = "add";
        let name = kname(y.dtype, Kernel::AddF16, Kernel::AddBf16, OP)?;
        let px = self.operand(OP, "x", x, n, Some(Dtype::F32))?;
        let py = self.operand(OP, "y", y, n, None)?;
        let mut a = [Arg::Ptr(px), Arg::Ptr(py), Arg::U32(u32_of(OP, "n", n)?)];
        self.launch(OP, name, grid_for_vec8(n), THREADS, 0, &mut a)
    }

    fn rope_attention(
        &mut self,
        out: Buf,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        scores: Buf,
        s: AttnShape,
    ) -> Result<(), CudaError> {
        if self.try_attn_decode(out, q, Some((k, v)), k_cache, v_cache, scores, s)? {
            return Ok(());
        }
        unfused::rope_attention(self, out, q, k, v, k_cache, v_cache, scores, s)
    }

    fn qkv(&mut self, out: [Buf; 3], x: Buf, w: [Buf; 3], m: u64, n: [u64; 3], k: u64) -> Result<(), CudaError> {
        let segments = [(out[0], w[0], n[0]), (out[1], w[1], n[1]), (out[2], w[2], n[2])];
        if self.try_gemv("qkv", &segments, x, m, k, Epilogue::Store)? {
            return Ok(());
        }
        if n[0] == n[1] && n[1] == n[2] && self.try_batched("qkv", &out, x, &w, m, n[0], k)? {
            return Ok(());
        }
        unfused::qkv(self, out, x, w, m, n, k)
    }

    fn gate_up_silu(
        &mut self,
        gate: Buf,
        up: Buf,
        x: Buf,
        w_gate: Buf,
        w_up: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), CudaError> {
        if self.try_gemv_silu(gate, x, w_gate, w_up, m, n, k)? {
            return Ok(());
        }
        if self.try_batched("gate_up_silu", &[gate, up], x, &[w_gate, w_up], m, n, k)? {
            return self.silu_mul(gate, up, m * n);
        }
        unfused::gate_up_silu(self, gate, up, x, w_gate, w_up, m, n, k)
    }

    fn matmul_residual(
        &mut self,
        resid: Buf,
        proj: Buf,
        y: Buf,
        w: Buf,
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<(), CudaError> {
        if self.try_gemv("matmul_residual", &[(resid, w, n)], y, m, k, Epilogue::Residual)? {
            return Ok(());
        }
        unfused::matmul_residual(self, resid, proj, y, w, m, n, k)
    }

    fn rope_kv_store(
        &mut self,
        q: Buf,
        k: Buf,
        v: Buf,
        k_cache: Buf,
        v_cache: Buf,
        shape: AttnShape,
    ) -> Result<(), CudaError> {
        if self.try_rope_kv_store(q, k, v, k_cache, v_cache, shape)? {
            return Ok(());
        }
        self.positions_baked = true;
        unfused::rope_kv_store(self, q, k, v, k_cache, v_cache, shape)
    }
}

impl CudaOps {
    /// `dst[..n] = src[..n]` (f32) on the compute stream, `src` the device
    /// address of page-locked host memory holding `src_bytes` bytes
    /// ([`super::pinned::PinnedBuffer::device_ptr`]): the SMs read it over the
    /// bus, so the transfer does not queue behind the copy lane's DMA.
    pub fn copy_from_host(&mut self, dst: Buf, src: u64, src_bytes: u64, n: u64) -> Result<(), CudaError> {
        const OP: &str = "copy_from_host";
        let pd = self.operand(OP, "dst", dst, n, Some(Dtype::F32))?;
        if n * 4 > src_bytes {
            return Err(CudaError::BadOperands {
                op: OP,
                message: format!("operand src: {src_bytes} bytes of host memory where {} are needed", n * 4),
            });
        }
        let mut a = [Arg::Ptr(pd), Arg::Ptr(src), Arg::U32(u32_of(OP, "n", n)?)];
        self.launch(OP, Kernel::CopyF32, grid_for(n), THREADS, 0, &mut a)
    }
}

#[cfg(test)]
mod tests {
    use super::rmsnorm_threads;

    /// A block over RMS_THREADS fails to launch (the kernel is compiled for
    /// at most that many), so no width may ask for one; 13B's rows take the
    /// vector path at 160 threads.
    #[test]
    fn rmsnorm_blocks_stay_within_the_kernels_launch_bound() {
        let most = super::kernel_constant(super::Kernel::RmsnormF16, "RMS_THREADS").unwrap() as u32;
        assert_eq!(rmsnorm_threads(5120), 160);
        for dim in [1, 3, 64, 4095, 4096, 5120, 8192, 16383, 16384, 16388, 32768, 65536, 1 << 20] {
            let t = rmsnorm_threads(dim);
            assert!(t.is_multiple_of(32) && (32..=most).contains(&t), "dim {dim}: {t} threads, bound {most}");
        }
    }
}
