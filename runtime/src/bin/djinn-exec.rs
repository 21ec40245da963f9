//! `djinn-exec`: replays a plan. All the work is in `djinn_runtime::exec::run_with_stdin`.

use std::io::IsTerminal;
use std::process::ExitCode;

use djinn_runtime::exec::{run_with_stdin, ExecError, Stdin};

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let mut input = stdin.lock();
    match run_with_stdin(std::env::args_os(), Stdin { input: &mut input, terminal }, &mut stdout, &mut stderr) {
        Ok(_) => ExitCode::SUCCESS,
        // --help, --version and usage errors, formatted and exited as clap does.
        Err(ExecError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("djinn-exec: error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
