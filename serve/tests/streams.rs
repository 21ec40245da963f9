//! Clients that misbehave cannot hold the engine: one that hangs up
//! mid-stream is dropped at the next token, one that stops reading is
//! dropped after the stall timeout, and a full queue refuses with 429
//! rather than waiting.
//!
//! A reader that stops is made visible to the engine by small buffers
//! between them: the client's socket takes almost nothing unread
//! ([`tight_connection`]) and the server's send buffer is 4 KiB
//! (`--send-buffer`), so a stream of a couple hundred tokens fills them,
//! and the job's channel, within its first hundred or so tokens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

/// A long streaming completion: more tokens than the buffers between a stalled reader and the engine hold.
const LONG: &str = r#"{"prompt": "Once upon a time", "max_tokens": 240, "stream": true}"#;

/// Sends a long streaming request on a connection that takes almost nothing unread, and does not read.
fn stalled_stream(server: &Server) -> TcpStream {
    let mut s = tight_connection(server.port);
    s.write_all(&post_bytes("/v1/completions", LONG.as_bytes())).unwrap();
    s
}

/// Waits until the engine is stuck on a stalled reader: one request running, its token count standing still.
fn wait_until_stuck(server: &Server) -> f64 {
    let mut last = -1.0;
    let mut since = Instant::now();
    let start = Instant::now();
    loop {
        let m = server.metrics();
        // Token latencies are observed as each token is chosen: a stuck engine adds none.
        let running = m.get("djinn_requests_running");
        let seen = m.get("djinn_time_per_output_token_seconds_count");
        if running == 1.0 && seen == last && seen > 0.0 {
            if since.elapsed() > Duration::from_millis(500) {
                return seen;
            }
        } else {
            last = seen;
            since = Instant::now();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the engine never got stuck on the stalled reader: {m:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_the_engine_at_the_next_token() {
    let model = model("disconnect");
    let server = Server::start(&model, &["--send-buffer", "4096", "--stall-timeout", "60"]);

    // A reader that takes the first events, then hangs up.
    let mut s = connect(server.port);
    s.write_all(&post_bytes("/v1/completions", LONG.as_bytes())).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while sse_data(&String::from_utf8_lossy(&got)).len() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let m = server
        .wait_for("the dropped stream", |m| m.dropped("disconnected") == 1.0 && m.get("djinn_requests_running") == 0.0);
    let generated = m.get("djinn_completion_tokens_total");
    assert!(generated < 240.0, "the engine generated all {generated} tokens for a client that had gone");

    // A reader that never reads, so that the engine waits on it, then hangs up: freed at once, not after the timeout.
    let stalled = stalled_stream(&server);
    wait_until_stuck(&server);
    let hung_up = Instant::now();
    drop(stalled);
    let ok = server.post("/v1/completions", r#"{"prompt": "Once upon a time", "max_tokens": 8}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(hung_up.elapsed() < Duration::from_secs(20), "the next request waited {:?}", hung_up.elapsed());
    let m = server.metrics();
    assert_eq!(m.dropped("disconnected"), 2.0);
    assert_eq!(m.dropped("stalled"), 0.0);
    assert!(m.get("djinn_completion_tokens_total") - generated - 8.0 < 240.0, "{m:?}");
}

#[test]
fn a_stalled_reader_is_dropped_after_the_timeout_and_others_are_served() {
    let model = model("stalled");
    let server = Server::start(&model, &["--send-buffer", "4096", "--stall-timeout", "1"]);
    let mut stalled = stalled_stream(&server);
    // Once the stream has started, another client's request: it runs as soon as the stalled one is dropped.
    server.wait_for("the stalled stream to start", |m| m.get("djinn_requests_running") == 1.0);
    let start = Instant::now();
    let ok = server.post("/v1/completions", r#"{"prompt": "The capital of France is", "max_tokens": 8}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["usage"]["completion_tokens"], 8);
    assert!(start.elapsed() < Duration::from_secs(20), "the other request waited {:?}", start.elapsed());
    let m = server.metrics();
    assert_eq!(m.dropped("stalled"), 1.0, "{m:?}");
    // The stalled client, reading at last, finds its stream cut short: no finish, no [DONE].
    let mut bytes = Vec::new();
    let _ = stalled.read_to_end(&mut bytes);
    let r = parse_response(&bytes);
    assert_eq!(r.status, 200);
    let events = r.events();
    assert!(!events.is_empty() && !events.contains(&"[DONE]".to_string()), "{events:?}");
    assert!(events.len() < 240, "{} events", events.len());
}

#[test]
fn a_full_queue_refuses_with_429_and_the_queued_request_runs_after() {
    let model = model("queue_full");
    let server = Server::start(&model, &["--queue", "1", "--send-buffer", "4096", "--stall-timeout", "60"]);
    let stalled = stalled_stream(&server);
    wait_until_stuck(&server);
    let port = server.port;
    let queued = std::thread::spawn(move || {
        post(port, "/v1/completions", br#"{"prompt": "The capital of France is", "max_tokens": 4}"#)
    });
    server.wait_for("the second request to queue", |m| m.get("djinn_queue_depth") == 1.0);
    let refused = server.post("/v1/completions", r#"{"prompt": "x", "max_tokens": 4}"#);
    assert_eq!(refused.status, 429, "{}", refused.text());
    let (message, kind, _, code) = refused.error();
    assert_eq!((kind.as_str(), code.as_deref()), ("rate_limit_error", Some("queue_full")));
    assert!(message.contains("--queue") && message.contains("1 are waiting"), "{message}");
    let chat = server.post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "Hi"}]}"#);
    assert_eq!(chat.status, 429);
    drop(stalled);
    let r = queued.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    let m = server.metrics();
    assert_eq!(m.requests("/v1/completions", 429), 1.0);
    assert_eq!(m.requests("/v1/chat/completions", 429), 1.0);
    assert_eq!(m.get("djinn_queue_depth"), 0.0);
}
