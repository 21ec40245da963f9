//! `djinn-exec`: replays a plan. All the work is in `djinn_runtime::exec::run`.

use std::process::ExitCode;

use djinn_runtime::exec::{run, ExecError};

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    match run(std::env::args_os(), &mut stdout, &mut stderr) {
        Ok(_) => ExitCode::SUCCESS,
        // --help, --version and usage errors, formatted and exited as clap does.
        Err(ExecError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("djinn-exec: error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
