//! Model and GPU presets, and how `--model` and `--gpu` arguments are resolved.
//!
//! A model preset is the literal `config.json` its publisher ships
//! (`compiler/presets/models/*.json`), read by the same parser as a model
//! directory's, so a preset and the real checkpoint cannot disagree on an
//! architecture number. A GPU preset is a profile file in the `--gpu FILE.toml`
//! format (`compiler/presets/gpus/*.toml`) whose comments name each figure's
//! source and derating.

use std::path::Path;

use djinn_core::gpu::GpuProfile;
use djinn_core::hf::{self, ModelDir};
use djinn_core::model::ModelSpec;

use crate::error::CompileError;

/// A published `config.json`, embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPreset {
    pub name: &'static str,
    /// Where the file came from (its Hugging Face repository).
    pub source: &'static str,
    /// The file as its publisher ships it.
    pub config_json: &'static str,
}

/// A GPU profile, embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuPreset {
    pub name: &'static str,
    pub toml: &'static str,
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

macro_rules! gpu {
    ($name:literal) => {
        GpuPreset { name: $name, toml: include_str!(concat!("../presets/gpus/", $name, ".toml")) }
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

pub const GPU_PRESETS: &[GpuPreset] = &[
    gpu!("l4"),
    gpu!("t4"),
    gpu!("a10g"),
    gpu!("rtx4090"),
    gpu!("a100-40gb"),
    gpu!("a100-80gb"),
    gpu!("h100-pcie"),
    gpu!("h100-sxm"),
    gpu!("h200"),
];

pub fn model_preset(name: &str) -> Option<&'static ModelPreset> {
    MODEL_PRESETS.iter().find(|p| p.name == name)
}

pub fn gpu_preset(name: &str) -> Option<&'static GpuPreset> {
    GPU_PRESETS.iter().find(|p| p.name == name)
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &'static str) -> String {
    items.iter().map(name).collect::<Vec<_>>().join(", ")
}

impl ModelPreset {
    /// The origin named in errors: the embedded file.
    pub fn origin(&self) -> String {
        format!("compiler/presets/models/{}.json", self.name)
    }

    pub fn spec(&self) -> Result<ModelSpec, CompileError> {
        let origin = self.origin();
        let config = hf::parse_config(self.config_json, &origin)?;
        Ok(ModelSpec::from_arch(self.name, config.arch, config.dtype))
    }
}

/// `--model NAME|DIR`: a preset, or a Hugging Face model directory (named by
/// its final path component, so plans carry no absolute paths).
pub fn load_model(arg: &str) -> Result<ModelSpec, CompileError> {
    let path = Path::new(arg);
    if !path.is_dir() {
        if let Some(p) = model_preset(arg) {
            return p.spec();
        }
        if !arg.contains(['/', '\\']) {
            return Err(CompileError::UnknownModel { name: arg.to_string(), valid: names(MODEL_PRESETS, |p| p.name) });
        }
    }
    let dir = ModelDir::open(path)?;
    let mut spec = dir.spec;
    spec.name = dir_name(path);
    Ok(spec)
}

/// The final component of a directory path (`.` and `..` resolved).
fn dir_name(path: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(path)
        .filter(|n| n != "." && n != "..")
        .or_else(|| path.canonicalize().ok().and_then(|p| named(&p)))
        .unwrap_or_else(|| "model".to_string())
}

/// `--gpu NAME|FILE.toml`: a preset, or a profile file (any argument ending in
/// `.toml`, or naming an existing file that is not a preset name).
pub fn load_gpu(arg: &str) -> Result<GpuProfile, CompileError> {
    let path = Path::new(arg);
    if !arg.ends_with(".toml") {
        if let Some(p) = gpu_preset(arg) {
            return parse_gpu_profile(p.toml, &format!("compiler/presets/gpus/{}.toml", p.name));
        }
        if !path.is_file() {
            return Err(CompileError::UnknownGpu { name: arg.to_string(), valid: names(GPU_PRESETS, |p| p.name) });
        }
    }
    Ok(GpuProfile::load(path)?)
}

/// Parses and checks a GPU profile; `origin` names it in errors.
pub fn parse_gpu_profile(text: &str, origin: &str) -> Result<GpuProfile, CompileError> {
    Ok(GpuProfile::from_toml_str(text, origin)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use djinn_core::model::Dtype;

    #[test]
    fn every_gpu_preset_parses_and_is_named_after_its_file() {
        for p in GPU_PRESETS {
            let gpu = load_gpu(p.name).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(gpu.name, p.name);
            assert!(gpu.usable_bytes <= gpu.memory_bytes);
        }
    }

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
        let e = load_gpu("v100").unwrap_err().to_string();
        assert!(e.contains("\"v100\"") && e.contains("l4, t4, a10g") && e.contains("h200"), "{e}");
        let e = load_model("gpt-5").unwrap_err().to_string();
        assert!(e.contains("\"gpt-5\"") && e.contains("llama2-7b") && e.contains("tinyllama-1.1b"), "{e}");
    }

    #[test]
    fn malformed_profile_names_the_file_and_field() {
        let text = gpu_preset("l4").unwrap().toml.replace("hbm_gbps = 255.0\n", "");
        let e = parse_gpu_profile(&text, "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("hbm_gbps"), "{e}");
        let text = gpu_preset("l4").unwrap().toml.replace("h2d_gbps = 25.0", "h2d_gbps = 0.0");
        let e = parse_gpu_profile(&text, "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("`h2d_gbps`"), "{e}");
    }
}
