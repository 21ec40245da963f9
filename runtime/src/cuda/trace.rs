//! `--trace`: the run as a Chrome / Perfetto trace (`traceEvents`, `ph: "X"`).
//!
//! Two processes side by side: *measured* (the copy and compute lanes as the
//! device ran them, plus one span per pass) and *predicted* (the plan's
//! steps, each phase's `start_us`/`end_us` placed at the measured start of
//! the pass that replayed it), so a glance shows where the schedule and the
//! hardware disagree. Times are µs from the first pass's start. Where decode
//! runs as CUDA graphs, its measured compute spans are the segments' graphs
//! (`timing.rs`), named by their first and last blocks; `DJINN_GRAPH=0`
//! gives one span per block instead.

use std::path::Path;

use djinn_core::plan::{Lane, Op, Phase, PhaseName};
use serde_json::{json, Value};

use super::error::CudaError;
use super::timing::Timer;

const MEASURED: u32 = 1;
const PREDICTED: u32 = 2;

fn tid(lane: Lane) -> u32 {
    match lane {
        Lane::Copy => 1,
        Lane::Compute => 2,
    }
}

fn meta(pid: u32, tid: Option<u32>, name: &str) -> Value {
    match tid {
        None => json!({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}}),
        Some(t) => json!({"ph": "M", "pid": pid, "tid": t, "name": "thread_name", "args": {"name": name}}),
    }
}

/// The trace as JSON. `blocks` are the plan's block names; `prefill` and
/// `decode` its phases.
pub fn to_json(timer: &Timer, blocks: &[String], prefill: &Phase, decode: &Phase) -> Value {
    let mut ev = vec![
        meta(MEASURED, None, "measured"),
        meta(MEASURED, Some(1), "copy lane"),
        meta(MEASURED, Some(2), "compute lane"),
        meta(MEASURED, Some(3), "passes"),
        meta(PREDICTED, None, "predicted (plan)"),
        meta(PREDICTED, Some(1), "copy lane"),
        meta(PREDICTED, Some(2), "compute lane"),
    ];
    for s in &timer.spans {
        let name = match s.lane {
            Lane::Copy if s.warm => format!("warm copy {}", blocks[s.block]),
            Lane::Copy => format!("copy {}", blocks[s.block]),
            Lane::Compute => match s.graph {
                None => blocks[s.block].clone(),
                Some((last, 1)) if last == s.block => format!("{} (graph)", blocks[s.block]),
                Some((last, steps)) => format!("{} .. {} (graph of {steps} steps)", blocks[s.block], blocks[last]),
            },
        };
        let dur_ms = (s.end_ms - s.start_ms).max(0.0);
        // A warm copy is issued while the device is idle, for the pass after it.
        let mut args = if s.warm { json!({"warm_for_pass": s.pass}) } else { json!({"pass": s.pass}) };
        if let Some((last, steps)) = s.graph {
            args["graph"] = json!({"first": blocks[s.block], "last": blocks[last], "steps": steps});
        }
        if s.bytes > 0 {
            args["bytes"] = json!(s.bytes);
            args["GB/s"] = json!(if dur_ms > 0.0 { s.bytes as f64 / (dur_ms * 1e-3) / 1e9 } else { 0.0 });
        }
        ev.push(json!({"ph": "X", "pid": MEASURED, "tid": tid(s.lane), "name": name,
                       "ts": s.start_ms * 1e3, "dur": dur_ms * 1e3, "args": args}));
    }
    let mut pass_end = vec![f64::NEG_INFINITY; timer.passes.len()];
    for s in timer.spans.iter().filter(|s| !s.warm) {
        pass_end[s.pass] = pass_end[s.pass].max(s.end_ms);
    }
    let mut decode_index = 0;
    for (i, p) in timer.passes.iter().enumerate() {
        let Some(start) = p.start_ms else { continue };
        let (name, phase) = match p.phase {
            PhaseName::Prefill => (format!("prefill ({} tokens)", p.tokens), prefill),
            PhaseName::Decode => {
                decode_index += 1;
                (format!("decode {decode_index}"), decode)
            }
        };
        if pass_end[i].is_finite() {
            ev.push(json!({"ph": "X", "pid": MEASURED, "tid": 3, "name": name,
                           "ts": start * 1e3, "dur": (pass_end[i] - start).max(0.0) * 1e3}));
        }
        // Warm steps are predicted at 0: done before the pass (the measured lane shows when).
        for step in phase.steps.iter().filter(|s| !s.warm) {
            let name = match step.op {
                Op::Copy => format!("copy {}", step.block),
                Op::Compute => step.block.clone(),
                Op::HostCompute => format!("{} (host)", step.block),
            };
            ev.push(json!({"ph": "X", "pid": PREDICTED, "tid": tid(step.lane), "name": name,
                           "ts": start * 1e3 + step.start_us, "dur": (step.end_us - step.start_us).max(0.0),
                           "args": {"pass": i, "slot": step.slot}}));
        }
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ms"})
}

pub fn write(path: &Path, trace: &Value) -> Result<(), CudaError> {
    let text = serde_json::to_string(trace).expect("a JSON value always serializes");
    djinn_core::fsio::write_atomic(path, text.as_bytes())
        .map_err(|error| CudaError::Trace { path: path.display().to_string(), error })
}
