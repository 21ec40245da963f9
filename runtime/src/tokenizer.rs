//! Text ↔ token ids: the `tokenizers` crate on the checkpoint's
//! `tokenizer.json`, plus the two things it does not settle by itself.
//!
//! **BOS exactly once.** Whether a BOS token starts the prompt is decided by
//! `tokenizer_config.json` (`add_bos_token`, `bos_token`), but a Llama
//! `tokenizer.json` may *also* add it in its post-processor. So the prompt is
//! encoded without special tokens and BOS is prepended iff `add_bos_token`
//! says so; only when the config does not say is the post-processor's choice
//! taken as is.
//!
//! **Streaming.** Decoding token by token breaks words (SentencePiece's
//! leading-space marker is stripped at the start of a decode) and multi-byte
//! characters (byte-fallback tokens `<0xE2>` `<0x96>` `<0x81>` are only valid
//! UTF-8 together). [`TextStream`] decodes a small window of recent tokens
//! and emits only the new suffix, holding back text that ends in an
//! incomplete character (U+FFFD), as Hugging Face's text-generation-inference does.
//!
//! That is also what tokenizers' `Tokenizer::decode_stream` does, but
//! [`TextStream`] stays ours for three things it lacks (checked against
//! tokenizers 0.23): it starts from the prompt's last tokens, so the first
//! piece keeps the space that separates it from the prompt (`DecodeStream`
//! starts empty and strips it); it flushes what it holds back at the end
//! ([`TextStream::finish`]); and it carries on when a later byte-fallback
//! token turns text already emitted into an invalid sequence (`<0x41>` then
//! `<0x96>`), where `DecodeStream` fails with `InvalidPrefix` on every step
//! after — random-weight models generate such pairs.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("no tokenizer at {} (pass --tokenizer FILE, or put tokenizer.json in the weights directory)", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read tokenizer {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("tokenizer {} does not parse: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("cannot tokenize the prompt: {0}")]
    Encode(String),
    #[error("cannot decode token ids: {0}")]
    Decode(String),
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `Some(id)`: prepend this BOS; `None`: let the post-processor decide.
    bos: Option<Option<u32>>,
}

impl Tokenizer {
    /// Loads `file`, or `tokenizer.json` in `weights_dir`, and the
    /// `tokenizer_config.json` beside it (or in `weights_dir`).
    /// `config_bos` is `config.json`'s `bos_token_id`, the fallback BOS.
    pub fn load(weights_dir: &Path, file: Option<&Path>, config_bos: Option<u32>) -> Result<Tokenizer, TokenizerError> {
        let path = file.map(Path::to_path_buf).unwrap_or_else(|| weights_dir.join("tokenizer.json"));
        if !path.is_file() {
            return Err(TokenizerError::Missing { path });
        }
        // Read here, not by the tokenizers crate, so that a permission or I/O error is not reported as a parse error.
        let bytes = std::fs::read(&path).map_err(|error| TokenizerError::Read { path: path.clone(), error })?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| TokenizerError::Parse { path: path.clone(), message: e.to_string() })?;
        let beside = path.parent().map(|d| d.join("tokenizer_config.json"));
        let config = beside.filter(|p| p.is_file()).or_else(|| Some(weights_dir.join("tokenizer_config.json")));
        let bos = match config.filter(|p| p.is_file()) {
            Some(cfg) => read_bos(&cfg, &inner, config_bos)?,
            None => None,
        };
        Ok(Tokenizer { inner, bos })
    }

    /// The prompt's ids, with BOS first exactly once when the tokenizer's config asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = |special| {
            self.inner
                .encode(text, special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| TokenizerError::Encode(e.to_string()))
        };
        match self.bos {
            None => enc(true),
            Some(None) => enc(false),
            Some(Some(bos)) => Ok(std::iter::once(bos).chain(enc(false)?).collect()),
        }
    }

    /// The ids of text that spells out its own special tokens (a rendered
    /// chat template writes `bos_token` where it wants one): nothing added,
    /// the special tokens' text read as those tokens.
    pub fn encode_rendered(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, true).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// `Some(Some(id))`: add BOS `id`; `Some(None)`: add none; `None`: the config does not say.
fn read_bos(
    path: &Path,
    tok: &tokenizers::Tokenizer,
    config_bos: Option<u32>,
) -> Result<Option<Option<u32>>, TokenizerError> {
    let err = |message: String| TokenizerError::Config { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| err(format!("malformed JSON: {e}")))?;
    let add = match json.get("add_bos_token") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(err(format!("field `add_bos_token` is {other}; expected true or false"))),
    };
    if !add {
        return Ok(Some(None));
    }
    let named = match json.get("bos_token") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let id = match &named {
        Some(name) => Some(tok.token_to_id(name).ok_or_else(|| {
            err(format!("`bos_token` is {name:?}, which the tokenizer's vocabulary does not contain"))
        })?),
        None => config_bos,
    };
    let id = id.ok_or_else(|| {
        err("`add_bos_token` is true but neither `bos_token` nor config.json's bos_token_id names the BOS token".into())
    })?;
    Ok(Some(Some(id)))
}

/// Turns a stream of token ids into a stream of text pieces.
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the decoding window; the text of `ids[prefix..read]` was already emitted.
    prefix: usize,
    read: usize,
}

/// Tokens of context kept before the first new token.
const CONTEXT: usize = 4;

impl TextStream {
    /// A stream continuing `context` (the prompt): the first piece keeps the space that separates it from the prompt.
    pub fn new(context: &[u32]) -> TextStream {
        let keep = &context[context.len().saturating_sub(CONTEXT)..];
        TextStream { ids: keep.to_vec(), prefix: 0, read: keep.len() }
    }

    /// Adds `id`; returns the text it completes, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let piece = suffix_after(&now, &before);
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(piece))
    }

    /// Whatever is held back (an incomplete character at the very end).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<Option<String>, TokenizerError> {
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok((now.len() > before.len()).then(|| suffix_after(&now, &before)))
    }
}

/// `now` minus its first `before.len()` bytes, at a character boundary.
fn suffix_after(now: &str, before: &str) -> String {
    let mut at = before.len().min(now.len());
    while !now.is_char_boundary(at) {
        at -= 1;
    }
    now[at..].to_string()
}
