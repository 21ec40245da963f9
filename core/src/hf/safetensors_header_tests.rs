use std::io::{Read, Seek, SeekFrom};

use serde_json::json;

use super::*;
use crate::hf::test_support::{data_byte, write_raw, write_safetensors, Spec};

fn specs() -> Vec<Spec> {
    vec![
        ("a.weight".into(), Dtype::F16, vec![3, 5]),
        ("b.weight".into(), Dtype::Bf16, vec![7]),
        ("c.inv_freq".into(), Dtype::F32, vec![2, 2]),
    ]
}

/// Writes a file with a hand-written header and `data_len` data bytes; returns the error message.
fn header_err(dir: &Path, header: Value, data_len: usize) -> String {
    let path = dir.join("bad.safetensors");
    write_raw(&path, &header.to_string(), &vec![0u8; data_len]);
    let e = read_safetensors_header(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "error does not name the file: {e}");
    e
}

#[test]
fn offsets_are_absolute_and_point_at_each_tensors_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &specs());
    let tensors = read_safetensors_header(&path).unwrap();
    assert_eq!(tensors.keys().collect::<Vec<_>>(), ["a.weight", "b.weight", "c.inv_freq"], "__metadata__ skipped");
    let mut file = File::open(&path).unwrap();
    for (k, (name, dtype, shape)) in specs().iter().enumerate() {
        let t = &tensors[name];
        assert_eq!((&t.file, t.dtype, &t.shape), (&path, *dtype, shape));
        assert_eq!(t.bytes, shape.iter().product::<u64>() * dtype.size());
        let mut bytes = vec![0u8; t.bytes as usize];
        file.seek(SeekFrom::Start(t.data_start)).unwrap();
        file.read_exact(&mut bytes).unwrap();
        let want: Vec<u8> = (0..t.bytes).map(|i| data_byte(k, i)).collect();
        assert_eq!(bytes, want, "bytes at data_start of `{name}`");
    }
    let last = &tensors["c.inv_freq"];
    assert_eq!(last.data_start + last.bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn file_shorter_than_the_length_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    std::fs::write(&path, [1, 2, 3]).unwrap();
    let e = read_safetensors_header(&path).unwrap_err().to_string();
    assert!(e.contains("tiny.safetensors") && e.contains("3 bytes; expected at least 8"), "{e}");
}

#[test]
fn header_length_larger_than_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let e = read_safetensors_header(&path).unwrap_err().to_string();
    assert!(e.contains("short.safetensors") && e.contains("header length 1000 bytes exceeds the 2 bytes"), "{e}");
}

#[test]
fn truncated_data_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &specs());
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    let e = read_safetensors_header(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("tensor `c.inv_freq`"), "{e}");
    assert!(e.contains("data_offsets [44, 60] run past the end") && e.contains("57 data bytes"), "{e}");
}

#[test]
fn span_must_match_shape_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let e = header_err(dir.path(), json!({"w": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 10]}}), 16);
    assert!(e.contains("tensor `w`: data_offsets [0, 10] span 10 bytes; expected 12 (F16 × shape [2, 3])"), "{e}");
}

#[test]
fn unknown_dtype_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let e = header_err(dir.path(), json!({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}), 16);
    assert!(e.contains("tensor `ids`: dtype \"I64\" is not supported; expected F16, BF16 or F32"), "{e}");
}

#[test]
fn reversed_and_overlapping_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let e = header_err(dir.path(), json!({"w": {"dtype": "F16", "shape": [0], "data_offsets": [4, 0]}}), 8);
    assert!(e.contains("tensor `w`: data_offsets [4, 0] are reversed"), "{e}");
    let header = json!({
        "a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
        "z": {"dtype": "F16", "shape": [0], "data_offsets": [2, 2]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [6, 10]},
    });
    let e = header_err(dir.path(), header, 16);
    assert!(e.contains("tensor `b`: bytes") && e.contains("overlap tensor `a`"), "{e}");
}

#[test]
fn malformed_header_json_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_raw(&path, "{\"w\": ", &[]);
    let e = read_safetensors_header(&path).unwrap_err().to_string();
    assert!(e.contains("bad.safetensors") && e.contains("header is not valid JSON"), "{e}");
    let e = header_err(dir.path(), json!({"w": {"dtype": "F16", "data_offsets": [0, 2]}}), 2);
    assert!(e.contains("tensor `w`: missing field `shape`"), "{e}");
    let e = header_err(dir.path(), json!([1]), 0);
    assert!(e.contains("not a JSON object"), "{e}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_safetensors_header(&dir.path().join("nope.safetensors")).unwrap_err();
    assert!(matches!(e, HfError::Read { .. }));
    assert!(e.to_string().contains("nope.safetensors"), "{e}");
}
