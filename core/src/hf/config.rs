//! `config.json` → [`HfConfig`], as transformers 4.x and 5.x both write it.
//!
//! The two versions differ in small ways that matter: 5.x moved `rope_theta`
//! into `rope_parameters` and renamed `torch_dtype` to `dtype`. Anything the
//! forward pass does not implement (scaled RoPE, biases, other activations,
//! a sliding window shorter than the context) is refused here, by name, rather
//! than producing a plan for a model we would run wrongly. Defaults are applied
//! only where transformers' own default is the only sensible reading
//! (`num_key_value_heads`, `head_dim`, `tie_word_embeddings`, `rope_theta`);
//! `rms_norm_eps` is required because a silently wrong epsilon still runs.

use serde_json::{Map, Value};

use super::HfError;
use crate::limits::{MAX_DIM, MAX_LAYERS};
use crate::model::{Architecture, Dtype};

/// What `config.json` says about a Llama-family model.
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
    check_supported(&f)?;

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
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(f.invalid(
                "hidden_size",
                hidden_size.to_string(),
                format!("a multiple of num_attention_heads ({num_heads}) when `head_dim` is absent"),
            ))
        }
    };
    let arch = Architecture {
        family: "llama".into(),
        hidden_size,
        intermediate_size: f.dim("intermediate_size")?,
        num_layers: f.bounded("num_hidden_layers", MAX_LAYERS)?,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size: f.dim("vocab_size")?,
        rope_theta: rope_theta(&f)?,
        rms_norm_eps: f.positive_f64("rms_norm_eps")?.ok_or_else(|| f.missing("rms_norm_eps", "a positive number"))?,
        max_position_embeddings: f.dim("max_position_embeddings")?,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
    };
    check_sliding_window(&f, arch.max_position_embeddings)?;
    Ok(HfConfig {
        arch,
        dtype: dtype(&f)?,
        bos_token_id: f.opt_token("bos_token_id")?,
        eos_token_ids: eos_token_ids(&f)?,
    })
}

/// Refuses what the Llama forward pass does not implement.
fn check_supported(f: &Fields) -> Result<(), HfError> {
    let model_type = f.opt_str("model_type")?.ok_or_else(|| f.missing("model_type", "\"llama\" or \"mistral\""))?;
    if model_type != "llama" && model_type != "mistral" {
        return Err(f.unsupported("model_type", "only \"llama\" and \"mistral\" (Llama-shaped) models are supported"));
    }
    if let Some(act) = f.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(f.unsupported("hidden_act", "only \"silu\" is supported"));
        }
    }
    for field in ["attention_bias", "mlp_bias"] {
        if f.opt_bool(field)? == Some(true) {
            return Err(f.unsupported(field, "projections with biases are not supported"));
        }
    }
    match f.get("rope_scaling") {
        None => {}
        Some(Value::Object(s)) if is_default_rope(s) => {}
        Some(_) => return Err(f.unsupported("rope_scaling", "only unscaled RoPE is supported")),
    }
    Ok(())
}

/// `{"rope_type": "default"}` (or the older `{"type": "default"}`) means no scaling.
fn is_default_rope(s: &Map<String, Value>) -> bool {
    match s.get("rope_type").or_else(|| s.get("type")) {
        None | Some(Value::Null) => true,
        Some(t) => t == "default",
    }
}

/// `rope_parameters.rope_theta` (5.x), else top-level `rope_theta` (4.x), else 10000.
fn rope_theta(f: &Fields) -> Result<f64, HfError> {
    let top = f.positive_f64("rope_theta")?;
    let Some(params) = f.get("rope_parameters") else { return Ok(top.unwrap_or(DEFAULT_ROPE_THETA)) };
    let Value::Object(p) = params else {
        return Err(f.invalid("rope_parameters", kind(params).into(), "an object".into()));
    };
    if !is_default_rope(p) || p.values().any(Value::is_object) {
        return Err(f.unsupported("rope_parameters", "only unscaled RoPE (`rope_type` \"default\") is supported"));
    }
    let inner = match p.get("rope_theta") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if t > 0.0 && t.is_finite() => Some(t),
            _ => return Err(f.invalid("rope_parameters.rope_theta", v.to_string(), "a positive number".into())),
        },
    };
    match (inner, top) {
        (Some(a), Some(b)) if a != b => Err(f.invalid(
            "rope_parameters.rope_theta",
            a.to_string(),
            format!("the same value as top-level `rope_theta` ({b})"),
        )),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Ok(DEFAULT_ROPE_THETA),
    }
}

/// Mistral's sliding window changes attention unless it covers the whole context.
fn check_sliding_window(f: &Fields, max_pos: u64) -> Result<(), HfError> {
    match f.opt_u64("sliding_window")? {
        Some(w) if w < max_pos => Err(f.unsupported(
            "sliding_window",
            &format!("sliding-window attention shorter than max_position_embeddings ({max_pos}) is not supported"),
        )),
        _ => Ok(()),
    }
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
