//! `djinn-profile` through its library entry point, which is all the binary
//! runs (the binary only maps an error to a message and a failing exit code).
//!
//! Without a GPU (CI), a run must end in a clean "no usable CUDA GPU" error
//! that says why and where to run instead, before writing anything. With
//! one, it profiles the tiny fixture model, and djinn-compile must accept
//! the profile it writes and plan from its block times.

use std::path::{Path, PathBuf};

use djinn_compiler::{compile, CompileRequest, Options};
use djinn_profiler::{run, ProfileError};
use djinn_runtime::cuda::Gpu;

use crate::skip::{skip, Skip};

/// Why there is no usable GPU here, or `None` when there is one.
fn no_gpu() -> Option<String> {
    match Gpu::open(0) {
        Ok(_) => None,
        Err(e) if e.is_absence() => Some(e.to_string()),
        Err(e) => panic!("the GPU is present but cannot be opened: {e}"),
    }
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("djinn-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn without_a_gpu_the_profiler_fails_cleanly_and_writes_nothing() {
    let Some(why) = no_gpu() else {
        skip("without_a_gpu_the_profiler_fails_cleanly_and_writes_nothing", Skip::GpuPresent, "a GPU is present");
        return;
    };
    let dir = scratch("profile-no-gpu");
    let (out, json) = (dir.join("profile.toml"), dir.join("log.json"));
    let argv = ["djinn-profile", "--model", "llama2-13b", "--prompt-len", "512", "-o"];
    let argv = argv.iter().map(|s| s.to_string()).chain([
        out.display().to_string(),
        "--json".into(),
        json.display().to_string(),
    ]);
    let mut stderr = Vec::new();
    let err = run(argv, &mut stderr).unwrap_err();
    assert!(matches!(err, ProfileError::NoGpu(_)), "{err:?}");
    // What the binary prints: one line, the cause once, and where to run instead.
    let msg = format!("{:#}", anyhow::Error::from(err));
    assert!(msg.starts_with("no usable CUDA GPU: ") && msg.contains(&why), "{msg}");
    assert!(msg.ends_with("run it on the GPU machine") && !msg.contains('\n'), "{msg}");
    assert_eq!(msg.matches(&why).count(), 1, "{msg}");
    assert!(!out.exists() && !json.exists(), "nothing is written without a measurement");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn on_a_gpu_the_fixture_profile_compiles_and_its_block_times_are_used() {
    if let Some(why) = no_gpu() {
        skip("on_a_gpu_the_fixture_profile_compiles_and_its_block_times_are_used", Skip::NoGpu, why);
        return;
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-mha");
    let dir = scratch("profile-gpu");
    let (out, json) = (dir.join("profile.toml"), dir.join("log.json"));
    let argv = ["djinn-profile", "--model", &model.display().to_string(), "--prompt-len", "32", "--name", "test-gpu"]
        .map(String::from)
        .into_iter()
        .chain(["-o".into(), out.display().to_string(), "--json".into(), json.display().to_string()]);
    let mut stderr = Vec::new();
    let p = run(argv, &mut stderr).unwrap_or_else(|e| panic!("{e:#}\n{}", String::from_utf8_lossy(&stderr)));
    println!("{}", String::from_utf8_lossy(&stderr));
    assert_eq!(p.profile.name, "test-gpu");
    assert_eq!(p.profile.block_times.len(), 10, "5 block kinds (a layer as its two halves) x prefill and decode");
    assert!(p.profile.block_times.iter().all(|b| b.model == "tiny-llama-mha" && b.us > 0.0));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), p.toml);
    let log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(log["profile"]["name"], "test-gpu");
    assert_eq!(log["measurements"]["blocks"].as_array().unwrap().len(), 10);

    let req = |gpu: &Path| CompileRequest {
        gpu: gpu.display().to_string(),
        model: model.display().to_string(),
        options: Options { prompt_len: 32, ..Options::default() },
    };
    let measured = compile(&req(&out)).unwrap().plan.prediction;
    // The same profile without its block times: the compiler falls back to its roofline.
    let bare = dir.join("bare.toml");
    let mut roofline = p.profile.clone();
    roofline.block_times.clear();
    std::fs::write(&bare, toml::to_string(&roofline).unwrap()).unwrap();
    let estimated = compile(&req(&bare)).unwrap().plan.prediction;
    assert_ne!(measured.decode_ms_per_token, estimated.decode_ms_per_token);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An output path that cannot be written is refused before any device is
/// touched (it used to be found only after the whole profiling run).
#[test]
fn an_unwritable_output_path_is_refused_before_profiling() {
    let dir = scratch("profile-unwritable");
    for (flag, out) in [("-o", dir.join("missing/profile.toml")), ("--json", dir.clone())] {
        let argv = ["djinn-profile", "--model", "llama2-13b", flag].map(String::from);
        let mut stderr = Vec::new();
        let err = run(argv.into_iter().chain([out.display().to_string()]), &mut stderr).unwrap_err();
        assert!(matches!(&err, ProfileError::Write { path, .. } if path == &out), "{flag}: {err:?}");
        assert!(stderr.is_empty(), "{flag}: nothing measured, nothing said");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
