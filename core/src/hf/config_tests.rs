use serde_json::json;

use super::*;
use crate::hf::test_support::{config_4x, config_5x, edit, tiny_arch};

const ORIGIN: &str = "/models/tiny/config.json";

fn parse(text: &str) -> Result<HfConfig, HfError> {
    parse_config(text, ORIGIN)
}

/// Parses `config_4x` with `edits`, expecting an error; returns its message.
fn err_4x(edits: &[(&str, Option<Value>)]) -> String {
    let e = parse(&edit(config_4x(false), edits)).unwrap_err().to_string();
    assert!(e.contains(ORIGIN), "error does not name the file: {e}");
    e
}

#[test]
fn transformers_4x_and_5x_configs_give_the_same_architecture() {
    let old = parse(&config_4x(false).to_string()).unwrap();
    let new = parse(&config_5x(false).to_string()).unwrap();
    assert_eq!(old.arch, tiny_arch(false));
    assert_eq!(new.arch, tiny_arch(false));
    assert_eq!((old.dtype, new.dtype), (Dtype::F16, Dtype::F16));
    assert_eq!((old.bos_token_id, new.bos_token_id), (Some(1), Some(1)));
    assert_eq!(old.eos_token_ids, vec![2]);
    assert_eq!(new.eos_token_ids, vec![2, 7]);
    assert!(parse(&config_5x(true).to_string()).unwrap().arch.tie_word_embeddings);
}

#[test]
fn defaults_apply_only_where_transformers_has_one() {
    let c = parse(&edit(
        config_4x(false),
        &[("rope_theta", None), ("num_key_value_heads", None), ("tie_word_embeddings", None)],
    ))
    .unwrap();
    assert_eq!(c.arch.rope_theta, 10000.0);
    assert_eq!(c.arch.num_kv_heads, c.arch.num_heads);
    assert_eq!(c.arch.head_dim, 8, "head_dim = hidden_size / num_attention_heads");
    assert!(!c.arch.tie_word_embeddings);
    // `null` reads as absent, as transformers treats it.
    let c = parse(&edit(config_5x(false), &[("head_dim", Some(Value::Null)), ("eos_token_id", Some(Value::Null))]));
    let c = c.unwrap();
    assert_eq!((c.arch.head_dim, c.eos_token_ids.len()), (8, 0));
}

#[test]
fn explicit_head_dim_need_not_divide_hidden_size() {
    let c = parse(&edit(config_5x(false), &[("head_dim", Some(json!(16)))])).unwrap();
    assert_eq!((c.arch.head_dim, c.arch.q_dim(), c.arch.kv_dim()), (16, 64, 32));
}

#[test]
fn missing_required_field_names_file_and_field() {
    let e = err_4x(&[("num_attention_heads", None)]);
    assert_eq!(e, format!("config.json at {ORIGIN}: field `num_attention_heads` missing (expected an integer)"));
    for field in ["hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "max_position_embeddings"] {
        let e = err_4x(&[(field, None)]);
        assert!(e.contains(&format!("`{field}` missing")), "{e}");
    }
    let e = err_4x(&[("rms_norm_eps", None)]);
    assert!(e.contains("`rms_norm_eps` missing"), "rms_norm_eps has no safe default: {e}");
}

#[test]
fn wrongly_typed_or_zero_fields_are_refused() {
    let e = err_4x(&[("hidden_size", Some(json!("32")))]);
    assert!(e.contains("`hidden_size` is \"32\"; expected a non-negative integer"), "{e}");
    let e = err_4x(&[("num_hidden_layers", Some(json!(0)))]);
    assert!(e.contains("`num_hidden_layers` is 0; expected an integer from 1 to 2045"), "{e}");
    let e = err_4x(&[("rms_norm_eps", Some(json!(-1.0)))]);
    assert!(e.contains("`rms_norm_eps`") && e.contains("positive number"), "{e}");
    let e = err_4x(&[("tie_word_embeddings", Some(json!("yes")))]);
    assert!(e.contains("`tie_word_embeddings`") && e.contains("true or false"), "{e}");
    let e = err_4x(&[("eos_token_id", Some(json!([2, "x"])))]);
    assert!(e.contains("`eos_token_id`") && e.contains("list of token ids"), "{e}");
    let e = parse("[1, 2]").unwrap_err().to_string();
    assert!(e.contains(ORIGIN) && e.contains("JSON object"), "{e}");
}

#[test]
fn sizes_that_would_overflow_the_kv_cache_are_refused_naming_the_field() {
    // 2^62 positions once made the KV size wrap to 0 bytes, found only by the verifier.
    let e = err_4x(&[("max_position_embeddings", Some(json!(1u64 << 62)))]);
    assert!(e.contains(ORIGIN), "{e}");
    assert!(
        e.contains("`max_position_embeddings` is 4611686018427387904; expected an integer from 1 to 16777216"),
        "{e}"
    );
    for field in ["hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "head_dim"] {
        let e = err_4x(&[(field, Some(json!(u64::MAX)))]);
        assert!(e.contains(&format!("`{field}` is 18446744073709551615; expected")), "{field}: {e}");
    }
    let e = err_4x(&[("num_hidden_layers", Some(json!(100_000)))]);
    assert!(e.contains("`num_hidden_layers` is 100000; expected an integer from 1 to 2045"), "{e}");
}

#[test]
fn head_counts_must_divide() {
    let e = err_4x(&[("num_key_value_heads", Some(json!(3)))]);
    assert!(e.contains("`num_key_value_heads` is 3; expected a positive divisor of num_attention_heads (4)"), "{e}");
    let e = err_4x(&[("num_attention_heads", Some(json!(5))), ("num_key_value_heads", Some(json!(5)))]);
    assert!(e.contains("`hidden_size` is 32; expected a multiple of num_attention_heads (5)"), "{e}");
}

#[test]
fn malformed_json_names_the_file() {
    let e = parse("{\"hidden_size\": 32,").unwrap_err();
    assert!(matches!(e, HfError::ConfigJson { .. }));
    assert!(e.to_string().starts_with(&format!("config.json at {ORIGIN}: malformed JSON")), "{e}");
}

#[test]
fn dtype_is_read_from_either_field() {
    let bf = |field: &str| {
        let other = if field == "dtype" { "torch_dtype" } else { "dtype" };
        let base = if field == "dtype" { config_5x(false) } else { config_4x(false) };
        parse(&edit(base, &[(field, Some(json!("bfloat16"))), (other, None)])).unwrap().dtype
    };
    assert_eq!((bf("dtype"), bf("torch_dtype")), (Dtype::Bf16, Dtype::Bf16));

    let e = err_4x(&[("torch_dtype", Some(json!("float32")))]);
    assert!(e.contains("`torch_dtype` is \"float32\"") && e.contains("f32 checkpoints are not"), "{e}");
    let e = err_4x(&[("torch_dtype", None)]);
    assert!(e.contains("`dtype`") && e.contains("`torch_dtype`") && e.contains("missing"), "{e}");
    let e = err_4x(&[("torch_dtype", Some(json!("int8")))]);
    assert!(e.contains("`torch_dtype` is \"int8\"; expected \"float16\" or \"bfloat16\""), "{e}");
    let e = err_4x(&[("dtype", Some(json!("bfloat16")))]);
    assert!(e.contains("`dtype` is \"bfloat16\"; expected the same as `torch_dtype` (\"float16\")"), "{e}");
}

#[test]
fn rope_theta_from_either_place() {
    let c = parse(&edit(config_5x(false), &[("rope_parameters", Some(json!({"rope_type": "default"})))])).unwrap();
    assert_eq!(c.arch.rope_theta, 10000.0, "rope_parameters without rope_theta: the default");
    let both = [("rope_theta", Some(json!(500000.0)))];
    assert_eq!(parse(&edit(config_5x(false), &both)).unwrap().arch.rope_theta, 500000.0);
    let e = parse(&edit(config_5x(false), &[("rope_theta", Some(json!(10000.0)))])).unwrap_err().to_string();
    assert!(e.contains("`rope_parameters.rope_theta` is 500000") && e.contains("top-level `rope_theta`"), "{e}");
}

#[test]
fn scaled_rope_is_unsupported() {
    let e = err_4x(&[("rope_scaling", Some(json!({"type": "linear", "factor": 2.0})))]);
    assert!(e.contains("unsupported architecture: `rope_scaling` is {\"factor\":2.0,\"type\":\"linear\"}"), "{e}");
    assert!(e.contains("only unscaled RoPE is supported"), "{e}");
    for ok in [json!({"rope_type": "default"}), json!({"type": "default"})] {
        parse(&edit(config_4x(false), &[("rope_scaling", Some(ok))])).unwrap();
    }
    let llama3 = json!({"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0});
    let e = parse(&edit(config_5x(false), &[("rope_parameters", Some(llama3))])).unwrap_err().to_string();
    assert!(e.contains("`rope_parameters` is") && e.contains("llama3") && e.contains(ORIGIN), "{e}");
}

#[test]
fn other_architectures_are_unsupported_by_name() {
    let e = err_4x(&[("model_type", Some(json!("gpt2")))]);
    assert!(e.contains("unsupported architecture: `model_type` is \"gpt2\""), "{e}");
    let e = err_4x(&[("model_type", None)]);
    assert!(e.contains("`model_type` missing"), "{e}");
    let e = err_4x(&[("hidden_act", Some(json!("gelu")))]);
    assert!(e.contains("`hidden_act` is \"gelu\"; only \"silu\""), "{e}");
    for field in ["attention_bias", "mlp_bias"] {
        let e = err_4x(&[(field, Some(json!(true)))]);
        assert!(e.contains(&format!("`{field}` is true")) && e.contains("biases"), "{e}");
    }
}

#[test]
fn mistral_sliding_window_must_cover_the_context() {
    let mistral = |window: Value| {
        edit(config_4x(false), &[("model_type", Some(json!("mistral"))), ("sliding_window", Some(window))])
    };
    assert_eq!(parse(&mistral(Value::Null)).unwrap().arch.family, "llama");
    parse(&mistral(json!(128))).unwrap();
    let e = parse(&mistral(json!(64))).unwrap_err().to_string();
    assert!(e.contains(ORIGIN) && e.contains("`sliding_window` is 64") && e.contains("(128)"), "{e}");
}
