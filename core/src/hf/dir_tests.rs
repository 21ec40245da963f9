use serde_json::json;

use super::*;
use crate::hf::test_support::{checkpoint_tensors, config_4x, config_5x, edit, tiny_arch, write_model, Spec};
use crate::model::{BlockKind, Dtype, TensorRole};

fn tensors(tie: bool) -> Vec<Spec> {
    checkpoint_tensors(&tiny_arch(tie), Dtype::F16)
}

/// Opens a model written into `<tmp>/tiny`, expecting an error; returns its message.
fn open_err(config: &str, tensors: &[Spec], shards: usize) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, config, tensors, shards);
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    (tmp, e)
}

#[test]
fn single_file_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-llama");
    write_model(&dir, &config_4x(false).to_string(), &tensors(false), 1);
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.spec, ModelSpec::from_arch("tiny-llama", tiny_arch(false), Dtype::F16));
    assert_eq!(m.spec.blocks.len(), 2 + 3);
    let q = m.source("model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_eq!((q.file.clone(), q.shape.clone(), q.bytes), (dir.join("model.safetensors"), vec![32, 32], 2048));
    assert!(m.source("model.layers.0.self_attn.rotary_emb.inv_freq").is_some(), "extra tensors kept, not checked");
    assert!(m.source("nope").is_none());
}

#[test]
fn sharded_checkpoint_takes_each_tensor_from_its_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, &config_5x(false).to_string(), &tensors(false), 2);
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.spec, ModelSpec::from_arch("tiny", tiny_arch(false), Dtype::F16));
    let shard = |name: &str| m.source(name).unwrap().file.file_name().unwrap().to_str().unwrap().to_string();
    // Round-robin: the first tensor (embedding) in shard 1, the second in shard 2.
    assert_eq!(shard("model.embed_tokens.weight"), "model-00001-of-00002.safetensors");
    assert_eq!(shard("model.layers.0.input_layernorm.weight"), "model-00002-of-00002.safetensors");
    assert_eq!(m.tensors.len(), tensors(false).len());
}

#[test]
fn tied_embeddings_need_no_lm_head_tensor() {
    let t = tensors(true);
    assert!(!t.iter().any(|(n, _, _)| n == "lm_head.weight"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tied");
    write_model(&dir, &config_4x(true).to_string(), &t, 2);
    let m = ModelDir::open(&dir).unwrap();
    let head = m.spec.block("lm_head").unwrap();
    assert_eq!(head.kind, BlockKind::LmHead);
    assert_eq!(head.tensor(TensorRole::LmHead).unwrap().name, "model.embed_tokens.weight");
    // Untied, the same checkpoint lacks lm_head.weight.
    let (_tmp, e) = open_err(&config_4x(false).to_string(), &t, 1);
    assert!(
        e.contains("tensor `lm_head.weight` (block `lm_head`) not found") && e.contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn bf16_checkpoint_keeps_its_dtype() {
    let cfg = edit(config_5x(false), &[("dtype", Some(json!("bfloat16")))]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bf");
    let mut t = checkpoint_tensors(&tiny_arch(false), Dtype::Bf16);
    t.retain(|(n, _, _)| !n.ends_with("inv_freq"));
    write_model(&dir, &cfg, &t, 1);
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.spec.dtype, Dtype::Bf16);
    assert!(m.spec.blocks.iter().flat_map(|b| &b.tensors).all(|t| t.dtype == Dtype::Bf16));
}

#[test]
fn missing_config_json_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let e = ModelDir::open(tmp.path()).unwrap_err();
    assert!(matches!(e, HfError::Read { what: "config.json", .. }));
    assert!(e.to_string().contains(&tmp.path().join("config.json").display().to_string()), "{e}");
    let e = ModelDir::open(&tmp.path().join("absent")).unwrap_err().to_string();
    assert!(e.contains("absent") && e.contains("not a directory"), "{e}");
}

#[test]
fn malformed_config_names_the_file() {
    let (tmp, e) = open_err("{\"model_type\": \"llama\",", &tensors(false), 1);
    let path = tmp.path().join("tiny/config.json").display().to_string();
    assert!(e.starts_with(&format!("config.json at {path}: malformed JSON")), "{e}");
    let (_tmp, e) = open_err(&edit(config_4x(false), &[("vocab_size", None)]), &tensors(false), 1);
    assert!(e.contains("tiny/config.json") && e.contains("`vocab_size` missing"), "{e}");
    let (_tmp, e) = open_err(&edit(config_4x(false), &[("model_type", Some(json!("gemma")))]), &tensors(false), 1);
    assert!(e.contains("tiny/config.json") && e.contains("`model_type` is \"gemma\""), "{e}");
}

#[test]
fn a_qwen2_config_expects_the_qkv_biases_and_a_qwen3_one_the_qk_norms() {
    // A Llama checkpoint under a Qwen2 config: the first bias is missing, by name.
    let qwen2 = edit(config_4x(false), &[("model_type", Some(json!("qwen2")))]);
    let (_tmp, e) = open_err(&qwen2, &tensors(false), 1);
    assert!(e.contains("tensor `model.layers.0.self_attn.q_proj.bias` (block `layer.0`) not found"), "{e}");
    // With them, it opens, and the block table holds them at their shapes.
    let arch = crate::hf::parse_config(&qwen2, "c").unwrap().arch;
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("q2"), &qwen2, &checkpoint_tensors(&arch, Dtype::F16), 2);
    let m = ModelDir::open(&tmp.path().join("q2")).unwrap();
    let layer = m.spec.block("layer.1").unwrap();
    assert_eq!(layer.tensor(TensorRole::KBias).unwrap().shape, vec![16]);
    assert_eq!(m.spec, ModelSpec::from_arch("q2", arch, Dtype::F16));

    let qwen3 = edit(config_5x(false), &[("model_type", Some(json!("qwen3")))]);
    let (_tmp, e) = open_err(&qwen3, &tensors(false), 1);
    assert!(e.contains("tensor `model.layers.0.self_attn.q_norm.weight` (block `layer.0`) not found"), "{e}");
    // A q_norm of the wrong width (hidden_size instead of head_dim) is named with both shapes.
    let arch = crate::hf::parse_config(&qwen3, "c").unwrap().arch;
    let mut t = checkpoint_tensors(&arch, Dtype::F16);
    let q_norm = t.iter_mut().find(|(n, _, _)| n == "model.layers.1.self_attn.q_norm.weight").unwrap();
    q_norm.2 = vec![32];
    let (_tmp, e) = open_err(&qwen3, &t, 1);
    assert!(
        e.contains("tensor `model.layers.1.self_attn.q_norm.weight` in") && e.contains("shape [32], expected [8]"),
        "{e}"
    );
}

#[test]
fn a_config_json_over_the_size_limit_is_refused_naming_file_and_limit() {
    let padded = format!("{}{}", config_4x(false), " ".repeat(crate::limits::MAX_CONFIG_JSON_BYTES as usize));
    let (tmp, e) = open_err(&padded, &tensors(false), 1);
    let path = tmp.path().join("tiny/config.json").display().to_string();
    assert!(e.starts_with(&format!("config.json at {path} is ")), "{e}");
    assert!(e.contains("bytes, over the limit of 1048576 bytes for a config.json"), "{e}");
}

#[test]
fn a_config_json_that_is_a_directory_names_the_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("config.json")).unwrap();
    let e = ModelDir::open(tmp.path()).unwrap_err();
    assert!(std::error::Error::source(&e).is_none(), "the cause is in the message, not chained: {e:?}");
    assert_eq!(e.to_string().matches("Is a directory").count(), 1, "{e}");
}

#[test]
fn no_weights_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), config_4x(false).to_string()).unwrap();
    let e = ModelDir::open(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("neither model.safetensors nor model.safetensors.index.json found"), "{e}");
}

#[test]
fn missing_tensor_names_tensor_and_files_searched() {
    let mut t = tensors(false);
    t.retain(|(n, _, _)| n != "model.layers.1.mlp.up_proj.weight");
    let (tmp, e) = open_err(&config_4x(false).to_string(), &t, 1);
    let file = tmp.path().join("tiny/model.safetensors").display().to_string();
    assert_eq!(e, format!("tensor `model.layers.1.mlp.up_proj.weight` (block `layer.1`) not found; searched {file}"));
    let (_tmp, e) = open_err(&config_4x(false).to_string(), &t, 2);
    assert!(e.contains("`model.layers.1.mlp.up_proj.weight`") && e.contains("model.safetensors.index.json"), "{e}");
    assert!(e.contains("weight_map does not name it"), "{e}");
}

#[test]
fn tensor_named_by_index_but_absent_from_its_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, &config_4x(false).to_string(), &tensors(false), 2);
    let index = dir.join("model.safetensors.index.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    // The embedding is in shard 1; the index now says shard 2.
    json["weight_map"]["model.embed_tokens.weight"] = json!("model-00002-of-00002.safetensors");
    std::fs::write(&index, json.to_string()).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains("`model.embed_tokens.weight` (block `embed`) not found"), "{e}");
    assert!(e.contains("model-00002-of-00002.safetensors (its shard according to"), "{e}");
}

#[test]
fn wrong_shape_names_tensor_file_expected_and_found() {
    let mut t = tensors(false);
    t.iter_mut().find(|(n, _, _)| n == "model.layers.0.self_attn.k_proj.weight").unwrap().2 = vec![32, 32];
    let (tmp, e) = open_err(&config_4x(false).to_string(), &t, 1);
    let file = tmp.path().join("tiny/model.safetensors").display().to_string();
    assert_eq!(
        e,
        format!(
            "tensor `model.layers.0.self_attn.k_proj.weight` in {file}: shape [32, 32], expected [16, 32] (from config.json)"
        )
    );
}

#[test]
fn wrong_dtype_names_tensor_and_both_dtypes() {
    let mut t = tensors(false);
    t.iter_mut().find(|(n, _, _)| n == "model.norm.weight").unwrap().1 = Dtype::F32;
    let (_tmp, e) = open_err(&config_4x(false).to_string(), &t, 1);
    assert!(e.contains("`model.norm.weight`") && e.contains("stored as f32, expected f16"), "{e}");
}

#[test]
fn shard_named_in_index_but_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, &config_4x(false).to_string(), &tensors(false), 2);
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&dir.join("model.safetensors.index.json").display().to_string()), "{e}");
    assert!(e.contains(&dir.join("model-00002-of-00002.safetensors").display().to_string()), "{e}");
    assert!(e.contains("which does not exist") && e.contains("tensor `model."), "{e}");
}

#[test]
fn truncated_shard_is_caught_when_opening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, &config_4x(false).to_string(), &tensors(false), 2);
    let shard = dir.join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&shard.display().to_string()) && e.contains("run past the end of the file"), "{e}");
}

#[test]
fn index_problems_name_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    write_model(&dir, &config_4x(false).to_string(), &tensors(false), 2);
    let index = dir.join("model.safetensors.index.json");
    for (text, want) in [
        ("{\"metadata\": {}}".to_string(), "field `weight_map` missing"),
        ("{\"weight_map\": [1]}".to_string(), "field `weight_map` is [1]"),
        (json!({"weight_map": {"model.norm.weight": "../x.safetensors"}}).to_string(), "entry `model.norm.weight`"),
        ("{".to_string(), "malformed JSON"),
    ] {
        std::fs::write(&index, text).unwrap();
        let e = ModelDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains(&index.display().to_string()) && e.contains(want), "{want}: {e}");
    }
}

#[test]
fn name_is_the_final_component_even_for_dot() {
    assert_eq!(dir_name(Path::new("/a/b/tiny-llama/")), "tiny-llama");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(dir_name(Path::new(".")), cwd.file_name().unwrap().to_str().unwrap());
}
