//! The HTTP endpoints and what each does with a request before the engine
//! sees it: read the body (bounded: 413 past `--max-body`), check it is
//! UTF-8 and parse it strictly, render the chat template and tokenize (on a
//! blocking thread: a long prompt is real work), check the prompt and
//! `max_tokens` against the context, then queue the job (429 when the
//! queue is full) and stream or collect what the engine sends back.
//!
//! Every refusal is OpenAI's error object; every response is counted in
//! `/metrics` by endpoint and status.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use djinn_runtime::generate::GenerateOptions;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::mpsc;

use crate::engine::{Engine, Event, Job, SubmitError, EVENTS_PER_JOB};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{
    parse, ChatRequest, Common, CompletionRequest, Header, Kind, PromptInput, COMPLETIONS_DEFAULT_MAX_TOKENS,
};
use crate::sse;

/// The chat page at `/`.
const PAGE: &str = include_str!("page.html");

pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
}

type Shared = State<Arc<AppState>>;

/// Every endpoint, counted in `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::method_not_allowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
        })
        .route_layer(middleware::from_fn_with_state(metrics.clone(), count))
        .fallback(move |req: Request| {
            let metrics = metrics.clone();
            async move {
                metrics.request("other", 404);
                ApiError::not_found(format!("no endpoint {} {}", req.method(), req.uri().path()), "unknown_url")
            }
        })
        .with_state(state)
}

async fn count(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map_or("other".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    metrics.request(&endpoint, response.status().as_u16());
    response
}

async fn health(State(s): Shared) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "model": s.engine.model.id, "queue_depth": s.metrics.queue_depth()}))
}

async fn metrics_text(State(s): Shared) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

fn model_object(s: &AppState) -> serde_json::Value {
    let m = &s.engine.model;
    json!({"id": m.id, "object": "model", "created": m.created, "owned_by": "djinn", "max_model_len": m.max_seq_len})
}

async fn models(State(s): Shared) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": [model_object(&s)]}))
}

async fn model(State(s): Shared, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    if id != s.engine.model.id {
        return Err(ApiError::not_found(
            format!("the model `{id}` does not exist here; this server serves `{}`", s.engine.model.id),
            "model_not_found",
        ));
    }
    Ok(Json(model_object(&s)))
}

/// The body as text: at most `limit` bytes, UTF-8.
async fn read_text(body: Body, limit: usize) -> Result<String, ApiError> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(ApiError::too_large(limit)),
        Err(e) => return Err(ApiError::bad_request(format!("cannot read the request body: {e}"), None)),
    };
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::bad_request(
            format!("the request body is not UTF-8 (an invalid byte at offset {})", e.utf8_error().valid_up_to()),
            None,
        )
    })
}

/// Runs blocking work (templating, tokenizing) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::server(format!("tokenizing failed: {e}")))?
}

async fn chat(State(s): Shared, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let text = read_text(body, s.max_body).await?;
    let req: ChatRequest = parse(&text)?;
    let common = req.common()?;
    let model = s.engine.model.clone();
    common.check_model(&model)?;
    let messages = req.messages()?;
    let template = match &model.chat {
        Ok(t) => t.clone(),
        Err(why) => {
            return Err(ApiError::bad_request(
                format!("this model has no chat template ({why}); send plain text to /v1/completions"),
                Some("messages"),
            ))
        }
    };
    let m = model.clone();
    let ids = blocking(move || {
        let prompt =
            template.render(&messages, true).map_err(|e| ApiError::bad_request(e.to_string(), Some("messages")))?;
        m.tokenizer.encode_rendered(&prompt).map_err(|e| ApiError::bad_request(e.to_string(), Some("messages")))
    })
    .await?;
    let options = common.options(&model, &ids, "messages", None)?;
    run(&s, Kind::Chat, ids, options, common, arrived).await
}

async fn completions(State(s): Shared, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let text = read_text(body, s.max_body).await?;
    let req: CompletionRequest = parse(&text)?;
    let common = req.common()?;
    let model = s.engine.model.clone();
    common.check_model(&model)?;
    let ids = match req.prompt()? {
        PromptInput::Ids(ids) => ids,
        PromptInput::Text(text) => {
            let m = model.clone();
            blocking(move || {
                m.tokenizer.encode(&text).map_err(|e| ApiError::bad_request(e.to_string(), Some("prompt")))
            })
            .await?
        }
    };
    let options = common.options(&model, &ids, "prompt", Some(COMPLETIONS_DEFAULT_MAX_TOKENS))?;
    run(&s, Kind::Completion, ids, options, common, arrived).await
}

/// Queues the job, then streams its events or collects them into one response.
async fn run(
    s: &AppState,
    kind: Kind,
    prompt: Vec<u32>,
    options: GenerateOptions,
    common: Common,
    arrived: Instant,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel(EVENTS_PER_JOB);
    let job = Job { prompt, options, stops: common.stops, events: tx, arrived };
    s.engine.submit(job).map_err(|e| match e {
        SubmitError::Full { limit } => ApiError::queue_full(limit),
        SubmitError::Stopped => ApiError::unavailable("the server is shutting down"),
    })?;
    let header = Header::new(kind, &s.engine.model.id);
    if common.stream {
        return Ok(sse::respond(header, common.include_usage, rx).into_response());
    }
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done(done) => return Ok((StatusCode::OK, Json(header.response(&text, &done))).into_response()),
            Event::Failed(message) => return Err(ApiError::server(message)),
        }
    }
    Err(ApiError::server("the engine dropped the request before it ended"))
}
