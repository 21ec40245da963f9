//! Random weights for timing: small finite values in the model dtype.
//!
//! Timing needs data that is not all zeros (tensor cores and memory
//! compression run faster on zeros) and that stays finite through the
//! forward pass, nothing more. Each element is `±(1 + m)·2⁻⁶` with a random
//! sign and mantissa `m`, written as raw bits: cheap enough to fill hundreds
//! of MiB in parallel, deterministic per seed.

use djinn_core::Dtype;
use djinn_kernels::Rng;
use rayon::prelude::*;

/// Bytes filled per parallel task (each with its own generator).
const TASK_BYTES: usize = 1 << 20;

/// Fills `out` with random values of `dtype`, little-endian; a trailing
/// partial element is left zero.
pub fn fill(out: &mut [u8], dtype: Dtype, seed: u64) {
    let size = dtype.size() as usize;
    out.par_chunks_mut(TASK_BYTES).enumerate().for_each(|(task, chunk)| {
        let mut rng = Rng::new(seed ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for e in chunk.chunks_exact_mut(size) {
            let r = rng.next_u64();
            let sign = r >> 63;
            match dtype {
                // f16: exponent field 9 (bias 15), 10 mantissa bits.
                Dtype::F16 => e.copy_from_slice(&((sign << 15 | 9 << 10 | (r & 0x3ff)) as u16).to_le_bytes()),
                // bf16: exponent field 121 (bias 127), 7 mantissa bits.
                Dtype::Bf16 => e.copy_from_slice(&((sign << 15 | 121 << 7 | (r & 0x7f)) as u16).to_le_bytes()),
                // f32: exponent field 121 (bias 127), 23 mantissa bits.
                Dtype::F32 => e.copy_from_slice(&((sign << 31 | 121 << 23 | (r & 0x7f_ffff)) as u32).to_le_bytes()),
            }
        }
    });
}

/// `n` random token ids below `vocab`, as the little-endian u32 the embedding kernel reads.
pub fn token_ids(n: u64, vocab: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..n).flat_map(|_| ((rng.next_u64() % vocab.max(1)) as u32).to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use djinn_kernels::{bf16, f16};

    use super::*;

    fn values(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
        match dtype {
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::Bf16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        }
    }

    #[test]
    fn values_are_small_finite_varied_and_of_both_signs() {
        for dtype in [Dtype::F16, Dtype::Bf16, Dtype::F32] {
            let mut buf = vec![0u8; 3 * TASK_BYTES + 6];
            fill(&mut buf, dtype, 7);
            let v = values(&buf, dtype);
            assert!(v.iter().all(|x| (1.0 / 64.0..1.0 / 32.0).contains(&x.abs())), "{dtype}");
            let neg = v.iter().filter(|x| **x < 0.0).count() as f64 / v.len() as f64;
            assert!((0.45..0.55).contains(&neg), "{dtype}: {neg} negative");
            let distinct: std::collections::HashSet<u32> = v.iter().map(|x| x.to_bits()).collect();
            assert!(distinct.len() >= 200, "{dtype}: {} distinct values", distinct.len());
            // Parallel tasks draw different streams.
            assert_ne!(&buf[..64], &buf[TASK_BYTES..TASK_BYTES + 64], "{dtype}");
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let (mut a, mut b, mut c) = (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; 4096]);
        fill(&mut a, Dtype::F16, 1);
        fill(&mut b, Dtype::F16, 1);
        fill(&mut c, Dtype::F16, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn token_ids_stay_inside_the_vocabulary() {
        let ids = token_ids(1000, 32000, 3);
        assert_eq!(ids.len(), 4000);
        let ids: Vec<u32> = ids.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert!(ids.iter().all(|&t| t < 32000));
        assert!(ids.iter().any(|&t| t > 16000));
    }
}
