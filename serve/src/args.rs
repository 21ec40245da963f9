//! `djinn-serve`'s command line.
//!
//! ```text
//! djinn-serve plan.toml --weights DIR [--tokenizer FILE] [--host 127.0.0.1 --port 8080]
//!     [--backend cpu|cuda] [--queue N] [--max-body BYTES] [--stall-timeout SECS]
//! ```

use std::path::PathBuf;

use clap::Parser;
use djinn_runtime::exec::BackendArg;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "djinn-serve",
    version,
    about = "Serve a Djinn plan over HTTP with OpenAI's API: /v1/chat/completions, /v1/completions, \
             /v1/models, /health, /metrics, and a chat page at /."
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
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where the plan runs: the CPU twins, or a CUDA GPU.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// CUDA: first take all free device memory beyond the plan's budget.
    #[arg(long)]
    pub enforce_budget: bool,
    /// Requests that may wait while one runs; one more is refused with 429.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub queue: usize,
    /// Largest request body accepted, in bytes; a larger one is refused with 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Seconds a streaming client may take no data while the engine waits
    /// to hand it a token; then its request is dropped and the next one runs.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub stall_timeout: f64,
    /// The kernel's send buffer of each connection, in bytes [default: the
    /// system's, which grows to several MiB]; a small one makes a stalled
    /// reader visible to the engine sooner.
    #[arg(long, value_name = "BYTES")]
    pub send_buffer: Option<usize>,
    /// The model id clients name [default: the plan's model name].
    #[arg(long, value_name = "ID")]
    pub model_id: Option<String>,
}

impl Args {
    /// Checks the values clap cannot: a message naming the flag.
    pub fn check(&self) -> Result<(), String> {
        if !(self.stall_timeout.is_finite() && self.stall_timeout > 0.0) {
            return Err(format!("--stall-timeout {} is not a number of seconds > 0", self.stall_timeout));
        }
        if self.max_body == 0 {
            return Err("--max-body 0 would refuse every request; give a size in bytes".into());
        }
        if self.backend == BackendArg::Cpu && self.enforce_budget {
            return Err("--enforce-budget applies to --backend cuda only".into());
        }
        Ok(())
    }
}
