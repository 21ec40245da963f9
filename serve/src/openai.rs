//! OpenAI's request and response shapes for `/v1/chat/completions` and
//! `/v1/completions`, and the checks that turn a request into a job.
//!
//! Requests are strict: a field this server does not know is a 400 that
//! names it, rather than a setting silently ignored. Everything the
//! official clients send for these endpoints is known: the fields a caller
//! passes (they send nothing else), `stream_options`, and fields that only
//! make sense here at their neutral value (`n` 1, penalties 0, no
//! logprobs), which are accepted at that value and refused otherwise.
//! `top_k`, `min_p` and `repetition_penalty` are extensions, as other
//! servers offer them (the clients pass them through `extra_body`).
//!
//! Sampling values a request does not give come from the model's
//! `generation_config.json`, exactly as `djinn-exec` without flags
//! ([`djinn_runtime::session::sampling`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use djinn_runtime::chat::Message;
use djinn_runtime::generate::{GenerateOptions, Sampling};
use djinn_runtime::session::{sampling, SamplingChoice};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{Done, Model};
use crate::error::ApiError;

/// Completions' `max_tokens` when a request names none (OpenAI's default);
/// chat's is the rest of the context.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u64 = 16;
/// Most stop strings a request may give.
pub const MAX_STOPS: usize = 16;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    /// OpenAI pads stream events against length side channels; this server does not. Accepted, ignored.
    pub include_obfuscation: Option<bool>,
}

/// A message's `content`: text, or a list of parts of which only text parts are understood.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    /// `null` for an assistant turn with nothing said.
    pub content: Option<Content>,
    /// A participant's name; accepted, not shown to the template.
    pub name: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub user: Option<String>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub logprobs: Option<bool>,
}

/// `prompt`: text, or token ids; a list of one of either.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub best_of: Option<u64>,
    pub user: Option<String>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub logprobs: Option<u64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
}

/// Parses a request body (already known to be UTF-8) into `T`: malformed
/// JSON, a wrong type and an unknown field are 400s, the last two naming the field.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    // Serde would read a struct from an array of its fields in order too; a request is an object.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("the request body is not a JSON object", None));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(format!("the request body is not valid JSON: {inner}"), None));
            }
            let message = inner.to_string();
            // The path names the field at fault (an unknown one included); "." is the body itself.
            let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next());
            let param = match (unknown, path.as_str()) {
                (Some(field), ".") => field.to_string(),
                (None, ".") => String::new(),
                (_, p) => p.to_string(),
            };
            let message = match unknown {
                Some(_) => format!("unknown field `{param}`: this server does not support it ({message})"),
                None if param.is_empty() => format!("invalid request: {message}"),
                None => format!("invalid `{param}`: {message}"),
            };
            return Err(ApiError::bad_request(message, (!param.is_empty()).then_some(param.as_str())));
        }
    };
    de.end().map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"), None))?;
    Ok(value)
}

/// What both endpoints share, once the prompt is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<(u64, &'static str)>,
    pub choice: SamplingChoice,
    pub seed_given: bool,
    pub stops: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatRequest {
    pub fn common(&self) -> Result<Common, ApiError> {
        neutral_f32("frequency_penalty", self.frequency_penalty, 0.0)?;
        neutral_f32("presence_penalty", self.presence_penalty, 0.0)?;
        if self.logprobs == Some(true) {
            return Err(unsupported("logprobs", "log-probabilities are not returned"));
        }
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => Some((m, "max_completion_tokens")),
            (None, Some(m)) => Some((m, "max_tokens")),
            (None, None) => None,
        };
        common(Fields {
            model: &self.model,
            max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            stop: &self.stop,
            seed: self.seed,
            stream: self.stream,
            stream_options: &self.stream_options,
            n: self.n,
        })
    }

    /// The conversation as the chat template sees it.
    pub fn messages(&self) -> Result<Vec<Message>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` is empty; give at least one message", Some("messages")));
        }
        let mut out = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => text.push_str(t),
                            ("text", None) => {
                                return Err(ApiError::bad_request(
                                    "a text part needs `text`",
                                    Some(&format!("messages[{i}].content[{j}].text")),
                                ))
                            }
                            (other, _) => {
                                return Err(ApiError::bad_request(
                                    format!("content part type {other:?} is not supported; this model reads text"),
                                    Some(&format!("messages[{i}].content[{j}].type")),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            out.push(Message { role: m.role.clone(), content });
        }
        Ok(out)
    }
}

impl CompletionRequest {
    pub fn common(&self) -> Result<Common, ApiError> {
        neutral_f32("frequency_penalty", self.frequency_penalty, 0.0)?;
        neutral_f32("presence_penalty", self.presence_penalty, 0.0)?;
        if self.best_of.is_some_and(|b| b != 1) {
            return Err(unsupported("best_of", "one completion is generated per request"));
        }
        if self.logprobs.is_some() {
            return Err(unsupported("logprobs", "log-probabilities are not returned"));
        }
        if self.echo == Some(true) {
            return Err(unsupported("echo", "the prompt is not echoed"));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(unsupported("suffix", "text after the insertion point is not supported"));
        }
        common(Fields {
            model: &self.model,
            max_tokens: self.max_tokens.map(|m| (m, "max_tokens")),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            stop: &self.stop,
            seed: self.seed,
            stream: self.stream,
            stream_options: &self.stream_options,
            n: self.n,
        })
    }

    /// The one prompt: text, or token ids given as they are.
    pub fn prompt(&self) -> Result<PromptInput, ApiError> {
        let one = "one prompt per request: this server runs batch 1";
        match &self.prompt {
            Prompt::Text(t) => Ok(PromptInput::Text(t.clone())),
            Prompt::Ids(ids) => Ok(PromptInput::Ids(ids.clone())),
            Prompt::Texts(v) if v.len() == 1 => Ok(PromptInput::Text(v[0].clone())),
            Prompt::IdLists(v) if v.len() == 1 => Ok(PromptInput::Ids(v[0].clone())),
            _ => Err(ApiError::bad_request(one, Some("prompt"))),
        }
    }
}

/// A completion's prompt before tokenizing.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    Text(String),
    Ids(Vec<u32>),
}

struct Fields<'a> {
    model: &'a Option<String>,
    max_tokens: Option<(u64, &'static str)>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    stop: &'a Option<Stop>,
    seed: Option<i64>,
    stream: Option<bool>,
    stream_options: &'a Option<StreamOptions>,
    n: Option<u64>,
}

fn unsupported(field: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("`{field}` is not supported here: {why}"), Some(field))
}

fn neutral_f32(field: &str, v: Option<f32>, neutral: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if x != neutral => Err(unsupported(field, &format!("only {neutral} (none) is"))),
        _ => Ok(()),
    }
}

fn common(f: Fields) -> Result<Common, ApiError> {
    if f.n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "one choice is generated per request (batch 1)"));
    }
    let range = |field: &str, ok: bool, v: f32, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("`{field}` is {v}; it must be {what}"), Some(field)))
        }
    };
    if let Some(t) = f.temperature {
        range("temperature", t.is_finite() && t >= 0.0, t, "a finite number >= 0 (0 is greedy)")?;
    }
    if let Some(p) = f.top_p {
        range("top_p", p > 0.0 && p <= 1.0, p, "in (0, 1] (1 keeps every token)")?;
    }
    if let Some(p) = f.min_p {
        range("min_p", (0.0..=1.0).contains(&p), p, "in [0, 1] (0 keeps every token)")?;
    }
    if let Some(r) = f.repetition_penalty {
        range("repetition_penalty", r.is_finite() && r > 0.0, r, "a finite number > 0 (1 is none)")?;
    }
    let top_k = match f.top_k {
        None => None,
        // -1 is how other servers say "no cut"; so is 0 here.
        Some(-1 | 0) => Some(0),
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ApiError::bad_request(
                format!("`top_k` is {k}; it must be >= 1, or 0 or -1 for no cut"),
                Some("top_k"),
            ))
        }
    };
    let stops = match f.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::bad_request(
            format!("{} stop strings; at most {MAX_STOPS} are accepted", stops.len()),
            Some("stop"),
        ));
    }
    let stream = f.stream.unwrap_or(false);
    if f.stream_options.is_some() && !stream {
        return Err(ApiError::bad_request("`stream_options` applies only with `stream: true`", Some("stream_options")));
    }
    Ok(Common {
        model: f.model.clone(),
        max_tokens: f.max_tokens,
        choice: SamplingChoice {
            temperature: f.temperature,
            top_p: f.top_p,
            top_k,
            min_p: f.min_p,
            repetition_penalty: f.repetition_penalty,
            seed: f.seed.map_or_else(fresh_seed, |s| s as u64),
        },
        seed_given: f.seed.is_some(),
        stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        stream,
        include_usage: f.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
    })
}

/// A seed for a request that names none: two unseeded requests sample differently.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    // SplitMix64's finaliser over the time and a counter.
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Common {
    /// The request's model must be the one served (a request that names none gets it).
    pub fn check_model(&self, model: &Model) -> Result<(), ApiError> {
        match &self.model {
            Some(m) if *m != model.id => Err(ApiError::not_found(
                format!("the model `{m}` does not exist here; this server serves `{}`", model.id),
                "model_not_found",
            )),
            _ => Ok(()),
        }
    }

    /// The generation for a prompt of `prompt` ids: its length against the
    /// context, `max_tokens` against what is left of it, and the sampling
    /// with the model's defaults filled in. `default_max` is the endpoint's
    /// `max_tokens` when the request names none (`None`: the rest of the context).
    pub fn options(
        &self,
        model: &Model,
        prompt: &[u32],
        prompt_param: &str,
        default_max: Option<u64>,
    ) -> Result<GenerateOptions, ApiError> {
        let len = prompt.len() as u64;
        let context = model.max_seq_len;
        if prompt.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty (not even a BOS token)", Some(prompt_param)));
        }
        if let Some((pos, &t)) = prompt.iter().enumerate().find(|(_, &t)| t as u64 >= model.vocab_size) {
            return Err(ApiError::bad_request(
                format!(
                    "token id {t} at prompt position {pos} is outside the model's vocabulary of {}",
                    model.vocab_size
                ),
                Some(prompt_param),
            ));
        }
        if len >= context {
            return Err(ApiError::context_length(
                format!(
                    "this model's maximum context length is {context} tokens (the plan's max_seq_len); the prompt \
                     is {len} tokens, which leaves no room to generate"
                ),
                prompt_param,
            ));
        }
        let room = context - len;
        let max_new_tokens = match self.max_tokens {
            Some((0, field)) => {
                return Err(ApiError::bad_request(format!("`{field}` is 0; it must be at least 1"), Some(field)))
            }
            Some((m, field)) if m > room => {
                return Err(ApiError::context_length(
                    format!(
                        "this model's maximum context length is {context} tokens; the prompt is {len} tokens and \
                         `{field}` asks for {m} more, so at most {room} fit"
                    ),
                    field,
                ))
            }
            Some((m, _)) => m,
            None => default_max.map_or(room, |d| d.min(room)),
        };
        let sampling: Sampling = sampling(&self.choice, &model.generation);
        // The request's values were checked field by field; what fails here came from the model's generation_config.json.
        sampling.check().map_err(|m| {
            ApiError::server(format!(
                "the model's generation_config.json gives sampling values that cannot be used: {m}"
            ))
        })?;
        Ok(GenerateOptions { max_new_tokens, sampling, stop_tokens: model.stop_tokens.clone() })
    }
}

/// A response id: `prefix-` and 24 hex digits, unique within the server's life.
pub fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:08x}{:016x}", std::process::id(), n)
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn usage(done: &Done) -> Value {
    json!({
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    })
}

/// Which endpoint a response is for: the shapes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// The fields every response and chunk of one request share.
#[derive(Debug, Clone)]
pub struct Header {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Header {
    pub fn new(kind: Kind, model: &str) -> Header {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Header { kind, id: response_id(prefix), created: unix_now(), model: model.to_string() }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn with(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The whole response of a request that did not stream.
    pub fn response(&self, text: &str, done: &Done) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": done.finish.as_str(),
            }),
            Kind::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": done.finish.as_str(),
            }),
        };
        let mut v = self.with(false, json!([choice]));
        v["usage"] = usage(done);
        v
    }

    /// A stream chunk: the assistant's role first (chat), then text, then the finish reason.
    pub fn chunk(&self, piece: Piece) -> Value {
        let (delta, finish) = match piece {
            Piece::Role => (json!({"role": "assistant", "content": ""}), None),
            Piece::Text(t) => (json!({"content": t}), None),
            Piece::Finish(f) => (json!({}), Some(f.as_str())),
        };
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}),
            Kind::Completion => json!({
                "index": 0,
                "text": delta.get("content").and_then(Value::as_str).unwrap_or(""),
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        self.with(true, json!([choice]))
    }

    /// The chunk after the last one when `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, done: &Done) -> Value {
        let mut v = self.with(true, json!([]));
        v["usage"] = usage(done);
        v
    }
}

/// What a stream chunk carries.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    Role,
    Text(&'a str),
    Finish(crate::engine::Finish),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let e = parse::<ChatRequest>(r#"{"messages": [], "temprature": 1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temprature"), "{e:?}");
        assert!(e.message.contains("unknown field `temprature`"), "{}", e.message);
        let e =
            parse::<ChatRequest>(r#"{"messages": [{"role": "user", "content": "x", "tool_calls": []}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls"), "{e:?}");
        let e = parse::<ChatRequest>(r#"{"messages": [], "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = parse::<ChatRequest>(r#"{"messages": [], "#).unwrap_err();
        assert!(e.param.is_none() && e.message.contains("not valid JSON"), "{e:?}");
        let e = parse::<ChatRequest>(r#"{"messages": []} x"#).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e:?}");
        let e = parse::<CompletionRequest>(r#"{"max_tokens": 3}"#).unwrap_err();
        assert!(e.message.contains("missing field `prompt`"), "{e:?}");
    }

    #[test]
    fn what_the_openai_client_sends_is_accepted() {
        let r: ChatRequest = parse(
            r#"{"messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
                "model": "m", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true},
                "stop": ["a", "b"], "seed": -3, "temperature": 0, "n": 1, "user": "u"}"#,
        )
        .unwrap();
        let c = r.common().unwrap();
        assert!(c.stream && c.include_usage && c.seed_given);
        assert_eq!(c.stops, ["a", "b"]);
        assert_eq!(c.choice.seed, (-3i64) as u64);
        assert_eq!(r.messages().unwrap()[1].content, "Hi there");
        let r: CompletionRequest = parse(r#"{"prompt": ["Once"], "stop": "x", "model": "m"}"#).unwrap();
        assert_eq!(r.prompt().unwrap(), PromptInput::Text("Once".into()));
        assert_eq!(r.common().unwrap().stops, ["x"]);
        let r: CompletionRequest = parse(r#"{"prompt": [1, 2, 3]}"#).unwrap();
        assert_eq!(r.prompt().unwrap(), PromptInput::Ids(vec![1, 2, 3]));
    }

    #[test]
    fn values_out_of_range_name_their_field() {
        let cases = [
            (r#"{"prompt": "x", "temperature": -1}"#, "temperature"),
            (r#"{"prompt": "x", "top_p": 0}"#, "top_p"),
            (r#"{"prompt": "x", "top_k": -2}"#, "top_k"),
            (r#"{"prompt": "x", "n": 2}"#, "n"),
            (r#"{"prompt": "x", "presence_penalty": 0.5}"#, "presence_penalty"),
            (r#"{"prompt": "x", "stream_options": {"include_usage": true}}"#, "stream_options"),
            (r#"{"prompt": ["a", "b"]}"#, "prompt"),
        ];
        for (body, field) in cases {
            let r: CompletionRequest = parse(body).unwrap();
            let e = r.common().and_then(|_| r.prompt().map(|_| ())).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{body}: {e:?}");
        }
    }
}
