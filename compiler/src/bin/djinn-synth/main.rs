//! `djinn-synth`: writes a random-weight checkpoint of a preset model, in
//! Hugging Face layout, to benchmark on models nobody has to download.
//!
//! ```text
//! djinn-synth --model llama2-13b -o /tmp/llama2-13b [--dtype f16|bf16] [--seed N] [--shard-size 5GB]
//! ```
//!
//! The directory gets the preset's `config.json`, sharded safetensors with
//! `model.safetensors.index.json` (one `model.safetensors` when it fits one
//! shard), and the Llama 2 tokenizer when the vocabulary is 32000. Tensor
//! names and shapes come from the block table the runtime reads
//! (`djinn_core::model::expected_blocks`), so Djinn, transformers and
//! accelerate all load the same checkpoint. The bytes depend only on the
//! preset, the dtype and the seed.
//!
//! Nothing half-written is left at `--out`: the weights, index and tokenizer
//! are written into a hidden sibling directory (`.NAME.partial`, see
//! `djinn_core::fsio::StagingDir`) that is moved into place only when
//! complete, and `config.json` is written (atomically) after that, last: a
//! directory with a `config.json` holds a finished checkpoint. An error
//! removes the staging directory; a killed run's is cleared by the next run.

mod hf_files;
mod layout;
mod model_source;
mod rng;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use djinn_core::fsio::{write_atomic, StagingDir};
use djinn_core::units::{fmt_bytes, parse_bytes};
use djinn_core::Dtype;

#[derive(Parser, Debug)]
#[command(
    name = "djinn-synth",
    version,
    about = "Writes a random-weight checkpoint of a preset model in Hugging Face layout.",
    // `--seed -1` reaches the value parser, whose error names the flag.
    allow_negative_numbers = true
)]
struct Args {
    /// Preset model name (`llama2-13b`, `tinyllama-1.1b`, …; an unknown name lists them).
    #[arg(long)]
    model: String,
    /// Output directory (created if missing).
    #[arg(short = 'o', long, value_name = "DIR")]
    output: PathBuf,
    /// Weight dtype [default: the dtype of the publisher's checkpoint].
    #[arg(long, value_parser = parse_dtype)]
    dtype: Option<Dtype>,
    /// Seed of the random values; the same seed gives the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest shard, as Hugging Face's `max_shard_size` (`5GB` = 5·10⁹ bytes, `4GiB`).
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    shard_size: u64,
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    match s {
        "f16" | "float16" | "fp16" => Ok(Dtype::F16),
        "bf16" | "bfloat16" => Ok(Dtype::Bf16),
        _ => Err(format!("unknown dtype {s:?}: expected f16 or bf16")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    match parse_bytes(s) {
        Ok(0) => Err("the shard size must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("djinn-synth: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let model = model_source::preset(&args.model)?;
    let opts = Options {
        out: args.output.clone(),
        dtype: args.dtype.unwrap_or(model.dtype),
        seed: args.seed,
        shard_size: args.shard_size,
        batch_bytes: writer::DEFAULT_BATCH_BYTES,
    };
    synthesize(&model, &opts)
}

/// What to write and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub dtype: Dtype,
    pub seed: u64,
    /// Most data bytes in one safetensors file.
    pub shard_size: u64,
    /// Bytes generated per batch (see [`writer`]).
    pub batch_bytes: u64,
}

/// Writes the whole checkpoint of `model` into `opts.out`.
pub fn synthesize(model: &model_source::Model, opts: &Options) -> Result<()> {
    let config = hf_files::checkpoint_config(&model.config_text, &model.origin, opts.dtype)?;
    let tensors = layout::checkpoint_tensors(&model.arch, opts.dtype);
    let shards = layout::shard(tensors, opts.shard_size);
    let index = layout::index_json(&shards);

    let out = &opts.out;
    if out.is_dir() {
        refuse_stale_weights(out, &shards)?;
    }
    let staging =
        StagingDir::new(out).with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let dir = staging.path();

    let total: u64 = shards.iter().map(layout::Shard::data_bytes).sum();
    eprintln!(
        "djinn-synth: {} ({}, seed {}): {} in {} file(s) -> {}",
        model.name,
        opts.dtype,
        opts.seed,
        fmt_bytes(total),
        shards.len(),
        out.display()
    );
    let written = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| report_progress(&written, &done, total, start));
        let result = shards.iter().try_for_each(|shard| {
            writer::write_shard(&dir.join(&shard.file), shard, opts.seed, opts.batch_bytes, &written)
        });
        done.store(true, Ordering::Relaxed);
        result
    })?;
    let secs = start.elapsed().as_secs_f64();

    if let Some(index) = index {
        write_file(&dir.join("model.safetensors.index.json"), index.as_bytes())?;
    }
    if !hf_files::write_tokenizer(dir, model.arch.vocab_size)? {
        eprintln!(
            "djinn-synth: note: no tokenizer written: the embedded Llama 2 tokenizer has {} entries, {} has {}",
            hf_files::LLAMA2_VOCAB,
            model.name,
            model.arch.vocab_size
        );
    }
    // An earlier checkpoint's config.json goes first, so that no mix of its files
    // and ours ever looks finished; ours is written once every other file is in place.
    let config_path = out.join("config.json");
    if config_path.exists() {
        std::fs::remove_file(&config_path).with_context(|| format!("cannot replace {}", config_path.display()))?;
    }
    staging.commit().with_context(|| format!("cannot move the checkpoint into {}", out.display()))?;
    write_atomic(&config_path, config.as_bytes()).with_context(|| format!("cannot write {}", config_path.display()))?;
    eprintln!(
        "djinn-synth: wrote {} in {secs:.1} s ({:.0} MB/s, synced to disk)",
        fmt_bytes(total),
        total as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Weight files from an earlier run with another shard layout would sit
/// beside the new ones and confuse loaders that glob `*.safetensors`; refuse
/// rather than delete what we did not write.
fn refuse_stale_weights(dir: &Path, shards: &[layout::Shard]) -> Result<()> {
    let ours: Vec<&str> = shards.iter().map(|s| s.file.as_str()).collect();
    let single = shards.len() == 1;
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry.with_context(|| format!("cannot list {}", dir.display()))?.file_name();
        let name = name.to_string_lossy().into_owned();
        let is_weights = name.ends_with(".safetensors") || (single && name == "model.safetensors.index.json");
        if is_weights && !ours.contains(&name.as_str()) {
            stale.push(name);
        }
    }
    if !stale.is_empty() {
        stale.sort();
        bail!(
            "{} already holds weight files this checkpoint would not overwrite ({}); remove them or choose another --output",
            dir.display(),
            stale.join(", ")
        );
    }
    Ok(())
}

/// Prints the bytes written and the rate every two seconds until `done`.
fn report_progress(written: &AtomicU64, done: &AtomicBool, total: u64, start: Instant) {
    let mut last = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(2) {
            continue;
        }
        last = Instant::now();
        let w = written.load(Ordering::Relaxed);
        eprintln!(
            "djinn-synth: {} / {} ({:.0}%), {:.0} MB/s",
            fmt_bytes(w),
            fmt_bytes(total),
            100.0 * w as f64 / total.max(1) as f64,
            w as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }
}

#[cfg(test)]
mod tests;
