//! Copy-engine measurements: pinned host-to-device copies over sizes, one
//! device-to-device copy, and a background copy loop for the CPU lane's
//! "while copying" figure.
//!
//! The host buffer is page-locked with `CU_MEMHOSTALLOC_PORTABLE` only, as the
//! executor's block images are ([`djinn_runtime::cuda::PinnedBuffer`]), not
//! write-combined: a profile must describe the copies djinn-exec will make.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys};
use djinn_runtime::cuda::{CudaError, DeviceBuffer, Event, Gpu, PinnedBuffer, Stream};

use crate::clock::time_each;
use crate::measurements::{CopyTiming, DeviceCopy};
use crate::stats::Timing;

/// A pinned host buffer and two device buffers of the same size.
pub struct CopyRig {
    gpu: Gpu,
    stream: Stream,
    /// `None` only while [`CopyRig::while_copying`] has lent it to the copy thread.
    pinned: Option<PinnedBuffer>,
    a: DeviceBuffer,
    b: DeviceBuffer,
    bytes: u64,
}

impl CopyRig {
    pub fn new(gpu: &Gpu, bytes: u64) -> Result<CopyRig, CudaError> {
        // cudarc panics on a missing symbol; the context's check does not cover this one.
        // SAFETY: looking a symbol up in the already-loaded driver library.
        if unsafe { sys::culib().get::<*const ()>(b"cuMemcpyDtoDAsync_v2") }.is_err() {
            return Err(CudaError::SymbolMissing { lib: "libcuda", symbol: "cuMemcpyDtoDAsync_v2" });
        }
        Ok(CopyRig {
            gpu: gpu.clone(),
            stream: Stream::new(gpu, true)?,
            pinned: Some(PinnedBuffer::new(gpu, bytes as usize, "the copy benchmark")?),
            a: DeviceBuffer::alloc(gpu, bytes, "the copy benchmark")?,
            b: DeviceBuffer::alloc(gpu, bytes, "the copy benchmark")?,
            bytes,
        })
    }

    /// The largest copy the rig can make.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Host-to-device copies of `bytes`: `warm` untimed, then `reps` timed.
    pub fn h2d(&self, bytes: u64, warm: usize, reps: usize) -> Result<CopyTiming, CudaError> {
        assert!(bytes <= self.bytes, "copy of {bytes} bytes from a {}-byte rig", self.bytes);
        let pinned = self.pinned.as_ref().expect("the pinned buffer is home");
        let (dst, stream) = (self.a.ptr, self.stream.raw);
        let us =
            // SAFETY: `dst` is the rig's device buffer of `self.bytes` >= `bytes`; the stream is the rig's.
            time_each(&self.gpu, &self.stream, warm, reps, || unsafe { pinned.copy_to_device(0, bytes as usize, dst, stream) })?;
        Ok(CopyTiming { bytes, time: Timing::of(&us) })
    }

    /// Device-to-device copies of `bytes`: `warm` untimed, then `reps` timed.
    pub fn d2d(&self, bytes: u64, warm: usize, reps: usize) -> Result<DeviceCopy, CudaError> {
        assert!(bytes <= self.bytes, "copy of {bytes} bytes from a {}-byte rig", self.bytes);
        let (src, dst, stream) = (self.a.ptr, self.b.ptr, self.stream.raw);
        let us = time_each(&self.gpu, &self.stream, warm, reps, || {
            // SAFETY: both ranges lie inside this rig's device buffers, alive while `self` is.
            unsafe { result::memcpy_dtod_async(dst, src, bytes as usize, stream) }.map_err(|source| CudaError::Driver {
                what: format!("enqueueing a {bytes}-byte device-to-device copy"),
                source,
            })
        })?;
        Ok(DeviceCopy { bytes, time: Timing::of(&us) })
    }

    /// Runs `f` while a thread keeps pinned host-to-device copies of `bytes`
    /// in flight (two at a time) on its own stream; `f` starts once the loop
    /// runs. Returns `f`'s result and the copies' rate meanwhile, GB/s.
    pub fn while_copying<T>(&mut self, bytes: u64, f: impl FnOnce() -> T) -> Result<(T, f64), CudaError> {
        assert!(bytes <= self.bytes, "copy of {bytes} bytes from a {}-byte rig", self.bytes);
        // The buffer is Send but not Sync: it moves to the copy thread and back.
        let pinned = self.pinned.take().expect("the pinned buffer is home");
        let (gpu, dst) = (self.gpu.clone(), self.a.ptr);
        let (running, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let (out, (copied, pinned)) = std::thread::scope(|s| {
            let (running, stop) = (&running, &stop);
            let looper = s.spawn(move || {
                let r = copy_loop(&gpu, &pinned, bytes, dst, running, stop);
                running.store(true, Ordering::Release); // never leave `f` waiting, even after an error
                (r, pinned)
            });
            while !running.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let out = f();
            stop.store(true, Ordering::Release);
            (out, looper.join().expect("the copy loop does not panic"))
        });
        self.pinned = Some(pinned);
        let (copies, secs) = copied?;
        let gbps = if secs > 0.0 { copies as f64 * bytes as f64 / secs / 1e9 } else { 0.0 };
        Ok((out, gbps))
    }
}

/// Copies until `stop`, keeping two in flight; returns the copies completed
/// between `running` being set and `stop`, and the seconds between.
fn copy_loop(
    gpu: &Gpu,
    pinned: &PinnedBuffer,
    bytes: u64,
    dst: sys::CUdeviceptr,
    running: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(u64, f64), CudaError> {
    gpu.bind()?;
    let stream = Stream::new(gpu, true)?;
    let done = [Event::new(gpu, false)?, Event::new(gpu, false)?];
    let poll = |e: &Event| -> Result<(), CudaError> {
        while !e.is_complete()? {
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    };
    let mut started: Option<Instant> = None;
    let mut completed = 0u64;
    for i in 0usize.. {
        // SAFETY: `dst` is a device buffer of at least `bytes` that only these copies write.
        unsafe { pinned.copy_to_device(0, bytes as usize, dst, stream.raw)? };
        done[i % 2].record(&stream)?;
        if i == 0 {
            continue;
        }
        poll(&done[(i + 1) % 2])?; // the copy before this one
        match started {
            None => {
                started = Some(Instant::now());
                running.store(true, Ordering::Release);
            }
            Some(_) => completed += 1,
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
    let secs = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    stream.synchronize()?;
    Ok((completed, secs))
}
