//! Page-locked host memory that the copy engine can read at full PCIe speed.
//!
//! cudarc's `alloc_pinned` asks for write-combined memory, which the CPU
//! reads very slowly; our buffers are filled by the CPU (block images) and,
//! for logits, read by it, so we allocate with `CU_MEMHOSTALLOC_PORTABLE`
//! only, through the raw driver call, and own the pointer here.

use std::sync::Arc;

use cudarc::driver::{result, sys};

use super::context::{Context, Gpu};
use super::error::{CudaError, DriverContext};

pub struct PinnedBuffer {
    ctx: Arc<Context>,
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: the buffer is plain memory owned by this value; access goes through
// `&self` / `&mut self`, so Rust's aliasing rules hold.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    /// `bytes` of pinned, zeroed host memory (at least one byte is allocated).
    /// `what` names the buffer in errors.
    pub fn new(gpu: &Gpu, bytes: usize, what: &str) -> Result<PinnedBuffer, CudaError> {
        gpu.bind()?;
        // SAFETY: a plain allocation, owned by the returned value.
        let ptr = unsafe { result::malloc_host(bytes.max(1), sys::CU_MEMHOSTALLOC_PORTABLE) }
            .ctx(|| format!("pinning {bytes} bytes of host memory for {what}"))? as *mut u8;
        // SAFETY: `ptr` points to at least `bytes.max(1)` writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes.max(1)) };
        Ok(PinnedBuffer { ctx: gpu.ctx.clone(), ptr, bytes })
    }

    /// The buffer's address in the device's address space: kernels may read
    /// (and write) it directly, over the bus.
    pub fn device_ptr(&self) -> Result<sys::CUdeviceptr, CudaError> {
        let mut dptr: sys::CUdeviceptr = 0;
        // SAFETY: `ptr` is a live page-locked allocation of this context; the driver writes `dptr`.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dptr, self.ptr as *mut std::ffi::c_void, 0) }
            .result()
            .ctx(|| format!("mapping {} bytes of pinned host memory into the device's address space", self.bytes))?;
        Ok(dptr)
    }

    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `bytes` initialised bytes while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    /// Enqueues a copy of `len` bytes from this buffer (from byte `start`) to
    /// device address `dst` on `stream`. The caller keeps the buffer unchanged
    /// and alive until the stream has passed the copy.
    ///
    /// # Safety
    /// `dst..dst + len` must be device memory of the current context that
    /// nothing else uses until the copy is done, and `stream` a live stream.
    pub unsafe fn copy_to_device(
        &self,
        start: usize,
        len: usize,
        dst: sys::CUdeviceptr,
        stream: sys::CUstream,
    ) -> Result<(), CudaError> {
        assert!(start + len <= self.bytes, "pinned copy {start}+{len} out of {}", self.bytes);
        // SAFETY: the source range is inside this allocation; the caller
        // guarantees `dst` is a device range of `len` bytes.
        unsafe { result::memcpy_htod_async(dst, &self.as_slice()[start..start + len], stream) }
            .ctx(|| format!("enqueueing a {len}-byte host-to-device copy"))
    }

    /// Enqueues a copy of `len` device bytes at `src` into this buffer at
    /// `start`. The caller must synchronise `stream` before reading them.
    ///
    /// # Safety
    /// `src..src + len` must be device memory of the current context, and
    /// `stream` a live stream.
    pub unsafe fn copy_from_device(
        &mut self,
        start: usize,
        len: usize,
        src: sys::CUdeviceptr,
        stream: sys::CUstream,
    ) -> Result<(), CudaError> {
        assert!(start + len <= self.bytes, "pinned copy {start}+{len} out of {}", self.bytes);
        // SAFETY: the destination range is inside this allocation.
        unsafe { result::memcpy_dtoh_async(&mut self.as_mut_slice()[start..start + len], src, stream) }
            .ctx(|| format!("enqueueing a {len}-byte device-to-host copy"))
    }
}

/// Page-locks existing host memory (`cuMemHostRegister`) for as long as it
/// lives, so the copy engine reads it at full PCIe speed without a second,
/// pinned copy of the bytes. The memory must outlive the registration.
pub struct HostRegistration {
    ctx: Arc<Context>,
    ptr: *mut u8,
}

// SAFETY: the registration only names memory owned elsewhere; unregistering from any thread is allowed.
unsafe impl Send for HostRegistration {}

impl HostRegistration {
    /// Registers `len` bytes at `ptr` (page-aligned: the start of a mapping or a huge page).
    ///
    /// # Safety
    /// `ptr..ptr + len` must be host memory that stays mapped until the registration drops.
    pub unsafe fn new(gpu: &Gpu, ptr: *mut u8, len: usize, what: &str) -> Result<HostRegistration, CudaError> {
        gpu.bind()?;
        // SAFETY: the caller guarantees the range is mapped for our lifetime.
        let r = unsafe { sys::cuMemHostRegister_v2(ptr as *mut _, len, sys::CU_MEMHOSTREGISTER_PORTABLE) };
        r.result().ctx(|| format!("page-locking {len} bytes of host memory for {what}"))?;
        Ok(HostRegistration { ctx: gpu.ctx.clone(), ptr })
    }
}

impl Drop for HostRegistration {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: registered in `new`, unregistered once.
        unsafe {
            let _ = sys::cuMemHostUnregister(self.ptr as *mut _);
        }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: allocated in `new`, freed once.
        unsafe {
            let _ = result::free_host(self.ptr as *mut _);
        }
    }
}
