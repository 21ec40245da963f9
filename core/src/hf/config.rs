//! `config.json` → [`HfConfig`], as transformers 4.x and 5.x both write it.
//!
//! Four `model_type`s are read, each with transformers' own defaults and
//! semantics: `llama` (Llama 2, 3, 3.1-3.3), `mistral`, `qwen2` (Qwen2 and
//! Qwen2.5) and `qwen3`. What differs between them becomes fields of the
//! [`Architecture`]: q/k/v (and o) biases, Qwen3's per-head q/k norms, RoPE
//! scaling (`default`, `linear`, `llama3`) and sliding-window attention.
//!
//! The two transformers versions differ in small ways that matter: 5.x moved
//! `rope_theta` and the scaling parameters into `rope_parameters` (4.x:
//! top-level `rope_theta` and `rope_scaling`, whose type key was `type`
//! before it was `rope_type`) and renamed `torch_dtype` to `dtype`. Anything
//! else (other `model_type`s, MoE, other activations, MLP biases, `dynamic`,
//! `yarn` and `longrope` RoPE, partial rotary dimensions, multimodal RoPE,
//! sliding-window layer patterns other than full layers then windowed ones)
//! is refused here, by field name, rather than producing a plan for a model
//! we would describe wrongly. Defaults are applied only where transformers'
//! own default is the only sensible reading (`num_key_value_heads`,
//! `head_dim`, `tie_word_embeddings`, `rope_theta`, the Mistral and Qwen
//! window fields); `rms_norm_eps` is required because a silently wrong
//! epsilon still runs.
//!
//! Sliding windows, as transformers builds them:
//!
//! * `mistral`: `sliding_window` applies to every layer; absent means 4096
//!   (`MistralConfig`'s default), `null` means none.
//! * `qwen2`, `qwen3`: only with `use_sliding_window` (default false), the
//!   window `sliding_window` (absent: 4096) applies to the layers whose
//!   `layer_types` entry is `sliding_attention`. Without `layer_types` (every
//!   4.x config), those are the layers from `max_window_layers` (default 28)
//!   on: the first `max_window_layers` layers attend to the whole context.
//! * `llama`: transformers' Llama has no sliding window; the fields are ignored.
//!
//! A window at least `max_position_embeddings` long, or one that no layer
//! uses, changes nothing and is recorded as none.

use serde_json::{Map, Value};

use super::HfError;
use crate::limits::{MAX_DIM, MAX_LAYERS};
use crate::model::{Architecture, Dtype, RopeScaling, SlidingWindow};

/// What `config.json` says about a Llama-shaped model.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub arch: Architecture,
    /// The checkpoint's dtype (`torch_dtype` in 4.x, `dtype` in 5.x).
    pub dtype: Dtype,
    pub bos_token_id: Option<u32>,
    /// Empty when the config names none; several for Llama 3 instruct models.
    pub eos_token_ids: Vec<u32>,
}

const DEFAULT_ROPE_THETA: f64 = 10000.0;

/// `sliding_window` when the key is absent (`MistralConfig`, `Qwen2Config`, `Qwen3Config`).
const DEFAULT_SLIDING_WINDOW: u64 = 4096;

/// `max_window_layers` when the key is absent (`Qwen2Config`, `Qwen3Config`).
const DEFAULT_MAX_WINDOW_LAYERS: u64 = 28;

/// `head_dim` of a `qwen3` config without one (`Qwen3Config`'s default).
const QWEN3_DEFAULT_HEAD_DIM: u64 = 128;

/// The `model_type`s read, as [`crate::model::FAMILIES`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }
}

const SUPPORTED_TYPES: &str = "\"llama\", \"mistral\", \"qwen2\" or \"qwen3\"";

/// Parses `config.json` text; `origin` (its path) is named in every error.
pub fn parse_config(text: &str, origin: &str) -> Result<HfConfig, HfError> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| HfError::ConfigJson { origin: origin.to_string(), error })?;
    let Value::Object(map) = &value else {
        return Err(HfError::InvalidField {
            origin: origin.to_string(),
            field: "(top level)".into(),
            found: kind(&value).into(),
            expected: "a JSON object".into(),
        });
    };
    let f = Fields { map, origin };
    let family = family(&f)?;
    check_supported(&f, family)?;

    let hidden_size = f.dim("hidden_size")?;
    let num_heads = f.dim("num_attention_heads")?;
    let num_kv_heads = match f.opt_u64("num_key_value_heads")? {
        None => num_heads,
        Some(kv) if kv >= 1 && num_heads % kv == 0 => kv,
        Some(kv) => {
            return Err(f.invalid(
                "num_key_value_heads",
                kv.to_string(),
                format!("a positive divisor of num_attention_heads ({num_heads})"),
            ))
        }
    };
    let head_dim = match f.opt_u64("head_dim")? {
        Some(d) if d == 0 || d > MAX_DIM => {
            return Err(f.invalid("head_dim", d.to_string(), format!("an integer from 1 to {MAX_DIM}")))
        }
        Some(d) => d,
        None if family == Family::Qwen3 => QWEN3_DEFAULT_HEAD_DIM,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(f.invalid(
                "hidden_size",
                hidden_size.to_string(),
                format!("a multiple of num_attention_heads ({num_heads}) when `head_dim` is absent"),
            ))
        }
    };
    let (rope_theta, rope_scaling) = rope(&f)?;
    let (qkv_bias, o_bias) = biases(&f, family)?;
    let num_layers = f.bounded("num_hidden_layers", MAX_LAYERS)?;
    let max_position_embeddings = f.dim("max_position_embeddings")?;
    let arch = Architecture {
        family: family.name().into(),
        hidden_size,
        intermediate_size: f.dim("intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size: f.dim("vocab_size")?,
        rope_theta,
        rms_norm_eps: f.positive_f64("rms_norm_eps")?.ok_or_else(|| f.missing("rms_norm_eps", "a positive number"))?,
        max_position_embeddings,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        qkv_bias,
        o_bias,
        qk_norm: family == Family::Qwen3,
        rope_scaling,
        sliding_window: sliding_window(&f, family, num_layers, max_position_embeddings)?,
    };
    Ok(HfConfig {
        arch,
        dtype: dtype(&f)?,
        bos_token_id: f.opt_token("bos_token_id")?,
        eos_token_ids: eos_token_ids(&f)?,
    })
}

/// `model_type`, one of the four read.
fn family(f: &Fields) -> Result<Family, HfError> {
    match f.opt_str("model_type")? {
        None => Err(f.missing("model_type", SUPPORTED_TYPES)),
        Some("llama") => Ok(Family::Llama),
        Some("mistral") => Ok(Family::Mistral),
        Some("qwen2") => Ok(Family::Qwen2),
        Some("qwen3") => Ok(Family::Qwen3),
        Some(_) => Err(f.unsupported(
            "model_type",
            &format!("only {SUPPORTED_TYPES} (Llama-shaped decoders, no mixture of experts) are supported"),
        )),
    }
}

/// Refuses what none of the four families' forward passes computes.
fn check_supported(f: &Fields, family: Family) -> Result<(), HfError> {
    if let Some(act) = f.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(f.unsupported("hidden_act", "only \"silu\" is supported"));
        }
    }
    if f.opt_bool("mlp_bias")? == Some(true) {
        return Err(f.unsupported("mlp_bias", "MLP projections with biases are not supported"));
    }
    if family == Family::Qwen2 && f.opt_bool("use_mrope")? == Some(true) {
        return Err(f.unsupported("use_mrope", "multimodal RoPE (Qwen2-VL) is not supported"));
    }
    if let Some(p) = f.positive_f64("partial_rotary_factor")? {
        if p != 1.0 {
            return Err(f.unsupported("partial_rotary_factor", "RoPE over part of each head is not supported"));
        }
    }
    Ok(())
}

/// `(qkv_bias, o_bias)`. Qwen2's q, k and v projections always have biases
/// and its o projection never does; Llama's and Qwen3's `attention_bias`
/// (default false) gives all four theirs; Mistral's have none
/// (`MistralConfig` has no `attention_bias`, and its layers ignore one).
fn biases(f: &Fields, family: Family) -> Result<(bool, bool), HfError> {
    Ok(match family {
        Family::Qwen2 => (true, false),
        Family::Mistral => (false, false),
        Family::Llama | Family::Qwen3 => {
            let b = f.opt_bool("attention_bias")?.unwrap_or(false);
            (b, b)
        }
    })
}

/// `rope_theta` and the scaling, from `rope_parameters` (5.x) or top-level
/// `rope_theta` and `rope_scaling` (4.x); when both versions' fields are
/// present they must agree.
fn rope(f: &Fields) -> Result<(f64, RopeScaling), HfError> {
    let top_theta = f.positive_f64("rope_theta")?;
    let old = match f.object("rope_scaling")? {
        Some(s) => Some(scaling(f, "rope_scaling", s)?),
        None => None,
    };
    let Some(params) = f.object("rope_parameters")? else {
        return Ok((top_theta.unwrap_or(DEFAULT_ROPE_THETA), old.unwrap_or_default()));
    };
    if params.values().any(Value::is_object) {
        return Err(f.unsupported(
            "rope_parameters",
            "RoPE parameters per layer type (one object per attention kind) are not supported",
        ));
    }
    if let Some(v) = params.get("partial_rotary_factor").filter(|v| !v.is_null()) {
        if v.as_f64() != Some(1.0) {
            return Err(f.unsupported(
                "rope_parameters",
                "RoPE over part of each head (`partial_rotary_factor`) is not supported",
            ));
        }
    }
    let new = scaling(f, "rope_parameters", params)?;
    if let Some(old) = old.filter(|o| *o != new) {
        return Err(f.invalid(
            "rope_parameters",
            Value::Object(params.clone()).to_string(),
            format!("the same scaling as `rope_scaling` ({:?})", old.rope_type()),
        ));
    }
    let inner = match params.get("rope_theta") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if t > 0.0 && t.is_finite() => Some(t),
            _ => return Err(f.invalid("rope_parameters.rope_theta", v.to_string(), "a positive number".into())),
        },
    };
    let theta = match (inner, top_theta) {
        (Some(a), Some(b)) if a != b => {
            return Err(f.invalid(
                "rope_parameters.rope_theta",
                a.to_string(),
                format!("the same value as top-level `rope_theta` ({b})"),
            ))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => DEFAULT_ROPE_THETA,
    };
    Ok((theta, new))
}

/// The scaling an object of `rope_scaling` / `rope_parameters` (`field`)
/// describes: its `rope_type` (or the older `type`; absent or null means
/// "default") and that type's parameters.
fn scaling(f: &Fields, field: &str, s: &Map<String, Value>) -> Result<RopeScaling, HfError> {
    let rope_type = match s.get("rope_type").or_else(|| s.get("type")) {
        None | Some(Value::Null) => "default",
        Some(Value::String(t)) => t.as_str(),
        Some(v) => return Err(f.invalid(&format!("{field}.rope_type"), v.to_string(), "a string".into())),
    };
    let number = |key: &str| -> Result<f64, HfError> {
        let name = format!("{field}.{key}");
        match s.get(key) {
            None | Some(Value::Null) => Err(f.missing(&name, &format!("a positive number (rope_type {rope_type:?})"))),
            Some(v) => match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => Ok(x),
                _ => Err(f.invalid(&name, v.to_string(), "a positive number".into())),
            },
        }
    };
    let scaling = match rope_type {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: number("factor")? },
        "llama3" => {
            let (factor, low_freq_factor, high_freq_factor) =
                (number("factor")?, number("low_freq_factor")?, number("high_freq_factor")?);
            let name = format!("{field}.original_max_position_embeddings");
            let original_max_position_embeddings = match s.get("original_max_position_embeddings") {
                None | Some(Value::Null) => return Err(f.missing(&name, "a positive integer (rope_type \"llama3\")")),
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_DIM).contains(&n) => n,
                    _ => return Err(f.invalid(&name, v.to_string(), format!("an integer from 1 to {MAX_DIM}"))),
                },
            };
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }
        }
        other => {
            return Err(f.unsupported(
                field,
                &format!(
                    "RoPE scaling of type {other:?} is not supported (only \"default\", \"linear\" and \"llama3\"{})",
                    match other {
                        "dynamic" => ": dynamic NTK scaling changes the frequencies with the sequence length",
                        "yarn" | "longrope" | "su" => ": it also scales the attention logits",
                        _ => "",
                    }
                ),
            ))
        }
    };
    if let Some(problem) = scaling.invalid_parameter() {
        return Err(f.invalid(
            field,
            Value::Object(s.clone()).to_string(),
            format!("valid {rope_type} parameters ({problem})"),
        ));
    }
    Ok(scaling)
}

/// The sliding window transformers builds for `family` (module doc), or
/// none where no layer's attention is narrower than the model's context.
fn sliding_window(f: &Fields, family: Family, num_layers: u64, max_pos: u64) -> Result<Option<SlidingWindow>, HfError> {
    // `sliding_window`: absent is the family's default, `null` is none.
    let window = || -> Result<Option<u64>, HfError> {
        match f.map.get("sliding_window") {
            None => Ok(Some(DEFAULT_SLIDING_WINDOW)),
            Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(w) if w >= 1 => Ok(Some(w)),
                _ => Err(f.invalid("sliding_window", v.to_string(), "a positive integer or null".into())),
            },
        }
    };
    let found = match family {
        Family::Llama => None,
        Family::Mistral => window()?.map(|window| SlidingWindow { window, first_layer: 0 }),
        Family::Qwen2 | Family::Qwen3 => {
            if f.opt_bool("use_sliding_window")? != Some(true) {
                None
            } else if let Some(window) = window()? {
                let first_layer = match f.get("layer_types") {
                    Some(types) => first_sliding_layer(f, types, num_layers)?,
                    None => f.opt_u64("max_window_layers")?.unwrap_or(DEFAULT_MAX_WINDOW_LAYERS),
                };
                Some(SlidingWindow { window, first_layer })
            } else {
                None
            }
        }
    };
    Ok(found.filter(|w| w.window < max_pos && w.first_layer < num_layers))
}

/// `layer_types` (transformers 5.x, and 4.x from 4.53): `num_layers` entries,
/// `full_attention` layers then `sliding_attention` ones; the index of the
/// first windowed layer (`num_layers` when none is).
fn first_sliding_layer(f: &Fields, types: &Value, num_layers: u64) -> Result<u64, HfError> {
    let expected = || format!("a list of {num_layers} \"full_attention\" or \"sliding_attention\" entries");
    let Some(list) = types.as_array().filter(|l| l.len() as u64 == num_layers) else {
        return Err(f.invalid("layer_types", types.to_string(), expected()));
    };
    let mut sliding = Vec::with_capacity(list.len());
    for t in list {
        sliding.push(match t.as_str() {
            Some("full_attention") => false,
            Some("sliding_attention") => true,
            _ => return Err(f.invalid("layer_types", types.to_string(), expected())),
        });
    }
    let first = sliding.iter().position(|&s| s).unwrap_or(sliding.len());
    if sliding[first..].iter().any(|&s| !s) {
        return Err(f.unsupported(
            "layer_types",
            "only full-attention layers followed by sliding-window layers are supported (not an alternating pattern)",
        ));
    }
    Ok(first as u64)
}

/// `dtype` (5.x) or `torch_dtype` (4.x); if both are present they must agree.
fn dtype(f: &Fields) -> Result<Dtype, HfError> {
    let new = f.opt_str("dtype")?.map(|v| ("dtype", v));
    let old = f.opt_str("torch_dtype")?.map(|v| ("torch_dtype", v));
    if let (Some((_, a)), Some((_, b))) = (new, old) {
        if a != b {
            return Err(f.invalid("dtype", format!("{a:?}"), format!("the same as `torch_dtype` ({b:?})")));
        }
    }
    let Some((field, value)) = new.or(old) else {
        return Err(f.missing("dtype` / `torch_dtype", "\"float16\" or \"bfloat16\" in either field"));
    };
    match value {
        "float16" => Ok(Dtype::F16),
        "bfloat16" => Ok(Dtype::Bf16),
        "float32" => Err(HfError::UnsupportedDtype {
            origin: f.origin.to_string(),
            field: field.into(),
            value: format!("{value:?}"),
        }),
        other => Err(f.invalid(field, format!("{other:?}"), "\"float16\" or \"bfloat16\"".into())),
    }
}

/// `eos_token_id`: an integer, a list of integers, null, or absent.
fn eos_token_ids(f: &Fields) -> Result<Vec<u32>, HfError> {
    match f.get("eos_token_id") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                    f.invalid("eos_token_id", Value::Array(items.clone()).to_string(), "a list of token ids".into())
                })
            })
            .collect(),
        _ => Ok(f.opt_token("eos_token_id")?.into_iter().collect()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to the top-level fields, with errors that name the field.
/// An explicit `null` reads as absent, as transformers treats it.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    origin: &'a str,
}

impl<'a> Fields<'a> {
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn missing(&self, field: &str, expected: &str) -> HfError {
        HfError::MissingField { origin: self.origin.into(), field: field.into(), expected: expected.into() }
    }

    fn invalid(&self, field: &str, found: String, expected: String) -> HfError {
        HfError::InvalidField { origin: self.origin.into(), field: field.into(), found, expected }
    }

    fn unsupported(&self, field: &str, reason: &str) -> HfError {
        let value = self.map.get(field).map_or_else(|| "absent".into(), Value::to_string);
        HfError::UnsupportedArchitecture {
            origin: self.origin.into(),
            field: field.into(),
            value,
            reason: reason.into(),
        }
    }

    /// An object-valued field (absent or null: `None`).
    fn object(&self, field: &str) -> Result<Option<&'a Map<String, Value>>, HfError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.invalid(field, kind(v).into(), "an object or null".into())),
        }
    }

    fn opt_u64(&self, field: &str) -> Result<Option<u64>, HfError> {
        self.get(field)
            .map(|v| v.as_u64().ok_or_else(|| self.invalid(field, v.to_string(), "a non-negative integer".into())))
            .transpose()
    }

    /// A required integer from 1 to `max`: every size is bounded where it enters, so
    /// that no product of them can wrap (`max_position_embeddings = 2^62` once made
    /// the KV cache 0 bytes).
    fn bounded(&self, field: &str, max: u64) -> Result<u64, HfError> {
        match self.opt_u64(field)? {
            None => Err(self.missing(field, "an integer")),
            Some(n) if n == 0 || n > max => {
                Err(self.invalid(field, n.to_string(), format!("an integer from 1 to {max}")))
            }
            Some(n) => Ok(n),
        }
    }

    /// An architecture dimension: [`Fields::bounded`] by [`MAX_DIM`].
    fn dim(&self, field: &str) -> Result<u64, HfError> {
        self.bounded(field, MAX_DIM)
    }

    fn positive_f64(&self, field: &str) -> Result<Option<f64>, HfError> {
        self.get(field)
            .map(|v| match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => Ok(x),
                _ => Err(self.invalid(field, v.to_string(), "a positive number".into())),
            })
            .transpose()
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, HfError> {
        self.get(field)
            .map(|v| v.as_bool().ok_or_else(|| self.invalid(field, v.to_string(), "true or false".into())))
            .transpose()
    }

    fn opt_str(&self, field: &str) -> Result<Option<&'a str>, HfError> {
        self.get(field)
            .map(|v| v.as_str().ok_or_else(|| self.invalid(field, v.to_string(), "a string".into())))
            .transpose()
    }

    fn opt_token(&self, field: &str) -> Result<Option<u32>, HfError> {
        self.get(field)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| self.invalid(field, v.to_string(), "a token id (integer) or null".into()))
            })
            .transpose()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
