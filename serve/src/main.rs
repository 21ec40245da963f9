//! `djinn-serve`: serves a plan over HTTP. All the work is in `djinn_serve::run`.

use std::process::ExitCode;

use djinn_serve::{run, ServeError};

fn main() -> ExitCode {
    match run(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        // --help, --version and usage errors, formatted and exited as clap does.
        Err(ServeError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("djinn-serve: error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
