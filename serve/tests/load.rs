//! A bounded load test on loopback: 200 requests from 32 concurrent
//! clients, streaming and not, chat and completions, some hanging up
//! after the first event. Every response that completes is the text
//! `djinn-exec` generates for the same request (greedy), no request is
//! lost or answered twice, `/metrics` counts what was sent, and the
//! server's memory does not grow between the first and the second half.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use crate::common::*;

const REQUESTS: usize = 200;
const CLIENTS: usize = 32;
/// Every `HANG_UP`th request (from the 4th) is a stream whose client leaves after its first text.
const HANG_UP: usize = 8;
/// Most the server's RSS may grow from the end of the first half to the end of the second.
const RSS_GROWTH: u64 = 8 << 20;

/// One distinct request and what djinn-exec makes of it.
struct Variant {
    endpoint: &'static str,
    body: Value,
    max_tokens: usize,
    prompt_tokens: usize,
    tokens: usize,
    text: String,
}

fn variants(model: &Model) -> Vec<Variant> {
    let tok = djinn_runtime::tokenizer::Tokenizer::load(&model.dir, None, Some(1)).unwrap();
    let mut out = Vec::new();
    for (prompt, max) in
        [("Once upon a time", 6), ("The capital of France is", 8), ("Hello", 5), ("In a hole in the ground", 7)]
    {
        let (tokens, text) = exec(model, &["--prompt", prompt, "--max-new-tokens", &max.to_string()]);
        out.push(Variant {
            endpoint: "/v1/completions",
            body: json!({"prompt": prompt, "max_tokens": max, "temperature": 0}),
            max_tokens: max,
            prompt_tokens: tok.encode(prompt).unwrap().len(),
            tokens: tokens.len(),
            text,
        });
    }
    // A stop string from the middle of a completion's text cuts it there.
    let full = &out[1];
    let stop: String = full.text.chars().skip(full.text.chars().count() / 2).take(3).collect();
    let (tokens, text) =
        exec(model, &["--prompt", "The capital of France is", "--max-new-tokens", "8", "--stop", &stop]);
    assert!(text.len() < full.text.len(), "the stop string {stop:?} cuts {:?}", full.text);
    out.push(Variant {
        endpoint: "/v1/completions",
        body: json!({"prompt": "The capital of France is", "max_tokens": 8, "stop": [stop]}),
        max_tokens: 8,
        prompt_tokens: full.prompt_tokens,
        tokens: tokens.len(),
        text,
    });
    let chat = djinn_runtime::chat::ChatTemplate::load(&model.dir).unwrap();
    for (system, user, max) in [(None, "Hi there", 6), (Some("Be brief."), "Tell me a story", 8)] {
        let mut args = vec!["--chat", user, "--max-new-tokens"];
        let max_s = max.to_string();
        args.push(&max_s);
        let mut messages = Vec::new();
        let mut turns = Vec::new();
        if let Some(s) = system {
            args.extend(["--system", s]);
            messages.push(json!({"role": "system", "content": s}));
            turns.push(djinn_runtime::chat::Message::new("system", s));
        }
        messages.push(json!({"role": "user", "content": user}));
        turns.push(djinn_runtime::chat::Message::new("user", user));
        let (tokens, text) = exec(model, &args);
        let prompt = tok.encode_rendered(&chat.render(&turns, true).unwrap()).unwrap();
        out.push(Variant {
            endpoint: "/v1/chat/completions",
            body: json!({"messages": messages, "max_tokens": max, "model": "tiny-llama-mha"}),
            max_tokens: max,
            prompt_tokens: prompt.len(),
            tokens: tokens.len(),
            text,
        });
    }
    out
}

/// What one request got back.
#[derive(Debug)]
enum Outcome {
    /// A complete response: (id, text, prompt_tokens, completion_tokens, finish_reason).
    Done(String, String, u64, u64, String),
    /// The client hung up after the first event, as planned.
    HungUp,
}

fn one(port: u16, v: &Variant, stream: bool, hang_up: bool) -> Outcome {
    let mut body = v.body.clone();
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let raw = post_bytes(v.endpoint, body.to_string().as_bytes());
    if hang_up {
        let mut s = connect(port);
        s.write_all(&raw).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // The first event with text: chat's role chunk comes before the engine has started.
        let first = if v.endpoint == "/v1/chat/completions" { 2 } else { 1 };
        while sse_data(&String::from_utf8_lossy(&got)).len() < first {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended before its first event");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
        return Outcome::HungUp;
    }
    let r = request(port, &raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    if stream {
        let events = r.events();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
        let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let ids: BTreeSet<String> = chunks.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 1, "one id per stream: {ids:?}");
        let usage = &chunks.last().unwrap()["usage"];
        let finish = chunks.iter().rev().find_map(|c| c["choices"].get(0)?["finish_reason"].as_str()).unwrap();
        Outcome::Done(
            ids.into_iter().next().unwrap(),
            stream_text(&events),
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
            finish.to_string(),
        )
    } else {
        let j = r.json();
        let c = &j["choices"][0];
        let text = c["message"]["content"].as_str().or(c["text"].as_str()).unwrap().to_string();
        Outcome::Done(
            j["id"].as_str().unwrap().to_string(),
            text,
            j["usage"]["prompt_tokens"].as_u64().unwrap(),
            j["usage"]["completion_tokens"].as_u64().unwrap(),
            c["finish_reason"].as_str().unwrap().to_string(),
        )
    }
}

/// Request `i`: which variant, whether it streams, whether its client hangs up.
fn plan_of(i: usize, n: usize) -> (usize, bool, bool) {
    let hang_up = i % HANG_UP == 3;
    (i % n, hang_up || i.is_multiple_of(2), hang_up)
}

/// Requests `range` from `CLIENTS` threads; returns each request's outcome by index.
fn burst(port: u16, variants: &Arc<Vec<Variant>>, range: std::ops::Range<usize>) -> Vec<(usize, Outcome)> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, results, variants, end) = (next.clone(), results.clone(), variants.clone(), range.end);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let (v, stream, hang_up) = plan_of(i, variants.len());
                let outcome = one(port, &variants[v], stream, hang_up);
                results.lock().unwrap().push((i, outcome));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

#[test]
fn two_hundred_requests_from_32_clients_match_djinn_exec() {
    let model = model("load");
    let variants = Arc::new(variants(&model));
    let server = Server::start(&model, &["--queue", "64"]);
    let start = Instant::now();
    let mut outcomes = burst(server.port, &variants, 0..REQUESTS / 2);
    server.wait_for("the first half to finish", |m| {
        m.get("djinn_requests_running") == 0.0 && m.get("djinn_queue_depth") == 0.0
    });
    let rss_half = server.rss_bytes();
    outcomes.extend(burst(server.port, &variants, REQUESTS / 2..REQUESTS));
    server.wait_for("the second half to finish", |m| {
        m.get("djinn_requests_running") == 0.0 && m.get("djinn_queue_depth") == 0.0
    });
    let rss_end = server.rss_bytes();
    println!("{REQUESTS} requests in {:?}; RSS {rss_half} then {rss_end} bytes", start.elapsed());

    // Each request answered once.
    let indices: BTreeSet<usize> = outcomes.iter().map(|(i, _)| *i).collect();
    assert_eq!((outcomes.len(), indices.len()), (REQUESTS, REQUESTS), "a request lost or answered twice");
    let mut ids = BTreeSet::new();
    let (mut prompt_sum, mut completion_sum, mut hung_up, mut by_endpoint) = (0, 0, 0, [0.0, 0.0]);
    let mut max_hung_up = 0;
    for (i, outcome) in &outcomes {
        let (vi, _, _) = plan_of(*i, variants.len());
        let v = &variants[vi];
        prompt_sum += v.prompt_tokens;
        by_endpoint[usize::from(v.endpoint == "/v1/chat/completions")] += 1.0;
        match outcome {
            Outcome::HungUp => {
                hung_up += 1;
                max_hung_up += v.max_tokens;
            }
            Outcome::Done(id, text, prompt, completion, finish) => {
                assert!(ids.insert(id.clone()), "response id {id} given twice");
                assert_eq!(text, &v.text, "request {i} ({}): the text djinn-exec generates", v.body);
                assert_eq!((*prompt as usize, *completion as usize), (v.prompt_tokens, v.tokens), "request {i}: usage");
                let want = if v.tokens == v.max_tokens && v.body.get("stop").is_none() { "length" } else { "stop" };
                assert_eq!(finish, want, "request {i}: finish_reason");
                completion_sum += v.tokens;
            }
        }
    }
    assert!(hung_up >= REQUESTS / HANG_UP, "{hung_up} clients hung up");

    let m = server.metrics();
    assert_eq!(m.requests("/v1/completions", 200), by_endpoint[0]);
    assert_eq!(m.requests("/v1/chat/completions", 200), by_endpoint[1]);
    assert_eq!(m.get("djinn_prompt_tokens_total"), prompt_sum as f64, "every request's prompt ran once");
    let generated = m.get("djinn_completion_tokens_total") as usize;
    assert!(
        generated >= completion_sum + hung_up && generated <= completion_sum + max_hung_up,
        "{generated} tokens generated; {completion_sum} delivered, {hung_up} streams left after 1 to {max_hung_up}"
    );
    assert_eq!(m.get("djinn_time_to_first_token_seconds_count"), REQUESTS as f64);
    assert_eq!(m.get("djinn_time_per_output_token_seconds_count"), (generated - REQUESTS) as f64);
    assert!(m.dropped("disconnected") <= hung_up as f64);
    assert_eq!(m.dropped("stalled"), 0.0);
    assert!(
        rss_end < rss_half + RSS_GROWTH,
        "the server's RSS grew from {rss_half} to {rss_end} bytes over the second {} requests",
        REQUESTS / 2
    );
}
