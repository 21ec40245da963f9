//! The device, its context, and RAII handles for streams, events and device
//! memory, over cudarc's raw driver bindings.
//!
//! Why raw: cudarc's safe layer records its own events on every buffer and
//! synchronises behind our back; the plan must be the only source of
//! ordering, so we issue exactly the driver calls the plan implies. Why the
//! presence checks: cudarc loads libraries lazily and *panics* when one (or
//! one symbol) is missing; [`check_libraries`] turns that into a
//! [`CudaError`] before any cudarc call can panic.

use std::sync::Arc;

use cudarc::driver::{result, sys};

use super::error::{CudaError, DriverContext};

const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuCtxGetStreamPriorityRange",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemHostRegister_v2",
    "cuMemHostUnregister",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemsetD8Async",
    "cuMemGetInfo_v2",
    "cuStreamCreateWithPriority",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventElapsedTime_v2",
    "cuEventDestroy_v2",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
    "cuFuncSetAttribute",
    "cuGetErrorString",
    "cuGetErrorName",
];
const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcDestroyProgram",
];
const CUBLAS_SYMBOLS: &[&str] = &[
    "cublasCreate_v2",
    "cublasDestroy_v2",
    "cublasSetStream_v2",
    "cublasSetWorkspace_v2",
    "cublasGemmEx",
    "cublasSetMathMode",
];

/// Checks that libcuda, libnvrtc and libcublas (with libcublasLt) can be
/// loaded and export every symbol this backend calls. Cheap; safe to repeat.
pub fn check_libraries() -> Result<(), CudaError> {
    // SAFETY: the presence checks only try to dlopen the candidate names.
    unsafe {
        if !sys::is_culib_present() {
            return Err(CudaError::LibraryMissing {
                lib: "libcuda",
                hint: "no NVIDIA driver is installed or libcuda.so is not on the loader path",
            });
        }
        if !cudarc::nvrtc::sys::is_culib_present() {
            return Err(CudaError::LibraryMissing {
                lib: "libnvrtc",
                hint: "install the CUDA toolkit's NVRTC (libnvrtc.so) or add it to LD_LIBRARY_PATH",
            });
        }
        if !cudarc::cublaslt::sys::is_culib_present() {
            return Err(CudaError::LibraryMissing {
                lib: "libcublasLt",
                hint: "install cuBLAS (libcublasLt.so) or add it to LD_LIBRARY_PATH",
            });
        }
        if !cudarc::cublas::sys::is_culib_present() {
            return Err(CudaError::LibraryMissing {
                lib: "libcublas",
                hint: "install cuBLAS (libcublas.so) or add it to LD_LIBRARY_PATH",
            });
        }
        for s in DRIVER_SYMBOLS {
            if sys::culib().get::<*const ()>(s.as_bytes()).is_err() {
                return Err(CudaError::SymbolMissing { lib: "libcuda", symbol: s });
            }
        }
        for s in NVRTC_SYMBOLS {
            if cudarc::nvrtc::sys::culib().get::<*const ()>(s.as_bytes()).is_err() {
                return Err(CudaError::SymbolMissing { lib: "libnvrtc", symbol: s });
            }
        }
        for s in CUBLAS_SYMBOLS {
            if cudarc::cublas::sys::culib().get::<*const ()>(s.as_bytes()).is_err() {
                return Err(CudaError::SymbolMissing { lib: "libcublas", symbol: s });
            }
        }
    }
    Ok(())
}

/// The primary context of one device, made current on the creating thread.
pub struct Context {
    dev: sys::CUdevice,
    raw: sys::CUcontext,
}

// SAFETY: a CUDA context may be used from any thread once made current there
// (`bind` does that); the handles themselves are plain pointers.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// Makes this context current on the calling thread.
    pub fn bind(&self) -> Result<(), CudaError> {
        // SAFETY: `raw` is a retained primary context, alive as long as `self`.
        unsafe { result::ctx::set_current(self.raw) }.ctx(|| "making the CUDA context current".into())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: retained in `Gpu::open`; released once.
        unsafe {
            let _ = result::primary_ctx::release(self.dev);
        }
    }
}

/// An opened device: its context and what the backend needs to know about it.
#[derive(Clone)]
pub struct Gpu {
    pub ctx: Arc<Context>,
    /// `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability (major, minor).
    pub cc: (i32, i32),
    pub total_bytes: u64,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Bytes in use on the device (by anyone) right after our context was made.
    pub used_at_open: u64,
}

impl Gpu {
    /// Checks the libraries, then opens device `ordinal` and makes its primary
    /// context current on this thread.
    pub fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        check_libraries()?;
        match result::init() {
            Ok(()) => {}
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => {
                return Err(CudaError::NoDevice { detail: "the driver reports no CUDA-capable device".into() })
            }
            Err(e) => return Err(CudaError::Driver { what: "initialising the driver (cuInit)".into(), source: e }),
        }
        let count = result::device::get_count().ctx(|| "counting devices".into())?;
        if (count as usize) <= ordinal {
            return Err(CudaError::NoDevice { detail: format!("device {ordinal} asked for, {count} present") });
        }
        let dev = result::device::get(ordinal as i32).ctx(|| format!("opening device {ordinal}"))?;
        // SAFETY: `dev` is a valid device handle.
        let raw =
            unsafe { result::primary_ctx::retain(dev) }.ctx(|| format!("retaining device {ordinal}'s context"))?;
        let ctx = Arc::new(Context { dev, raw });
        ctx.bind()?;
        let name = result::device::get_name(dev).ctx(|| "reading the device name".into())?;
        let attr = |a| unsafe { result::device::get_attribute(dev, a) }.ctx(|| format!("reading {a:?}"));
        let cc = (
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let sms = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32;
        let (free, total) = mem_info()?;
        Ok(Gpu { ctx, name, cc, total_bytes: total, sms, used_at_open: total - free })
    }

    pub fn bind(&self) -> Result<(), CudaError> {
        self.ctx.bind()
    }

    /// `sm_90` for compute capability 9.0.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.cc.0, self.cc.1)
    }
}

/// (free, total) device memory in bytes, as the driver reports it now.
pub fn mem_info() -> Result<(u64, u64), CudaError> {
    let (free, total) = result::mem_get_info().ctx(|| "reading device memory (cuMemGetInfo)".into())?;
    Ok((free as u64, total as u64))
}

/// A stream; destroyed on drop.
pub struct Stream {
    ctx: Arc<Context>,
    pub raw: sys::CUstream,
}

impl Stream {
    /// A non-blocking stream. `highest_priority` picks the greatest priority
    /// the context allows (the copy lane), otherwise the least (the compute lane).
    pub fn new(gpu: &Gpu, highest_priority: bool) -> Result<Stream, CudaError> {
        gpu.bind()?;
        let (least, greatest) = result::stream::get_priority_range()
            .ctx(|| "reading stream priorities (cuCtxGetStreamPriorityRange)".into())?;
        let prio = if highest_priority { greatest } else { least };
        let raw = result::stream::create_with_priority(result::stream::StreamKind::NonBlocking, prio)
            .ctx(|| format!("creating a stream of priority {prio}"))?;
        Ok(Stream { ctx: gpu.ctx.clone(), raw })
    }

    /// Blocks the host until everything issued on the stream has finished.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        // SAFETY: `raw` is alive as long as `self`.
        unsafe { result::stream::synchronize(self.raw) }.ctx(|| "synchronising a stream".into())
    }

    /// Holds the stream until `event`'s most recent record has completed.
    pub fn wait(&self, event: &Event) -> Result<(), CudaError> {
        // SAFETY: both handles are alive.
        unsafe { result::stream::wait_event(self.raw, event.raw, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT) }
            .ctx(|| "making a stream wait on an event".into())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = result::stream::destroy(self.raw);
        }
    }
}

/// An event; destroyed on drop. Sync events are created without timing
/// (cheaper to record and wait on); measurement events with it.
pub struct Event {
    ctx: Arc<Context>,
    pub raw: sys::CUevent,
}

impl Event {
    pub fn new(gpu: &Gpu, timing: bool) -> Result<Event, CudaError> {
        gpu.bind()?;
        let flags =
            if timing { sys::CUevent_flags::CU_EVENT_DEFAULT } else { sys::CUevent_flags::CU_EVENT_DISABLE_TIMING };
        let raw = result::event::create(flags).ctx(|| "creating an event".into())?;
        Ok(Event { ctx: gpu.ctx.clone(), raw })
    }

    pub fn record(&self, stream: &Stream) -> Result<(), CudaError> {
        // SAFETY: both handles are alive.
        unsafe { result::event::record(self.raw, stream.raw) }.ctx(|| "recording an event".into())
    }

    pub fn synchronize(&self) -> Result<(), CudaError> {
        // SAFETY: `raw` is alive.
        unsafe { result::event::synchronize(self.raw) }.ctx(|| "waiting for an event on the host".into())
    }

    /// Whether all work before the event's last record has completed.
    pub fn is_complete(&self) -> Result<bool, CudaError> {
        // SAFETY: `raw` is alive.
        match unsafe { result::event::query(self.raw) } {
            Ok(()) => Ok(true),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            Err(e) => Err(CudaError::Driver { what: "querying an event".into(), source: e }),
        }
    }

    /// Busy-waits on the host until the event completes: for a hand-over on
    /// the critical path, where a blocking wait's wake-up would be paid in
    /// full (the host lane, about once per host-computed layer).
    pub fn spin_until_complete(&self) -> Result<(), CudaError> {
        while !self.is_complete()? {
            std::hint::spin_loop();
        }
        Ok(())
    }

    /// Milliseconds from `start` to `self`; both timing events, both complete.
    pub fn ms_since(&self, start: &Event) -> Result<f32, CudaError> {
        // SAFETY: both handles are alive.
        unsafe { result::event::elapsed(start.raw, self.raw) }.ctx(|| "reading an event's time".into())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = result::event::destroy(self.raw);
        }
    }
}

/// One device allocation; freed on drop.
pub struct DeviceBuffer {
    ctx: Arc<Context>,
    pub ptr: sys::CUdeviceptr,
    pub bytes: u64,
}

impl DeviceBuffer {
    /// `cuMemAlloc` of `bytes` (at least 1). `what` names it in errors.
    pub fn alloc(gpu: &Gpu, bytes: u64, what: &str) -> Result<DeviceBuffer, CudaError> {
        gpu.bind()?;
        // SAFETY: a plain allocation; the pointer is owned by the returned value.
        let ptr = unsafe { result::malloc_sync(bytes.max(1) as usize) }
            .ctx(|| format!("allocating {bytes} bytes of device memory for {what}"))?;
        Ok(DeviceBuffer { ctx: gpu.ctx.clone(), ptr, bytes })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: allocated in `alloc`, freed once.
        unsafe {
            let _ = result::free_sync(self.ptr);
        }
    }
}
