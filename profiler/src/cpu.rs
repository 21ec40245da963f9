//! The host CPU as a compute lane: its f16 matrix-vector rate.
//!
//! A later placement may compute some layers on the CPU while the copy lane
//! streams others, so the profile records how fast the kernels crate's
//! `matmul` twin (`m = 1`, rows split over all cores by the kernels' team) streams f16
//! weights from host RAM, alone and while pinned host-to-device copies
//! compete for the same memory. The matrix is much larger than any cache.

use std::time::Instant;

use djinn_core::Dtype;
use djinn_kernels::f16;

use crate::random;
use crate::stats::Timing;

pub struct GemvBench {
    w: Vec<f16>,
    x: Vec<f16>,
    out: Vec<f16>,
    pub rows: u64,
    pub cols: u64,
}

impl GemvBench {
    /// Random `[rows, cols]` weights and a random input vector.
    pub fn new(rows: u64, cols: u64) -> GemvBench {
        let half = |n: u64, seed| {
            let mut bytes = vec![0u8; n as usize * 2];
            random::fill(&mut bytes, Dtype::F16, seed);
            bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>()
        };
        GemvBench { w: half(rows * cols, 31), x: half(cols, 32), out: vec![f16::ZERO; rows as usize], rows, cols }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.rows * self.cols * 2
    }

    /// `warm` untimed products, then `reps` timed ones (host clock, µs each).
    pub fn run(&mut self, warm: usize, reps: usize) -> Timing {
        let (n, k) = (self.rows as usize, self.cols as usize);
        let mut us = Vec::with_capacity(reps);
        for i in 0..warm + reps {
            let t = Instant::now();
            djinn_kernels::matmul_f16(&mut self.out, &self.x, &self.w, 1, n, k);
            if i >= warm {
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Timing::of(&us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_product_is_timed_and_computed() {
        let mut b = GemvBench::new(256, 512);
        let t = b.run(1, 3);
        assert_eq!(t.runs, 3);
        assert!(t.median_us > 0.0 && t.min_us <= t.median_us && t.median_us <= t.max_us);
        assert_eq!(b.weight_bytes(), 256 * 512 * 2);
        // The product ran: random weights do not give an all-zero output.
        assert!(b.out.iter().any(|v| v.to_f32() != 0.0));
    }
}
