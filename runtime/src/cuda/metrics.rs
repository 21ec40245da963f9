//! What a CUDA replay measured, computed from the timing spans.
//!
//! Definitions (so the numbers can be compared with the plan's prediction):
//! * `ttft_ms`: host wall time from the prefill pass's start to its logits
//!   reaching the host — what a user waits for the first token.
//! * `decode_ms_per_token`: host wall time between consecutive logits
//!   (mean over decode passes; the first is measured from prefill's logits),
//!   so host sampling and launch overhead are in it, as they are in a real run.
//! * `*_device_ms`: the same spans measured with device events, from a pass's
//!   first compute-lane point to the end of its last step on either lane
//!   (its last compute step: the pass-end event).
//! * `copy_gbps`: bytes moved by copy steps over the time the copy lane spent
//!   in them; `*_copy_busy`: copy-lane time over device time, per phase.
//! * `warm_copy_*`: the warm copies, issued at load and after each request
//!   while the device is idle: in no pass, so in none of the figures above.

use djinn_core::plan::{Lane, PhaseName};

use super::timing::Timer;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CudaMetrics {
    /// `NVIDIA H100 80GB HBM3 (sm_90)`.
    pub device: String,
    pub ttft_ms: f64,
    pub prefill_device_ms: f64,
    pub decode_tokens: u64,
    pub decode_ms_per_token: f64,
    pub decode_device_ms_per_token: f64,
    pub copy_bytes: u64,
    pub copy_ms: f64,
    pub copy_gbps: f64,
    pub warm_copy_bytes: u64,
    pub warm_copy_ms: f64,
    pub prefill_copy_busy: f64,
    pub decode_copy_busy: f64,
    /// Device memory this process held at its peak (arena, kernels, cuBLAS), context and ballast excluded.
    pub peak_device_bytes: u64,
    pub arena_bytes: u64,
    pub budget_bytes: u64,
    /// Ballast taken by `--enforce-budget` (0 without it).
    pub ballast_bytes: u64,
    /// Pinned host memory holding streamed blocks.
    pub pinned_bytes: u64,
    /// Decode passes launched as the captured decode graph (`graph.rs`).
    pub decode_graph_replays: u64,
    /// How the decode step ran: `graph of N nodes` or why not one (`graph.rs`).
    pub decode_graph: String,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl CudaMetrics {
    /// Fills the timing fields from `timer` (whose events have all been harvested).
    pub fn timings(&mut self, timer: &Timer) {
        let n = timer.passes.len();
        let mut pass_end: Vec<f64> = timer.passes.iter().map(|p| p.end_ms.unwrap_or(f64::NEG_INFINITY)).collect();
        let mut copy_busy = vec![0f64; n];
        for s in &timer.spans {
            if s.warm {
                // Issued while the device was idle: in no pass's time.
                self.warm_copy_ms += s.end_ms - s.start_ms;
                self.warm_copy_bytes += s.bytes;
                continue;
            }
            pass_end[s.pass] = pass_end[s.pass].max(s.end_ms);
            if s.lane == Lane::Copy {
                copy_busy[s.pass] += s.end_ms - s.start_ms;
                self.copy_bytes += s.bytes;
                self.copy_ms += s.end_ms - s.start_ms;
            }
        }
        if self.copy_ms > 0.0 {
            self.copy_gbps = self.copy_bytes as f64 / (self.copy_ms * 1e-3) / 1e9;
        }
        let device_ms = |i: usize| match timer.passes[i].start_ms {
            Some(s) if pass_end[i].is_finite() => Some(pass_end[i] - s),
            _ => None,
        };
        let (mut dec_dev, mut dec_wall, mut dec_busy) = (Vec::new(), Vec::new(), (0f64, 0f64));
        let mut prev_logits: Option<std::time::Instant> = None;
        for (i, p) in timer.passes.iter().enumerate() {
            match p.phase {
                PhaseName::Prefill => {
                    if let Some(t) = p.host_logits {
                        self.ttft_ms = (t - p.host_begin).as_secs_f64() * 1e3;
                    }
                    if let Some(d) = device_ms(i) {
                        self.prefill_device_ms = d;
                        self.prefill_copy_busy = copy_busy[i] / d.max(1e-9);
                    }
                }
                PhaseName::Decode => {
                    self.decode_tokens += 1;
                    if let (Some(t), Some(prev)) = (p.host_logits, prev_logits) {
                        dec_wall.push((t - prev).as_secs_f64() * 1e3);
                    }
                    if let Some(d) = device_ms(i) {
                        dec_dev.push(d);
                        dec_busy.0 += copy_busy[i];
                        dec_busy.1 += d;
                    }
                }
            }
            prev_logits = p.host_logits.or(prev_logits);
        }
        self.decode_ms_per_token = mean(&dec_wall);
        self.decode_device_ms_per_token = mean(&dec_dev);
        if dec_busy.1 > 0.0 {
            self.decode_copy_busy = dec_busy.0 / dec_busy.1;
        }
    }
}

impl std::fmt::Display for CudaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        writeln!(f, "device            {}", self.device)?;
        writeln!(f, "TTFT              {:.2} ms (device prefill {:.2} ms)", self.ttft_ms, self.prefill_device_ms)?;
        writeln!(
            f,
            "decode            {:.3} ms/token over {} tokens (device {:.3} ms/token)",
            self.decode_ms_per_token, self.decode_tokens, self.decode_device_ms_per_token
        )?;
        writeln!(
            f,
            "copy lane         {:.2} GB/s, {:.3} GiB in {:.1} ms; busy {:.0}% of prefill, {:.0}% of decode",
            self.copy_gbps,
            gib(self.copy_bytes),
            self.copy_ms,
            self.prefill_copy_busy * 100.0,
            self.decode_copy_busy * 100.0
        )?;
        writeln!(f, "decode step       {} ({} passes replayed)", self.decode_graph, self.decode_graph_replays)?;
        if self.warm_copy_bytes > 0 {
            writeln!(
                f,
                "warm copies       {:.3} GiB in {:.1} ms, while idle (at load and after each request)",
                gib(self.warm_copy_bytes),
                self.warm_copy_ms
            )?;
        }
        write!(
            f,
            "device memory     peak {:.3} GiB (arena {:.3} GiB, budget {:.3} GiB, ballast {:.3} GiB); pinned host {:.3} GiB",
            gib(self.peak_device_bytes),
            gib(self.arena_bytes),
            gib(self.budget_bytes),
            gib(self.ballast_bytes),
            gib(self.pinned_bytes)
        )
    }
}
