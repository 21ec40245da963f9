//! Every request the server refuses gets a 4xx and OpenAI's error object
//! naming what is wrong, is counted in `/metrics` by its status, and
//! leaves the server serving; and a server that cannot start says why and
//! exits 1 before it listens.

use std::process::Command;

use serde_json::json;

use crate::common::*;

/// (what, endpoint, raw body, status, type, param, code, words the message must hold)
type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, &'a str, Option<&'a str>, Option<&'a str>, &'a [&'a str]);

#[test]
fn bad_requests_get_openai_errors_naming_what_is_wrong() {
    let model = model("bad_requests");
    let server = Server::start(&model, &["--max-body", "4096"]);
    let long_prompt = vec![1u32; 300];
    let words = "word ".repeat(300);
    let ctx = Some("context_length_exceeded");
    let inv = "invalid_request_error";
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "/v1/completions",
            b"{\"prompt\": \"x\",".to_vec(),
            400,
            inv,
            None,
            None,
            &["not valid JSON"],
        ),
        (
            "trailing bytes",
            "/v1/completions",
            b"{\"prompt\": \"x\"} {}".to_vec(),
            400,
            inv,
            None,
            None,
            &["not valid JSON"],
        ),
        ("not an object", "/v1/completions", b"[\"x\", 3]".to_vec(), 400, inv, None, None, &["not a JSON object"]),
        (
            "unknown field",
            "/v1/completions",
            br#"{"prompt": "x", "temprature": 0.5}"#.to_vec(),
            400,
            inv,
            Some("temprature"),
            None,
            &["unknown field `temprature`"],
        ),
        (
            "unknown field in a message",
            "/v1/chat/completions",
            br#"{"messages": [{"role": "user", "content": "x", "tool_calls": []}]}"#.to_vec(),
            400,
            inv,
            Some("messages[0].tool_calls"),
            None,
            &["unknown field"],
        ),
        (
            "wrong type",
            "/v1/completions",
            br#"{"prompt": "x", "max_tokens": "many"}"#.to_vec(),
            400,
            inv,
            Some("max_tokens"),
            None,
            &["invalid `max_tokens`"],
        ),
        (
            "missing prompt",
            "/v1/completions",
            br#"{"max_tokens": 3}"#.to_vec(),
            400,
            inv,
            None,
            None,
            &["missing field `prompt`"],
        ),
        (
            "non-UTF-8 body",
            "/v1/completions",
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
            400,
            inv,
            None,
            None,
            &["not UTF-8", "offset 12"],
        ),
        (
            "oversized body",
            "/v1/completions",
            json!({"prompt": "y".repeat(5000)}).to_string().into_bytes(),
            413,
            inv,
            None,
            Some("request_too_large"),
            &["4096 bytes", "--max-body"],
        ),
        (
            "prompt past max_seq_len (ids)",
            "/v1/completions",
            json!({"prompt": long_prompt}).to_string().into_bytes(),
            400,
            inv,
            Some("prompt"),
            ctx,
            &["maximum context length is 256 tokens", "300 tokens"],
        ),
        (
            "prompt past max_seq_len (text)",
            "/v1/completions",
            json!({"prompt": words}).to_string().into_bytes(),
            400,
            inv,
            Some("prompt"),
            ctx,
            &["maximum context length is 256 tokens"],
        ),
        (
            "chat prompt past max_seq_len",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": words}]}).to_string().into_bytes(),
            400,
            inv,
            Some("messages"),
            ctx,
            &["maximum context length is 256 tokens"],
        ),
        (
            "max_tokens past the context",
            "/v1/completions",
            br#"{"prompt": "Once upon a time", "max_tokens": 252}"#.to_vec(),
            400,
            inv,
            Some("max_tokens"),
            ctx,
            &["the prompt is 5 tokens", "asks for 252 more", "at most 251 fit"],
        ),
        (
            "max_completion_tokens past the context",
            "/v1/chat/completions",
            br#"{"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 100000}"#.to_vec(),
            400,
            inv,
            Some("max_completion_tokens"),
            ctx,
            &["asks for 100000 more"],
        ),
        (
            "max_tokens 0",
            "/v1/completions",
            br#"{"prompt": "x", "max_tokens": 0}"#.to_vec(),
            400,
            inv,
            Some("max_tokens"),
            None,
            &["at least 1"],
        ),
        (
            "temperature",
            "/v1/completions",
            br#"{"prompt": "x", "temperature": -1}"#.to_vec(),
            400,
            inv,
            Some("temperature"),
            None,
            &[">= 0"],
        ),
        (
            "top_p",
            "/v1/completions",
            br#"{"prompt": "x", "top_p": 1.5}"#.to_vec(),
            400,
            inv,
            Some("top_p"),
            None,
            &["(0, 1]"],
        ),
        ("n", "/v1/completions", br#"{"prompt": "x", "n": 3}"#.to_vec(), 400, inv, Some("n"), None, &["batch 1"]),
        (
            "token outside the vocabulary",
            "/v1/completions",
            br#"{"prompt": [1, 99999]}"#.to_vec(),
            400,
            inv,
            Some("prompt"),
            None,
            &["token id 99999 at prompt position 1", "32000"],
        ),
        (
            "empty messages",
            "/v1/chat/completions",
            br#"{"messages": []}"#.to_vec(),
            400,
            inv,
            Some("messages"),
            None,
            &["empty"],
        ),
        (
            "another model",
            "/v1/completions",
            br#"{"prompt": "x", "model": "gpt-4o"}"#.to_vec(),
            404,
            inv,
            None,
            Some("model_not_found"),
            &["`gpt-4o` does not exist", "tiny-llama-mha"],
        ),
    ];
    let mut counts = std::collections::BTreeMap::<(&str, u16), f64>::new();
    for (what, endpoint, body, status, kind, param, code, words) in &cases {
        let r = post(server.port, endpoint, body);
        assert_eq!(r.status, *status, "{what}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{what}: {:?}", r.headers);
        let (message, t, p, c) = r.error();
        assert_eq!(t, *kind, "{what}: type");
        assert_eq!(p.as_deref(), *param, "{what}: param ({message})");
        assert_eq!(c.as_deref(), *code, "{what}: code ({message})");
        for w in *words {
            assert!(message.contains(w), "{what}: the message lacks {w:?}: {message}");
        }
        *counts.entry((endpoint, *status)).or_default() += 1.0;
    }

    // Not a route, and not the route's method.
    let r = server.get("/v2/engines");
    assert_eq!((r.status, r.error().3.as_deref()), (404, Some("unknown_url")));
    let r = server.get("/v1/completions");
    assert_eq!(r.status, 405);
    assert!(r.error().0.contains("GET is not allowed on /v1/completions"));
    let r = server.get("/v1/models/gpt-4o");
    assert_eq!((r.status, r.error().3.as_deref()), (404, Some("model_not_found")));

    // Still serving, and every refusal counted by endpoint and status.
    let ok = server.post("/v1/completions", r#"{"prompt": "Once upon a time", "max_tokens": 4}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let m = server.metrics();
    for ((endpoint, status), n) in counts {
        assert_eq!(m.requests(endpoint, status), n, "djinn_requests_total for {endpoint} {status}");
    }
    assert_eq!(m.requests("/v1/completions", 405), 1.0);
    assert_eq!(m.requests("/v1/models/{id}", 404), 1.0);
    assert_eq!(m.requests("other", 404), 1.0);
    assert_eq!(m.requests("/v1/completions", 200), 1.0);
    // Only the one good request reached the engine.
    assert_eq!(m.get("djinn_prompt_tokens_total"), 5.0);
    assert_eq!(m.get("djinn_completion_tokens_total"), 4.0);
}

/// The small endpoints: the chat page, health, the model list, metrics' content type.
#[test]
fn the_page_health_models_and_metrics_endpoints() {
    let model = model("small_endpoints");
    let server = Server::start(&model, &[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let html = page.text();
    assert!(html.contains("/v1/chat/completions") && html.contains("stream: true") && html.contains("<script>"));
    let health = server.get("/health").json();
    assert_eq!((health["status"].as_str(), health["model"].as_str()), (Some("ok"), Some("tiny-llama-mha")));
    let models = server.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny-llama-mha");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["max_model_len"], 256);
    assert_eq!(server.get("/v1/models/tiny-llama-mha").json()["id"], "tiny-llama-mha");
    let metrics = server.get("/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for name in [
        "djinn_requests_total",
        "djinn_prompt_tokens_total",
        "djinn_completion_tokens_total",
        "djinn_time_to_first_token_seconds",
        "djinn_time_per_output_token_seconds",
        "djinn_queue_depth",
        "djinn_copy_lane_bytes_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "/metrics lacks {name}:\n{text}");
    }
    assert!(server.stderr().contains("serving tiny-llama-mha (cpu backend, context 256 tokens, chat template)"));
}

/// A plan that does not verify is refused before the socket opens: exit 1, the reason on stderr.
#[test]
fn a_server_that_cannot_start_says_why_and_exits_1() {
    let model = model("refused_start");
    let bad = model.scratch.0.join("bad.toml");
    let text: Vec<String> = std::fs::read_to_string(&model.plan)
        .unwrap()
        .lines()
        .map(|l| if l.starts_with("format_version = ") { "format_version = 99".into() } else { l.to_string() })
        .collect();
    let text = text.join("\n");
    assert!(text.contains("format_version = 99"), "the plan names its format version");
    std::fs::write(&bad, text).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_djinn-serve")).args(args).args(["--port", "0"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("serving"), "{args:?}: it listened: {stderr}");
        stderr
    };
    let e = run(&[bad.to_str().unwrap(), "--weights", model.dir.to_str().unwrap()]);
    assert!(e.contains("djinn-serve: error:") && e.contains("bad.toml") && e.contains("99"), "{e}");
    let other = repo_root().join("tests/fixtures/tiny-llama-gqa");
    let e = run(&[model.plan.to_str().unwrap(), "--weights", other.to_str().unwrap()]);
    assert!(e.contains("the plan was compiled for another model"), "{e}");
    let e = run(&[model.plan.to_str().unwrap(), "--weights", model.dir.to_str().unwrap(), "--stall-timeout", "0"]);
    assert!(e.contains("--stall-timeout 0"), "{e}");
    // The port is taken: the bind error names the address.
    let server = Server::start(&model, &[]);
    let port = server.port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_djinn-serve"))
        .args([model.plan.to_str().unwrap(), "--weights", model.dir.to_str().unwrap(), "--port", &port])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{e}");
}
