//! `/metrics`: counters, gauges and histograms in Prometheus' text
//! exposition format (version 0.0.4), written by hand: a dozen series do
//! not need a metrics framework, and every name and label here is one a
//! test reads back.
//!
//! The HTTP side counts requests by endpoint and status; the engine thread
//! counts tokens, the copy lane's bytes (what `Generation::decode_copy_bytes`
//! says each decode pass moved), latencies, and streams it dropped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Why the engine stopped a request before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The client went away (its response channel closed).
    Disconnected,
    /// The client took no token for longer than `--stall-timeout`.
    Stalled,
}

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds (seconds) of the time-between-tokens buckets.
const TOKEN_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramInner>,
}

#[derive(Debug, Default)]
struct HistogramInner {
    /// Per bucket, not cumulative; one more than `bounds` (+Inf).
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, inner: Mutex::new(HistogramInner { counts: vec![0; bounds.len() + 1], sum: 0.0 }) }
    }

    fn observe(&self, seconds: f64) {
        let at = self.bounds.iter().position(|&b| seconds <= b).unwrap_or(self.bounds.len());
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        h.counts[at] += 1;
        h.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, &b) in self.bounds.iter().enumerate() {
            cumulative += h.counts[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += h.counts[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", h.sum);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports; shared by the HTTP handlers and the engine thread.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    copy_bytes: AtomicU64,
    decode_passes: AtomicU64,
    queue_depth: AtomicI64,
    running: AtomicI64,
    disconnected: AtomicU64,
    stalled: AtomicU64,
    ttft: Histogram,
    token_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            copy_bytes: AtomicU64::new(0),
            decode_passes: AtomicU64::new(0),
            queue_depth: AtomicI64::new(0),
            running: AtomicI64::new(0),
            disconnected: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            token_latency: Histogram::new(TOKEN_BUCKETS),
        }
    }

    /// One response with `status` from `endpoint` (a route, or `other`).
    pub fn request(&self, endpoint: &str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((endpoint.to_string(), status)).or_insert(0) += 1;
    }

    /// A generation ran: its prompt and generated token counts, and the
    /// bytes its decode passes copied.
    pub fn generation(&self, prompt: usize, completion: usize, decode_copy_bytes: &[u64]) {
        self.prompt_tokens.fetch_add(prompt as u64, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion as u64, Ordering::Relaxed);
        self.copy_bytes.fetch_add(decode_copy_bytes.iter().sum(), Ordering::Relaxed);
        self.decode_passes.fetch_add(decode_copy_bytes.len() as u64, Ordering::Relaxed);
    }

    pub fn queued(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    pub fn running(&self, delta: i64) {
        self.running.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn dropped(&self, why: Dropped) {
        match why {
            Dropped::Disconnected => &self.disconnected,
            Dropped::Stalled => &self.stalled,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// From the request's arrival (queueing included) to its first token.
    pub fn first_token(&self, after: Duration) {
        self.ttft.observe(after.as_secs_f64());
    }

    /// Between two tokens of one request.
    pub fn next_token(&self, after: Duration) {
        self.token_latency.observe(after.as_secs_f64());
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        out.push_str("# HELP djinn_requests_total HTTP responses, by endpoint and status.\n");
        out.push_str("# TYPE djinn_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "djinn_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "djinn_prompt_tokens_total",
            "Prompt tokens run through the model.",
            load(&self.prompt_tokens),
        );
        counter(&mut out, "djinn_completion_tokens_total", "Tokens generated.", load(&self.completion_tokens));
        counter(
            &mut out,
            "djinn_copy_lane_bytes_total",
            "Bytes the copy lane moved in decode passes.",
            load(&self.copy_bytes),
        );
        counter(&mut out, "djinn_decode_passes_total", "Decode passes run.", load(&self.decode_passes));
        let _ = writeln!(
            out,
            "# HELP djinn_streams_dropped_total Requests the engine stopped early, by reason.\n\
             # TYPE djinn_streams_dropped_total counter\n\
             djinn_streams_dropped_total{{reason=\"disconnected\"}} {}\n\
             djinn_streams_dropped_total{{reason=\"stalled\"}} {}",
            load(&self.disconnected),
            load(&self.stalled)
        );
        gauge(&mut out, "djinn_queue_depth", "Requests waiting for the engine.", self.queue_depth());
        gauge(
            &mut out,
            "djinn_requests_running",
            "Requests the engine is generating for.",
            self.running.load(Ordering::Relaxed),
        );
        self.ttft.render(
            &mut out,
            "djinn_time_to_first_token_seconds",
            "From a request's arrival (queueing included) to its first token.",
        );
        self.token_latency.render(
            &mut out,
            "djinn_time_per_output_token_seconds",
            "Between consecutive tokens of a request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::new();
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 400);
        m.first_token(Duration::from_millis(3));
        m.first_token(Duration::from_millis(40));
        m.first_token(Duration::from_secs(100));
        m.generation(5, 7, &[10, 20]);
        let text = m.render();
        for line in [
            "djinn_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2",
            "djinn_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1",
            "djinn_time_to_first_token_seconds_bucket{le=\"0.005\"} 1",
            "djinn_time_to_first_token_seconds_bucket{le=\"0.05\"} 2",
            "djinn_time_to_first_token_seconds_bucket{le=\"30\"} 2",
            "djinn_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3",
            "djinn_time_to_first_token_seconds_count 3",
            "djinn_prompt_tokens_total 5",
            "djinn_completion_tokens_total 7",
            "djinn_copy_lane_bytes_total 30",
            "djinn_decode_passes_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}
