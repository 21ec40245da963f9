//! Seeded random values for synthetic weights, fast and reproducible in parallel.
//!
//! A 13B checkpoint is 13 billion values, so generation must keep up with the
//! disk: a splitmix64 stream (djinn-kernels' [`Rng`], the workspace's one)
//! gives two 32-bit draws per step, and each value is
//! a uniform draw of the same standard deviation as the N(0, 0.02) that
//! Hugging Face initialises Llama with (the benchmark needs the shape and
//! the scale of real weights, not Gaussian tails).
//!
//! Values are generated in fixed-size *chunks*, each with its own stream seeded
//! from `(seed, tensor name, chunk index)`. So the bytes of a tensor depend only
//! on the seed and the tensor's name: not on the thread count, the batch size,
//! the shard layout, or which other tensors are in the checkpoint.

use djinn_core::Dtype;
use djinn_kernels::rng::{mix64, Rng};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Values per chunk: the unit of parallel generation and of seeding.
pub const CHUNK_ELEMS: u64 = 1 << 18;

/// Standard deviation of projection and embedding weights (`initializer_range`).
pub const WEIGHT_STD: f32 = 0.02;

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform with mean `mean` and standard deviation `std`.
    Uniform { mean: f32, std: f32 },
}

impl Init {
    /// Projections and embeddings: mean 0, std 0.02.
    pub const WEIGHT: Init = Init::Uniform { mean: 0.0, std: WEIGHT_STD };
    /// RMSNorm scales: around 1.0, as a trained model's are.
    pub const NORM: Init = Init::Uniform { mean: 1.0, std: WEIGHT_STD };
}

/// FNV-1a of a tensor name, so each tensor gets its own streams.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// The seed of chunk `chunk` of the tensor whose name hashes to `name_hash`.
pub fn chunk_seed(seed: u64, name_hash: u64, chunk: u64) -> u64 {
    mix64(mix64(seed ^ mix64(name_hash)).wrapping_add(chunk))
}

/// Fills `out` with uniform values in `[mean - a, mean + a)`, `a = std * sqrt(3)`.
pub fn fill_f32(rng: &mut Rng, init: Init, out: &mut [f32]) {
    let Init::Uniform { mean, std } = init;
    // A value in [1, 2) from 23 random mantissa bits, shifted to [-0.5, 0.5).
    let unit = |bits: u32| f32::from_bits((bits >> 9) | 0x3F80_0000) - 1.5;
    let width = 2.0 * std * 3f32.sqrt();
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let r = rng.next_u64();
        pair[0] = mean + width * unit(r as u32);
        pair[1] = mean + width * unit((r >> 32) as u32);
    }
    if let [last] = pairs.into_remainder() {
        *last = mean + width * unit(rng.next_u64() as u32);
    }
}

/// Per-thread buffers of [`fill_chunk`], reused from chunk to chunk.
#[derive(Debug, Default)]
pub struct Scratch {
    /// `[chunk values]` drawn as f32.
    values: Vec<f32>,
    /// `[chunk values]` converted to f16.
    halves: Vec<f16>,
}

/// Writes chunk `chunk` of a tensor into `out`, as little-endian `dtype` values.
/// `out.len()` must be a multiple of the dtype size.
pub fn fill_chunk(
    seed: u64,
    name_hash: u64,
    chunk: u64,
    init: Init,
    dtype: Dtype,
    out: &mut [u8],
    scratch: &mut Scratch,
) {
    let n = out.len() / dtype.size() as usize;
    debug_assert_eq!(n * dtype.size() as usize, out.len());
    let values = &mut scratch.values;
    values.resize(n, 0.0);
    let mut rng = Rng::new(chunk_seed(seed, name_hash, chunk));
    fill_f32(&mut rng, init, values);
    match dtype {
        Dtype::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values.iter()) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::F16 => {
            // Hardware conversion (F16C) where the CPU has it, in place of a
            // per-value software rounding that would dominate generation.
            let halves = &mut scratch.halves;
            halves.resize(n, f16::ZERO);
            halves.convert_from_f32_slice(values);
            for (o, v) in out.chunks_exact_mut(2).zip(halves.iter()) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::Bf16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(values.iter()) {
                o.copy_from_slice(&bf16::from_f32(*v).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    /// The draws behind every checkpoint's bytes, as djinn-synth's own
    /// SplitMix64 made them before it used djinn-kernels' (which must make
    /// the same: a change here changes every checkpoint written).
    #[test]
    fn the_seeding_and_the_generator_are_pinned() {
        let seed = chunk_seed(0, name_hash("model.embed_tokens.weight"), 3);
        assert_eq!(seed, 0x1149_d456_151d_4492);
        let mut rng = Rng::new(seed);
        let draws = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        assert_eq!(draws, [0x030b_f3da_905d_ad5d, 0xff3e_be91_ce70_69a1, 0x9ea1_0b1c_7863_cee0]);
    }

    #[test]
    fn weights_have_the_requested_mean_and_std() {
        let mut values = vec![0.0; 1 << 16];
        fill_f32(&mut Rng::new(7), Init::WEIGHT, &mut values);
        let (mean, std) = stats(&values);
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((std - 0.02).abs() < 5e-4, "std {std}");
        let bound = 0.02 * 3f32.sqrt();
        assert!(values.iter().all(|v| v.abs() <= bound), "a value outside ±{bound}");
    }

    #[test]
    fn norm_scales_sit_around_one() {
        let mut values = vec![0.0; 4097];
        fill_f32(&mut Rng::new(1), Init::NORM, &mut values);
        let (mean, _) = stats(&values);
        assert!((mean - 1.0).abs() < 2e-3, "mean {mean}");
        assert!(values.iter().all(|v| (0.9..1.1).contains(v)));
    }

    #[test]
    fn chunks_differ_by_seed_name_and_index() {
        let mut s = Scratch::default();
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        let h = name_hash("model.norm.weight");
        fill_chunk(1, h, 0, Init::WEIGHT, Dtype::F16, &mut a, &mut s);
        fill_chunk(1, h, 0, Init::WEIGHT, Dtype::F16, &mut b, &mut s);
        assert_eq!(a, b, "same seed, name and chunk must give the same bytes");
        for (seed, hash, chunk) in [(2, h, 0), (1, name_hash("lm_head.weight"), 0), (1, h, 1)] {
            fill_chunk(seed, hash, chunk, Init::WEIGHT, Dtype::F16, &mut b, &mut s);
            assert_ne!(a, b, "seed {seed} chunk {chunk} repeated another stream");
        }
    }

    #[test]
    fn every_dtype_encodes_the_same_values() {
        let mut s = Scratch::default();
        let (mut w32, mut w16, mut wb) = (vec![0u8; 400], vec![0u8; 200], vec![0u8; 200]);
        fill_chunk(3, 9, 0, Init::NORM, Dtype::F32, &mut w32, &mut s);
        fill_chunk(3, 9, 0, Init::NORM, Dtype::F16, &mut w16, &mut s);
        fill_chunk(3, 9, 0, Init::NORM, Dtype::Bf16, &mut wb, &mut s);
        for i in 0..100 {
            let v = f32::from_le_bytes(w32[4 * i..4 * i + 4].try_into().unwrap());
            let h = f16::from_le_bytes([w16[2 * i], w16[2 * i + 1]]).to_f32();
            let b = bf16::from_le_bytes([wb[2 * i], wb[2 * i + 1]]).to_f32();
            assert!((v - h).abs() <= 1e-3 && (v - b).abs() <= 1e-2, "value {i}: f32 {v}, f16 {h}, bf16 {b}");
        }
    }
}
