//! End-to-end tests of `synthesize`: a tiny preset-like model written to a
//! temporary directory and read back the way loaders read it.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde_json::Value;

use super::*;
use crate::layout::tests::tiny_arch;
use crate::model_source::Model;

/// The tiny architecture with a 32000 vocabulary (so the tokenizer is written)
/// and its config text, as a preset would give them.
fn tiny_model(tied: bool) -> Model {
    let mut arch = tiny_arch(tied);
    arch.vocab_size = 32000;
    let config_text = format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 176, "num_hidden_layers": 3, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 32000, "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": {tied},
            "torch_dtype": "float32"}}"#
    );
    Model { name: "tiny".into(), origin: "test preset".into(), config_text, arch, dtype: Dtype::F16 }
}

fn options(out: &Path, seed: u64, shard_size: u64) -> Options {
    Options { out: out.to_path_buf(), dtype: Dtype::F16, seed, shard_size, batch_bytes: 1 << 16 }
}

/// Every tensor of every safetensors file in `dir`: name → (dtype, shape, file).
fn read_tensors(dir: &Path) -> BTreeMap<String, (String, Vec<usize>, String)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            // `deserialize` checks that the offsets are contiguous and cover the file exactly.
            let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            for (name, view) in st.tensors() {
                out.insert(name, (format!("{:?}", view.dtype()), view.shape().to_vec(), file.clone()));
            }
        }
    }
    out
}

#[test]
fn a_sharded_checkpoint_reads_back_with_the_block_table_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(false);
    // Small shards: the 4 MB embedding alone, the layers together, the head alone.
    synthesize(&model, &options(dir.path(), 1, 1_000_000)).unwrap();
    let tensors = read_tensors(dir.path());

    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.safetensors.index.json")).unwrap()).unwrap();
    let weight_map = index["weight_map"].as_object().unwrap();
    assert_eq!(weight_map.len(), tensors.len());
    let mut total = 0;
    for block in djinn_core::model::expected_blocks(&model.arch) {
        for t in block.tensors {
            let (dtype, shape, file) = &tensors[&t.name];
            assert_eq!(dtype, "F16", "{}", t.name);
            assert_eq!(shape.iter().map(|&d| d as u64).collect::<Vec<_>>(), t.shape, "{}", t.name);
            assert_eq!(weight_map[&t.name], file.as_str(), "{}", t.name);
            total += t.shape.iter().product::<u64>() * 2;
        }
    }
    assert_eq!(index["metadata"]["total_size"], total);
    assert!(tensors.values().any(|(_, _, f)| f == "model-00001-of-00003.safetensors"), "{tensors:?}");

    let config: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float16");
    assert_eq!(config["dtype"], "float16");
    assert_eq!(config["num_hidden_layers"], 3);
    assert!(dir.path().join("tokenizer.json").exists());
}

#[test]
fn tied_embeddings_leave_out_lm_head_and_one_shard_has_no_index() {
    let dir = tempfile::tempdir().unwrap();
    synthesize(&tiny_model(true), &options(dir.path(), 1, u64::MAX)).unwrap();
    let tensors = read_tensors(dir.path());
    assert!(!tensors.contains_key("lm_head.weight"));
    assert!(tensors.contains_key("model.embed_tokens.weight"));
    assert!(dir.path().join("model.safetensors").exists());
    assert!(!dir.path().join("model.safetensors.index.json").exists());
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, seed) in dirs.iter().zip([7, 7, 8]) {
        synthesize(&tiny_model(false), &options(dir.path(), seed, u64::MAX)).unwrap();
    }
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors")).unwrap();
    assert!(read(&dirs[0]) == read(&dirs[1]), "seed 7 gave two different checkpoints");
    assert!(read(&dirs[0]) != read(&dirs[2]), "seeds 7 and 8 gave the same checkpoint");
}

#[test]
fn norm_weights_are_near_one_and_projections_near_zero() {
    let dir = tempfile::tempdir().unwrap();
    synthesize(&tiny_model(false), &options(dir.path(), 3, u64::MAX)).unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mean = |name: &str| {
        let data = st.tensor(name).unwrap().data().to_vec();
        let vals: Vec<f32> = data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        vals.iter().sum::<f32>() / vals.len() as f32
    };
    assert!((mean("model.layers.1.input_layernorm.weight") - 1.0).abs() < 0.01);
    assert!(mean("model.layers.1.mlp.up_proj.weight").abs() < 0.01);
}

#[test]
fn stale_weight_files_are_refused_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("model-00001-of-00009.safetensors");
    std::fs::write(&stale, b"old").unwrap();
    let err = synthesize(&tiny_model(false), &options(dir.path(), 1, u64::MAX)).unwrap_err();
    assert!(format!("{err:#}").contains("model-00001-of-00009.safetensors"), "{err:#}");
    assert!(stale.exists());
}

#[test]
fn an_output_path_under_a_file_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = synthesize(&tiny_model(false), &options(&file.join("ckpt"), 1, u64::MAX)).unwrap_err();
    assert!(format!("{err:#}").contains("cannot create the output directory"), "{err:#}");
}

#[test]
fn the_runtime_reader_opens_the_checkpoint_with_the_preset_block_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(false);
    synthesize(&model, &options(dir.path(), 2, 1_000_000)).unwrap();
    let opened = djinn_core::hf::ModelDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opened.config.arch, model.arch);
    assert_eq!(opened.config.dtype, Dtype::F16);
    let want = djinn_core::ModelSpec::from_arch(&opened.spec.name, model.arch.clone(), Dtype::F16);
    assert_eq!(opened.spec, want);
}

#[test]
fn header_offsets_point_at_each_tensors_own_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(true);
    synthesize(&model, &options(dir.path(), 9, 1_000_000)).unwrap();
    let opened = djinn_core::hf::ModelDir::open(dir.path()).unwrap();
    let mut scratch = crate::rng::Scratch::default();
    // The first chunk of every tensor, regenerated from its name, is at the offset its header gives.
    for t in layout::checkpoint_tensors(&model.arch, Dtype::F16) {
        let src = opened.source(&t.name).unwrap_or_else(|| panic!("{} not found", t.name));
        assert_eq!(src.bytes, t.bytes(), "{}", t.name);
        let file = std::fs::read(&src.file).unwrap();
        let n = (t.bytes().min(crate::rng::CHUNK_ELEMS * 2)) as usize;
        let mut want = vec![0u8; n];
        crate::rng::fill_chunk(9, crate::rng::name_hash(&t.name), 0, t.init, Dtype::F16, &mut want, &mut scratch);
        let at = src.data_start as usize;
        assert!(file[at..at + n] == want[..], "{}: bytes at offset {at} are not its values", t.name);
    }
}

#[test]
fn a_killed_runs_partial_checkpoint_is_hidden_and_cleared_by_the_next_run() {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("ckpt");
    // What a run killed mid-write leaves: its hidden staging directory, and no config.json anywhere.
    let partial = parent.path().join(".ckpt.partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("model.safetensors"), b"half a shard").unwrap();
    assert!(!out.exists(), "nothing at --out looks like a checkpoint");
    synthesize(&tiny_model(false), &options(&out, 1, u64::MAX)).unwrap();
    djinn_core::hf::ModelDir::open(&out).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["ckpt"], "the staging directory is gone");
}

#[test]
fn rewriting_a_checkpoint_in_place_replaces_every_file_and_keeps_others() {
    let dir = tempfile::tempdir().unwrap();
    synthesize(&tiny_model(false), &options(dir.path(), 1, 1_000_000)).unwrap();
    std::fs::write(dir.path().join("NOTES.md"), b"mine").unwrap();
    let shard = |d: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let first = files.iter().find(|p| p.extension().is_some_and(|e| e == "safetensors")).unwrap();
        std::fs::read(first).unwrap()
    };
    let first = shard(dir.path());
    synthesize(&tiny_model(false), &options(dir.path(), 2, 1_000_000)).unwrap();
    assert!(shard(dir.path()) != first, "seed 2 rewrote the shard");
    assert_eq!(std::fs::read(dir.path().join("NOTES.md")).unwrap(), b"mine");
    djinn_core::hf::ModelDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let staging =
        dir.path().parent().unwrap().join(format!(".{}.partial", dir.path().file_name().unwrap().to_string_lossy()));
    assert!(!staging.exists());
}

/// The tiny architecture as `model_type`, with the extra config fields `extra`
/// (JSON members, comma-led), and the architecture the parser reads from it.
fn tiny_family(model_type: &str, extra: &str) -> Model {
    let config_text = format!(
        r#"{{"model_type": "{model_type}", "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1000,
            "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "max_position_embeddings": 256,
            "tie_word_embeddings": false, "torch_dtype": "bfloat16"{extra}}}"#
    );
    let arch = djinn_core::hf::parse_config(&config_text, "test preset").unwrap_or_else(|e| panic!("{e}")).arch;
    Model { name: model_type.into(), origin: "test preset".into(), config_text, arch, dtype: Dtype::F16 }
}

#[test]
fn checkpoints_of_every_family_open_with_their_biases_norms_and_config_fields() {
    let cases = [
        ("qwen2", r#", "use_sliding_window": true, "sliding_window": 64, "max_window_layers": 2"#),
        ("qwen3", r#", "attention_bias": false, "use_sliding_window": false, "sliding_window": null"#),
        (
            "llama",
            r#", "attention_bias": true, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}"#,
        ),
        ("mistral", r#", "sliding_window": 128"#),
    ];
    for (family, extra) in cases {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_family(family, extra);
        synthesize(&model, &options(dir.path(), 4, 1_000_000)).unwrap();
        let opened = djinn_core::hf::ModelDir::open(dir.path()).unwrap_or_else(|e| panic!("{family}: {e}"));
        assert_eq!(opened.config.arch, model.arch, "{family}");
        let want = djinn_core::ModelSpec::from_arch(&opened.spec.name, model.arch.clone(), Dtype::F16);
        assert_eq!(opened.spec, want, "{family}");
        // Every tensor the block table names is in the files, and nothing else.
        let tensors = read_tensors(dir.path());
        assert_eq!(tensors.len(), layout::checkpoint_tensors(&model.arch, Dtype::F16).len(), "{family}");
        let config: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(config["model_type"], family);
        assert_eq!(config["architectures"][0], hf_files::causal_lm_class(family).unwrap());
        assert_eq!(config["torch_dtype"], "float16");
    }
    let a = tiny_family(cases[0].0, cases[0].1).arch;
    assert_eq!((a.qkv_bias, a.sliding_window.map(|w| (w.window, w.first_layer))), (true, Some((64, 2))));
    let a = tiny_family(cases[2].0, cases[2].1).arch;
    assert!(a.o_bias && !a.rope_scaling.is_default());
}

#[test]
fn qwen_biases_are_near_zero_and_qk_norms_near_one() {
    let dir = tempfile::tempdir().unwrap();
    let qwen2 = tiny_family("qwen2", "");
    synthesize(&qwen2, &options(dir.path(), 5, u64::MAX)).unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    synthesize(&tiny_family("qwen3", ""), &options(dir3.path(), 5, u64::MAX)).unwrap();
    let mean = |dir: &Path, name: &str| {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let data = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}")).data().to_vec();
        let vals: Vec<f32> = data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        (vals.iter().sum::<f32>() / vals.len() as f32, vals.iter().any(|v| *v != vals[0]))
    };
    let (m, varied) = mean(dir.path(), "model.layers.0.self_attn.q_proj.bias");
    assert!(m.abs() < 0.01 && varied, "{m}");
    let (m, varied) = mean(dir3.path(), "model.layers.2.self_attn.k_norm.weight");
    assert!((m - 1.0).abs() < 0.02 && varied, "{m}");
}

#[test]
fn every_presets_checkpoint_config_reads_back_as_the_preset() {
    for p in djinn_core::model_presets::MODEL_PRESETS {
        let text = hf_files::checkpoint_config(p.config_json, &p.origin(), Dtype::F16).unwrap();
        let back = djinn_core::hf::parse_config(&text, "written").unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let spec = p.spec().unwrap();
        assert_eq!(back.arch, spec.arch, "{}", p.name);
        assert_eq!(back.dtype, Dtype::F16, "{}", p.name);
    }
}
