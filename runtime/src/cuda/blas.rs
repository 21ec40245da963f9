//! `Ops::matmul` on cuBLAS: f16/bf16 operands, f32 accumulation.
//!
//! The handle is bound to the compute stream and to the plan's `workspace`
//! region (`cublasSetWorkspace`, called after `cublasSetStream`, which resets
//! it), so cuBLAS allocates nothing while the plan runs.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as bsys};
use cudarc::driver::sys as dsys;
use djinn_core::Dtype;

use super::context::{Context, Gpu};
use super::error::{CudaError, DriverContext};

pub struct Blas {
    ctx: Arc<Context>,
    handle: bsys::cublasHandle_t,
}

fn cuda_type(d: Dtype) -> bsys::cudaDataType {
    match d {
        Dtype::F16 => bsys::cudaDataType::CUDA_R_16F,
        Dtype::Bf16 => bsys::cudaDataType::CUDA_R_16BF,
        Dtype::F32 => bsys::cudaDataType::CUDA_R_32F,
    }
}

impl Blas {
    /// A handle issuing on `stream`; give it its workspace with [`Blas::set_workspace`].
    pub fn new(gpu: &Gpu, stream: dsys::CUstream) -> Result<Blas, CudaError> {
        gpu.bind()?;
        let handle = blas::create_handle().ctx(|| "creating the cuBLAS handle".into())?;
        let b = Blas { ctx: gpu.ctx.clone(), handle };
        // SAFETY: `handle` is live; the stream outlives it (the owner drops the handle first).
        unsafe {
            blas::set_stream(handle, stream as bsys::cudaStream_t)
                .ctx(|| "binding cuBLAS to the compute stream".into())?;
            bsys::cublasSetMathMode(handle, bsys::cublasMath_t::CUBLAS_DEFAULT_MATH)
                .result()
                .ctx(|| "setting cuBLAS's math mode".into())?;
        }
        Ok(b)
    }

    /// Gives cuBLAS `bytes` of scratch at device address `ptr` (after
    /// `cublasSetStream`, which would reset it), so GEMMs allocate nothing.
    pub fn set_workspace(&self, ptr: dsys::CUdeviceptr, bytes: u64) -> Result<(), CudaError> {
        // SAFETY: the caller owns `ptr..ptr+bytes` for the handle's lifetime.
        unsafe { bsys::cublasSetWorkspace_v2(self.handle, ptr as *mut c_void, bytes as usize) }
            .result()
            .ctx(|| format!("giving cuBLAS the {bytes}-byte workspace region"))
    }

    /// Row-major `out[m, n] = x[m, k] · w[n, k]ᵀ`. In cuBLAS's column-major
    /// terms that is `outᵀ (n×m, ld n) = wᵀ(k×n stored, op T) · xᵀ (k×m, ld k)`.
    /// `x` and `w` share a 16-bit dtype; `out` is that dtype or f32.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        out: dsys::CUdeviceptr,
        out_dtype: Dtype,
        x: dsys::CUdeviceptr,
        w: dsys::CUdeviceptr,
        in_dtype: Dtype,
        m: i32,
        n: i32,
        k: i32,
    ) -> Result<(), CudaError> {
        let alpha = 1.0f32;
        let beta = 0.0f32;
        // SAFETY: the caller bounds-checked every operand against the arena.
        unsafe {
            bsys::cublasGemmEx(
                self.handle,
                bsys::cublasOperation_t::CUBLAS_OP_T,
                bsys::cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                &alpha as *const f32 as *const c_void,
                w as *const c_void,
                cuda_type(in_dtype),
                k,
                x as *const c_void,
                cuda_type(in_dtype),
                k,
                &beta as *const f32 as *const c_void,
                out as *mut c_void,
                cuda_type(out_dtype),
                n,
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
            .result()
            .ctx(|| format!("GEMM m={m} n={n} k={k} ({in_dtype} -> {out_dtype})"))
        }
    }
}

/// One operand of a strided-batched GEMM: matrix `i` of the batch starts
/// `stride` elements after matrix `i - 1`.
#[derive(Debug, Clone, Copy)]
pub struct Strided {
    pub ptr: dsys::CUdeviceptr,
    pub dtype: Dtype,
    /// Leading dimension (column-major), elements.
    pub ld: i64,
    pub stride: i64,
}

impl Blas {
    /// Column-major `C_i = alpha · op(A_i) · op(B_i)` for `i < batch`, with
    /// `op(A_i)` `m×k`, `op(B_i)` `k×n`, f32 accumulation. `transpose_a`
    /// means `A_i` is stored `k×m`. Attention's two products are this call
    /// (see `CudaOps::attention`).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_strided_batched(
        &self,
        transpose_a: bool,
        (m, n, k): (i64, i64, i64),
        alpha: f32,
        a: Strided,
        b: Strided,
        c: Strided,
        batch: i64,
    ) -> Result<(), CudaError> {
        let beta = 0.0f32;
        let op_a =
            if transpose_a { bsys::cublasOperation_t::CUBLAS_OP_T } else { bsys::cublasOperation_t::CUBLAS_OP_N };
        let int = |v: i64| i32::try_from(v).map_err(|_| CudaError::Plan(format!("GEMM dimension {v} exceeds i32")));
        // SAFETY: the caller bounds-checked every matrix of the batch against the arena.
        unsafe {
            bsys::cublasGemmStridedBatchedEx(
                self.handle,
                op_a,
                bsys::cublasOperation_t::CUBLAS_OP_N,
                int(m)?,
                int(n)?,
                int(k)?,
                &alpha as *const f32 as *const c_void,
                a.ptr as *const c_void,
                cuda_type(a.dtype),
                int(a.ld)?,
                a.stride,
                b.ptr as *const c_void,
                cuda_type(b.dtype),
                int(b.ld)?,
                b.stride,
                &beta as *const f32 as *const c_void,
                c.ptr as *mut c_void,
                cuda_type(c.dtype),
                int(c.ld)?,
                c.stride,
                int(batch)?,
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
            .result()
            .ctx(|| format!("batched GEMM m={m} n={n} k={k} x{batch} ({} -> {})", a.dtype, c.dtype))
        }
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = blas::destroy_handle(self.handle);
        }
    }
}
