//! The non-weight files of the checkpoint: `config.json` and the tokenizer.
//!
//! The config is the preset's own `config.json` text, so the architecture
//! numbers live in one place (`djinn_core::model_presets`) and every field
//! that shapes the model (`rope_scaling`, `sliding_window`,
//! `use_sliding_window`, `max_window_layers`, `attention_bias`, `head_dim`, …)
//! reaches the checkpoint in the form transformers wrote it. Only what
//! transformers needs to load it in the chosen dtype is set here: both
//! spellings of the dtype (`torch_dtype`, which 4.x reads, and `dtype`, which
//! 5.x writes), and `model_type` (default `llama`) and the `architectures`
//! class of that family where the preset lacks them.
//!
//! The tokenizer files are the Llama 2 ones the test fixtures carry, embedded
//! in the binary so that the checkpoint directory is complete without network
//! access; they fit only a 32000-entry vocabulary.

use std::path::Path;

use anyhow::{bail, Context, Result};
use djinn_core::Dtype;
use serde_json::{Map, Value};

/// Vocabulary size of the embedded Llama 2 tokenizer.
pub const LLAMA2_VOCAB: u64 = 32000;

/// The Llama 2 tokenizer files, by the name they are written under.
pub const TOKENIZER_FILES: [(&str, &[u8]); 3] = [
    ("tokenizer.json", include_bytes!("../../../../tests/fixtures/tiny-llama-mha/tokenizer.json")),
    ("tokenizer_config.json", include_bytes!("../../../../tests/fixtures/tiny-llama-mha/tokenizer_config.json")),
    ("special_tokens_map.json", include_bytes!("../../../../tests/fixtures/tiny-llama-mha/special_tokens_map.json")),
];

/// The dtype's name in `config.json` (`float16`, `bfloat16`, `float32`).
pub fn torch_dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "float16",
        Dtype::Bf16 => "bfloat16",
        Dtype::F32 => "float32",
    }
}

/// The transformers class of a `model_type` (`LlamaForCausalLM` for `llama`).
pub fn causal_lm_class(model_type: &str) -> Option<&'static str> {
    match model_type {
        "llama" => Some("LlamaForCausalLM"),
        "mistral" => Some("MistralForCausalLM"),
        "qwen2" => Some("Qwen2ForCausalLM"),
        "qwen3" => Some("Qwen3ForCausalLM"),
        _ => None,
    }
}

/// The checkpoint's `config.json`: the preset's text (`origin` names it in
/// errors) with the dtype set and the model's identification filled in.
pub fn checkpoint_config(preset_text: &str, origin: &str, dtype: Dtype) -> Result<String> {
    let value: Value =
        serde_json::from_str(preset_text).with_context(|| format!("preset config {origin} is not valid JSON"))?;
    let Value::Object(mut map) = value else { bail!("preset config {origin} is not a JSON object") };
    let model_type = map.entry("model_type").or_insert_with(|| "llama".into()).as_str().unwrap_or("").to_string();
    if !map.contains_key("architectures") {
        let Some(class) = causal_lm_class(&model_type) else {
            bail!("preset config {origin} has model_type {model_type:?}, for which no transformers class is known");
        };
        map.insert("architectures".into(), Value::Array(vec![class.into()]));
    }
    let name = Value::String(torch_dtype_name(dtype).into());
    map.insert("torch_dtype".into(), name.clone());
    map.insert("dtype".into(), name);
    // Sorted keys, as transformers writes them: the same preset always gives the same bytes.
    let sorted: Map<String, Value> =
        map.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect();
    Ok(serde_json::to_string_pretty(&Value::Object(sorted))? + "\n")
}

/// Writes the tokenizer files into `dir` when they fit the vocabulary; returns
/// whether it did.
pub fn write_tokenizer(dir: &Path, vocab_size: u64) -> Result<bool> {
    if vocab_size != LLAMA2_VOCAB {
        return Ok(false);
    }
    for (name, bytes) in TOKENIZER_FILES {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gets_both_dtype_spellings_and_llama_identity() {
        let text = r#"{"hidden_size": 64, "torch_dtype": "float32", "vocab_size": 32000}"#;
        let out: Value = serde_json::from_str(&checkpoint_config(text, "p.json", Dtype::Bf16).unwrap()).unwrap();
        assert_eq!(out["torch_dtype"], "bfloat16");
        assert_eq!(out["dtype"], "bfloat16");
        assert_eq!(out["architectures"][0], "LlamaForCausalLM");
        assert_eq!(out["model_type"], "llama");
        assert_eq!(out["hidden_size"], 64);
    }

    #[test]
    fn a_qwen_config_keeps_its_fields_and_gets_its_own_class() {
        let text = r#"{"model_type": "qwen2", "use_sliding_window": false, "max_window_layers": 28,
                       "sliding_window": 131072, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}"#;
        let out: Value = serde_json::from_str(&checkpoint_config(text, "p.json", Dtype::Bf16).unwrap()).unwrap();
        assert_eq!(out["architectures"][0], "Qwen2ForCausalLM");
        assert_eq!((out["max_window_layers"].clone(), out["use_sliding_window"].clone()), (28.into(), false.into()));
        assert_eq!(out["rope_scaling"]["factor"], 2.0);
        let err = checkpoint_config(r#"{"model_type": "gpt2"}"#, "g.json", Dtype::F16).unwrap_err();
        assert!(format!("{err:#}").contains("g.json has model_type \"gpt2\""), "{err:#}");
    }

    #[test]
    fn a_preset_that_is_not_an_object_is_named() {
        let err = checkpoint_config("[1, 2]", "models/x.json", Dtype::F16).unwrap_err();
        assert!(format!("{err:#}").contains("models/x.json"), "{err:#}");
    }

    #[test]
    fn tokenizer_only_for_the_llama2_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!write_tokenizer(dir.path(), 128256).unwrap());
        assert!(!dir.path().join("tokenizer.json").exists());
        assert!(write_tokenizer(dir.path(), 32000).unwrap());
        let tok: Value = serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer.json")).unwrap()).unwrap();
        assert!(tok["model"]["vocab"].as_object().is_some_and(|v| v.len() == 32000));
    }
}
