//! The CUDA backend: every kernel against its CPU twin ([`kernels`]), and
//! whole generations against the fixtures' float32 references, across plans
//! and against the CPU backend ([`runs`]).
//!
//! GPU tests need libcuda, libnvrtc, libcublas and a device; without them
//! each reports a skip ([`crate::skip`]: printed, and counted by `.ci/run`)
//! and passes, so this binary runs everywhere. `kernels_compile_with_nvrtc` needs only
//! libnvrtc.

mod kernels;
mod runs;

use djinn_kernels::cuda::SOURCES as KERNEL_SOURCES;
use djinn_runtime::cuda::{compile_kernels, kernel_cache_dir, CudaError, CudaOps};

use crate::skip::{skip, Skip};

/// Standalone ops over a `bytes`-byte arena, or `None` after printing why the test skips.
pub fn gpu_ops(test: &str, bytes: u64) -> Option<CudaOps> {
    match CudaOps::standalone(bytes) {
        Ok(ops) => Some(ops),
        Err(e) if e.is_absence() => {
            skip(test, Skip::NoGpu, e);
            None
        }
        Err(e) => panic!("{test}: cannot open the GPU: {e}"),
    }
}

#[test]
fn kernels_compile_with_nvrtc() {
    let first = match compile_kernels("sm_90") {
        Ok(v) => v,
        Err(e @ CudaError::LibraryMissing { .. }) => {
            skip("kernels_compile_with_nvrtc", Skip::NoGpu, e);
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(first.len(), KERNEL_SOURCES.len());
    for (file, bytes, _) in &first {
        assert!(*bytes > 0, "{file}: empty CUBIN");
        println!("{file}: {bytes} bytes of CUBIN");
    }
    // A second compilation is served from the disk cache, where one can be written.
    let writable = kernel_cache_dir()
        .is_some_and(|d| std::fs::create_dir_all(&d).is_ok() && std::fs::write(d.join(".probe"), b"").is_ok());
    let second = compile_kernels("sm_90").unwrap();
    if writable {
        for (file, _, cached) in &second {
            assert!(cached, "{file} was compiled again instead of read from {:?}", kernel_cache_dir());
        }
    }
}

#[test]
fn out_of_arena_and_mistyped_operands_are_errors_not_faults() {
    use djinn_core::Dtype;
    use djinn_runtime::ops::{Buf, Ops};
    let Some(mut ops) = gpu_ops("out_of_arena_and_mistyped_operands_are_errors_not_faults", 1 << 20) else { return };
    let arena = ops.arena_bytes();
    let x = Buf { offset: 0, elems: 64, dtype: Dtype::F32 };
    let y = Buf { offset: arena - 64, elems: 64, dtype: Dtype::F16 };
    let err = ops.add(x, y, 64).unwrap_err().to_string();
    assert!(err.contains("add") && err.contains("outside"), "{err}");
    let err = ops.add(Buf { dtype: Dtype::F16, ..x }, Buf { offset: 4096, ..y }, 64).unwrap_err().to_string();
    assert!(err.contains("add") && err.contains("dtype f16 where f32 is required"), "{err}");
    let err = ops.silu_mul(Buf { offset: 4096, ..y }, Buf { offset: 8192, ..y }, 65).unwrap_err().to_string();
    assert!(err.contains("64 elements where 65 are needed"), "{err}");
    // The stream is still healthy after refused calls.
    ops.add(x, Buf { offset: 4096, ..y }, 64).unwrap();
    ops.synchronize().unwrap();
}
