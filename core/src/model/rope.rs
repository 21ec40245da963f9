//! Rotary position embeddings: how a model scales them, and the inverse
//! frequencies the forward pass rotates each pair of dimensions by.
//!
//! [`inv_freq`] follows transformers' `ROPE_INIT_FUNCTIONS`
//! (`modeling_rope_utils.py`) for each supported `rope_type`, term by term,
//! in f64; transformers computes the same formulas in f32 (the runtime may
//! round the table to f32 where its kernels do). The `attention_factor` those
//! functions also return is 1 for every type here, so the table is all there
//! is to a scaling.
//!
//! Not here, and refused when a `config.json` asks for them
//! ([`crate::hf::parse_config`]): `dynamic` (its frequencies change with the
//! sequence length as generation proceeds), `yarn` and `longrope` (they also
//! scale the attention logits), and any `partial_rotary_factor` below 1.

use serde::{Deserialize, Serialize};

use super::Architecture;

/// How RoPE's frequencies are scaled (`rope_scaling` in transformers 4.x,
/// `rope_parameters` in 5.x). A plan's `[model.arch.rope_scaling]` table,
/// absent for [`RopeScaling::Default`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Unscaled: `theta^(-2i/d)` (`rope_type` "default").
    #[default]
    Default,
    /// Every frequency divided by `factor` (`rope_type` "linear": positions
    /// interpolated, as in the first context-extension fine-tunes).
    Linear { factor: f64 },
    /// Llama 3.1's scaling (`rope_type` "llama3"): wavelengths shorter than
    /// `original_max_position_embeddings / high_freq_factor` kept, longer than
    /// `original_max_position_embeddings / low_freq_factor` divided by
    /// `factor`, and a smooth interpolation between the two in between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: u64 },
}

impl RopeScaling {
    pub fn is_default(&self) -> bool {
        *self == RopeScaling::Default
    }

    /// The `rope_type` name transformers gives this scaling.
    pub fn rope_type(&self) -> &'static str {
        match self {
            RopeScaling::Default => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3 { .. } => "llama3",
        }
    }

    /// Why these parameters cannot describe a scaling (a factor that is not a
    /// positive finite number, a llama3 band whose high end is not above its
    /// low end, …), or `None` when they can. Each message names the parameter.
    pub fn invalid_parameter(&self) -> Option<String> {
        let positive = |name: &str, v: f64| {
            (!(v.is_finite() && v > 0.0)).then(|| format!("{name} is {v}; it must be a positive finite number"))
        };
        match *self {
            RopeScaling::Default => None,
            RopeScaling::Linear { factor } => positive("factor", factor),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                positive("factor", factor)
                    .or_else(|| positive("low_freq_factor", low_freq_factor))
                    .or_else(|| positive("high_freq_factor", high_freq_factor))
                    .or_else(|| {
                        (high_freq_factor <= low_freq_factor).then(|| {
                            format!(
                                "high_freq_factor is {high_freq_factor}, not above low_freq_factor \
                                 {low_freq_factor}: the band the two bound would be empty"
                            )
                        })
                    })
                    .or_else(|| {
                        (original_max_position_embeddings == 0)
                            .then(|| "original_max_position_embeddings is 0; it must be positive".to_string())
                    })
            }
        }
    }
}

/// The inverse frequency of each rotated pair of dimensions, `[head_dim / 2]`:
/// pair `i` (dimensions `i` and `i + head_dim/2` of a head, as transformers'
/// `rotate_half` pairs them) turns by `position * inv_freq[i]` radians.
pub fn inv_freq(arch: &Architecture) -> Vec<f64> {
    let d = arch.head_dim as f64;
    let unscaled = (0..arch.head_dim / 2).map(|i| 1.0 / arch.rope_theta.powf((2 * i) as f64 / d));
    match arch.rope_scaling {
        RopeScaling::Default => unscaled.collect(),
        RopeScaling::Linear { factor } => unscaled.map(|f| f / factor).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old_context = original_max_position_embeddings as f64;
            let low_freq_wavelen = old_context / low_freq_factor;
            let high_freq_wavelen = old_context / high_freq_factor;
            unscaled
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let scaled = if wavelen > low_freq_wavelen { f / factor } else { f };
                    // transformers: `~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)`.
                    let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                    if medium {
                        let smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(head_dim: u64, rope_theta: f64, rope_scaling: RopeScaling) -> Architecture {
        Architecture { head_dim, rope_theta, rope_scaling, ..Default::default() }
    }

    const LLAMA31: RopeScaling = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= 1e-12 * want.abs()
    }

    #[test]
    fn unscaled_frequencies_are_theta_to_the_minus_2i_over_d() {
        let f = inv_freq(&arch(8, 10000.0, RopeScaling::Default));
        // 10000^(-0/8), 10000^(-2/8), 10000^(-4/8), 10000^(-6/8).
        let want = [1.0, 0.1, 0.01, 0.001];
        assert_eq!(f.len(), 4);
        for (g, w) in f.iter().zip(want) {
            assert!(close(*g, w), "{f:?}");
        }
    }

    #[test]
    fn linear_scaling_divides_every_frequency() {
        let f = inv_freq(&arch(8, 10000.0, RopeScaling::Linear { factor: 4.0 }));
        for (g, w) in f.iter().zip([0.25, 0.025, 0.0025, 0.00025]) {
            assert!(close(*g, w), "{f:?}");
        }
    }

    /// Llama 3.1 (theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192):
    /// wavelengths `2π / 500000^(-i/64)` below 2048 are kept (pairs 0 … 28), above 8192
    /// divided by 8 (pairs 35 … 63), and pairs 29 … 34 interpolated with
    /// `smooth = (8192 / wavelen - 1) / 3`. The expected values were computed by hand
    /// from those formulas (Python, f64), independently of this code.
    #[test]
    fn llama3_scaling_keeps_high_frequencies_divides_low_ones_and_blends_between() {
        let f = inv_freq(&arch(128, 500000.0, LLAMA31));
        assert_eq!(f.len(), 64);
        let want: [(usize, f64); 10] = [
            (0, 1.0),
            (1, 0.8146172338565447),
            (28, 0.0032114459947525913),
            (29, 0.002166570763503359),
            (30, 0.0013718935677611381),
            (32, 0.0005248461609929547),
            (34, 0.00017850781276799638),
            (35, 9.556212353964683e-05),
            (40, 3.428102195952591e-05),
            (63, 3.068925988914511e-07),
        ];
        for (i, w) in want {
            assert!(close(f[i], w), "pair {i}: {} != {w}", f[i]);
        }
        // Outside the blended band, exactly the unscaled value or an eighth of it.
        let plain = inv_freq(&arch(128, 500000.0, RopeScaling::Default));
        assert!((0..=28).all(|i| f[i] == plain[i]));
        assert!((35..64).all(|i| f[i] == plain[i] / 8.0));
        // The blend moves monotonically from the kept end to the divided end.
        assert!((29..=34).all(|i| f[i] < plain[i] && f[i] > plain[i] / 8.0));
    }

    #[test]
    fn llama3_2_uses_its_own_factor() {
        // Llama 3.2 scales by 32: the low band is divided by 32, not 8.
        let s = RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let f = inv_freq(&arch(128, 500000.0, s));
        let plain = inv_freq(&arch(128, 500000.0, RopeScaling::Default));
        assert!(close(f[63], plain[63] / 32.0) && f[0] == 1.0);
        assert!(close(f[30], 0.001290547928209264), "{}", f[30]);
    }

    #[test]
    fn invalid_parameters_are_named() {
        let bad = RopeScaling::Linear { factor: f64::NAN };
        assert!(bad.invalid_parameter().unwrap().starts_with("factor is NaN"));
        let bad = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 4.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        assert!(bad.invalid_parameter().unwrap().contains("high_freq_factor is 4"), "{bad:?}");
        assert_eq!(LLAMA31.invalid_parameter(), None);
        assert_eq!(RopeScaling::Default.invalid_parameter(), None);
    }
}
