//! Every input `djinn-exec` refuses, through its library entry point
//! (`djinn_runtime::exec::run`, what the binary runs): each must come back
//! as an `Err` — not a panic — whose message names the file, tensor or
//! field at fault, so that someone with only the message can fix it. (The
//! binary prints that message and exits with status 1.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use djinn_runtime::cuda::check_libraries;
use djinn_runtime::exec;
use serde_json::Value;

use super::*;
use crate::skip::{skip, Skip};

/// A scratch directory holding a plan (`plan.toml`) and, where a test damages
/// them, copies of the weights.
struct Case {
    scratch: Scratch,
    plan: PathBuf,
}

impl Case {
    fn new(test: &str, plan: &Plan) -> Case {
        let scratch = Scratch::new(test);
        let path = scratch.0.join("plan.toml");
        plan.save(&path).unwrap();
        Case { scratch, plan: path }
    }

    /// djinn-exec's arguments: the plan, `--weights dir`, a short prompt, then `extra`.
    fn args(&self, weights: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            self.plan.display().to_string(),
            "--weights".into(),
            weights.display().to_string(),
            "--prompt".into(),
            "Once upon a time".into(),
            "--max-new-tokens".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// Runs djinn-exec on `args` (program name excluded), which must refuse with
/// an error rather than succeed or panic; returns the error's message.
fn refused(args: Vec<String>) -> String {
    let argv: Vec<String> = std::iter::once("djinn-exec".to_string()).chain(args.iter().cloned()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match catch_unwind(AssertUnwindSafe(|| exec::run(argv, &mut out, &mut err))) {
        Ok(Err(e)) => {
            let message = e.to_string();
            println!("djinn-exec: error: {message}");
            message
        }
        Ok(Ok(_)) => panic!("djinn-exec accepted {args:?}"),
        Err(_) => panic!("djinn-exec panicked on {args:?} instead of returning an error"),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "the message does not name {part:?}: {message}");
    }
}

/// Rewrites the JSON header of the safetensors file at `path` with `edit`,
/// padded with spaces to its old length so that every data offset still holds.
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut text = serde_json::to_vec(&header).unwrap();
    assert!(text.len() <= len, "the edited header grew");
    text.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&text);
    std::fs::write(path, bytes).unwrap();
}

fn edit_config(dir: &Path, field: &str, value: Value) {
    let path = dir.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[field] = value;
    std::fs::write(&path, json.to_string()).unwrap();
}

/// A plan compiled for one fixture, run on the other's weights: the first
/// tensor in block order whose shape differs (the embedding: hidden 64 vs 96).
#[test]
fn weights_of_another_model_name_the_first_mismatching_tensor() {
    let case = Case::new("other_model", &resident_plan(MHA));
    let weights = fixture(GQA);
    let e = refused(case.args(&weights, &[]));
    assert_names(
        &e,
        &[
            "tensor `model.embed_tokens.weight` (block `embed`)",
            &weights.join("model-00001-of-00002.safetensors").display().to_string(),
            "shape is [32000, 96] in the checkpoint but [32000, 64] in the plan",
            "compiled for another model",
        ],
    );
}

/// A tensor gone from the file's header: the reader names it, its block, and where it looked.
#[test]
fn a_tensor_missing_from_the_checkpoint_is_named_with_its_block() {
    let case = Case::new("missing_tensor", &resident_plan(MHA));
    let dir = case.scratch.copy_fixture(MHA);
    let file = dir.join("model.safetensors");
    edit_header(&file, |h| {
        h.remove("model.layers.2.mlp.up_proj.weight").unwrap();
    });
    let e = refused(case.args(&dir, &[]));
    assert_names(
        &e,
        &["tensor `model.layers.2.mlp.up_proj.weight` (block `layer.2`) not found", &file.display().to_string()],
    );
}

/// A self-consistent checkpoint (tied embeddings, so no `lm_head.weight`)
/// that lacks a tensor the plan names: every earlier tensor matches, and the
/// check against the plan names the missing one.
#[test]
fn a_tensor_the_plan_names_but_the_checkpoint_lacks_is_named() {
    let case = Case::new("tied", &resident_plan(MHA));
    let dir = case.scratch.copy_fixture(MHA);
    edit_header(&dir.join("model.safetensors"), |h| {
        h.remove("lm_head.weight").unwrap();
    });
    edit_config(&dir, "tie_word_embeddings", Value::Bool(true));
    let e = refused(case.args(&dir, &[]));
    assert_names(
        &e,
        &[
            "tensor `lm_head.weight` (block `lm_head`) is in the plan but not in the checkpoint",
            &dir.display().to_string(),
        ],
    );
}

#[test]
fn a_truncated_safetensors_file_is_named() {
    let case = Case::new("truncated", &resident_plan(MHA));
    let dir = case.scratch.copy_fixture(MHA);
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    // Cut in the data: the header's offsets run past the end.
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let e = refused(case.args(&dir, &[]));
    assert_names(&e, &[&file.display().to_string(), "run past the end of the file", "truncated"]);
    // Cut in the header: its length field promises more than the file holds.
    std::fs::write(&file, &bytes[..100]).unwrap();
    let e = refused(case.args(&dir, &[]));
    assert_names(&e, &[&file.display().to_string(), "header length", "truncated"]);
}

#[test]
fn a_corrupt_safetensors_header_is_named() {
    let case = Case::new("corrupt_header", &resident_plan(MHA));
    let dir = case.scratch.copy_fixture(MHA);
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes[8], b'{');
    bytes[8] = b'#';
    std::fs::write(&file, &bytes).unwrap();
    let e = refused(case.args(&dir, &[]));
    assert_names(&e, &[&file.display().to_string(), "header is not valid JSON"]);
}

#[test]
fn a_tokenizer_that_does_not_parse_is_named() {
    let case = Case::new("bad_tokenizer", &resident_plan(MHA));
    let bad = case.scratch.0.join("tokenizer.json");
    for text in ["{ this is not json", "{\"model\": 42}"] {
        std::fs::write(&bad, text).unwrap();
        let e = refused(case.args(&fixture(MHA), &["--tokenizer", &bad.display().to_string()]));
        assert_names(&e, &[&format!("tokenizer {} does not parse", bad.display())]);
    }
}

#[test]
fn a_prompt_longer_than_max_seq_len_names_both_lengths() {
    let case = Case::new("long_prompt", &plan_for(MHA, Strategy::Djinn, None, 8, 16));
    let long = reference(MHA).iter().find(|r| r.input_ids.len() > 16).unwrap();
    let mut args = case.args(&fixture(MHA), &[]);
    args[4] = long.prompt.clone();
    let e = refused(args);
    assert_names(
        &e,
        &[
            &format!("the prompt is {} tokens", long.input_ids.len()),
            "longer than the plan's max_seq_len of 16",
            "--max-seq-len",
        ],
    );
}

#[test]
fn a_plan_of_an_unknown_format_version_is_refused_naming_the_field() {
    let case = Case::new("format_version", &resident_plan(MHA));
    let text = std::fs::read_to_string(&case.plan).unwrap();
    let current = format!("format_version = {}\n", djinn_core::plan::FORMAT_VERSION);
    assert!(text.contains(&current));
    std::fs::write(&case.plan, text.replace(&current, "format_version = 99\n")).unwrap();
    let e = refused(case.args(&fixture(MHA), &[]));
    let reads = format!("reads format_version {}", djinn_core::plan::FORMAT_VERSION);
    assert_names(&e, &[&case.plan.display().to_string(), "format_version 99", &reads]);
}

/// Without the CUDA libraries (this test's premise; on a GPU machine it
/// skips), `--backend cuda` is a clean error naming the missing library.
#[test]
fn backend_cuda_without_the_cuda_libraries_names_the_missing_library() {
    let why = match check_libraries() {
        Err(e) => e.to_string(),
        Ok(()) => {
            let test = "backend_cuda_without_the_cuda_libraries_names_the_missing_library";
            skip(test, Skip::GpuPresent, "the CUDA libraries load here");
            return;
        }
    };
    let case = Case::new("cuda", &resident_plan(MHA));
    let e = refused(case.args(&fixture(MHA), &["--backend", "cuda"]));
    assert_names(&e, &["CUDA backend", &why]);
    assert!(why.contains("not found") || why.contains("lacks the symbol"), "{why}");
}

/// The error djinn-exec returns for `extra` (after a valid plan, weights and prompt).
fn exec_error(case: &Case, extra: &[&str]) -> exec::ExecError {
    let argv: Vec<String> = std::iter::once("djinn-exec".to_string()).chain(case.args(&fixture(MHA), extra)).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match catch_unwind(AssertUnwindSafe(|| exec::run(argv, &mut out, &mut err))) {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("djinn-exec accepted {extra:?}"),
        Err(_) => panic!("djinn-exec panicked on {extra:?}"),
    }
}

#[test]
fn nan_infinite_and_negative_temperatures_and_top_p_outside_0_1_are_errors_naming_the_flag() {
    let case = Case::new("sampling_flags", &resident_plan(MHA));
    let cases: [(&[&str], &str); 8] = [
        (&["--temperature", "NaN"], "--temperature NaN is not a finite number >= 0"),
        (&["--temperature", "inf"], "--temperature inf is not a finite number >= 0"),
        (&["--temperature", "-1"], "--temperature -1 is not a finite number >= 0"),
        (&["--temperature", "-0.5", "--top-p", "0.9"], "--temperature -0.5 is not"),
        (&["--temperature", "0.7", "--top-p", "0"], "--top-p 0 is outside (0, 1]"),
        (&["--temperature", "0.7", "--top-p", "1.5"], "--top-p 1.5 is outside (0, 1]"),
        (&["--temperature", "0.7", "--top-p", "-0.2"], "--top-p -0.2 is outside (0, 1]"),
        (&["--temperature", "0.7", "--top-p", "nan"], "--top-p NaN is outside (0, 1]"),
    ];
    for (extra, want) in cases {
        // A usage error (the binary exits 1), not the argument parser's "unexpected argument '-1'".
        match exec_error(&case, extra) {
            exec::ExecError::Usage(m) => assert!(m.contains(want), "{extra:?}: {m}"),
            e => panic!("{extra:?}: not a usage error: {e}"),
        }
    }
}

#[test]
fn an_unwritable_json_path_is_refused_before_the_run() {
    let case = Case::new("json_path", &resident_plan(MHA));
    let missing = case.scratch.0.join("no-such-dir/metrics.json");
    let e = exec_error(&case, &["--json", &missing.display().to_string()]);
    assert!(matches!(&e, exec::ExecError::Write { path, .. } if path == &missing), "{e}");
    let dir = case.scratch.0.join("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let e = exec_error(&case, &["--json", &dir.display().to_string()]).to_string();
    assert!(e.contains("a-directory") && e.contains("directory"), "{e}");
}

/// A tokenizer.json that cannot be read is an I/O error naming the cause, not "does not parse".
#[test]
fn an_unreadable_tokenizer_is_a_read_error_not_a_parse_error() {
    let case = Case::new("unreadable_tokenizer", &resident_plan(MHA));
    // /proc/self/mem is a regular file whose first page cannot be read (EIO), even by root.
    if Path::new("/proc/self/mem").is_file() {
        let e = refused(case.args(&fixture(MHA), &["--tokenizer", "/proc/self/mem"]));
        assert_names(&e, &["cannot read tokenizer /proc/self/mem: "]);
        assert!(!e.contains("does not parse"), "{e}");
    }
    // Permission denied, where permissions apply (not to root).
    use std::os::unix::fs::PermissionsExt;
    let locked = case.scratch.0.join("tokenizer.json");
    std::fs::copy(fixture(MHA).join("tokenizer.json"), &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_err() {
        let e = refused(case.args(&fixture(MHA), &["--tokenizer", &locked.display().to_string()]));
        assert_names(&e, &[&format!("cannot read tokenizer {}: Permission denied", locked.display())]);
    } else {
        println!(
            "an_unreadable_tokenizer_is_a_read_error_not_a_parse_error: permission part skipped (running as root)"
        );
    }
}

/// A head wider than RoPE's table (256 dimensions) is refused by the
/// forward pass, naming `head_dim`, before any kernel could index past the
/// table; and a single op given one returns an error, not a panic.
#[test]
fn a_head_wider_than_the_rope_table_is_refused_naming_head_dim() {
    use djinn_runtime::forward::{Forward, ForwardError};
    use djinn_runtime::ops::{AttnShape, Buf, Ops, RopeTable};
    let mut plan = resident_plan(MHA);
    plan.model.arch.head_dim = 512;
    let err = Forward::new(&plan).unwrap_err();
    assert_eq!(err, ForwardError::HeadDim(512));
    assert!(err.to_string().contains("head_dim is 512") && err.to_string().contains("at most 256"), "{err}");

    let mut arena = vec![0u8; 4096];
    let mut ops = djinn_runtime::cpu::CpuOps::new(&mut arena);
    let q = Buf { offset: 0, elems: 512, dtype: djinn_core::Dtype::F16 };
    let k = Buf { offset: 1024, elems: 512, ..q };
    let shape = AttnShape {
        tokens: 1,
        pos0: 0,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 512,
        rope: RopeTable::unscaled(512, 1e4),
        window: None,
        header: None,
    };
    let err = catch_unwind(AssertUnwindSafe(|| ops.rope(q, k, shape))).expect("no panic").unwrap_err();
    assert!(err.to_string().contains("head_dim 512"), "{err}");
}
