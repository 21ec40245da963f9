//! `generation_config.json`: the end tokens and the default sampling a model
//! ships with. Optional; every field in it is too. A run's own flags win over
//! it; the executor uses its sampling values only where the user gave none,
//! and only when it says `do_sample` (as transformers' `generate` does), while
//! its end tokens join those of `config.json` (Llama 3 instruct models list
//! several here and one there).

use serde_json::Value;

use super::HfError;

/// What a `generation_config.json` says; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<u32>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

/// Parses `generation_config.json` text; `origin` (its path) is named in every error.
pub fn parse_generation_config(text: &str, origin: &str) -> Result<GenerationConfig, HfError> {
    let bad = |field: &str, found: &Value, expected: &str| HfError::GenerationField {
        origin: origin.to_string(),
        field: field.to_string(),
        found: found.to_string(),
        expected: expected.to_string(),
    };
    let value: Value =
        serde_json::from_str(text).map_err(|error| HfError::GenerationJson { origin: origin.to_string(), error })?;
    let Value::Object(map) = &value else { return Err(bad("(top level)", &value, "a JSON object")) };
    let get = |field: &str| map.get(field).filter(|v| !v.is_null());
    let number = |field: &str| -> Result<Option<f32>, HfError> {
        get(field)
            .map(|v| v.as_f64().filter(|x| x.is_finite()).map(|x| x as f32).ok_or_else(|| bad(field, v, "a number")))
            .transpose()
    };
    let token = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let eos_token_ids = match get("eos_token_id") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| token(v).ok_or_else(|| bad("eos_token_id", v, "a token id or a list of token ids")))
            .collect::<Result<_, _>>()?,
        Some(v) => vec![token(v).ok_or_else(|| bad("eos_token_id", v, "a token id or a list of token ids"))?],
    };
    let do_sample =
        get("do_sample").map(|v| v.as_bool().ok_or_else(|| bad("do_sample", v, "true or false"))).transpose()?;
    let top_k = get("top_k")
        .map(|v| v.as_u64().map(|k| k as usize).ok_or_else(|| bad("top_k", v, "a whole number >= 0")))
        .transpose()?;
    Ok(GenerationConfig {
        eos_token_ids,
        do_sample,
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        top_k,
        min_p: number("min_p")?,
        repetition_penalty: number("repetition_penalty")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_instruct_lists_several_end_tokens_and_samples() {
        let text = r#"{"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
                       "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"}"#;
        let g = parse_generation_config(text, "g.json").unwrap();
        assert_eq!(g.eos_token_ids, [128001, 128008, 128009]);
        assert_eq!((g.do_sample, g.temperature, g.top_p, g.top_k), (Some(true), Some(0.6), Some(0.9), None));
    }

    #[test]
    fn a_single_end_token_nulls_and_unknown_fields_are_fine() {
        let g = parse_generation_config(r#"{"eos_token_id": 2, "top_k": null, "use_cache": true}"#, "g.json").unwrap();
        assert_eq!((g.eos_token_ids, g.top_k, g.do_sample), (vec![2], None, None));
        assert_eq!(parse_generation_config("{}", "g.json").unwrap(), GenerationConfig::default());
    }

    #[test]
    fn bad_fields_name_the_file_the_field_and_what_was_expected() {
        for (text, field) in [
            (r#"{"eos_token_id": "two"}"#, "eos_token_id"),
            (r#"{"eos_token_id": [2, -1]}"#, "eos_token_id"),
            (r#"{"temperature": "hot"}"#, "temperature"),
            (r#"{"do_sample": 1}"#, "do_sample"),
            (r#"{"top_k": 1.5}"#, "top_k"),
        ] {
            let e = parse_generation_config(text, "dir/generation_config.json").unwrap_err().to_string();
            assert!(e.contains("dir/generation_config.json") && e.contains(field) && e.contains("expected"), "{e}");
        }
        let e = parse_generation_config("{", "g.json").unwrap_err().to_string();
        assert!(e.contains("generation_config.json at g.json") && e.contains("malformed"), "{e}");
    }
}
