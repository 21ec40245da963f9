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
    model!("mistral-7b", "mistralai/Mistral-7B-v0.3"),
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
    use crate::model::Dtype;

    #[test]
    fn model_presets_have_the_published_architectures() {
        // (name, hidden, inter, layers, heads, kv, vocab, max_pos, rope_theta, dtype)
        let want = [
            ("llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, Dtype::F16),
            ("llama2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000.0, Dtype::F16),
            ("llama2-70b", 8192, 28672, 80, 64, 8, 32000, 4096, 10000.0, Dtype::F16),
            ("llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0, Dtype::Bf16),
            ("mistral-7b", 4096, 14336, 32, 32, 8, 32768, 32768, 1e6, Dtype::Bf16),
            ("tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0, Dtype::Bf16),
        ];
        assert_eq!(MODEL_PRESETS.len(), want.len());
        for (name, h, i, l, heads, kv, vocab, pos, theta, dtype) in want {
            let m = load_model(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let a = &m.arch;
            let got = (a.hidden_size, a.intermediate_size, a.num_layers, a.num_heads, a.num_kv_heads, a.vocab_size);
            assert_eq!(got, (h, i, l, heads, kv, vocab), "{name}");
            assert_eq!((a.max_position_embeddings, a.rope_theta, m.dtype), (pos, theta, dtype), "{name}");
            assert_eq!((a.rms_norm_eps, a.tie_word_embeddings, a.head_dim), (1e-5, false, h / heads), "{name}");
            assert_eq!(m.name, name);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = load_model("gpt-5").unwrap_err().to_string();
        assert!(e.contains("\"gpt-5\"") && e.contains("llama2-7b") && e.contains("tinyllama-1.1b"), "{e}");
    }
}
