//! `djinn-profile`: measures this machine's GPU and writes the profile that
//! `djinn-compile --gpu FILE.toml` plans from.
//!
//! Presets carry datasheet figures and measurements from elsewhere; a plan's
//! predictions are only as good as the rates it was costed with, so this
//! measures them where the plan will run, with the code that will run.
//! [`measure`] runs the sequence:
//!
//! 1. [`copy`]: pinned host-to-device copies, small ones for the fixed cost
//!    and 4 MiB … 1 GiB for the curve ([`copy_fit`]); a device-to-device copy
//!    for the memory bandwidth;
//! 2. [`cpu`]: the host's f16 matrix-vector rate, alone and while copies run
//!    (when sysfs also gives the link's [`pcie`] generation and width);
//! 3. [`blocks`]: each block kind of the model, prefill and decode, through
//!    the shared forward pass on random weights ([`random`]) laid out by a
//!    one-layer plan ([`bench_plan`]), as device time; a large GEMM; a long
//!    causal prefill attention by the flash kernel; the launch cost;
//! 4. [`assemble`]: the profile and its commented TOML; `--json` keeps every
//!    raw timing ([`measurements`]).
//!
//! Its own crate because it is the one program that needs both sides of the
//! contract: the compiler (`--model` resolution, the one-layer plan) and the
//! runtime (the forward pass and kernels it times). Inside the runtime it
//! made `djinn-exec`'s library depend on the compiler.
//!
//! A 13B-class model takes seconds (one layer's weights, not the model's,
//! are allocated); the first run on a machine also compiles the kernels with
//! NVRTC, which later runs read from the disk cache.

pub mod args;
pub mod assemble;
pub mod bench_plan;
pub mod blocks;
pub mod clock;
pub mod copy;
pub mod copy_fit;
pub mod cpu;
pub mod date;
pub mod error;
pub mod host_layer;
pub mod measure;
pub mod measurements;
pub mod pcie;
pub mod random;
pub mod stats;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use djinn_core::gpu::GpuProfile;
use djinn_core::Dtype;
use djinn_runtime::cuda::Gpu;
use serde::Serialize;

use self::args::Args;
use self::assemble::Provenance;
pub use self::error::ProfileError;
use self::measurements::Measurements;

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct Profiled {
    pub profile: GpuProfile,
    /// The profile file's text.
    pub toml: String,
    /// `-o`, where the text was written (otherwise the caller prints it).
    pub written_to: Option<PathBuf>,
    pub measurements: Measurements,
}

/// The `--json` log.
#[derive(Serialize)]
struct Log<'a> {
    command: &'a str,
    debug_build: bool,
    date: &'a str,
    elapsed_s: f64,
    measurements: &'a Measurements,
    profile: &'a GpuProfile,
}

/// Parses `argv` (program name first), measures, writes; progress to `stderr`.
pub fn run<I, T>(argv: I, stderr: &mut dyn Write) -> Result<Profiled, ProfileError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let args = Args::try_parse_from(&argv)?;
    let command = command_line(&argv);
    let model = djinn_core::model_presets::load_model(&args.model)
        .map_err(|e| ProfileError::Model { arg: args.model.clone(), message: e.to_string() })?;
    if !matches!(model.dtype, Dtype::F16 | Dtype::Bf16) {
        return Err(ProfileError::Usage(format!(
            "model {} stores {} weights; Djinn's kernels run f16 and bf16 models",
            model.name, model.dtype
        )));
    }
    bench_plan::max_seq_len(&model, args.prompt_len)?;
    for path in args.output.iter().chain(&args.json) {
        djinn_core::fsio::check_writable(path)
            .map_err(|error| ProfileError::Write { path: path.to_path_buf(), error })?;
    }
    let started = Instant::now();
    let mut say = |line: String| {
        let _ = writeln!(stderr, "djinn-profile: {line}");
    };

    let gpu = Gpu::open(args.device).map_err(|e| {
        if e.is_absence() {
            ProfileError::NoGpu(e)
        } else {
            ProfileError::Cuda { what: "opening the device".into(), error: e }
        }
    })?;
    if cfg!(debug_assertions) {
        say("a debug build: the CPU rate and launch costs will read slow; build with --release".into());
    }
    let measurements = measure::measure(&gpu, args.device, &model, args.prompt_len, &mut say)?;
    let prov = Provenance {
        name: args.name.clone(),
        command: command.clone(),
        date: date::today(),
        debug_build: cfg!(debug_assertions),
    };
    let profile = assemble::assemble(&measurements, &prov);
    let toml = assemble::render(&profile, &measurements, &prov);
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(path) = &args.output {
        write(path, &toml)?;
        say(format!("wrote {}", path.display()));
    }
    if let Some(path) = &args.json {
        let log = Log {
            command: &command,
            debug_build: prov.debug_build,
            date: &prov.date,
            elapsed_s,
            measurements: &measurements,
            profile: &profile,
        };
        write(path, &(serde_json::to_string_pretty(&log).expect("the log always serializes") + "\n"))?;
        say(format!("wrote {}", path.display()));
    }
    say(format!("measured in {elapsed_s:.1} s"));
    Ok(Profiled { profile, toml, written_to: args.output, measurements })
}

fn write(path: &Path, text: &str) -> Result<(), ProfileError> {
    djinn_core::fsio::write_atomic(path, text.as_bytes())
        .map_err(|error| ProfileError::Write { path: path.to_path_buf(), error })
}

/// The command line as typed: the program's file name, then the arguments,
/// quoted where a shell would need it.
pub fn command_line(argv: &[OsString]) -> String {
    let mut words = Vec::with_capacity(argv.len());
    for (i, a) in argv.iter().enumerate() {
        let a = a.to_string_lossy();
        let w = if i == 0 {
            Path::new(a.as_ref()).file_name().map_or(a.to_string(), |n| n.to_string_lossy().into_owned())
        } else {
            a.into_owned()
        };
        let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        words.push(if plain { w } else { format!("'{}'", w.replace('\'', r"'\''")) });
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_reproducible() {
        let argv: Vec<OsString> =
            ["/x/target/release/djinn-profile", "--model", "llama2-13b", "-o", "p.toml", "--name", "my gpu's"]
                .map(OsString::from)
                .to_vec();
        assert_eq!(command_line(&argv), r"djinn-profile --model llama2-13b -o p.toml --name 'my gpu'\''s'");
    }

    #[test]
    fn bad_arguments_fail_before_any_device_is_touched() {
        let mut err = Vec::new();
        let e = run(["djinn-profile", "--model", "gpt-5"], &mut err).unwrap_err().to_string();
        assert!(e.contains("--model gpt-5") && e.contains("llama2-13b"), "{e}");
        let e = run(["djinn-profile", "--model", "llama2-13b", "--prompt-len", "0"], &mut err).unwrap_err();
        assert!(matches!(e, ProfileError::Usage(_)), "{e}");
        let e = run(["djinn-profile", "--prompt-len", "5"], &mut err).unwrap_err();
        assert!(matches!(e, ProfileError::Args(_)), "{e}");
        assert!(err.is_empty(), "nothing measured, nothing said");
    }
}
