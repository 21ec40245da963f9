//! Prefill products that share their input and their shape, as one
//! strided-batched cuBLAS GEMM: q, k and v of a multi-head layer, gate and
//! up of every MLP.
//!
//! A 512-token prefill's products are small GEMMs for an H200: 512 × 5120
//! outputs are a few dozen of cuBLAS's tiles for 132 multiprocessors, so one
//! product alone leaves part of the device idle in its last wave. The
//! matrices of one batch are the weights of one block image, laid end to end
//! at equal distances where their shapes are equal (`lay_out_block`), and
//! their outputs are activation buffers laid out the same way
//! (`ActivationLayout`); where both are, the products run as one launch of
//! `batch` times the tiles. Elsewhere (grouped-query k and v, biases between
//! the weights) they run one by one, as before.

use djinn_core::Dtype;

use super::blas::Strided;
use super::error::CudaError;
use super::ops::CudaOps;
use crate::ops::Buf;

/// The common distance between consecutive buffers, in elements, if there is one.
fn stride(bufs: &[Buf]) -> Option<u64> {
    let first = bufs.first()?;
    let step = bufs.get(1)?.offset.checked_sub(first.offset)?;
    let equal = bufs.windows(2).all(|p| p[1].offset.checked_sub(p[0].offset) == Some(step));
    (equal && step.is_multiple_of(first.dtype.size())).then_some(step / first.dtype.size())
}

impl CudaOps {
    /// Whether `outs[i] = x · ws[i]ᵀ` runs as one batched GEMM ([`CudaOps::try_batched`]).
    pub fn runs_batched(&self, outs: &[Buf], x: Buf, ws: &[Buf], m: u64, n: u64, k: u64) -> bool {
        self.batch_strides(outs, x, ws, m, n, k).is_some()
    }

    /// The distances between the weights and between the outputs (elements)
    /// where the products can be one batch.
    fn batch_strides(&self, outs: &[Buf], x: Buf, ws: &[Buf], m: u64, n: u64, k: u64) -> Option<(u64, u64)> {
        assert_eq!(outs.len(), ws.len(), "one output per weight");
        if !self.batched || outs.len() < 2 || x.dtype == Dtype::F32 {
            return None;
        }
        let (sw, so) = (stride(ws)?, stride(outs)?);
        let apart = sw >= n * k && so >= m * n;
        (apart && ws.iter().chain(outs).all(|b| b.dtype == x.dtype)).then_some((sw, so))
    }

    /// `outs[i] = x · ws[i]ᵀ` (`x` `[m, k]`, each weight `[n, k]`) as one
    /// strided-batched GEMM, or `Ok(false)`, having done nothing, where the
    /// weights or the outputs are not equally spaced (or batching is off:
    /// `DJINN_BATCHED=0`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn try_batched(
        &mut self,
        op: &'static str,
        outs: &[Buf],
        x: Buf,
        ws: &[Buf],
        m: u64,
        n: u64,
        k: u64,
    ) -> Result<bool, CudaError> {
        let Some((sw, so)) = self.batch_strides(outs, x, ws, m, n, k) else { return Ok(false) };
        let px = self.operand(op, "x", x, m * k, None)?;
        // Every matrix of the batch is checked; the GEMM is given the first of each.
        let mut first = None;
        for (&o, &w) in outs.iter().zip(ws) {
            let pair = (self.operand(op, "out", o, m * n, None)?, self.operand(op, "w", w, n * k, None)?);
            first.get_or_insert(pair);
        }
        let (po, pw) = first.expect("a batch has at least two products (batch_strides)");
        let int = |v: u64| v as i64;
        // Column-major, as `Blas::matmul`: outᵀ (n × m, ld n) = wᵀ (op T of k × n, ld k) · xᵀ (k × m, ld k).
        self.blas.gemm_strided_batched(
            true,
            (int(n), int(m), int(k)),
            1.0,
            Strided { ptr: pw, dtype: x.dtype, ld: int(k), stride: int(sw) },
            Strided { ptr: px, dtype: x.dtype, ld: int(k), stride: 0 },
            Strided { ptr: po, dtype: x.dtype, ld: int(n), stride: int(so) },
            outs.len() as i64,
        )?;
        self.after(op)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(offset: u64) -> Buf {
        Buf { offset, elems: 4, dtype: Dtype::F16 }
    }

    #[test]
    fn a_batch_needs_one_distance_between_its_buffers() {
        assert_eq!(stride(&[buf(0), buf(64), buf(128)]), Some(32));
        assert_eq!(stride(&[buf(0), buf(64), buf(130)]), None);
        assert_eq!(stride(&[buf(64), buf(0)]), None);
        assert_eq!(stride(&[buf(0), buf(3)]), None); // not a whole element
        assert_eq!(stride(&[buf(0)]), None);
    }
}
