//! Which tensors go into which safetensors file, and the headers that say so.
//!
//! Everything about the files is decided here, before a byte of data is
//! generated: the tensor list (from the block table the runtime will read, so
//! the two cannot disagree), the split into shards (Hugging Face's rule: start a
//! new shard when the next tensor would overflow the current one), each shard's
//! header with its data offsets, and `model.safetensors.index.json`. The writer
//! then only streams values into the slots these headers promise.

use std::collections::HashSet;

use djinn_core::model::{expected_blocks, Architecture};
use djinn_core::Dtype;
use serde_json::{json, Map, Value};

use crate::rng::Init;

/// One tensor of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    /// Row-major shape, as stored.
    pub shape: Vec<u64>,
    pub init: Init,
}

impl TensorSpec {
    pub fn elems(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        self.elems() * self.dtype.size()
    }
}

/// One safetensors file: its name, its tensors in file order, and its header.
#[derive(Debug, Clone)]
pub struct Shard {
    pub file: String,
    pub tensors: Vec<TensorSpec>,
    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    pub header: Vec<u8>,
}

impl Shard {
    /// Bytes of tensor data after the header.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::bytes).sum()
    }

    /// Size of the whole file: the 8-byte header length, the header, the data.
    pub fn file_bytes(&self) -> u64 {
        8 + self.header.len() as u64 + self.data_bytes()
    }
}

/// The tensors a checkpoint of `arch` holds, each once, in execution order
/// (the q/k/v/o biases and q/k norms of the families that have them
/// included). With tied embeddings the LM head reads the embedding table, so
/// the checkpoint has no `lm_head.weight`. RMSNorm weights are drawn around
/// 1, everything else (biases too) around 0.
pub fn checkpoint_tensors(arch: &Architecture, dtype: Dtype) -> Vec<TensorSpec> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for block in expected_blocks(arch) {
        for t in block.tensors {
            if !seen.insert(t.name.clone()) {
                continue;
            }
            let init = if t.role.is_norm() { Init::NORM } else { Init::WEIGHT };
            out.push(TensorSpec { name: t.name, dtype, shape: t.shape, init });
        }
    }
    out
}

/// Splits `tensors` into shards of at most `max_shard_bytes` of data each (a
/// tensor larger than that gets a shard of its own), named as Hugging Face
/// names them: `model.safetensors` alone, or `model-0000i-of-0000N.safetensors`.
pub fn shard(tensors: Vec<TensorSpec>, max_shard_bytes: u64) -> Vec<Shard> {
    let mut groups: Vec<Vec<TensorSpec>> = Vec::new();
    let mut current_bytes = 0;
    for t in tensors {
        let bytes = t.bytes();
        match groups.last_mut() {
            Some(group) if current_bytes + bytes <= max_shard_bytes => {
                group.push(t);
                current_bytes += bytes;
            }
            _ => {
                groups.push(vec![t]);
                current_bytes = bytes;
            }
        }
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, tensors)| {
            let file = if n == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{n:05}.safetensors", i + 1)
            };
            let header = header_bytes(&tensors);
            Shard { file, tensors, header }
        })
        .collect()
}

/// The safetensors header of a file holding `tensors` back to back in this
/// order: `{"__metadata__": {"format": "pt"}, name: {dtype, shape, data_offsets}}`,
/// padded with spaces to 8 bytes as the reference serializer does.
pub fn header_bytes(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut map = Map::new();
    // transformers refuses a safetensors file whose metadata has no `format`.
    map.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.bytes();
        map.insert(
            t.name.clone(),
            json!({ "dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&Value::Object(map)).expect("a JSON map always serializes");
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    bytes
}

/// `model.safetensors.index.json` for a sharded checkpoint (None for one file,
/// which Hugging Face writes without an index).
pub fn index_json(shards: &[Shard]) -> Option<String> {
    if shards.len() < 2 {
        return None;
    }
    let total_size: u64 = shards.iter().map(Shard::data_bytes).sum();
    let total_parameters: u64 = shards.iter().flat_map(|s| &s.tensors).map(TensorSpec::elems).sum();
    let mut weight_map = Map::new();
    for s in shards {
        for t in &s.tensors {
            weight_map.insert(t.name.clone(), Value::String(s.file.clone()));
        }
    }
    let index = json!({
        "metadata": { "total_parameters": total_parameters, "total_size": total_size },
        "weight_map": weight_map,
    });
    Some(serde_json::to_string_pretty(&index).expect("a JSON value always serializes") + "\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A preset-like architecture small enough to write in a unit test.
    pub(crate) fn tiny_arch(tied: bool) -> Architecture {
        Architecture {
            family: "llama".into(),
            hidden_size: 64,
            intermediate_size: 176,
            num_layers: 3,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            vocab_size: 1000,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 256,
            tie_word_embeddings: tied,
            ..Default::default()
        }
    }

    #[test]
    fn tied_checkpoints_have_no_lm_head_tensor() {
        let tied = checkpoint_tensors(&tiny_arch(true), Dtype::F16);
        let untied = checkpoint_tensors(&tiny_arch(false), Dtype::F16);
        assert_eq!(untied.len(), 1 + 3 * 9 + 1 + 1);
        assert_eq!(tied.len(), untied.len() - 1);
        assert!(!tied.iter().any(|t| t.name == "lm_head.weight"));
        assert_eq!(untied.last().unwrap().name, "lm_head.weight");
        let k = untied.iter().find(|t| t.name == "model.layers.2.self_attn.k_proj.weight").unwrap();
        assert_eq!(k.shape, vec![32, 64]);
        let norm = untied.iter().find(|t| t.name == "model.norm.weight").unwrap();
        assert_eq!(norm.init, Init::NORM);
    }

    #[test]
    fn qwen_checkpoints_hold_the_biases_and_qk_norms() {
        let qwen2 = Architecture { family: "qwen2".into(), qkv_bias: true, ..tiny_arch(false) };
        let t = checkpoint_tensors(&qwen2, Dtype::Bf16);
        assert_eq!(t.len(), 1 + 3 * 12 + 1 + 1);
        let k_bias = t.iter().find(|t| t.name == "model.layers.1.self_attn.k_proj.bias").unwrap();
        assert_eq!((k_bias.shape.clone(), k_bias.init), (vec![32], Init::WEIGHT));
        let qwen3 = Architecture { family: "qwen3".into(), qk_norm: true, ..tiny_arch(false) };
        let t = checkpoint_tensors(&qwen3, Dtype::Bf16);
        assert_eq!(t.len(), 1 + 3 * 11 + 1 + 1);
        for name in ["q_norm", "k_norm"] {
            let n = t.iter().find(|t| t.name == format!("model.layers.2.self_attn.{name}.weight")).unwrap();
            assert_eq!((n.shape.clone(), n.init), (vec![16], Init::NORM), "{name}");
        }
    }

    #[test]
    fn header_offsets_are_contiguous_and_padded() {
        let tensors = checkpoint_tensors(&tiny_arch(false), Dtype::Bf16);
        let header = header_bytes(&tensors);
        assert_eq!(header.len() % 8, 0);
        let parsed: Value = serde_json::from_slice(&header).unwrap();
        let mut end = 0;
        for t in &tensors {
            let entry = &parsed[&t.name];
            assert_eq!(entry["dtype"], "BF16");
            let offsets: Vec<u64> = serde_json::from_value(entry["data_offsets"].clone()).unwrap();
            assert_eq!(offsets, vec![end, end + t.bytes()], "{}", t.name);
            end = offsets[1];
        }
        assert_eq!(parsed["__metadata__"]["format"], "pt");
    }

    #[test]
    fn shards_respect_the_limit_and_keep_every_tensor_once() {
        let tensors = checkpoint_tensors(&tiny_arch(false), Dtype::F16);
        let total: u64 = tensors.iter().map(TensorSpec::bytes).sum();
        let embed = tensors[0].bytes();
        let limit = embed + 1000;
        let shards = shard(tensors.clone(), limit);
        assert!(shards.len() >= 2);
        assert_eq!(shards[0].file, format!("model-00001-of-{:05}.safetensors", shards.len()));
        for s in &shards {
            assert!(s.data_bytes() <= limit, "{} holds {} bytes", s.file, s.data_bytes());
        }
        let names: Vec<_> = shards.iter().flat_map(|s| &s.tensors).map(|t| t.name.clone()).collect();
        assert_eq!(names, tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        let index: Value = serde_json::from_str(&index_json(&shards).unwrap()).unwrap();
        assert_eq!(index["metadata"]["total_size"], total);
        assert_eq!(index["weight_map"]["lm_head.weight"], shards.last().unwrap().file.as_str());
    }

    #[test]
    fn one_shard_is_model_safetensors_without_index() {
        let shards = shard(checkpoint_tensors(&tiny_arch(true), Dtype::F16), u64::MAX);
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].file, "model.safetensors");
        assert!(index_json(&shards).is_none());
    }

    #[test]
    fn a_tensor_larger_than_the_limit_gets_its_own_shard() {
        let shards = shard(checkpoint_tensors(&tiny_arch(false), Dtype::F16), 100);
        assert!(shards.iter().all(|s| s.tensors.len() == 1));
    }
}
