//! SIGTERM (and SIGINT) stop the server gracefully: no new connections,
//! every request already queued or running finishes, then exit status 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

fn signal_and_drain(signal: i32, name: &str) {
    let model = model(&format!("drain_{name}"));
    let mut server = Server::start(&model, &["--queue", "4", "--send-buffer", "4096", "--stall-timeout", "60"]);
    // A stream whose reader has stopped holds the engine, so that two requests wait in the queue.
    let mut s = tight_connection(server.port);
    s.write_all(&post_bytes(
        "/v1/completions",
        br#"{"prompt": "Once upon a time", "max_tokens": 240, "stream": true}"#,
    ))
    .unwrap();
    server.wait_for("the stream to start", |m| m.get("djinn_requests_running") == 1.0);
    let port = server.port;
    let waiting: Vec<_> = [
        r#"{"prompt": "The capital of France is", "max_tokens": 6}"#,
        r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}"#,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| {
        let path = if i == 0 { "/v1/completions" } else { "/v1/chat/completions" };
        std::thread::spawn(move || post(port, path, body.as_bytes()))
    })
    .collect();
    server.wait_for("two queued requests", |m| m.get("djinn_queue_depth") == 2.0);

    let pid = server.child.id() as i32;
    // SAFETY: kill(2) on the pid of a child this test started and has not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let start = Instant::now();
    // The listener closes: a new connection is refused (once the signal has been handled).
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(_) => break,
            Ok(_) => {
                assert!(start.elapsed() < Duration::from_secs(10), "still accepting connections after {name}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // The stalled reader reads at last: its stream completes, then the queued requests run.
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let stream = parse_response(&bytes);
    assert_eq!(stream.status, 200);
    let events = stream.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the running stream was cut: {} events",
        events.len()
    );
    for (i, w) in waiting.into_iter().enumerate() {
        let r = w.join().unwrap();
        assert_eq!(r.status, 200, "queued request {i}: {}", r.text());
        assert_eq!(r.json()["usage"]["completion_tokens"], 6, "queued request {i}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "djinn-serve did not exit after {name} and draining:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{name}: {status:?}\n{}", server.stderr());
    // The reader thread may lag the exit by a moment.
    std::thread::sleep(Duration::from_millis(100));
    let log = server.stderr();
    assert!(log.contains(&format!("{name}: no new connections")) && log.contains("djinn-serve: stopped"), "{log}");
}

#[test]
fn sigterm_stops_accepting_drains_the_queue_and_exits_0() {
    signal_and_drain(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_does_the_same() {
    signal_and_drain(libc::SIGINT, "SIGINT");
}
