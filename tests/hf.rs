//! Integration tests: hf — the model-directory reader on checkpoints written
//! by transformers itself (tests/fixtures), on the published configs the
//! core embeds as model presets, and on damaged copies of the fixtures.

use std::path::{Path, PathBuf};

use djinn_core::hf::{parse_config, HfError, ModelDir};
use djinn_core::model::{Dtype, ModelSpec, TensorRole, FAMILIES};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A scratch directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh copy of a fixture directory, named `name`, inside a scratch directory for `test`.
fn copy_fixture(fixture_name: &str, test: &str, name: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch(std::env::temp_dir().join(format!("djinn-hf-{}-{test}", std::process::id())));
    let dir = scratch.0.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(fixture_name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (scratch, dir)
}

fn edit_config(dir: &Path, edits: &[(&str, Option<Value>)]) {
    let path = dir.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let map = json.as_object_mut().unwrap();
    for (field, value) in edits {
        match value {
            Some(v) => map.insert(field.to_string(), v.clone()),
            None => map.remove(*field),
        };
    }
    std::fs::write(&path, json.to_string()).unwrap();
}

#[test]
fn single_file_fixture_opens_with_every_tensor_inside_its_file() {
    let dir = fixture("tiny-llama-mha");
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.spec.name, "tiny-llama-mha");
    assert_eq!(m.spec, ModelSpec::from_arch("tiny-llama-mha", m.config.arch.clone(), Dtype::F16));
    let a = &m.config.arch;
    assert_eq!((a.hidden_size, a.num_layers, a.num_heads, a.num_kv_heads, a.head_dim), (64, 4, 4, 4, 16));
    assert_eq!((a.rope_theta, a.rms_norm_eps, a.tie_word_embeddings), (10000.0, 1e-5, false));
    assert_eq!((m.config.bos_token_id, m.config.eos_token_ids.clone()), (Some(1), vec![2]));
    let file_len = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    for t in m.spec.blocks.iter().flat_map(|b| &b.tensors) {
        let src = m.source(&t.name).unwrap();
        assert_eq!((src.bytes, &src.shape), (t.bytes, &t.shape), "{}", t.name);
        assert!(src.data_start + src.bytes <= file_len, "{}", t.name);
    }
}

#[test]
fn sharded_tied_fixture_matches_its_index_metadata() {
    let dir = fixture("tiny-llama-gqa");
    let m = ModelDir::open(&dir).unwrap();
    assert_eq!(m.spec.name, "tiny-llama-gqa");
    assert!(m.config.arch.tie_word_embeddings);
    assert_eq!((m.config.arch.num_kv_heads, m.config.arch.rope_theta), (2, 500000.0));
    let head = m.spec.block("lm_head").unwrap().tensor(TensorRole::LmHead).unwrap();
    assert_eq!(head.name, "model.embed_tokens.weight");
    assert!(m.source("lm_head.weight").is_none());
    // transformers records the checkpoint's total tensor bytes in the index.
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    let total: u64 = m.tensors.values().map(|t| t.bytes).sum();
    assert_eq!(total, index["metadata"]["total_size"].as_u64().unwrap());
    let shards: std::collections::BTreeSet<_> = m.tensors.values().map(|t| t.file.clone()).collect();
    assert_eq!(shards.len(), 2);
}

#[test]
fn fixture_config_rewritten_as_transformers_4x_gives_the_same_architecture() {
    let (_scratch, dir) = copy_fixture("tiny-llama-gqa", "as_4x", "tiny-llama-gqa");
    let five = ModelDir::open(&dir).unwrap();
    edit_config(
        &dir,
        &[
            ("dtype", None),
            ("torch_dtype", Some(json!("float16"))),
            ("rope_parameters", None),
            ("rope_theta", Some(json!(500000.0))),
            ("head_dim", None),
            ("transformers_version", Some(json!("4.46.0"))),
        ],
    );
    let four = ModelDir::open(&dir).unwrap();
    assert_eq!(four.config, five.config);
    assert_eq!(four.spec, five.spec);
}

#[test]
fn published_preset_configs_parse() {
    let presets = Path::new(env!("CARGO_MANIFEST_DIR")).join("core/presets/models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&presets).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let c = parse_config(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert!(FAMILIES.contains(&c.arch.family.as_str()), "{}: {}", path.display(), c.arch.family);
        // The family is the file's own model_type, and the architecture is what that family always is.
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["model_type"], c.arch.family.as_str(), "{}", path.display());
        assert_eq!(c.arch.family_contradiction(), None, "{}", path.display());
        assert!(c.arch.num_heads.is_multiple_of(c.arch.num_kv_heads));
        seen += 1;
    }
    assert_eq!(
        seen,
        djinn_core::model_presets::MODEL_PRESETS.len(),
        "every file under {} is a preset",
        presets.display()
    );
}

/// A fixture's config as another family, with the weights a checkpoint of
/// that family has: transformers' tensor names for the biases and q/k norms.
#[test]
fn a_fixture_rewritten_as_qwen2_or_qwen3_needs_their_tensors_by_name() {
    for (family, missing) in
        [("qwen2", "model.layers.0.self_attn.q_proj.bias"), ("qwen3", "model.layers.0.self_attn.q_norm.weight")]
    {
        let (_scratch, dir) = copy_fixture("tiny-llama-gqa", &format!("as_{family}"), "m");
        edit_config(&dir, &[("model_type", Some(json!(family)))]);
        let e = ModelDir::open(&dir).unwrap_err();
        assert!(matches!(e, HfError::MissingTensor { .. }), "{family}: {e}");
        assert!(e.to_string().contains(&format!("tensor `{missing}` (block `layer.0`) not found")), "{family}: {e}");
    }
}

#[test]
fn missing_layer_is_named_with_the_index_searched() {
    let (_scratch, dir) = copy_fixture("tiny-llama-gqa", "missing_layer", "m");
    edit_config(&dir, &[("num_hidden_layers", Some(json!(4)))]);
    let e = ModelDir::open(&dir).unwrap_err();
    assert!(matches!(e, HfError::MissingTensor { .. }));
    let e = e.to_string();
    assert!(e.contains("tensor `model.layers.3.input_layernorm.weight` (block `layer.3`) not found"), "{e}");
    assert!(e.contains(&dir.join("model.safetensors.index.json").display().to_string()), "{e}");
}

#[test]
fn config_disagreeing_with_the_weights_names_tensor_and_shapes() {
    let (_scratch, dir) = copy_fixture("tiny-llama-mha", "wrong_shape", "m");
    edit_config(&dir, &[("intermediate_size", Some(json!(128)))]);
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    let file = dir.join("model.safetensors").display().to_string();
    assert!(e.contains(&format!("tensor `model.layers.0.mlp.gate_proj.weight` in {file}")), "{e}");
    assert!(e.contains("shape [176, 64], expected [128, 64]"), "{e}");
}

#[test]
fn truncated_download_is_caught_before_any_mapping() {
    let (_scratch, dir) = copy_fixture("tiny-llama-mha", "truncated", "m");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("run past the end of the file"), "{e}");
    // Cut inside the header: the length field promises more than the file holds.
    std::fs::write(&path, &bytes[..100]).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("header length"), "{e}");
}

#[test]
fn shard_missing_from_disk_is_named_with_its_index() {
    let (_scratch, dir) = copy_fixture("tiny-llama-gqa", "missing_shard", "m");
    std::fs::remove_file(dir.join("model-00001-of-00002.safetensors")).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains("model.safetensors.index.json") && e.contains("model-00001-of-00002.safetensors"), "{e}");
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn missing_config_and_unsupported_model_type_name_the_file() {
    let (_scratch, dir) = copy_fixture("tiny-llama-mha", "config_errors", "m");
    edit_config(&dir, &[("model_type", Some(json!("gemma")))]);
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    let config = dir.join("config.json").display().to_string();
    assert!(e.contains(&config) && e.contains("`model_type` is \"gemma\""), "{e}");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(e.contains(&config) && e.contains("cannot read config.json"), "{e}");
}
