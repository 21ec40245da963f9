//! What every test of the server needs: a model (a copy of the tiny
//! fixture, given a chat template) and a plan for it, the `djinn-serve`
//! binary started on an ephemeral port, a plain HTTP/1.1 client over a
//! `TcpStream` (so that a test can send bytes no library would, stop
//! reading, or hang up mid-stream), `/metrics` read back, and the text
//! `djinn-exec` generates for the same request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A template in the style of Llama 2 chat's, written for these tests (the fixture ships none).
pub const CHAT_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'system' %}<<SYS>> {{ m.content }} <</SYS>> \
{% elif m.role == 'user' %}{{ bos_token }}[INST] {{ m.content.strip() }} [/INST]{% else %} {{ m.content }} {{ eos_token }}\
{% endif %}{% endfor %}";

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("djinn-serve-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A model directory and a plan for it.
pub struct Model {
    pub scratch: Scratch,
    pub dir: PathBuf,
    pub plan: PathBuf,
}

/// A copy of the MHA fixture with [`CHAT_TEMPLATE`] in its tokenizer_config.json,
/// and a T4 plan for it at `--prompt-len 64`, as the README's quick start compiles it.
pub fn model(test: &str) -> Model {
    let scratch = Scratch::new(test);
    let dir = scratch.0.join("tiny-llama-mha");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(repo_root().join("tests/fixtures/tiny-llama-mha")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let config = dir.join("tokenizer_config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["chat_template"] = Value::String(CHAT_TEMPLATE.into());
    std::fs::write(&config, json.to_string()).unwrap();
    let plan = scratch.0.join("tiny.toml");
    let argv = ["djinn-compile", "--gpu", "t4", "--model", dir.to_str().unwrap(), "--prompt-len", "64", "-o"]
        .map(str::to_string)
        .into_iter()
        .chain([plan.display().to_string()]);
    let done = djinn_compiler::cli::run(argv).unwrap_or_else(|e| panic!("djinn-compile: {e}"));
    assert_eq!(done.written_to.as_deref(), Some(plan.as_path()));
    Model { scratch, dir, plan }
}

/// A running `djinn-serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Everything it wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `djinn-serve PLAN --weights DIR --port 0 EXTRA…` and waits until it listens.
    pub fn start(model: &Model, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_djinn-serve"))
            .arg(&model.plan)
            .arg("--weights")
            .arg(&model.dir)
            .args(["--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("djinn-serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("on http://127.0.0.1:") {
                    let port: u16 = line[at + "on http://127.0.0.1:".len()..].trim().parse().unwrap();
                    let _ = port_tx.send(port);
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("djinn-serve did not start listening:\n{}", stderr.lock().unwrap());
            }
        };
        Server { child, port, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn post(&self, path: &str, body: &str) -> Http {
        post(self.port, path, body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Http {
        request(self.port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes())
    }

    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        Metrics::parse(&r.text())
    }

    /// Waits until `/metrics` satisfies `ok` (30 s at most).
    pub fn wait_for(&self, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        let start = Instant::now();
        loop {
            let m = self.metrics();
            if ok(&m) {
                return m;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; metrics:\n{m:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as it came over the wire.
#[derive(Debug, Clone)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, chunked transfer encoding undone.
    pub body: Vec<u8>,
}

impl Http {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent event stream.
    pub fn events(&self) -> Vec<String> {
        sse_data(&self.text())
    }

    /// OpenAI's error object, checked for its shape: `(message, type, param, code)`.
    pub fn error(&self) -> (String, String, Option<String>, Option<String>) {
        let j = self.json();
        let e = &j["error"];
        assert!(e.is_object(), "no error object: {j}");
        for k in ["message", "type", "param", "code"] {
            assert!(e.get(k).is_some(), "the error object lacks `{k}`: {j}");
        }
        let s = |v: &Value| v.as_str().map(str::to_string);
        (s(&e["message"]).unwrap(), s(&e["type"]).unwrap(), s(&e["param"]), s(&e["code"]))
    }
}

/// The `data:` payloads of an event stream's text.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))))
        .map(str::to_string)
        .collect()
}

/// The text of a stream's chunks, concatenated (chat deltas or completion texts).
pub fn stream_text(events: &[String]) -> String {
    let mut text = String::new();
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if let Some(c) = v["choices"].get(0) {
            text.push_str(c["delta"]["content"].as_str().or(c["text"].as_str()).unwrap_or(""));
        }
    }
    text
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

/// Sends `raw` on a new connection, reads to the end, parses the response.
pub fn request(port: u16, raw: &[u8]) -> Http {
    let mut s = connect(port);
    s.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    parse_response(&bytes)
}

/// `POST path` with `body` as it is.
pub fn post(port: u16, path: &str, body: &[u8]) -> Http {
    request(port, &post_bytes(path, body))
}

pub fn post_bytes(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

pub fn parse_response(bytes: &[u8]) -> Http {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete response head in {:?}", String::from_utf8_lossy(bytes));
    });
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let raw = &bytes[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Http { status, headers, body }
}

/// Undoes chunked transfer encoding; a stream cut short keeps what arrived whole.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// `/metrics`, parsed: each sample line's name with labels, and its value.
#[derive(Debug, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut m = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {line:?}"));
            m.insert(name.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line:?}")));
        }
        Metrics(m)
    }

    /// A sample's value; 0 for one not (yet) present.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    pub fn requests(&self, endpoint: &str, status: u16) -> f64 {
        self.get(&format!("djinn_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}"))
    }

    pub fn dropped(&self, reason: &str) -> f64 {
        self.get(&format!("djinn_streams_dropped_total{{reason=\"{reason}\"}}"))
    }
}

/// What `djinn-exec` prints for the same request: its library entry point
/// with `args` after the plan and weights (greedy unless `args` say
/// otherwise); returns (tokens, text).
pub fn exec(model: &Model, args: &[&str]) -> (Vec<u32>, String) {
    let argv = [
        "djinn-exec".to_string(),
        model.plan.display().to_string(),
        "--weights".into(),
        model.dir.display().to_string(),
    ]
    .into_iter()
    .chain(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let report =
        djinn_runtime::exec::run(argv, &mut out, &mut err).unwrap_or_else(|e| panic!("djinn-exec {args:?}: {e:#}"));
    (report.tokens, report.text.expect("the fixture has a tokenizer"))
}

/// A connection whose socket takes almost nothing unread (a receive
/// buffer of the kernel's minimum), for clients that stop reading.
pub fn tight_connection(port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(1).unwrap();
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

/// How a test that cannot run here says so (as the workspace's tests/skip.rs
/// does): printed for `--nocapture`, and a line `KIND<TAB>TEST<TAB>WHY` appended
/// to the file `DJINN_SKIP_LOG` names, which `.ci/run` counts.
pub fn skip(kind: &str, test: &str, why: &str) {
    let why = why.replace(['\n', '\t'], " ");
    println!("{test}: skipped: {why}");
    let Some(log) = std::env::var_os("DJINN_SKIP_LOG") else { return };
    let line = format!("{kind}\t{test}\t{why}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("{test}: cannot append to DJINN_SKIP_LOG {}: {e}", log.to_string_lossy()));
}
