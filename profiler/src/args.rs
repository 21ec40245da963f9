//! `djinn-profile`'s command line.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "djinn-profile",
    version,
    about = "Measure this machine's GPU and write a profile for `djinn-compile --gpu FILE.toml`.",
    long_about = "Measures pinned host-to-device bandwidth over copy sizes, device memory bandwidth, \
                  the compute time of each block kind of --model (prefill of --prompt-len tokens and one \
                  decode step) through Djinn's own kernels on random weights, a large GEMM, a 4096-token prefill attention, the kernel \
                  launch cost, and the host CPU's f16 matrix-vector rate; writes them as a GPU profile. \
                  Progress and results go to stderr."
)]
pub struct Args {
    /// A model preset (llama2-13b, ...) or a Hugging Face model directory, as djinn-compile takes it;
    /// its block times are recorded under the name djinn-compile gives it.
    #[arg(long)]
    pub model: String,
    /// Tokens of the prefill pass timed; decode is timed one token after them.
    #[arg(long, default_value_t = djinn_compiler::DEFAULT_PROMPT_LEN)]
    pub prompt_len: u64,
    /// Write the profile here [default: stdout].
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The profile's name [default: the device name, lowercased with dashes].
    #[arg(long)]
    pub name: Option<String>,
    /// Also write every raw timing (and the profile) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}
