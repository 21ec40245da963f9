//! `djinn-serve`: a Djinn plan behind OpenAI's HTTP API.
//!
//! `djinn-exec` runs one prompt and exits; a model that takes minutes to
//! load and a GPU that holds one sequence want a long-lived process that
//! takes prompts from many clients in turn. This crate is that process, and
//! it speaks the API that existing clients (the `openai` packages, curl
//! scripts, chat front ends) already speak.
//!
//! * [`args`]: the command line;
//! * [`engine`]: the one thread that owns the backend and runs requests
//!   one at a time, FIFO, dropping a client that left or stopped reading;
//! * [`openai`]: request and response shapes, and the checks that turn a
//!   request into a job;
//! * [`routes`]: the endpoints (axum), [`sse`]: streamed responses;
//! * [`metrics`]: `/metrics` in Prometheus' text format;
//! * [`error`]: start-up errors and OpenAI-style request errors.
//!
//! Start-up does what `djinn-exec` does before its first token, through the
//! same code (`djinn_runtime::session`): the plan is read and verified
//! before anything else, then the weights are checked against it, and only
//! once the backend is built does the socket open. A request without
//! sampling values samples as `djinn-exec` without flags would.

pub mod args;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod sse;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;
use djinn_runtime::cuda::CudaOptions;
use tokio::net::TcpListener;

use crate::args::Args;
use crate::engine::{Engine, EngineOptions};
pub use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::routes::AppState;

/// Parses `argv` (program name first), loads the model, serves until
/// SIGINT or SIGTERM, then finishes the requests it holds and returns.
pub fn run<I, T>(argv: I) -> Result<(), ServeError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(argv).map_err(ServeError::Args)?;
    args.check().map_err(ServeError::Usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    let metrics = Arc::new(Metrics::new());
    let opts = EngineOptions {
        backend: args.backend,
        cuda: CudaOptions { enforce_budget: args.enforce_budget, device: args.device, ..CudaOptions::default() },
        queue: args.queue,
        stall_timeout: Duration::from_secs_f64(args.stall_timeout),
        model_id: args.model_id.clone(),
    };
    let engine = Arc::new(Engine::start(
        &args.plan,
        &args.weights,
        args.tokenizer.as_deref(),
        opts,
        metrics.clone(),
        runtime.handle().clone(),
    )?);
    let served = runtime.block_on(serve(&args, engine.clone(), metrics));
    // Every connection has closed, so nothing is queued: the engine thread ends.
    engine.stop();
    served?;
    eprintln!("djinn-serve: stopped");
    Ok(())
}

async fn serve(args: &Args, engine: Arc<Engine>, metrics: Arc<Metrics>) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before the socket opens, so that a signal from then on is a graceful stop.
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&addr).await.map_err(|error| ServeError::Bind { addr: addr.clone(), error })?;
    let local = listener.local_addr().map_err(|error| ServeError::Bind { addr: addr.clone(), error })?;
    let send_buffer = args.send_buffer;
    let listener = listener.tap_io(move |tcp| {
        let _ = tcp.set_nodelay(true);
        if let Some(bytes) = send_buffer {
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(bytes);
        }
    });
    let model = &engine.model;
    eprintln!(
        "djinn-serve: serving {} ({} backend, context {} tokens{}) on http://{local}",
        model.id,
        model.backend,
        model.max_seq_len,
        if model.chat.is_ok() { ", chat template" } else { "" }
    );
    let state = Arc::new(AppState { engine: engine.clone(), metrics: metrics.clone(), max_body: args.max_body });
    let app = routes::router(state);
    let stop = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!(
            "djinn-serve: {name}: no new connections; finishing the running request and {} queued",
            metrics.queue_depth()
        );
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|error| ServeError::Serve { addr: local, error })
}
