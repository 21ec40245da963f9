//! Model presets, and how a `--model NAME|DIR` argument is resolved.
//!
//! A model preset is the literal `config.json` its publisher ships
//! (`core/presets/models/*.json`), read by the same parser as a model
//! directory's ([`crate::hf::parse_config`]), so a preset and the real
//! checkpoint cannot disagree on an architecture number.
//!
//! They live in the contract crate because three programs take `--model` and
//! must resolve it the same way: djinn-compile (the plan), djinn-profile
//! (whose block times the compiler matches by model name) and djinn-synth
//! (which writes a preset's checkpoint). GPU presets stay in the compiler:
//! only djinn-compile reads `--gpu`.

use std::path::Path;

use thiserror::Error;

use crate::hf::{self, HfError, ModelDir};
use crate::model::ModelSpec;

/// A published `config.json`, embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPreset {
    pub name: &'static str,
    /// Where the file came from (its Hugging Face repository).
    pub source: &'static str,
    /// The file as its publisher ships it.
    pub config_json: &'static str,
}

macro_rules! model {
    ($name:literal, $source:literal) => {
        ModelPreset {
            name: $name,
            source: $source,
            config_json: include_str!(concat!("../presets/models/", $name, ".json")),
        }
    };
}

pub const MODEL_PRESETS: &[ModelPreset] = &[
    model!("llama2-7b", "meta-llama/Llama-2-7b-hf"),
    model!("llama2-13b", "meta-llama/Llama-2-13b-hf"),
    model!("llama2-70b", "meta-llama/Llama-2-70b-hf"),
    model!("llama3-8b", "meta-llama/Meta-Llama-3-8B"),
    model!("llama3.1-8b", "meta-llama/Llama-3.1-8B"),
    model!("llama3.1-70b", "meta-llama/Llama-3.1-70B"),
    model!("llama3.2-3b", "meta-llama/Llama-3.2-3B"),
    model!("mistral-7b", "mistralai/Mistral-7B-v0.3"),
    model!("mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1"),
    model!("qwen2.5-7b", "Qwen/Qwen2.5-7B"),
    model!("qwen2.5-14b", "Qwen/Qwen2.5-14B"),
    model!("qwen2.5-32b", "Qwen/Qwen2.5-32B"),
    model!("qwen2.5-72b", "Qwen/Qwen2.5-72B"),
    model!("qwen3-8b", "Qwen/Qwen3-8B"),
    model!("qwen3-32b", "Qwen/Qwen3-32B"),
    model!("tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
];

/// What resolving `--model` can refuse.
#[derive(Debug, Error)]
pub enum ModelArgError {
    #[error("unknown model {name:?}: expected a preset ({valid}) or a Hugging Face model directory")]
    Unknown { name: String, valid: String },

    /// A model directory or a preset's `config.json` (the message names the file and field).
    #[error(transparent)]
    Hf(#[from] HfError),
}

pub fn model_preset(name: &str) -> Option<&'static ModelPreset> {
    MODEL_PRESETS.iter().find(|p| p.name == name)
}

/// The presets' names, comma-separated, for errors that list them.
pub fn model_preset_names() -> String {
    MODEL_PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl ModelPreset {
    /// The origin named in errors: the embedded file.
    pub fn origin(&self) -> String {
        format!("core/presets/models/{}.json", self.name)
    }

    pub fn spec(&self) -> Result<ModelSpec, HfError> {
        let config = hf::parse_config(self.config_json, &self.origin())?;
        Ok(ModelSpec::from_arch(self.name, config.arch, config.dtype))
    }
}

/// `--model NAME|DIR`: a preset, or a Hugging Face model directory (which
/// [`ModelDir::open`] names by its final path component, so plans carry no
/// absolute paths).
pub fn load_model(arg: &str) -> Result<ModelSpec, ModelArgError> {
    let path = Path::new(arg);
    if !path.is_dir() {
        if let Some(p) = model_preset(arg) {
            return Ok(p.spec()?);
        }
        if !arg.contains(['/', '\\']) {
            return Err(ModelArgError::Unknown { name: arg.to_string(), valid: model_preset_names() });
        }
    }
    Ok(ModelDir::open(path)?.spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dtype, RopeScaling, SlidingWindow};

    /// One preset's published dimensions.
    struct Want {
        name: &'static str,
        /// hidden, intermediate, layers, heads, kv heads, head_dim, vocab
        dims: [u64; 7],
        max_pos: u64,
        rope_theta: f64,
        eps: f64,
        tied: bool,
        dtype: Dtype,
    }

    const fn want(
        name: &'static str,
        dims: [u64; 7],
        max_pos: u64,
        rope_theta: f64,
        eps: f64,
        tied: bool,
        dtype: Dtype,
    ) -> Want {
        Want { name, dims, max_pos, rope_theta, eps, tied, dtype }
    }

    const LLAMA31_ROPE: RopeScaling = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };

    #[test]
    fn model_presets_have_the_published_architectures() {
        use Dtype::{Bf16, F16};
        #[rustfmt::skip]
        let table = [
            // name, [hidden, intermediate, layers, heads, kv heads, head_dim, vocab], max_pos, rope_theta, eps, tied, dtype
            want("llama2-7b",      [4096, 11008, 32, 32, 32, 128, 32000],  4096,   10000.0, 1e-5, false, F16),
            want("llama2-13b",     [5120, 13824, 40, 40, 40, 128, 32000],  4096,   10000.0, 1e-5, false, F16),
            want("llama2-70b",     [8192, 28672, 80, 64, 8, 128, 32000],   4096,   10000.0, 1e-5, false, F16),
            want("llama3-8b",      [4096, 14336, 32, 32, 8, 128, 128256],  8192,   500000.0, 1e-5, false, Bf16),
            want("llama3.1-8b",    [4096, 14336, 32, 32, 8, 128, 128256],  131072, 500000.0, 1e-5, false, Bf16),
            want("llama3.1-70b",   [8192, 28672, 80, 64, 8, 128, 128256],  131072, 500000.0, 1e-5, false, Bf16),
            want("llama3.2-3b",    [3072, 8192, 28, 24, 8, 128, 128256],   131072, 500000.0, 1e-5, true, Bf16),
            want("mistral-7b",     [4096, 14336, 32, 32, 8, 128, 32768],   32768,  1e6, 1e-5, false, Bf16),
            want("mistral-7b-v0.1", [4096, 14336, 32, 32, 8, 128, 32000],  32768,  10000.0, 1e-5, false, Bf16),
            want("qwen2.5-7b",     [3584, 18944, 28, 28, 4, 128, 152064],  131072, 1e6, 1e-6, false, Bf16),
            want("qwen2.5-14b",    [5120, 13824, 48, 40, 8, 128, 152064],  131072, 1e6, 1e-5, false, Bf16),
            want("qwen2.5-32b",    [5120, 27648, 64, 40, 8, 128, 152064],  131072, 1e6, 1e-5, false, Bf16),
            want("qwen2.5-72b",    [8192, 29568, 80, 64, 8, 128, 152064],  131072, 1e6, 1e-5, false, Bf16),
            want("qwen3-8b",       [4096, 12288, 36, 32, 8, 128, 151936],  40960,  1e6, 1e-6, false, Bf16),
            want("qwen3-32b",      [5120, 25600, 64, 64, 8, 128, 151936],  40960,  1e6, 1e-6, false, Bf16),
            want("tinyllama-1.1b", [2048, 5632, 22, 32, 4, 64, 32000],     2048,   10000.0, 1e-5, false, Bf16),
        ];
        assert_eq!(
            MODEL_PRESETS.iter().map(|p| p.name).collect::<Vec<_>>(),
            table.iter().map(|w| w.name).collect::<Vec<_>>()
        );
        for w in &table {
            let name = w.name;
            let m = load_model(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let a = &m.arch;
            let got = [
                a.hidden_size,
                a.intermediate_size,
                a.num_layers,
                a.num_heads,
                a.num_kv_heads,
                a.head_dim,
                a.vocab_size,
            ];
            assert_eq!(got, w.dims, "{name}");
            assert_eq!(
                (a.max_position_embeddings, a.rope_theta, a.rms_norm_eps),
                (w.max_pos, w.rope_theta, w.eps),
                "{name}"
            );
            assert_eq!((a.tie_word_embeddings, m.dtype, m.name.as_str()), (w.tied, w.dtype, name));
            // What each family adds to the Llama 2 layer.
            let family = name.split(['-', '.']).next().unwrap();
            let (family, qkv_bias, qk_norm) = match family {
                "qwen2" => ("qwen2", true, false),
                "qwen3" => ("qwen3", false, true),
                "mistral" => ("mistral", false, false),
                _ => ("llama", false, false),
            };
            assert_eq!(
                (a.family.as_str(), a.qkv_bias, a.o_bias, a.qk_norm),
                (family, qkv_bias, false, qk_norm),
                "{name}"
            );
            let rope = match name {
                "llama3.1-8b" | "llama3.1-70b" => LLAMA31_ROPE,
                "llama3.2-3b" => RopeScaling::Llama3 {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192,
                },
                _ => RopeScaling::Default,
            };
            assert_eq!(a.rope_scaling, rope, "{name}");
            // Only Mistral v0.1 windows its attention (4096 of 32768 positions, every layer);
            // the Qwen configs name a window but leave use_sliding_window off.
            let window = (name == "mistral-7b-v0.1").then_some(SlidingWindow { window: 4096, first_layer: 0 });
            assert_eq!(a.sliding_window, window, "{name}");
            assert_eq!(a.family_contradiction(), None, "{name}");
        }
    }

    #[test]
    fn preset_sizes_match_the_published_checkpoints() {
        // Parameters (the model cards' counts), from the block tables.
        let params = |name: &str| {
            let m = load_model(name).unwrap();
            let tied = if m.arch.tie_word_embeddings { 1 } else { 0 };
            m.blocks.iter().flat_map(|b| &b.tensors).map(|t| t.shape.iter().product::<u64>()).sum::<u64>()
                - tied * m.arch.vocab_size * m.arch.hidden_size
        };
        for (name, want) in [
            ("llama3.1-8b", 8_030_261_248),
            ("llama3.2-3b", 3_212_749_824),
            ("qwen2.5-7b", 7_615_616_512),
            ("qwen3-8b", 8_190_735_360),
            ("qwen3-32b", 32_762_123_264),
            ("mistral-7b-v0.1", 7_241_732_096),
        ] {
            assert_eq!(params(name), want, "{name}");
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = load_model("gpt-5").unwrap_err().to_string();
        assert!(e.contains("\"gpt-5\"") && e.contains("llama2-7b") && e.contains("tinyllama-1.1b"), "{e}");
    }
}
