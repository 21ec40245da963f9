//! How a test that cannot run here says so.
//!
//! libtest shows a skipped test as `ok`, and its output only under
//! `--nocapture`. So a skip is printed (for `--nocapture` runs) and, when
//! `DJINN_SKIP_LOG` names a file, appended to it as one line,
//! `KIND<TAB>TEST<TAB>WHY`; `.ci/run` sets the variable and ends with a count
//! per kind ("N GPU tests skipped: no CUDA device"), which a user sees
//! without asking.

use std::fmt::Display;
use std::io::Write;

/// Why a test did not run its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It needs a CUDA device (or the CUDA libraries) and there is none.
    NoGpu,
    /// It tests what happens without CUDA, and CUDA is here.
    GpuPresent,
}

impl Skip {
    /// The first field of the log line, as `.ci/run` counts it.
    fn kind(self) -> &'static str {
        match self {
            Skip::NoGpu => "no-gpu",
            Skip::GpuPresent => "gpu-present",
        }
    }
}

/// Reports that `test` skips for `reason`, `why` saying what was found.
pub fn skip(test: &str, reason: Skip, why: impl Display) {
    let why = why.to_string().replace(['\n', '\t'], " ");
    println!("{test}: skipped: {why}");
    let Some(log) = std::env::var_os("DJINN_SKIP_LOG") else { return };
    // One write of a whole line to a file opened for appending: lines from
    // tests running in parallel do not interleave.
    let line = format!("{}\t{test}\t{why}\n", reason.kind());
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("{test}: cannot append to DJINN_SKIP_LOG {}: {e}", log.to_string_lossy());
    }
}
