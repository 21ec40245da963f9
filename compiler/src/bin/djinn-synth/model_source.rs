//! `--model NAME`: the model presets djinn-compile and djinn-profile resolve
//! too (`djinn_core::model_presets`), so that the architecture numbers live in
//! one place (`core/presets/models/*.json`, parsed by the same `config.json`
//! reader as a real checkpoint's). Only presets: a checkpoint directory is
//! what this program writes, not what it reads.

use anyhow::{anyhow, Result};
use djinn_core::model_presets::{model_preset, model_preset_names};
use djinn_core::{Architecture, Dtype};

/// A model to synthesise: its name, its `config.json` text and what it says.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// Names the config in errors (the preset's file).
    pub origin: String,
    /// The publisher's `config.json`, as the preset embeds it.
    pub config_text: String,
    pub arch: Architecture,
    /// The dtype the publisher's checkpoint is stored in (the default of `--dtype`).
    pub dtype: Dtype,
}

/// The preset named `name`; an unknown name is an error listing the valid ones.
pub fn preset(name: &str) -> Result<Model> {
    let p = model_preset(name)
        .ok_or_else(|| anyhow!("unknown model {name:?}: expected one of {}", model_preset_names()))?;
    let spec = p.spec()?;
    Ok(Model {
        name: p.name.to_string(),
        origin: p.origin(),
        config_text: p.config_json.to_string(),
        arch: spec.arch,
        dtype: spec.dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_list_the_presets() {
        let err = format!("{:#}", preset("gpt-5").unwrap_err());
        assert!(err.contains("\"gpt-5\"") && err.contains("llama2-13b") && err.contains("tinyllama-1.1b"), "{err}");
    }

    #[test]
    fn llama2_13b_is_the_published_shape() {
        let m = preset("llama2-13b").unwrap();
        assert_eq!((m.arch.hidden_size, m.arch.num_layers, m.arch.vocab_size), (5120, 40, 32000));
        assert_eq!(m.dtype, Dtype::F16);
        assert!(m.config_text.contains("LlamaForCausalLM"));
    }
}
