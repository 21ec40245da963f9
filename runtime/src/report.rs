//! What a run measured, printed on stderr and written by `--json`.
//!
//! Definitions: `ttft_ms` is host wall time from the start of prefill to the
//! first token chosen; `decode_step_ms` holds one entry per decode pass after
//! that (host wall time of the pass, logits read back and the next token
//! chosen), `decode_ms_per_token` is their median and `tokens_per_s` their
//! count over their sum; `copy_bytes_per_token` is what the copy lane moved
//! per decode pass (block images, as the plan's copy steps size them). Peak
//! memory is the host's resident-set high-water mark (`VmHWM` in
//! `/proc/self/status`) and, with a device, the backend's device peak.

use djinn_core::plan::Plan;
use djinn_core::units::fmt_bytes;
use serde::Serialize;

use crate::generate::{Generation, StopReason};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub backend: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// `max_new_tokens`, `eos` or `max_seq_len`.
    pub stop_reason: &'static str,
    pub ttft_ms: f64,
    pub decode_step_ms: Vec<f64>,
    pub decode_ms_per_token: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub copy_bytes_per_token: Option<f64>,
    pub peak_host_rss_bytes: Option<u64>,
    pub peak_device_bytes: Option<u64>,
    pub peak_method: String,
    pub predicted_ttft_ms: f64,
    pub predicted_decode_ms_per_token: f64,
    pub predicted_copy_bytes_per_token: u64,
    pub tokens: Vec<u32>,
    /// The generated text, when a tokenizer was available.
    pub text: Option<String>,
    /// What a device backend measured besides (CUDA: device timings, copy bandwidth, lane occupancy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<serde_json::Value>,
}

impl Report {
    pub fn new(plan: &Plan, gen: &Generation, backend: String, peak_device_bytes: Option<u64>) -> Report {
        let steps = &gen.decode_ms;
        let total: f64 = steps.iter().sum();
        let copied = &gen.decode_copy_bytes;
        Report {
            backend,
            prompt_tokens: gen.prompt_tokens,
            generated_tokens: gen.tokens.len(),
            stop_reason: match gen.stop {
                StopReason::MaxNewTokens => "max_new_tokens",
                StopReason::Eos(_) => "eos",
                StopReason::MaxSeqLen => "max_seq_len",
                StopReason::Caller => "stop_string",
            },
            ttft_ms: gen.ttft_ms,
            decode_step_ms: steps.clone(),
            decode_ms_per_token: median(steps),
            tokens_per_s: (total > 0.0).then(|| steps.len() as f64 / total * 1e3),
            copy_bytes_per_token: (!copied.is_empty()).then(|| copied.iter().sum::<u64>() as f64 / copied.len() as f64),
            peak_host_rss_bytes: peak_rss_bytes(),
            peak_device_bytes,
            peak_method: match peak_device_bytes {
                Some(_) => "device: backend's peak of device memory held; host: VmHWM".into(),
                None => "host VmHWM (/proc/self/status)".into(),
            },
            predicted_ttft_ms: plan.prediction.ttft_ms,
            predicted_decode_ms_per_token: plan.prediction.decode_ms_per_token,
            predicted_copy_bytes_per_token: plan.prediction.streamed_bytes_per_token,
            tokens: gen.tokens.clone(),
            text: None,
            device: None,
        }
    }

    /// The human summary for stderr.
    pub fn render(&self) -> String {
        let opt_ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<22} {v}\n"));
        line("backend", self.backend.clone());
        line("prompt tokens", self.prompt_tokens.to_string());
        line("generated tokens", format!("{} (stopped: {})", self.generated_tokens, self.stop_reason));
        line("TTFT", format!("{:.2} ms (plan predicts {:.2} ms on its GPU)", self.ttft_ms, self.predicted_ttft_ms));
        line(
            "decode",
            format!(
                "{}/token median over {} steps (plan predicts {:.2} ms)",
                opt_ms(self.decode_ms_per_token),
                self.decode_step_ms.len(),
                self.predicted_decode_ms_per_token
            ),
        );
        line("throughput", self.tokens_per_s.map_or("-".into(), |t| format!("{t:.2} tokens/s")));
        line(
            "copy lane",
            match self.copy_bytes_per_token {
                Some(b) => {
                    format!("{}/token (plan: {})", fmt_bytes(b as u64), fmt_bytes(self.predicted_copy_bytes_per_token))
                }
                None => "-".into(),
            },
        );
        line(
            "peak host memory",
            self.peak_host_rss_bytes.map_or("unknown".into(), |b| format!("{} (VmHWM)", fmt_bytes(b))),
        );
        if let Some(b) = self.peak_device_bytes {
            line("peak device memory", fmt_bytes(b));
        }
        out
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

/// The process's peak resident set (`VmHWM`), where `/proc` has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let b = peak_rss_bytes().expect("VmHWM in /proc/self/status");
            assert!(b > 1 << 20, "{b}");
        }
    }
}
