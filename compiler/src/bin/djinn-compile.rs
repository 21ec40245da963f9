//! `djinn-compile`: see `djinn_compiler::cli` for the command line.

use std::io::Write;
use std::process::ExitCode;

use djinn_compiler::{run, CliError};

fn main() -> ExitCode {
    match run(std::env::args_os()) {
        Ok(out) => {
            eprint!("{}", out.summary);
            if let Some(path) = &out.written_to {
                eprintln!("wrote {}", path.display());
            } else if let Err(e) = std::io::stdout().write_all(out.plan_toml.as_bytes()) {
                eprintln!("error: cannot write the plan to stdout: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        // clap prints usage errors (exit 2) and --help / --version (exit 0) itself.
        Err(CliError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
