//! The command line of `djinn-exec`, as a library function so that tests run
//! exactly what the binary runs (argument parsing, errors, output).
//!
//! ```text
//! djinn-exec plan.toml --weights DIR [--tokenizer tokenizer.json] --prompt "Once upon a time" \
//!     --max-new-tokens 64 [--temperature 0.7 --top-p 0.9 --seed 1] [--backend cpu|cuda] \
//!     [--json metrics.json] [--replay in-order|adversarial] [--enforce-budget] [--trace trace.json]
//! djinn-exec plan.toml --weights DIR --interactive [--system "Be brief."] < messages.txt
//! ```
//!
//! Order of work: read and verify the plan (cheap, and a bad plan should not
//! cost a weight load), check the weights against it, tokenize, build the
//! backend, generate while streaming text to stdout, then the report on
//! stderr (and `--json`). `--interactive` loops over the last two steps, one
//! turn per message read from stdin ([`crate::interactive`]).

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use djinn_core::fsio::{check_writable, write_atomic};
use djinn_core::plan::{Plan, PlanIoError};
use thiserror::Error;

use crate::backend::Backend;
use crate::chat::{ChatError, ChatTemplate, Message};
use crate::cpu::{AdversarialCpu, CpuBackend, CpuError};
use crate::cuda::{CudaBackend, CudaError, CudaOptions};
use crate::generate::{generate_continuing, Flow, GenerateError, GenerateOptions, Generation, StopReason};
use crate::interactive::{converse, Chat, LoopError, Reply, TurnReport};
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
    // Exactly one of --prompt, --prompt-ids, --chat and --interactive; the usage line shows them as alternatives.
    group(clap::ArgGroup::new("input").required(true).args(["prompt", "prompt_ids", "chat", "interactive"]))
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
    /// A conversation read from stdin: one user message per line (a line ending in
    /// a backslash continues on the next), each answered with the whole history
    /// through the chat template, the reply streamed to stdout and kept in the
    /// history. `/reset` clears the history, `/exit` or end of input (Ctrl-D)
    /// ends. The KV cache carries over between turns: only the tokens after what
    /// it already holds are prefilled. --max-new-tokens is per reply; a message
    /// that would take the conversation past the plan's max_seq_len is not sent
    /// (the loop says so and goes on). Each turn's report is one line on stderr;
    /// --json writes one JSON object per turn, one per line.
    #[arg(long, group = "input", verbatim_doc_comment)]
    pub interactive: bool,
    /// With --chat or --interactive: the system message before the conversation.
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
    /// Write the run's metrics as JSON here (with --interactive, JSON Lines: one
    /// object per turn, rewritten after each).
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
    #[error("cannot read the conversation from stdin: {0}")]
    Stdin(std::io::Error),
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

/// Where `--interactive` reads its messages.
pub struct Stdin<'a> {
    pub input: &'a mut dyn BufRead,
    /// The input is a terminal: a hint and prompt markers go to stderr. Piped,
    /// nothing but each turn's report line is added, so output stays scriptable.
    pub terminal: bool,
}

/// What a run produced.
#[derive(Debug)]
pub enum Outcome {
    /// `--prompt`, `--prompt-ids` or `--chat`: one generation (boxed: a report is large beside a `Vec`).
    Once(Box<Report>),
    /// `--interactive`: each turn's record, in order.
    Chat(Vec<TurnReport>),
}

/// Parses `argv` (program name first) and runs one generation; text goes to
/// `stdout`, the report to `stderr`. `--interactive` needs stdin: see [`run_with_stdin`].
pub fn run<I, T>(argv: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<Report, ExecError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(argv)?;
    match execute(&args, None, stdout, stderr)? {
        Outcome::Once(report) => Ok(*report),
        Outcome::Chat(_) => unreachable!("execute refuses --interactive without stdin"),
    }
}

/// What the `djinn-exec` binary runs: [`run`], and `--interactive` reading `stdin`.
pub fn run_with_stdin<I, T>(
    argv: I,
    stdin: Stdin,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Outcome, ExecError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(argv)?;
    execute(&args, Some(stdin), stdout, stderr)
}

/// What a backend is asked to do.
enum Job<'a> {
    Once(Vec<u32>),
    Chat { template: ChatTemplate, stdin: Stdin<'a> },
}

/// What every backend's run shares.
struct Ctx<'a> {
    plan: &'a Plan,
    replay: &'a Replay,
    opts: &'a GenerateOptions,
    tokenizer: Option<&'a Tokenizer>,
    stops: &'a [String],
    system: Option<&'a str>,
    json: Option<&'a Path>,
}

fn execute(
    args: &Args,
    stdin: Option<Stdin>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Outcome, ExecError> {
    if args.system.is_some() && args.chat.is_none() && !args.interactive {
        return Err(ExecError::Usage(
            "--system is the system message of a --chat or --interactive conversation; give one of those too".into(),
        ));
    }
    if args.interactive && stdin.is_none() {
        return Err(ExecError::Usage(
            "--interactive reads its messages from stdin, which this entry point does not have \
             (exec::run_with_stdin has)"
                .into(),
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
    let (tokenizer, job) = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => {
            let tok = Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?;
            let ids = tok.encode(text)?;
            (Some(tok), Job::Once(ids))
        }
        (None, None) if args.chat.is_some() => {
            let tok = Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?;
            let chat = ChatTemplate::load(&args.weights).map_err(ExecError::Chat)?;
            let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
            messages.extend(args.chat.iter().map(|c| Message::new("user", c)));
            let text = chat.render(&messages, true).map_err(ExecError::Chat)?;
            let ids = tok.encode_rendered(&text)?;
            (Some(tok), Job::Once(ids))
        }
        (None, None) if args.interactive => {
            let tok = Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?;
            let template = ChatTemplate::load(&args.weights).map_err(ExecError::Chat)?;
            let stdin = stdin.expect("checked above");
            (Some(tok), Job::Chat { template, stdin })
        }
        (None, Some(path)) => {
            let has_tokenizer = args.tokenizer.is_some() || args.weights.join("tokenizer.json").is_file();
            let tok = if has_tokenizer {
                Some(Tokenizer::load(&args.weights, args.tokenizer.as_deref(), bos)?)
            } else {
                None
            };
            (tok, Job::Once(read_prompt_ids(path)?))
        }
        (None, None) => unreachable!("clap requires --prompt, --prompt-ids, --chat or --interactive"),
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
    let ctx = Ctx {
        plan: &plan,
        replay: &replay,
        opts: &opts,
        tokenizer: tokenizer.as_ref(),
        stops: &args.stop,
        system: args.system.as_deref(),
        json: args.json.as_deref(),
    };
    let mut outcome = match (args.backend, args.replay) {
        (BackendArg::Cpu, ReplayArg::InOrder) => {
            work(&ctx, &mut CpuBackend::new(&plan, &weights)?, job, stdout, stderr)?
        }
        (BackendArg::Cpu, ReplayArg::Adversarial) => {
            work(&ctx, &mut AdversarialCpu::new(&plan, &weights)?, job, stdout, stderr)?
        }
        (BackendArg::Cuda, _) => {
            let cuda_opts = CudaOptions {
                enforce_budget: args.enforce_budget,
                trace: args.trace.clone(),
                device: args.device,
                ..CudaOptions::default()
            };
            let mut b = CudaBackend::new(&plan, &weights, &cuda_opts)?;
            let mut outcome = work(&ctx, &mut b, job, stdout, stderr)?;
            // Also what writes --trace (over the whole conversation, with --interactive).
            let m = b.metrics()?;
            if let Outcome::Once(report) = &mut outcome {
                report.device = Some(serde_json::json!({
                    "device": m.device,
                    "prefill_device_ms": m.prefill_device_ms,
                    "decode_device_ms_per_token": m.decode_device_ms_per_token,
                    "copy_gbps": m.copy_gbps,
                    "prefill_copy_busy": m.prefill_copy_busy,
                    "decode_copy_busy": m.decode_copy_busy,
                    "warm_copy_bytes": m.warm_copy_bytes,
                    "warm_copy_ms": m.warm_copy_ms,
                    "arena_bytes": m.arena_bytes,
                    "ballast_bytes": m.ballast_bytes,
                    "pinned_bytes": m.pinned_bytes,
                    "decode_graph": m.decode_graph,
                    "decode_graph_replays": m.decode_graph_replays,
                }));
            }
            outcome
        }
    };
    if let Outcome::Once(report) = &mut outcome {
        let _ = write!(stderr, "{}", report.render());
        if let Some(path) = &args.json {
            let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
            write_atomic(path, (json + "\n").as_bytes())
                .map_err(|error| ExecError::Write { path: path.clone(), error })?;
        }
    }
    Ok(outcome)
}

/// Runs `job` on `backend`: one generation, or the conversation.
fn work<B: Backend>(
    ctx: &Ctx,
    backend: &mut B,
    job: Job,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Outcome, ExecError>
where
    ExecError: From<B::Error>,
{
    // The warm copies land before the first request, as they do between requests.
    ctx.replay.warm_at_load(backend).map_err(GenerateError::from)?;
    let (template, stdin) = match job {
        Job::Once(prompt) => {
            let io = Io { tokenizer: ctx.tokenizer, stdout, stops: ctx.stops };
            let (gen, text) = drive(ctx.replay, backend, &prompt, 0, ctx.opts, io)?;
            let mut report = Report::new(ctx.plan, &gen, backend.describe(), backend.peak_device_bytes());
            report.text = text;
            return Ok(Outcome::Once(Box::new(report)));
        }
        Job::Chat { template, stdin } => (template, stdin),
    };
    let tokenizer = ctx.tokenizer.expect("--interactive loads the tokenizer");
    let chat = Chat {
        template: &template,
        tokenizer,
        system: ctx.system,
        max_seq_len: ctx.plan.shape.max_seq_len,
        terminal: stdin.terminal,
    };
    let mut turns = Vec::new();
    // --json: one line per turn, the file rewritten whole after each (never half a line).
    let mut lines = String::new();
    let reply = |prompt: &[u32], cached: usize| -> Result<Reply, ExecError> {
        let io = Io { tokenizer: Some(tokenizer), stdout: &mut *stdout, stops: ctx.stops };
        let (generation, text) = drive(ctx.replay, &mut *backend, prompt, cached, ctx.opts, io)?;
        let report = Report::new(ctx.plan, &generation, backend.describe(), backend.peak_device_bytes());
        Ok(Reply { generation, text: text.unwrap_or_default(), report })
    };
    let done = |turn: TurnReport, stderr: &mut dyn Write| -> Result<(), ExecError> {
        let _ = writeln!(stderr, "{}", turn.summary());
        if let Some(path) = ctx.json {
            lines.push_str(&serde_json::to_string(&turn).expect("a report always serializes"));
            lines.push('\n');
            write_atomic(path, lines.as_bytes())
                .map_err(|error| ExecError::Write { path: path.to_path_buf(), error })?;
        }
        turns.push(turn);
        Ok(())
    };
    converse(&chat, stdin.input, stderr, reply, done).map_err(|e| match e {
        LoopError::Chat(e) => ExecError::Chat(e),
        LoopError::Tokenizer(e) => ExecError::Tokenizer(e),
        LoopError::Read(error) => ExecError::Stdin(error),
        LoopError::Turn(e) => e,
    })?;
    Ok(Outcome::Chat(turns))
}

/// Where generated tokens go.
struct Io<'a> {
    tokenizer: Option<&'a Tokenizer>,
    stdout: &'a mut dyn Write,
    /// `--stop` strings (they need the tokenizer's text).
    stops: &'a [String],
}

/// Generates on `backend`, streaming text (or, without a tokenizer, token ids)
/// to stdout; the first `cached` tokens of `prompt` are in its KV cache.
fn drive<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    cached: usize,
    opts: &GenerateOptions,
    io: Io,
) -> Result<(Generation, Option<String>), ExecError>
where
    ExecError: From<B::Error>,
{
    let Io { tokenizer, stdout, stops } = io;
    let mut text = tokenizer.map(|tok| TextOut::new(tok, prompt, stops));
    let mut decode_error = None;
    let gen = generate_continuing(replay, backend, prompt, cached, opts, |e| {
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
