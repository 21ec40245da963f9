//! `djinn-profile`: measures the GPU and writes a profile for
//! `djinn-compile --gpu FILE.toml`. All the work is in `djinn_profiler::run`.

use std::io::Write;
use std::process::ExitCode;

use djinn_profiler::{run, ProfileError};

fn main() -> ExitCode {
    let mut stderr = std::io::stderr();
    match run(std::env::args_os(), &mut stderr) {
        Ok(p) => {
            if p.written_to.is_none() {
                if let Err(e) = std::io::stdout().write_all(p.toml.as_bytes()) {
                    eprintln!("djinn-profile: error: cannot write the profile to stdout: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        // --help, --version and usage errors, formatted and exited as clap does.
        Err(ProfileError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("djinn-profile: error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
