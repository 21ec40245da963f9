//! The two kinds of failure: what stops the server from starting
//! ([`ServeError`], printed once by the binary and exit status 1), and what
//! a request gets back when it cannot be served ([`ApiError`]: an HTTP
//! status and the error object OpenAI's API returns,
//! `{"error": {"message", "type", "param", "code"}}`, which its clients
//! turn into typed exceptions).

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use djinn_runtime::cpu::CpuError;
use djinn_runtime::cuda::CudaError;
use djinn_runtime::replay::ReplayError;
use djinn_runtime::session::SessionError;
use djinn_runtime::tokenizer::TokenizerError;
use serde_json::json;
use thiserror::Error;

/// Why the server did not start (or did not stop cleanly). Each message is
/// complete on its own, so `{:#}` prints every cause once.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("{0}")]
    Args(clap::Error),
    #[error("{0}")]
    Usage(String),
    /// Boxed, as large as it is, so that every `Result` here is not.
    #[error("{0}")]
    Session(Box<SessionError>),
    #[error("{0}")]
    Tokenizer(TokenizerError),
    #[error("CPU backend: {0}")]
    Cpu(CpuError),
    #[error("CUDA backend: {0}")]
    Cuda(CudaError),
    #[error("copying the plan's warm slots at load: {0}")]
    Warm(ReplayError),
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("the engine thread ended before the model was ready")]
    EngineGone,
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("serving on {addr}: {error}")]
    Serve { addr: SocketAddr, error: std::io::Error },
    #[error("cannot wait for SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// A request refused or failed, as OpenAI's API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    /// 400: the request is wrong; `param` names the field at fault.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            param: param.map(str::to_string),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 400 with OpenAI's `context_length_exceeded` code.
    pub fn context_length(message: impl Into<String>, param: &str) -> ApiError {
        ApiError { code: Some("context_length_exceeded"), ..ApiError::bad_request(message, Some(param)) }
    }

    pub fn not_found(message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError { code: Some(code), ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message) }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is over the server's limit of {limit} bytes (djinn-serve --max-body)"),
            )
        }
    }

    /// 429: the queue is full.
    pub fn queue_full(limit: usize) -> ApiError {
        ApiError {
            code: Some("queue_full"),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "the server is busy: one request is running and {limit} are waiting (djinn-serve --queue); \
                     retry later"
                ),
            )
        }
    }

    /// 503: the engine has stopped (the server is shutting down, or its thread failed).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    /// 500: generation failed.
    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body: `{"error": {...}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
