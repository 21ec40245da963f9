//! One `.safetensors` file's header → where each tensor's bytes are.
//!
//! The format: 8 bytes little-endian `u64` N, then N bytes of JSON
//! (`{"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets": [start, end]}}`),
//! then the data, with offsets relative to the first byte after the header.
//! Only the header is read. Everything the runtime will later trust when it
//! maps the file is checked here against the file's actual length: the header
//! fits, every range lies inside the file, ranges do not overlap, and each
//! range is exactly `numel × dtype size` bytes.
//!
//! Why not the `safetensors` crate's own parser (`SafeTensors::read_metadata`,
//! checked against safetensors 0.8): it takes the whole file's bytes, not the
//! header's, because it checks the data length against them, so a reader of
//! 140 GB of checkpoint headers would have to map every file; it refuses
//! gaps between tensors, which this reader (and the runtime) allow; and its
//! errors (`MetadataIncompleteBuffer`, `TensorInvalidInfo`, ...) name neither
//! the file nor, mostly, the tensor, where ours must name both and say what
//! was expected (a truncated shard is the usual case: the error names the
//! last tensor and how many bytes the file holds). Running it after these
//! checks would only re-check what they have. What the crate does that we
//! need is the format's few rules, written out below.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::HfError;
use crate::model::Dtype;

/// Headers above this are refused rather than allocated (the `safetensors`
/// crate uses the same bound; real headers are well under 1 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor's bytes are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSource {
    /// The `.safetensors` file holding the tensor.
    pub file: PathBuf,
    /// Absolute byte offset of the first byte in `file` (header included).
    pub data_start: u64,
    /// Length of the data: `numel × dtype.size()`.
    pub bytes: u64,
    pub dtype: Dtype,
    /// Row-major shape, as stored.
    pub shape: Vec<u64>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Reads and validates the header of the safetensors file at `path`.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, TensorSource>, HfError> {
    let read_err = |error| HfError::Read { what: "safetensors file", path: path.to_path_buf(), error };
    let header_err = |problem: String| HfError::Header { path: path.to_path_buf(), problem };
    let mut file = File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    if file_len < 8 {
        return Err(header_err(format!("file is {file_len} bytes; expected at least 8 (the header length field)")));
    }
    let mut len_field = [0u8; 8];
    file.read_exact(&mut len_field).map_err(read_err)?;
    let header_len = u64::from_le_bytes(len_field);
    if header_len > file_len - 8 {
        return Err(header_err(format!(
            "header length {header_len} bytes exceeds the {} bytes after the length field \
             (file is {file_len} bytes): truncated, or not a safetensors file",
            file_len - 8
        )));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(header_err(format!("header length {header_len} bytes; expected at most {MAX_HEADER_BYTES}")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(read_err)?;
    let json: Value = serde_json::from_slice(&header)
        .map_err(|e| header_err(format!("header is not valid JSON ({e}); expected a JSON object")))?;
    let Value::Object(entries) = json else {
        return Err(header_err("header is not a JSON object".into()));
    };
    let base = 8 + header_len;
    let data_len = file_len - base;
    let tensors = entries
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, value)| {
            let source = parse_entry(path, &name, value, base, data_len)?;
            Ok((name, source))
        })
        .collect::<Result<BTreeMap<_, _>, HfError>>()?;
    check_disjoint(path, &tensors)?;
    Ok(tensors)
}

/// One header entry → its absolute byte range, checked against the data length.
fn parse_entry(path: &Path, name: &str, value: Value, base: u64, data_len: u64) -> Result<TensorSource, HfError> {
    let err = |problem: String| HfError::HeaderTensor { path: path.to_path_buf(), tensor: name.to_string(), problem };
    let raw: RawEntry = serde_json::from_value(value).map_err(|e| {
        err(format!("{e}; expected {{\"dtype\": string, \"shape\": [integers], \"data_offsets\": [start, end]}}"))
    })?;
    let dtype = Dtype::from_safetensors_name(&raw.dtype)
        .ok_or_else(|| err(format!("dtype {:?} is not supported; expected F16, BF16 or F32", raw.dtype)))?;
    let [start, end] = raw.data_offsets;
    let expected = raw
        .shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {:?} overflows a 64-bit byte count", raw.shape)))?;
    if start > end {
        return Err(err(format!("data_offsets [{start}, {end}] are reversed; expected start <= end")));
    }
    if end > data_len {
        return Err(err(format!(
            "data_offsets [{start}, {end}] run past the end of the file, which holds {data_len} data bytes \
             after the header (file truncated?)"
        )));
    }
    if end - start != expected {
        return Err(err(format!(
            "data_offsets [{start}, {end}] span {} bytes; expected {expected} ({} × shape {:?})",
            end - start,
            raw.dtype,
            raw.shape
        )));
    }
    Ok(TensorSource { file: path.to_path_buf(), data_start: base + start, bytes: expected, dtype, shape: raw.shape })
}

/// No two tensors may share bytes (the runtime copies each independently).
fn check_disjoint(path: &Path, tensors: &BTreeMap<String, TensorSource>) -> Result<(), HfError> {
    let mut ranges: Vec<(u64, u64, &str)> = tensors
        .iter()
        .filter(|(_, t)| t.bytes > 0)
        .map(|(n, t)| (t.data_start, t.data_start + t.bytes, n.as_str()))
        .collect();
    ranges.sort_unstable();
    // Sorted by start, a range overlaps an earlier one iff it starts before the
    // furthest end seen so far.
    let mut furthest: Option<(u64, u64, &str)> = None;
    for (start, end, name) in ranges {
        if let Some((s0, e0, other)) = furthest.filter(|f| start < f.1) {
            return Err(HfError::HeaderTensor {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                problem: format!(
                    "bytes [{start}, {end}) overlap tensor `{other}` at [{s0}, {e0}) (absolute file offsets); \
                     expected disjoint ranges"
                ),
            });
        }
        match furthest {
            Some((_, e0, _)) if end <= e0 => {}
            _ => furthest = Some((start, end, name)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "safetensors_header_tests.rs"]
mod tests;
