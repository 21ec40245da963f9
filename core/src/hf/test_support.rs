//! Writers of small, real model directories for the reader's tests: config
//! files as transformers 4.x and 5.x write them, and safetensors files built
//! byte by byte from the format (header JSON + data of the right length).

use std::path::Path;

use serde_json::{json, Value};

use crate::model::{expected_blocks, Architecture, Dtype};

/// One tensor to write: name, stored dtype, shape.
pub type Spec = (String, Dtype, Vec<u64>);

/// A tiny GQA model: 4 query heads sharing 2 KV heads, head_dim 8.
pub fn tiny_arch(tie_word_embeddings: bool) -> Architecture {
    Architecture {
        family: "llama".into(),
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        vocab_size: 50,
        rope_theta: 500000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 128,
        tie_word_embeddings,
        ..Default::default()
    }
}

/// `tiny_arch` as transformers 4.x writes it (`torch_dtype`, top-level `rope_theta`, no `head_dim`).
pub fn config_4x(tie: bool) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 128, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "rope_scaling": null, "torch_dtype": "float16", "tie_word_embeddings": tie,
        "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1, "transformers_version": "4.40.0"
    })
}

/// `tiny_arch` as transformers 5.x writes it (`dtype`, `rope_parameters`, explicit `head_dim`).
pub fn config_5x(tie: bool) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "attention_bias": false, "mlp_bias": false, "head_dim": 8,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 128, "rms_norm_eps": 1e-05,
        "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "dtype": "float16",
        "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": [2, 7], "pad_token_id": null,
        "transformers_version": "5.0.0"
    })
}

/// `base` with fields set (`Some`) or removed (`None`), as JSON text.
pub fn edit(mut base: Value, edits: &[(&str, Option<Value>)]) -> String {
    let map = base.as_object_mut().unwrap();
    for (field, value) in edits {
        match value {
            Some(v) => map.insert(field.to_string(), v.clone()),
            None => map.remove(*field),
        };
    }
    base.to_string()
}

/// Every tensor a checkpoint of `arch` holds, plus one the reader must ignore.
pub fn checkpoint_tensors(arch: &Architecture, dtype: Dtype) -> Vec<Spec> {
    let mut out: Vec<Spec> = Vec::new();
    for block in expected_blocks(arch) {
        for t in block.tensors {
            if !out.iter().any(|(n, _, _)| *n == t.name) {
                out.push((t.name, dtype, t.shape));
            }
        }
    }
    out.push(("model.layers.0.self_attn.rotary_emb.inv_freq".into(), Dtype::F32, vec![arch.head_dim / 2]));
    out
}

/// The byte at `i` of tensor number `k`'s data: distinct per tensor, so a test
/// reading at `data_start` can tell tensors apart.
pub fn data_byte(k: usize, i: u64) -> u8 {
    (k as u64 * 31 + i * 7 + 1) as u8
}

/// Writes a safetensors file: the tensors back to back in the given order.
pub fn write_safetensors(path: &Path, tensors: &[Spec]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (k, (name, dtype, shape)) in tensors.iter().enumerate() {
        let bytes = shape.iter().product::<u64>() * dtype.size();
        let start = data.len() as u64;
        data.extend((0..bytes).map(|i| data_byte(k, i)));
        header.insert(
            name.clone(),
            json!({"dtype": dtype.safetensors_name(), "shape": shape, "data_offsets": [start, start + bytes]}),
        );
    }
    write_raw(path, &Value::Object(header).to_string(), &data);
}

/// Writes the length field, `header` (padded with spaces to 8 bytes, as the
/// format recommends), and `data`.
pub fn write_raw(path: &Path, header: &str, data: &[u8]) {
    let mut header = header.as_bytes().to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// Writes `config` and the tensors: one `model.safetensors` when `shards` is 1,
/// else `shards` files dealt round-robin plus `model.safetensors.index.json`.
pub fn write_model(dir: &Path, config: &str, tensors: &[Spec], shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    if shards == 1 {
        write_safetensors(&dir.join("model.safetensors"), tensors);
        return;
    }
    let shard_name = |s: usize| format!("model-{:05}-of-{shards:05}.safetensors", s + 1);
    let mut weight_map = serde_json::Map::new();
    for s in 0..shards {
        let mine: Vec<Spec> = tensors.iter().skip(s).step_by(shards).cloned().collect();
        for (name, _, _) in &mine {
            weight_map.insert(name.clone(), json!(shard_name(s)));
        }
        write_safetensors(&dir.join(shard_name(s)), &mine);
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}
