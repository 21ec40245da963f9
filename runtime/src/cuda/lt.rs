//! cuBLASLt's candidate algorithms for one prefill GEMM shape, each timed:
//! what `examples/cuda_ops` measures to see how far cuBLAS's default choice
//! (`cublasGemmEx`, `Blas::matmul`) is from the fastest algorithm the
//! library offers for the shape. Row-major `out[m, n] = x[m, k] · w[n, k]ᵀ`,
//! 16-bit operands and output, f32 accumulation: `Blas::matmul`'s product.

use std::ffi::c_void;

use cudarc::cublaslt::{result as lt, sys as lsys};
use djinn_core::Dtype;

use super::context::Event;
use super::error::CudaError;
use super::ops::CudaOps;
use crate::ops::Buf;

/// One candidate algorithm and its time.
#[derive(Debug, Clone, Copy)]
pub struct LtCandidate {
    /// Its rank in cuBLASLt's heuristic (0: the library's first choice).
    pub rank: usize,
    pub us: f64,
    /// Workspace bytes it asks.
    pub workspace: usize,
    /// The library's estimate of its waves over the device.
    pub waves: f32,
}

fn lt_err(what: String) -> impl FnOnce(lt::CublasError) -> CudaError {
    move |source| CudaError::CublasLt { what, source }
}

fn data_type(d: Dtype) -> lsys::cudaDataType {
    match d {
        Dtype::F16 => lsys::cudaDataType::CUDA_R_16F,
        Dtype::Bf16 => lsys::cudaDataType::CUDA_R_16BF,
        Dtype::F32 => lsys::cudaDataType::CUDA_R_32F,
    }
}

/// cuBLASLt's objects for one shape, destroyed together (after the stream is idle).
struct LtShape {
    handle: lsys::cublasLtHandle_t,
    desc: lsys::cublasLtMatmulDesc_t,
    pref: lsys::cublasLtMatmulPreference_t,
    /// A (the weights), B (x) and C = D (out), column-major.
    layouts: Vec<lsys::cublasLtMatrixLayout_t>,
}

impl LtShape {
    /// Row-major `out[m, n] = x[m, k] · w[n, k]ᵀ` of `dtype`, in cuBLAS's column-major terms (as
    /// `Blas::matmul`): outᵀ (n × m) = op_T(w stored k × n) · xᵀ (k × m); at most `workspace` bytes.
    fn new((m, n, k): (u64, u64, u64), dtype: Dtype, workspace: u64) -> Result<LtShape, CudaError> {
        let t = data_type(dtype);
        let handle = lt::create_handle().map_err(lt_err("creating a handle".into()))?;
        let mut s = LtShape { handle, desc: std::ptr::null_mut(), pref: std::ptr::null_mut(), layouts: Vec::new() };
        s.desc = lt::create_matmul_desc(lsys::cublasComputeType_t::CUBLAS_COMPUTE_32F, lsys::cudaDataType::CUDA_R_32F)
            .map_err(lt_err("creating the matmul descriptor".into()))?;
        s.pref = lt::create_matmul_pref().map_err(lt_err("creating the preference".into()))?;
        for (rows, cols, ld) in [(k, n, k), (k, m, k), (n, m, n)] {
            s.layouts
                .push(lt::create_matrix_layout(t, rows, cols, ld as i64).map_err(lt_err("creating a layout".into()))?);
        }
        let transa = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T;
        let ws = workspace as usize;
        // SAFETY: live descriptors; the attribute values outlive the calls.
        unsafe {
            lt::set_matmul_desc_attribute(
                s.desc,
                lsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &transa as *const _ as *const c_void,
                std::mem::size_of_val(&transa),
            )
            .map_err(lt_err("setting TRANSA".into()))?;
            lt::set_matmul_pref_attribute(
                s.pref,
                lsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const usize as *const c_void,
                std::mem::size_of::<usize>(),
            )
            .map_err(lt_err("setting the workspace limit".into()))?;
        }
        Ok(s)
    }

    /// Up to `count` algorithms, in the heuristic's order.
    fn algorithms(&self, count: usize) -> Result<Vec<lsys::cublasLtMatmulHeuristicResult_t>, CudaError> {
        let [a, b, c] = [self.layouts[0], self.layouts[1], self.layouts[2]];
        // SAFETY: an all-zero heuristic result is a valid value of the C struct.
        let mut found: Vec<lsys::cublasLtMatmulHeuristicResult_t> = vec![unsafe { std::mem::zeroed() }; count];
        let mut returned = 0i32;
        // SAFETY: live descriptors; `found` holds `count` results.
        unsafe {
            lsys::cublasLtMatmulAlgoGetHeuristic(
                self.handle,
                self.desc,
                a,
                b,
                c,
                c,
                self.pref,
                count as i32,
                found.as_mut_ptr(),
                &mut returned,
            )
        }
        .result()
        .map_err(lt_err("asking the heuristic".into()))?;
        found.truncate(returned.max(0) as usize);
        Ok(found)
    }
}

impl Drop for LtShape {
    fn drop(&mut self) {
        // SAFETY: each was created once in `new` (null where creation stopped early); the owner
        // synchronises the stream before dropping, so no GEMM still uses them.
        unsafe {
            for &l in &self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            if !self.pref.is_null() {
                let _ = lt::destroy_matmul_pref(self.pref);
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

impl CudaOps {
    /// Times each of up to `count` algorithms cuBLASLt's heuristic offers for
    /// `out = x · wᵀ` (`reps` runs after one untimed run, CUDA events), with
    /// the cuBLAS workspace region as its workspace.
    pub fn lt_candidates(
        &mut self,
        out: Buf,
        x: Buf,
        w: Buf,
        (m, n, k): (u64, u64, u64),
        count: usize,
        reps: u32,
    ) -> Result<Vec<LtCandidate>, CudaError> {
        const OP: &str = "lt_candidates";
        let po = self.operand(OP, "out", out, m * n, Some(x.dtype))?;
        let px = self.operand(OP, "x", x, m * k, None)?;
        let pw = self.operand(OP, "w", w, n * k, Some(x.dtype))?;
        let (ws_ptr, ws_bytes) = self.workspace();
        let shape = LtShape::new((m, n, k), x.dtype, ws_bytes)?;
        let [a, b, c] = [shape.layouts[0], shape.layouts[1], shape.layouts[2]];
        let (alpha, beta) = (1.0f32, 0.0f32);
        let timed = (|| {
            let mut out = Vec::new();
            for (rank, h) in shape.algorithms(count)?.iter().enumerate() {
                if h.state != lsys::cublasStatus_t::CUBLAS_STATUS_SUCCESS || h.workspaceSize as u64 > ws_bytes {
                    continue;
                }
                let run = |ops: &CudaOps| {
                    // SAFETY: operands bounds-checked above; the workspace is the arena's cuBLAS region.
                    unsafe {
                        lt::matmul(
                            shape.handle,
                            shape.desc,
                            &alpha as *const f32 as *const c_void,
                            &beta as *const f32 as *const c_void,
                            pw as *const c_void,
                            a,
                            px as *const c_void,
                            b,
                            po as *const c_void,
                            c,
                            po as *mut c_void,
                            c,
                            &h.algo,
                            ws_ptr as *mut c_void,
                            ws_bytes as usize,
                            ops.stream().raw as lsys::cudaStream_t,
                        )
                    }
                    .map_err(lt_err(format!("running algorithm {rank} for m={m} n={n} k={k}")))
                };
                run(self)?;
                let (start, end) = (Event::new(self.gpu(), true)?, Event::new(self.gpu(), true)?);
                start.record(self.stream())?;
                for _ in 0..reps {
                    run(self)?;
                }
                end.record(self.stream())?;
                self.synchronize()?;
                let us = end.ms_since(&start)? as f64 * 1e3 / reps.max(1) as f64;
                out.push(LtCandidate { rank, us, workspace: h.workspaceSize, waves: h.wavesCount });
            }
            Ok(out)
        })();
        // Nothing may still use the descriptors when `shape` drops.
        let idle = self.synchronize();
        let out = timed?;
        idle?;
        Ok(out)
    }
}
