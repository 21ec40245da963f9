use serde_json::json;

use super::*;
use crate::hf::test_support::{config_4x, config_5x, edit, tiny_arch};
use crate::model::{RopeScaling, SlidingWindow};

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

/// `config_4x` as a `model_type` of another family, with `edits`.
fn as_family(model_type: &str, edits: &[(&str, Option<Value>)]) -> Result<HfConfig, HfError> {
    let mut all = vec![("model_type", Some(json!(model_type)))];
    all.extend_from_slice(edits);
    parse(&edit(config_4x(false), &all))
}

#[test]
fn llama3_rope_scaling_is_read_from_every_form_transformers_writes() {
    let want = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    let params = json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192, "rope_type": "llama3"});
    // 4.x: top-level `rope_scaling` with `rope_type`, or (before 4.42) with `type`.
    let c = parse(&edit(config_4x(false), &[("rope_scaling", Some(params.clone()))])).unwrap();
    assert_eq!((c.arch.rope_scaling, c.arch.rope_theta), (want, 500000.0));
    let mut old = params.clone();
    old["type"] = old["rope_type"].take();
    old.as_object_mut().unwrap().remove("rope_type");
    assert_eq!(parse(&edit(config_4x(false), &[("rope_scaling", Some(old))])).unwrap().arch.rope_scaling, want);
    // 5.x: the same keys inside `rope_parameters`, with `rope_theta`.
    let mut new = params.clone();
    new["rope_theta"] = json!(500000.0);
    let c = parse(&edit(config_5x(false), &[("rope_parameters", Some(new.clone()))])).unwrap();
    assert_eq!((c.arch.rope_scaling, c.arch.rope_theta), (want, 500000.0));
    // Both, agreeing (a 4.x config re-saved by 5.x keeps both): accepted.
    let both = [("rope_scaling", Some(params)), ("rope_parameters", Some(new))];
    assert_eq!(parse(&edit(config_5x(false), &both)).unwrap().arch.rope_scaling, want);
}

#[test]
fn linear_rope_scaling_divides_by_its_factor() {
    let c = parse(&edit(config_4x(false), &[("rope_scaling", Some(json!({"type": "linear", "factor": 2.0})))]));
    assert_eq!(c.unwrap().arch.rope_scaling, RopeScaling::Linear { factor: 2.0 });
    for ok in [json!({"rope_type": "default"}), json!({"type": "default"}), json!({})] {
        let c = parse(&edit(config_4x(false), &[("rope_scaling", Some(ok))])).unwrap();
        assert_eq!(c.arch.rope_scaling, RopeScaling::Default);
    }
}

#[test]
fn other_rope_types_are_refused_by_name() {
    for (t, why) in
        [("dynamic", "sequence length"), ("yarn", "attention logits"), ("longrope", "attention logits"), ("mrope", "")]
    {
        let e = err_4x(&[("rope_scaling", Some(json!({"rope_type": t, "factor": 4.0})))]);
        assert!(e.contains("unsupported architecture: `rope_scaling` is {"), "{e}");
        assert!(e.contains(&format!("RoPE scaling of type \"{t}\" is not supported")) && e.contains(why), "{e}");
        let p = json!({"rope_type": t, "factor": 4.0, "rope_theta": 500000.0});
        let e = parse(&edit(config_5x(false), &[("rope_parameters", Some(p))])).unwrap_err().to_string();
        assert!(
            e.contains("`rope_parameters` is {") && e.contains(&format!("type \"{t}\"")) && e.contains(ORIGIN),
            "{e}"
        );
    }
}

#[test]
fn rope_scaling_parameters_are_checked_by_name() {
    let e = err_4x(&[("rope_scaling", Some(json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0})))]);
    assert!(
        e.contains("field `rope_scaling.high_freq_factor` missing (expected a positive number (rope_type \"llama3\"))"),
        "{e}"
    );
    let e = err_4x(&[("rope_scaling", Some(json!({"rope_type": "linear", "factor": "2"})))]);
    assert!(e.contains("`rope_scaling.factor` is \"2\"; expected a positive number"), "{e}");
    let inverted = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192});
    let e = err_4x(&[("rope_scaling", Some(inverted))]);
    assert!(e.contains("expected valid llama3 parameters (high_freq_factor is 1, not above low_freq_factor 4"), "{e}");
    let e = err_4x(&[(
        "rope_scaling",
        Some(json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 0})),
    )]);
    assert!(e.contains("`rope_scaling.original_max_position_embeddings` is 0; expected an integer from 1"), "{e}");
    let e = err_4x(&[("rope_scaling", Some(json!("llama3")))]);
    assert!(e.contains("`rope_scaling` is a string; expected an object or null"), "{e}");
}

#[test]
fn rope_forms_that_disagree_or_cannot_be_expressed_are_refused() {
    let five = |p: Value| parse(&edit(config_5x(false), &[("rope_parameters", Some(p))])).unwrap_err().to_string();
    let both = [
        ("rope_scaling", Some(json!({"rope_type": "linear", "factor": 2.0}))),
        ("rope_parameters", Some(json!({"rope_type": "default", "rope_theta": 500000.0}))),
    ];
    let e = parse(&edit(config_5x(false), &both)).unwrap_err().to_string();
    assert!(e.contains("`rope_parameters` is") && e.contains("the same scaling as `rope_scaling` (\"linear\")"), "{e}");
    let e = five(json!({"full_attention": {"rope_type": "default"}, "sliding_attention": {"rope_type": "default"}}));
    assert!(e.contains("unsupported architecture: `rope_parameters`") && e.contains("per layer type"), "{e}");
    let e = five(json!({"rope_type": "default", "rope_theta": 500000.0, "partial_rotary_factor": 0.5}));
    assert!(e.contains("`partial_rotary_factor`) is not supported"), "{e}");
    let e = err_4x(&[("partial_rotary_factor", Some(json!(0.5)))]);
    assert!(e.contains("unsupported architecture: `partial_rotary_factor` is 0.5"), "{e}");
    parse(&edit(config_4x(false), &[("partial_rotary_factor", Some(json!(1.0)))])).unwrap();
}

#[test]
fn other_architectures_are_unsupported_by_name() {
    for t in ["gpt2", "qwen2_moe", "qwen3_moe", "mixtral", "gemma"] {
        let e = err_4x(&[("model_type", Some(json!(t)))]);
        assert!(e.contains(&format!("unsupported architecture: `model_type` is \"{t}\"")), "{e}");
        assert!(e.contains("\"llama\", \"mistral\", \"qwen2\" or \"qwen3\""), "{e}");
    }
    let e = err_4x(&[("model_type", None)]);
    assert!(e.contains("`model_type` missing"), "{e}");
    let e = err_4x(&[("hidden_act", Some(json!("gelu")))]);
    assert!(e.contains("`hidden_act` is \"gelu\"; only \"silu\""), "{e}");
    let e = err_4x(&[("mlp_bias", Some(json!(true)))]);
    assert!(e.contains("`mlp_bias` is true") && e.contains("MLP projections with biases"), "{e}");
    let e = as_family("qwen2", &[("use_mrope", Some(json!(true)))]).unwrap_err().to_string();
    assert!(e.contains("`use_mrope` is true") && e.contains("Qwen2-VL"), "{e}");
}

#[test]
fn attention_bias_gives_llama_and_qwen3_all_four_biases() {
    for family in ["llama", "qwen3"] {
        let a = as_family(family, &[("attention_bias", Some(json!(true)))]).unwrap().arch;
        assert_eq!((a.qkv_bias, a.o_bias), (true, true), "{family}");
        let a = as_family(family, &[("attention_bias", None)]).unwrap().arch;
        assert_eq!((a.qkv_bias, a.o_bias), (false, false), "{family}");
    }
    // Mistral's attention has no biases, whatever the config says (transformers ignores the key).
    let a = as_family("mistral", &[("attention_bias", Some(json!(true))), ("sliding_window", Some(Value::Null))]);
    let a = a.unwrap().arch;
    assert_eq!((a.family.as_str(), a.qkv_bias, a.o_bias), ("mistral", false, false));
}

#[test]
fn qwen2_always_has_qkv_biases_and_no_o_bias() {
    for attention_bias in [None, Some(json!(false)), Some(json!(true))] {
        let a = as_family("qwen2", &[("attention_bias", attention_bias.clone())]).unwrap().arch;
        assert_eq!(
            (a.family.as_str(), a.qkv_bias, a.o_bias, a.qk_norm),
            ("qwen2", true, false, false),
            "{attention_bias:?}"
        );
        assert_eq!(a.head_dim, 8, "qwen2 without head_dim: hidden_size / num_attention_heads");
    }
}

#[test]
fn qwen3_has_qk_norms_and_its_own_head_dim_default() {
    let a = as_family("qwen3", &[]).unwrap().arch;
    assert_eq!((a.qk_norm, a.qkv_bias, a.head_dim), (true, false, 128), "Qwen3Config's head_dim defaults to 128");
    assert_eq!(a.q_dim(), 512);
    let a = as_family("qwen3", &[("head_dim", Some(json!(8)))]).unwrap().arch;
    assert_eq!(a.head_dim, 8);
    assert_eq!(a.family_contradiction(), None);
}

fn window(w: u64, first_layer: u64) -> Option<SlidingWindow> {
    Some(SlidingWindow { window: w, first_layer })
}

#[test]
fn mistral_sliding_window_covers_every_layer_and_defaults_to_4096() {
    let long = [("max_position_embeddings", Some(json!(32768)))];
    let mistral = |w: Option<Value>| {
        let mut e = long.to_vec();
        e.push(("sliding_window", w));
        as_family("mistral", &e).map(|c| c.arch.sliding_window)
    };
    assert_eq!(mistral(Some(json!(4096))).unwrap(), window(4096, 0));
    assert_eq!(mistral(None).unwrap(), window(4096, 0), "absent: MistralConfig's default 4096");
    assert_eq!(mistral(Some(Value::Null)).unwrap(), None, "null: no window");
    // A window as long as the context changes nothing and is not recorded.
    assert_eq!(mistral(Some(json!(32768))).unwrap(), None);
    let e = mistral(Some(json!(0))).unwrap_err().to_string();
    assert!(e.contains(ORIGIN) && e.contains("`sliding_window` is 0; expected a positive integer or null"), "{e}");
    // transformers' Llama has no sliding window: the key means nothing there.
    let c = parse(&edit(config_4x(false), &[("sliding_window", Some(json!(16)))])).unwrap();
    assert_eq!((c.arch.family.as_str(), c.arch.sliding_window), ("llama", None));
}

#[test]
fn qwen_sliding_window_needs_use_sliding_window_and_starts_at_max_window_layers() {
    let qwen = |family: &str, edits: &[(&str, Option<Value>)]| {
        let mut e = vec![("num_hidden_layers", Some(json!(4))), ("sliding_window", Some(json!(64)))];
        e.extend_from_slice(edits);
        as_family(family, &e).map(|c| c.arch.sliding_window)
    };
    for family in ["qwen2", "qwen3"] {
        // The published configs: a window given, but use_sliding_window false.
        assert_eq!(qwen(family, &[("use_sliding_window", Some(json!(false)))]).unwrap(), None, "{family}");
        assert_eq!(qwen(family, &[]).unwrap(), None, "{family}: use_sliding_window defaults to false");
        let on = ("use_sliding_window", Some(json!(true)));
        // The first max_window_layers layers attend to everything, the rest through the window.
        assert_eq!(qwen(family, &[on.clone(), ("max_window_layers", Some(json!(1)))]).unwrap(), window(64, 1));
        assert_eq!(qwen(family, &[on.clone(), ("max_window_layers", Some(json!(0)))]).unwrap(), window(64, 0));
        // max_window_layers defaults to 28: past these 4 layers, so no layer is windowed.
        assert_eq!(qwen(family, std::slice::from_ref(&on)).unwrap(), None, "{family}");
        assert_eq!(qwen(family, &[on.clone(), ("sliding_window", Some(Value::Null))]).unwrap(), None);
        // 5.x `layer_types` is authoritative over max_window_layers.
        let types = json!(["full_attention", "full_attention", "full_attention", "sliding_attention"]);
        let got = qwen(family, &[on.clone(), ("max_window_layers", Some(json!(1))), ("layer_types", Some(types))]);
        assert_eq!(got.unwrap(), window(64, 3));
        let alternating = json!(["full_attention", "sliding_attention", "full_attention", "sliding_attention"]);
        let e = qwen(family, &[on.clone(), ("layer_types", Some(alternating))]).unwrap_err().to_string();
        assert!(e.contains("unsupported architecture: `layer_types` is [") && e.contains("not an alternating"), "{e}");
        let e = qwen(family, &[on.clone(), ("layer_types", Some(json!(["full_attention"])))]).unwrap_err().to_string();
        assert!(e.contains("`layer_types` is [\"full_attention\"]; expected a list of 4 \"full_attention\""), "{e}");
    }
}
