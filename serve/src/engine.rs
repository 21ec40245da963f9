//! The engine: one OS thread that owns the backend and runs requests one
//! at a time, at batch 1, in the order they arrived.
//!
//! A backend holds device state (CUDA streams, the arena) that is neither
//! shared nor moved between threads, and a plan runs one sequence at a
//! time, so the HTTP side never touches it: it hands the engine a [`Job`]
//! through a bounded FIFO queue (full: the request is refused, 429) and
//! reads [`Event`]s back through the job's own bounded channel.
//!
//! The engine must not be held hostage by a client. Every token it sends
//! checks the job's channel: closed (the client went away and its response
//! was dropped) stops the generation at that token; full for longer than
//! the stall timeout (the client stopped reading, and the socket's buffers
//! and the channel have filled) drops the request too. Either way the next
//! request runs.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use djinn_core::hf::GenerationConfig;
use djinn_runtime::backend::Backend;
use djinn_runtime::chat::{ChatError, ChatTemplate};
use djinn_runtime::cpu::CpuBackend;
use djinn_runtime::cuda::{CudaBackend, CudaOptions};
use djinn_runtime::exec::BackendArg;
use djinn_runtime::generate::{generate, Flow, GenerateOptions, StopReason};
use djinn_runtime::replay::Replay;
use djinn_runtime::session::{Session, TextOut};
use djinn_runtime::tokenizer::Tokenizer;
use tokio::sync::mpsc;

use crate::error::ServeError;
use crate::metrics::{Dropped, Metrics};

/// Events a job's channel holds before the engine waits for its reader.
pub const EVENTS_PER_JOB: usize = 16;

/// What the HTTP side needs to know about the model being served.
pub struct Model {
    /// The id clients name in `model` (the plan's model name by default).
    pub id: String,
    /// Unix seconds the server started (OpenAI's `created` of the model).
    pub created: u64,
    /// The plan's KV cache length: prompt and generated tokens together.
    pub max_seq_len: u64,
    pub vocab_size: u64,
    pub tokenizer: Tokenizer,
    /// The model's chat template, or why there is none (a base model).
    pub chat: Result<ChatTemplate, String>,
    pub generation: GenerationConfig,
    /// Tokens that end generation (config.json's and generation_config.json's).
    pub stop_tokens: Vec<u32>,
    /// The backend, as `djinn-exec`'s report names it.
    pub backend: String,
}

/// One request for the engine.
pub struct Job {
    /// The prompt's token ids, checked against the model (non-empty, within the context).
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// Stop strings: the text ends just before the first.
    pub stops: Vec<String>,
    /// Where the job's text goes.
    pub events: mpsc::Sender<Event>,
    /// When the request arrived, for time to first token.
    pub arrived: Instant,
}

/// What the engine says about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// More text (never empty).
    Text(String),
    /// The end; nothing follows.
    Done(Done),
    /// Generation failed; nothing follows.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
}

/// OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// `limit` jobs are already waiting.
    Full { limit: usize },
    /// The engine has stopped.
    Stopped,
}

/// The engine thread and its queue.
pub struct Engine {
    pub model: Arc<Model>,
    queue: Mutex<Option<SyncSender<Job>>>,
    limit: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

/// How the engine thread builds its backend.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub backend: BackendArg,
    pub cuda: CudaOptions,
    /// Waiting jobs allowed beside the running one.
    pub queue: usize,
    /// How long a full job channel may stay full.
    pub stall_timeout: Duration,
    pub model_id: Option<String>,
}

impl Engine {
    /// Loads the model (progress on stderr), builds the backend on the
    /// engine thread and returns once it is ready. `runtime` is the async
    /// runtime whose timers the engine waits on.
    pub fn start(
        plan: &Path,
        weights: &Path,
        tokenizer: Option<&Path>,
        opts: EngineOptions,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Engine, ServeError> {
        eprintln!("djinn-serve: reading and verifying plan {}", plan.display());
        let session = Session::open(plan, weights).map_err(|e| ServeError::Session(Box::new(e)))?;
        let config = session.weights.config();
        let tokenizer = Tokenizer::load(weights, tokenizer, config.bos_token_id).map_err(ServeError::Tokenizer)?;
        let chat = ChatTemplate::load(weights).map_err(|e| match e {
            ChatError::NoTemplate { path } => {
                format!("{}: the model ships no chat_template (a base model?)", path.display())
            }
            e => e.to_string(),
        });
        if let Err(why) = &chat {
            eprintln!("djinn-serve: /v1/chat/completions is off: {why}");
        }
        let id = opts.model_id.clone().unwrap_or_else(|| model_id(&session.plan.model.name, weights));
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut model = Model {
            id,
            created,
            max_seq_len: session.plan.shape.max_seq_len,
            vocab_size: session.plan.model.arch.vocab_size,
            tokenizer,
            chat,
            generation: session.generation.clone(),
            stop_tokens: session.stop_tokens(false),
            backend: String::new(),
        };
        eprintln!("djinn-serve: building the {:?} backend", opts.backend);
        let (ready_tx, ready_rx) = sync_channel::<Result<String, ServeError>>(1);
        let (queue_tx, queue_rx) = sync_channel::<Job>(opts.queue);
        // The model is shared once the backend is built; until then the
        // thread gets what it needs through this channel.
        let (model_tx, model_rx) = sync_channel::<Arc<Model>>(1);
        let ctx = Ctx { metrics: metrics.clone(), runtime, stall: opts.stall_timeout };
        let thread = std::thread::Builder::new()
            .name("djinn-engine".into())
            .spawn(move || engine_thread(session, opts.backend, opts.cuda, ready_tx, model_rx, queue_rx, ctx))
            .map_err(ServeError::Thread)?;
        let backend = match ready_rx.recv() {
            Ok(Ok(name)) => name,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ServeError::EngineGone);
            }
        };
        model.backend = backend;
        let model = Arc::new(model);
        model_tx.send(model.clone()).map_err(|_| ServeError::EngineGone)?;
        Ok(Engine {
            model,
            queue: Mutex::new(Some(queue_tx)),
            limit: opts.queue,
            thread: Mutex::new(Some(thread)),
            metrics,
        })
    }

    /// Queues `job` behind those waiting, or says why not.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = queue.as_ref() else { return Err(SubmitError::Stopped) };
        // Counted before it is sent, so that the engine's decrement never comes first.
        self.metrics.queued(1);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queued(-1);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full { limit: self.limit },
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// Closes the queue and waits for the engine to finish what it holds.
    pub fn stop(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The plan's model name, or the weights directory's name if the plan has none.
fn model_id(plan_name: &str, weights: &Path) -> String {
    if !plan_name.is_empty() {
        return plan_name.to_string();
    }
    weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

/// What the engine thread shares with the rest of the server.
struct Ctx {
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    stall: Duration,
}

fn engine_thread(
    session: Session,
    backend: BackendArg,
    cuda: CudaOptions,
    ready: SyncSender<Result<String, ServeError>>,
    model: Receiver<Arc<Model>>,
    queue: Receiver<Job>,
    ctx: Ctx,
) {
    // A panic here is a bug, and leaves the backend in an unknown state:
    // the server stops (the panic message is already on stderr) rather than
    // answer every later request with an error.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match backend {
        BackendArg::Cpu => match CpuBackend::new(&session.plan, &session.weights) {
            Ok(b) => run_jobs(&session.replay, b, ready, model, queue, ctx),
            Err(e) => {
                let _ = ready.send(Err(ServeError::Cpu(e)));
            }
        },
        BackendArg::Cuda => match CudaBackend::new(&session.plan, &session.weights, &cuda) {
            Ok(b) => run_jobs(&session.replay, b, ready, model, queue, ctx),
            Err(e) => {
                let _ = ready.send(Err(ServeError::Cuda(e)));
            }
        },
    }));
    if ran.is_err() {
        eprintln!("djinn-serve: error: the engine thread panicked; stopping");
        std::process::exit(1);
    }
}

fn run_jobs<B: Backend>(
    replay: &Replay,
    mut backend: B,
    ready: SyncSender<Result<String, ServeError>>,
    model: Receiver<Arc<Model>>,
    queue: Receiver<Job>,
    ctx: Ctx,
) {
    // The warm copies land before the first request; each request issues them for the next.
    if let Err(e) = replay.warm_at_load(&mut backend) {
        let _ = ready.send(Err(ServeError::Warm(e)));
        return;
    }
    if ready.send(Ok(backend.describe())).is_err() {
        return;
    }
    let Ok(model) = model.recv() else { return };
    // Until every sender is gone: the server has stopped accepting and the queue is drained.
    while let Ok(job) = queue.recv() {
        ctx.metrics.queued(-1);
        ctx.metrics.running(1);
        run_job(replay, &mut backend, &model, &ctx, job);
        ctx.metrics.running(-1);
    }
}

/// Hands `event` to the job's reader, waiting at most the stall timeout for room.
fn send(ctx: &Ctx, tx: &mpsc::Sender<Event>, event: Event) -> Result<(), Dropped> {
    match tx.try_send(event) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Dropped::Disconnected),
        Err(mpsc::error::TrySendError::Full(event)) => {
            // The timer is made inside the runtime: this thread is not one of its own.
            match ctx.runtime.block_on(async { tokio::time::timeout(ctx.stall, tx.send(event)).await }) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Dropped::Disconnected),
                Err(_) => Err(Dropped::Stalled),
            }
        }
    }
}

fn run_job<B: Backend>(replay: &Replay, backend: &mut B, model: &Model, ctx: &Ctx, job: Job) {
    // A client that left while its request waited costs nothing.
    if job.events.is_closed() {
        ctx.metrics.dropped(Dropped::Disconnected);
        return;
    }
    let mut text = TextOut::new(&model.tokenizer, &job.prompt, &job.stops);
    let mut dropped = None;
    let mut decode_error = None;
    let mut last: Option<Instant> = None;
    let result = generate(replay, backend, &job.prompt, &job.options, |e| {
        let now = Instant::now();
        match last {
            None => ctx.metrics.first_token(now - job.arrived),
            Some(t) => ctx.metrics.next_token(now - t),
        }
        last = Some(now);
        let (ready, stopped) = match text.push(e.token) {
            Ok(r) => r,
            Err(err) => {
                decode_error = Some(err.to_string());
                return Ok(Flow::Stop);
            }
        };
        let sent = if ready.is_empty() {
            if job.events.is_closed() {
                Err(Dropped::Disconnected)
            } else {
                Ok(())
            }
        } else {
            send(ctx, &job.events, Event::Text(ready))
        };
        if let Err(why) = sent {
            dropped = Some(why);
            return Ok(Flow::Stop);
        }
        Ok(if stopped { Flow::Stop } else { Flow::Continue })
    });
    let gen = match result {
        Ok(gen) => gen,
        Err(e) => {
            let _ = send(ctx, &job.events, Event::Failed(e.to_string()));
            return;
        }
    };
    ctx.metrics.generation(gen.prompt_tokens, gen.tokens.len(), &gen.decode_copy_bytes);
    if let Some(why) = dropped {
        ctx.metrics.dropped(why);
        return;
    }
    if let Some(message) = decode_error {
        let _ = send(ctx, &job.events, Event::Failed(message));
        return;
    }
    let rest = match text.finish(gen.stop == StopReason::Caller) {
        Ok(rest) => rest,
        Err(e) => {
            let _ = send(ctx, &job.events, Event::Failed(e.to_string()));
            return;
        }
    };
    if !rest.is_empty() {
        if let Err(why) = send(ctx, &job.events, Event::Text(rest)) {
            ctx.metrics.dropped(why);
            return;
        }
    }
    let finish = match gen.stop {
        StopReason::Eos(_) | StopReason::Caller => Finish::Stop,
        StopReason::MaxNewTokens | StopReason::MaxSeqLen => Finish::Length,
    };
    let done = Done { prompt_tokens: gen.prompt_tokens, completion_tokens: gen.tokens.len(), finish };
    if let Err(why) = send(ctx, &job.events, Event::Done(done)) {
        ctx.metrics.dropped(why);
    }
}
