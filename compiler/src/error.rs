//! Everything `compile` can refuse, each naming what was wrong and what was expected.

use djinn_core::units::fmt_bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompileError {
    #[error("--host-compute all: no streamed block can run on the host (block {block} is streamed): {reason}")]
    NoHostLane { block: String, reason: &'static str },

    #[error("unknown GPU {name:?}: expected a preset ({valid}) or a profile file ending in .toml")]
    UnknownGpu { name: String, valid: String },

    /// A GPU profile file or preset that cannot be read or is invalid (the message names the file and field).
    #[error(transparent)]
    GpuProfile(#[from] djinn_core::gpu::GpuProfileError),

    /// `--model`: an unknown name, a model directory or a preset's
    /// `config.json` (the message names the file and field).
    #[error(transparent)]
    Model(#[from] djinn_core::model_presets::ModelArgError),

    #[error(
        "budget {} ({budget} B) exceeds the memory of GPU {gpu}: {} ({memory} B)",
        fmt_bytes(*budget),
        fmt_bytes(*memory)
    )]
    BudgetAboveMemory { budget: u64, gpu: String, memory: u64 },

    #[error("model {model} stores {dtype} weights; plans hold f16 or bf16 weights only (convert the checkpoint)")]
    Dtype { model: String, dtype: djinn_core::Dtype },

    #[error("{field} must be at least 1, got 0")]
    Zero { field: &'static str },

    #[error(
        "{what} of model {model} at --batch {} --prompt-len {} --max-seq-len {} would not fit a 64-bit byte count; \
         lower them",
        shape.batch,
        shape.prompt_len,
        shape.max_seq_len
    )]
    ShapeOverflow { what: &'static str, model: String, shape: djinn_core::plan::RunShape },

    #[error("--prompt-len {prompt_len} exceeds --max-seq-len {max_seq_len} (the KV cache could not hold the prompt)")]
    PromptTooLong { prompt_len: u64, max_seq_len: u64 },

    #[error(
        "budget {} ({budget} B) too small: needs at least {} ({needed} B) (KV cache {}, activations {}, \
         workspace {}, {slots} slots {}, embed/norm/head {}, executor reserve {}){kv_hint}",
        fmt_bytes(*budget),
        fmt_bytes(*needed),
        fmt_bytes(*kv_cache),
        fmt_bytes(*activations),
        fmt_bytes(*workspace),
        fmt_bytes(*slot_total),
        fmt_bytes(*fixed_blocks),
        fmt_bytes(*reserve)
    )]
    BudgetTooSmall {
        budget: u64,
        needed: u64,
        /// Device memory kept outside the arena for the executor ([`crate::RUNTIME_RESERVE_BYTES`]).
        reserve: u64,
        /// What the KV cache costs and what a shorter `--max-seq-len` would (starts with `; `), or empty.
        kv_hint: String,
        kv_cache: u64,
        activations: u64,
        workspace: u64,
        slots: u64,
        slot_total: u64,
        fixed_blocks: u64,
    },

    #[error("strategy {strategy} needs at least 2 layers to stream through 2 slots; model {model} has {layers}")]
    TooFewLayers { strategy: &'static str, model: String, layers: u64 },

    /// The verifier rejected a plan the compiler built: a bug in the compiler, not in the input.
    #[error("compiler bug: the emitted plan fails verification:\n{0}")]
    Verify(String),

    /// An internal invariant of the scheduler broke: a bug in the compiler.
    #[error("compiler bug: {0}")]
    Internal(String),
}
