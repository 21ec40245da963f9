//! The command line of `djinn-compile`, as a library function so that tests
//! exercise exactly what the binary does (argument parsing, errors, output).
//!
//! ```text
//! djinn-compile --gpu l4 --model llama2-13b -o plans/l4-llama2-13b.toml
//! djinn-compile --gpu h100-sxm --budget 22GiB --model path/to/hf-model-dir --prompt-len 512 --max-seq-len 4096 -o plan.toml
//! djinn-compile --gpu profile.toml --model llama2-70b --strategy sync -o sync.toml
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use djinn_core::fsio::{check_writable, write_atomic};
use djinn_core::plan::Strategy;
use djinn_core::units::parse_bytes;
use thiserror::Error;

use crate::{compile, CompileError, CompileRequest, HostCompute, Options, Units, DEFAULT_PROMPT_LEN};

#[derive(Parser, Debug)]
#[command(
    name = "djinn-compile",
    version,
    about = "Compile a model and a GPU into a verified execution plan (TOML).",
    long_about = "Compile a model and a GPU into a verified execution plan (TOML).\n\n\
                  Prints a summary on stderr and writes the plan to -o (stdout without it).",
    // `--batch -1` reaches the value parser, whose error names the flag.
    allow_negative_numbers = true
)]
pub struct Args {
    /// GPU preset (l4, t4, a10g, rtx4090, a100-40gb, a100-80gb, h100-pcie, h100-sxm, h200) or a profile file.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pub gpu: String,
    /// Model preset (llama2-7b, llama2-13b, llama2-70b, llama3-8b, mistral-7b, tinyllama-1.1b) or a Hugging Face model directory.
    #[arg(long, value_name = "NAME|DIR")]
    pub model: String,
    /// Device memory the plan may use (22GiB, 20000MB, bytes). Default: the GPU's usable memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_budget)]
    pub budget: Option<u64>,
    /// Prompt tokens prefill is sized and timed for.
    #[arg(long, default_value_t = DEFAULT_PROMPT_LEN)]
    pub prompt_len: u64,
    /// Positions the KV cache holds, or `max` for the model's maximum
    /// [default: --prompt-len + --max-new-tokens; capped at the model's max_position_embeddings].
    #[arg(long, value_parser = parse_seq_len, value_name = "N|max")]
    pub max_seq_len: Option<u64>,
    /// Tokens a run generates after its prompt: with --prompt-len, what the KV
    /// cache is sized for when --max-seq-len is not given.
    #[arg(long, default_value_t = crate::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: u64,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    #[arg(long, value_enum, default_value_t = StrategyArg::Djinn)]
    pub strategy: StrategyArg,
    /// Whether djinn may run streamed layers' decode steps on the host CPU
    /// (only with a GPU profile that has a `[cpu]` lane).
    #[arg(long, value_enum, default_value_t = HostComputeArg::Auto)]
    pub host_compute: HostComputeArg,
    /// The unit of residency and streaming: whole layers, each layer's
    /// attention and MLP halves, or its attention, gate/up and down blocks
    /// (only MLP blocks run on the host).
    #[arg(long, value_enum, default_value_t = UnitsArg::Auto)]
    pub units: UnitsArg,
    /// Whether prefill's first copies into the slots are warm: issued by the
    /// executor at load and between requests, off the TTFT path (`off`: at the
    /// start of every prefill, as the plan's list says).
    #[arg(long, value_enum, default_value_t = WarmSlotsArg::On, value_name = "on|off")]
    pub warm_slots: WarmSlotsArg,
    /// Device memory of the budget left outside the plan's arena for the
    /// executor's kernels and cuBLAS (bytes, or with a unit) [default: 128MiB].
    #[arg(long, value_parser = parse_budget, value_name = "BYTES")]
    pub runtime_reserve: Option<u64>,
    /// Where to write the plan (stdout without it).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Maximal residency, streamed layers prefetched as early as their slot frees.
    Djinn,
    /// Same residency, copies and computes never overlap (the baseline).
    Sync,
    /// Only embedding, final norm and LM head resident; every layer streamed.
    StreamAll,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Djinn => Strategy::Djinn,
            StrategyArg::Sync => Strategy::Sync,
            StrategyArg::StreamAll => Strategy::StreamAll,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostComputeArg {
    /// When the simulation predicts a faster decode.
    Auto,
    /// Never: every streamed layer is copied in decode.
    Off,
    /// Every streamed layer's decode step (tests and ablations).
    All,
}

impl From<HostComputeArg> for HostCompute {
    fn from(h: HostComputeArg) -> HostCompute {
        match h {
            HostComputeArg::Auto => HostCompute::Auto,
            HostComputeArg::Off => HostCompute::Off,
            HostComputeArg::All => HostCompute::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WarmSlotsArg {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnitsArg {
    /// All three, simulated; the fastest plan wins (ties to the coarser table).
    Auto,
    /// Whole layers.
    Layers,
    /// Attention and MLP halves.
    Split,
    /// Attention, gate/up (the MLP norm, gate and up) and down blocks.
    Fine,
}

impl From<UnitsArg> for Units {
    fn from(u: UnitsArg) -> Units {
        match u {
            UnitsArg::Auto => Units::Auto,
            UnitsArg::Layers => Units::Layers,
            UnitsArg::Split => Units::Split,
            UnitsArg::Fine => Units::Fine,
        }
    }
}

fn parse_seq_len(s: &str) -> Result<u64, String> {
    match s {
        "max" => Ok(crate::MODEL_MAX_SEQ_LEN),
        _ => s.parse().map_err(|_| format!("expected a number of positions or `max`, got {s:?}")),
    }
}

fn parse_budget(s: &str) -> Result<u64, String> {
    parse_bytes(s).map_err(|e| e.to_string())
}

impl Args {
    pub fn request(&self) -> CompileRequest {
        CompileRequest {
            gpu: self.gpu.clone(),
            model: self.model.clone(),
            options: Options {
                budget: self.budget,
                prompt_len: self.prompt_len,
                max_seq_len: self.max_seq_len,
                max_new_tokens: self.max_new_tokens,
                batch: self.batch,
                strategy: self.strategy.into(),
                host_compute: self.host_compute.into(),
                units: self.units.into(),
                warm_slots: self.warm_slots == WarmSlotsArg::On,
                runtime_reserve: self.runtime_reserve.unwrap_or(crate::RUNTIME_RESERVE_BYTES),
            },
        }
    }
}

/// What a successful run produced; the binary prints `summary` on stderr and,
/// without `-o`, `plan_toml` on stdout.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub summary: String,
    pub plan_toml: String,
    /// The file the plan was written to (`-o`).
    pub written_to: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum CliError {
    /// Bad arguments, or `--help` / `--version` (clap renders and exits).
    #[error("{0}")]
    Args(#[from] clap::Error),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("cannot write plan {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// The whole command: `args` includes the program name, as `std::env::args_os` gives it.
pub fn run<I, T>(args: I) -> Result<CliOutput, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(args)?;
    let write_err = |path: &PathBuf, error| CliError::Write { path: path.display().to_string(), error };
    if let Some(path) = &args.output {
        check_writable(path).map_err(|e| write_err(path, e))?;
    }
    let compiled = compile(&args.request())?;
    let plan_toml = compiled.plan.to_toml_string();
    if let Some(path) = &args.output {
        // Atomic: a failed write leaves the previous plan whole, never a partial one.
        write_atomic(path, plan_toml.as_bytes()).map_err(|e| write_err(path, e))?;
    }
    Ok(CliOutput { summary: compiled.summary, plan_toml, written_to: args.output })
}
