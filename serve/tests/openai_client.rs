//! The official `openai` Python package against the server: streaming and
//! not, chat and completions, stop strings, usage counts, and errors as
//! the client's exceptions; every text the one djinn-exec generates for
//! the same request.
//!
//! It needs python3 with `openai` importable: `DJINN_PYTHON` names the
//! interpreter (`.ci/run` installs the package into a venv and sets it;
//! then a missing package is a failure), else `python3`, and without the
//! package there the test skips and says so (`DJINN_SKIP_LOG`, kind `no-openai`).

use std::process::Command;

use serde_json::Value;

use crate::common::*;

const TEST: &str = "openai_client::the_openai_package_streams_and_completes_as_djinn_exec_generates";

/// The interpreter to use, or why the test cannot run here.
fn python() -> Result<String, String> {
    let named = std::env::var("DJINN_PYTHON").ok();
    let python = named.clone().unwrap_or_else(|| "python3".into());
    let check = Command::new(&python).args(["-c", "import openai; print(openai.__version__)"]).output();
    let why = match check {
        Ok(out) if out.status.success() => return Ok(python),
        Ok(out) => format!("{python} cannot import openai: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => format!("cannot run {python}: {e}"),
    };
    match named {
        // Told where the package is: its absence is a broken setup, not a reason to skip.
        Some(_) => panic!("DJINN_PYTHON is set but {why}"),
        None => Err(why),
    }
}

#[test]
fn the_openai_package_streams_and_completes_as_djinn_exec_generates() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => return skip("no-openai", TEST, &format!("{why} (pip install openai, or set DJINN_PYTHON)")),
    };
    let model = model("openai_client");
    let server = Server::start(&model, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(format!("http://127.0.0.1:{}/v1", server.port))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}\nserver:\n{}", server.stderr());
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    assert_eq!(r["models"], serde_json::json!(["tiny-llama-mha"]));
    let (tokens, text) = exec(&model, &["--prompt", "Once upon a time", "--max-new-tokens", "12"]);
    assert_eq!(tokens.len(), 12);
    let c = &r["completion"];
    assert_eq!(
        (c["text"].as_str(), c["finish_reason"].as_str(), c["object"].as_str()),
        (Some(text.as_str()), Some("length"), Some("text_completion"))
    );
    assert_eq!(c["usage"], serde_json::json!([5, 12, 17]));
    // The fixture's generation config does not sample, so an unseeded, temperature-less stream is greedy too.
    let s = &r["completion_stream"];
    assert_eq!((s["text"].as_str(), s["finish_reason"].as_str()), (Some(text.as_str()), Some("length")));
    assert!(s["chunks"].as_u64().unwrap() > 1, "streamed in pieces: {s}");

    let (tokens, text) =
        exec(&model, &["--system", "Be brief.", "--chat", "Tell me a story", "--max-new-tokens", "10"]);
    let chat = &r["chat"];
    assert_eq!((chat["text"].as_str(), chat["role"].as_str()), (Some(text.as_str()), Some("assistant")));
    assert_eq!((chat["finish_reason"].as_str(), chat["object"].as_str()), (Some("length"), Some("chat.completion")));
    let usage = chat["usage"].as_array().unwrap();
    assert_eq!(usage[1].as_u64(), Some(tokens.len() as u64));
    assert_eq!(usage[2].as_u64(), Some(usage[0].as_u64().unwrap() + usage[1].as_u64().unwrap()));
    let cs = &r["chat_stream"];
    assert_eq!((cs["text"].as_str(), cs["finish_reason"].as_str()), (Some(text.as_str()), Some("length")));
    assert_eq!(cs["usage"], chat["usage"], "the include_usage chunk");
    assert_eq!(cs["roles"], serde_json::json!(["assistant"]), "the role comes once, first");

    let stop: String = text.chars().skip(4).take(3).collect();
    let (_, cut) = exec(
        &model,
        &["--system", "Be brief.", "--chat", "Tell me a story", "--max-new-tokens", "10", "--stop", &stop],
    );
    assert!(cut.len() < text.len(), "{stop:?} cuts {text:?}");
    assert_eq!(
        (r["chat_stop"]["text"].as_str(), r["chat_stop"]["finish_reason"].as_str()),
        (Some(cut.as_str()), Some("stop"))
    );

    let e = &r["too_long"];
    assert_eq!(
        (e["status"].as_u64(), e["code"].as_str(), e["param"].as_str()),
        (Some(400), Some("context_length_exceeded"), Some("max_tokens"))
    );
    assert!(e["message"].as_str().unwrap().contains("maximum context length is 256 tokens"), "{e}");
    assert_eq!(
        (r["wrong_model"]["status"].as_u64(), r["wrong_model"]["code"].as_str()),
        (Some(404), Some("model_not_found"))
    );
}
