//! The command line of `djinn-exec`, as a library function so that tests run
//! exactly what the binary runs (argument parsing, errors, output).
//!
//! ```text
//! djinn-exec plan.toml --weights DIR [--tokenizer tokenizer.json] --prompt "Once upon a time" \
//!     --max-new-tokens 64 [--temperature 0.7 --top-p 0.9 --seed 1] [--backend cpu|cuda] \
//!     [--json metrics.json] [--replay in-order|adversarial] [--enforce-budget] [--trace trace.json]
//! ```
//!
//! Order of work: read and verify the plan (cheap, and a bad plan should not
//! cost a weight load), check the weights against it, tokenize, build the
//! backend, generate while streaming text to stdout, then the report on
//! stderr (and `--json`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use djinn_core::fsio::{check_writable, write_atomic};
use djinn_core::plan::PlanIoError;
use thiserror::Error;

use crate::backend::Backend;
use crate::chat::{ChatError, ChatTemplate, Message};
use crate::cpu::{AdversarialCpu, CpuBackend, CpuError};
use crate::cuda::{CudaBackend, CudaError, CudaOptions};
use crate::generate::{generate, Flow, GenerateError, GenerateOptions, Generation, StopReason};
use crate::replay::{Replay, ReplayError};
use crate::report::Report;
use crate::session::{self, SamplingChoice, SessionError, TextOut};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::{Weights, WeightsError};

#[derive(Parser, Debug)]
#[command(
    name = "djinn-exec",
    version,
    about = "Replay a Djinn plan: generate text with a model on a GPU (or the CPU).",
    // `--temperature -1` reaches the value check (an error naming the flag and
    // the valid range), not the parser's "unexpected argument '-1'".
    allow_negative_numbers = true,
    // Exactly one of --prompt, --prompt-ids and --chat; the usage line shows them as alternatives.
    group(clap::ArgGroup::new("input").required(true).args(["prompt", "prompt_ids", "chat"]))
)]
pub struct Args {
    /// The plan written by djinn-compile.
    pub plan: PathBuf,
    /// The Hugging Face model directory the plan was compiled for.
    #[arg(long, value_name = "DIR")]
    pub weights: PathBuf,
    /// tokenizer.json to use [default: the one in --weights].
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// The prompt text (BOS added as the tokenizer's config says); or --prompt-ids.
    #[arg(long, group = "input")]
    pub prompt: Option<String>,
    /// A file of whitespace-separated token ids, used as they are (BOS included if wanted); or --prompt.
    #[arg(long, value_name = "FILE", group = "input")]
    pub prompt_ids: Option<PathBuf>,
    /// A user message, sent through the model's chat template (tokenizer_config.json's
    /// chat_template) with the assistant's turn opened; or --prompt.
    #[arg(long, value_name = "TEXT", group = "input")]
    pub chat: Option<String>,
    /// With --chat: the system message before it.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Tokens to generate after the prompt (fewer if an end-of-sequence token comes first).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: u64,
    /// Sampling temperature, a finite number >= 0; 0 is greedy [default: the
    /// model's generation_config.json when it says do_sample, else 0].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling, in (0, 1]: keep the most likely tokens up to this
    /// probability mass [default: generation_config.json's when it samples, else 1].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens; 0 keeps all [default: generation_config.json's
    /// when it samples (transformers' 50 if it names none), else 0].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep only tokens at least this fraction as likely as the most likely, in [0, 1]
    /// [default: generation_config.json's when it samples, else 0].
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Divide the positive logits of tokens already in the sequence by this (multiply
    /// negative ones); 1 is none [default: generation_config.json's, else 1].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Seed of the sampler (with --temperature > 0): the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the plan runs: the CPU twins, or a CUDA GPU.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    /// Write the run's metrics as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// in-order, or adversarial: a CPU test mode that respects only the plan's declared events.
    #[arg(long, value_enum, default_value_t = ReplayArg::InOrder)]
    pub replay: ReplayArg,
    /// CUDA: first take all free device memory beyond the plan's budget.
    #[arg(long)]
    pub enforce_budget: bool,
    /// CUDA: write a Chrome/Perfetto trace of both lanes here.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Keep generating past an end-of-sequence token (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Stop when the generated text contains this string (repeatable); the
    /// text is printed up to it, without it.
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
}

impl Args {
    /// The sampling flags given; what is not given comes from the model
    /// ([`session::sampling`]).
    pub fn sampling_choice(&self) -> SamplingChoice {
        SamplingChoice {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayArg {
    InOrder,
    Adversarial,
}

/// Everything `djinn-exec` can refuse. Each message is complete on its own
/// (inner errors are formatted into it, not chained as sources), so
/// `{:#}` prints every cause exactly once.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("{0}")]
    Args(clap::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Plan(PlanIoError),
    #[error("refusing to run plan {}: {error}", path.display())]
    Replay { path: PathBuf, error: ReplayError },
    /// Boxed: a checkpoint's errors carry paths and tensor names, and every
    /// `Result` here would otherwise be as large.
    #[error("{0}")]
    Weights(Box<WeightsError>),
    #[error("{0}")]
    GenerationConfig(djinn_core::hf::HfError),
    #[error("{0}")]
    Chat(ChatError),
    #[error("{0}")]
    Tokenizer(TokenizerError),
    #[error("prompt ids file {}: {message}", path.display())]
    PromptIds { path: PathBuf, message: String },
    #[error("CPU backend: {0}")]
    Cpu(CpuError),
    #[error("CUDA backend: {0}")]
    Cuda(CudaError),
    #[error("{0}")]
    Generate(GenerateError),
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for ExecError {
            fn from(e: $t) -> ExecError {
                ExecError::$v(e)
            }
        }
    )*};
}
from!(clap::Error => Args, PlanIoError => Plan, TokenizerError => Tokenizer,
      CpuError => Cpu, CudaError => Cuda, GenerateError => Generate);

impl From<WeightsError> for ExecError {
    fn from(e: WeightsError) -> ExecError {
        ExecError::Weights(Box::new(e))
    }
}

impl From<SessionError> for ExecError {
    fn from(e: SessionError) -> ExecError {
        match e {
            SessionError::Plan(e) => ExecError::Plan(e),
            SessionError::Replay { path, error } => ExecError::Replay { path, error },
            SessionError::Weights(e) => ExecError::Weights(e),
            SessionError::GenerationConfig(e) => ExecError::GenerationConfig(e),
        }
    }
}

/// Parses `argv` (program name first) and runs; text goes to `stdout`, the report to `stderr`.
pub fn run<I, T>(argv: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<Report, ExecError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(argv)?;
    if args.system.is_some() && args.chat.is_none() {
        return Err(ExecError::Usage(
            "--system is the system message of a --chat conversation; give --chat too".into(),
        ));
    }
    if args.backend == BackendArg::Cuda && args.replay == ReplayArg::Adversarial {
        return Err(ExecError::Usage("--replay adversarial is a CPU test mode; use it with --backend cpu".into()));
    }
    if args.backend == BackendArg::Cpu && (args.enforce_budget || args.trace.is_some()) {
        return Err(ExecError::Usage("--enforce-budget and --trace apply to --backend cuda only".into()));
    }
    let generation = session::generation_config(&args.weights).map_err(ExecError::GenerationConfig)?;
    let sampling = session::sampling(&args.sampling_choice(), &generation);
    sampling.check().map_err(ExecError::Usage)?;
    // Outputs are checked before the run, so a long generation does not end in "cannot write".
    for path in args.json.iter().chain(&args.trace) {
        check_writable(path).map_err(|error| ExecError::Write { path: path.clone(), error })?;
    }
    let (plan, replay) = session::load_plan(&args.plan)?;
    let weights = Weights::open(&args.weights, &plan)?;
    let bos = weights.config().bos_token_id;
    let (tokenizer, prompt) = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => {
            let tok = Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?;
            let ids = tok.encode(text)?;
            (Some(tok), ids)
        }
        (None, None) if args.chat.is_some() => {
            let tok = Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?;
            let chat = ChatTemplate::load(&args.weights).map_err(ExecError::Chat)?;
            let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
            messages.extend(args.chat.iter().map(|c| Message::new("user", c)));
            let text = chat.render(&messages, true).map_err(ExecError::Chat)?;
            let ids = tok.encode_rendered(&text)?;
            (Some(tok), ids)
        }
        (None, Some(path)) => {
            let has_tokenizer = args.tokenizer.is_some() || args.weights.join("tokenizer.json").is_file();
            let tok = if has_tokenizer {
                Some(Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?)
            } else {
                None
            };
            (tok, read_prompt_ids(path)?)
        }
        (None, None) => unreachable!("clap requires --prompt, --prompt-ids or --chat"),
    };
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_tokens: if args.ignore_eos {
            Vec::new()
        } else {
            session::stop_tokens(&weights.config().eos_token_ids, &generation)
        },
    };
    if !args.stop.is_empty() && tokenizer.is_none() {
        return Err(ExecError::Usage(
            "--stop needs the generated text: give a tokenizer (--tokenizer, or tokenizer.json in --weights)".into(),
        ));
    }
    let io = Io { tokenizer: tokenizer.as_ref(), stdout, stops: &args.stop };
    let (gen, text, name, peak, device) = match (args.backend, args.replay) {
        (BackendArg::Cpu, ReplayArg::InOrder) => {
            let mut b = CpuBackend::new(&plan, &weights)?;
            let (gen, text) = drive(&replay, &mut b, &prompt, &opts, io)?;
            (gen, text, b.describe(), b.peak_device_bytes(), None)
        }
        (BackendArg::Cpu, ReplayArg::Adversarial) => {
            let mut b = AdversarialCpu::new(&plan, &weights)?;
            let (gen, text) = drive(&replay, &mut b, &prompt, &opts, io)?;
            (gen, text, b.describe(), b.peak_device_bytes(), None)
        }
        (BackendArg::Cuda, _) => {
            let cuda_opts =
                CudaOptions { enforce_budget: args.enforce_budget, trace: args.trace.clone(), device: args.device };
            let mut b = CudaBackend::new(&plan, &weights, &cuda_opts)?;
            let (gen, text) = drive(&replay, &mut b, &prompt, &opts, io)?;
            let m = b.metrics()?;
            let device = serde_json::json!({
                "device": m.device,
                "prefill_device_ms": m.prefill_device_ms,
                "decode_device_ms_per_token": m.decode_device_ms_per_token,
                "copy_gbps": m.copy_gbps,
                "prefill_copy_busy": m.prefill_copy_busy,
                "decode_copy_busy": m.decode_copy_busy,
                "arena_bytes": m.arena_bytes,
                "ballast_bytes": m.ballast_bytes,
                "pinned_bytes": m.pinned_bytes,
            });
            (gen, text, b.describe(), b.peak_device_bytes(), Some(device))
        }
    };
    let mut report = Report::new(&plan, &gen, name, peak);
    report.text = text;
    report.device = device;
    let _ = write!(stderr, "{}", report.render());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
        write_atomic(path, (json + "\n").as_bytes()).map_err(|error| ExecError::Write { path: path.clone(), error })?;
    }
    Ok(report)
}

/// Where generated tokens go.
struct Io<'a> {
    tokenizer: Option<&'a Tokenizer>,
    stdout: &'a mut dyn Write,
    /// `--stop` strings (they need the tokenizer's text).
    stops: &'a [String],
}

/// Generates on `backend`, streaming text (or, without a tokenizer, token ids) to stdout.
fn drive<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    opts: &GenerateOptions,
    io: Io,
) -> Result<(Generation, Option<String>), ExecError>
where
    ExecError: From<B::Error>,
{
    let Io { tokenizer, stdout, stops } = io;
    let mut text = tokenizer.map(|tok| TextOut::new(tok, prompt, stops));
    let mut decode_error = None;
    let gen = generate(replay, backend, prompt, opts, |e| {
        let mut flow = Flow::Continue;
        match &mut text {
            Some(text) => match text.push(e.token) {
                Ok((ready, stopped)) => {
                    stdout.write_all(ready.as_bytes())?;
                    if stopped {
                        flow = Flow::Stop;
                    }
                }
                Err(err) => decode_error = Some(err),
            },
            None => write!(stdout, "{} ", e.token)?,
        }
        stdout.flush()?;
        Ok(flow)
    })?;
    if let Some(err) = decode_error {
        return Err(err.into());
    }
    if let Some(text) = &mut text {
        let rest = text.finish(gen.stop == StopReason::Caller)?;
        let _ = stdout.write_all(rest.as_bytes());
    }
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    Ok((gen, text.map(|t| t.text().to_string())))
}

fn read_prompt_ids(path: &Path) -> Result<Vec<u32>, ExecError> {
    let err = |message: String| ExecError::PromptIds { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| w.parse::<u32>().map_err(|_| err(format!("item {i} is {w:?}; expected a token id (an integer)"))))
        .collect()
}
