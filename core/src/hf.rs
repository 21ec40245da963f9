//! Reading Hugging Face model directories: `config.json`, safetensors headers,
//! and the sharding index.
//!
//! Both sides of the contract need this and must agree: the compiler reads a
//! directory to get the architecture and the block table *without touching
//! tensor data* (a 70B checkpoint is 140 GB; its headers are a few hundred KB),
//! and the runtime reads the same directory to learn where each tensor's bytes
//! sit, so it can memory-map them into the packed block images. Hence the
//! split: [`parse_config`] turns `config.json` (as transformers 4.x or 5.x
//! writes it) into an [`Architecture`](crate::model::Architecture);
//! [`read_safetensors_header`] turns one `.safetensors` file into absolute byte
//! ranges, validated against the file's length so that a truncated download is
//! caught here rather than as a bus error inside an mmap; [`ModelDir::open`]
//! joins them and checks every tensor the forward pass needs against the
//! shape the config implies.
//!
//! The safetensors header is parsed here rather than with the `safetensors`
//! crate: the format is 8 bytes of length plus JSON, the crate would read (or
//! map) the whole file to validate it, and our errors must name the file, the
//! tensor and what was expected (`safetensors_header`'s doc has the details).
//!
//! Every error names the file it came from and the field or tensor at fault.

use std::path::PathBuf;

use thiserror::Error;

use crate::model::Dtype;

mod config;
mod dir;
mod generation;
mod safetensors_header;
#[cfg(test)]
mod test_support;

pub use config::{parse_config, HfConfig};
pub use dir::ModelDir;
pub use generation::{parse_generation_config, GenerationConfig};
pub use safetensors_header::{read_safetensors_header, TensorSource};

/// Everything reading a model directory can refuse.
#[derive(Debug, Error)]
pub enum HfError {
    #[error("cannot read {what} at {}: {error}", path.display())]
    Read { what: &'static str, path: PathBuf, error: std::io::Error },

    #[error(
        "{what} at {} is {}over the limit of {limit} bytes for a {what} (docs/plan-format.md, section Limits)",
        path.display(),
        size.map_or(String::new(), |s| format!("{s} bytes, "))
    )]
    TooLarge { what: &'static str, path: PathBuf, size: Option<u64>, limit: u64 },

    #[error("model directory {}: {problem}", dir.display())]
    Dir { dir: PathBuf, problem: String },

    #[error("config.json at {origin}: malformed JSON: {error}")]
    ConfigJson { origin: String, error: serde_json::Error },

    #[error("generation_config.json at {origin}: malformed JSON: {error}")]
    GenerationJson { origin: String, error: serde_json::Error },

    #[error("generation_config.json at {origin}: field `{field}` is {found}; expected {expected}")]
    GenerationField { origin: String, field: String, found: String, expected: String },

    #[error("config.json at {origin}: field `{field}` missing (expected {expected})")]
    MissingField { origin: String, field: String, expected: String },

    #[error("config.json at {origin}: field `{field}` is {found}; expected {expected}")]
    InvalidField { origin: String, field: String, found: String, expected: String },

    #[error("config.json at {origin}: unsupported architecture: `{field}` is {value}; {reason}")]
    UnsupportedArchitecture { origin: String, field: String, value: String, reason: String },

    #[error(
        "config.json at {origin}: unsupported dtype: `{field}` is {value}; only float16 and bfloat16 checkpoints \
         are supported (f32 checkpoints are not: convert the weights to float16 or bfloat16)"
    )]
    UnsupportedDtype { origin: String, field: String, value: String },

    #[error("safetensors file {}: {problem}", path.display())]
    Header { path: PathBuf, problem: String },

    #[error("safetensors file {}: tensor `{tensor}`: {problem}", path.display())]
    HeaderTensor { path: PathBuf, tensor: String, problem: String },

    #[error("index {}: {problem}", path.display())]
    Index { path: PathBuf, problem: String },

    #[error("index {} maps tensor `{tensor}` to shard {}, which does not exist", index.display(), shard.display())]
    MissingShard { index: PathBuf, shard: PathBuf, tensor: String },

    #[error("tensor `{tensor}` (block `{block}`) not found; searched {searched}")]
    MissingTensor { tensor: String, block: String, searched: String },

    #[error("tensor `{tensor}` in {}: shape {found:?}, expected {expected:?} (from config.json)", file.display())]
    WrongShape { tensor: String, file: PathBuf, expected: Vec<u64>, found: Vec<u64> },

    #[error(
        "tensor `{tensor}` in {}: stored as {found}, expected {expected} (the model dtype from config.json)",
        file.display()
    )]
    WrongDtype { tensor: String, file: PathBuf, expected: Dtype, found: Dtype },
}
