//! Byte sizes as people write them (`22GiB`, `20000MB`, `1073741824`) and as
//! we print them, and the one alignment of offsets in device memory.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("invalid byte size {input:?}: expected a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB, TiB), e.g. 22GiB")]
pub struct ParseBytesError {
    pub input: String,
}

/// Parses `22GiB`, `22 GiB`, `20000MB`, `1.5GB`, or a plain number of bytes.
pub fn parse_bytes(input: &str) -> Result<u64, ParseBytesError> {
    let err = || ParseBytesError { input: input.to_string() };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| err())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// `24.24 GiB`, `634.0 MiB`, `512 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, scale) in UNITS {
        if bytes >= scale {
            return format!("{:.2} {name}", bytes as f64 / scale as f64);
        }
    }
    format!("{bytes} B")
}

/// The alignment of every offset the plan gives into device memory: tensors
/// inside a block image ([`crate::model::TENSOR_ALIGN`]), regions inside the
/// arena, and buffers carved out of a region
/// ([`crate::activations::BUFFER_ALIGN`]), all this one number, so no two can
/// disagree. 256 B is what every kernel and cuBLAS need, and wastes at most
/// 255 B per tensor, region or buffer.
pub const ALIGN: u64 = 256;

/// Rounds `x` up to a multiple of `align` (a power of two or any positive number).
pub fn align_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        assert_eq!(parse_bytes("22GiB").unwrap(), 22 << 30);
        assert_eq!(parse_bytes("22 GiB").unwrap(), 22 << 30);
        assert_eq!(parse_bytes("20000MB").unwrap(), 20_000_000_000);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("1073741824").unwrap(), 1 << 30);
        assert!(parse_bytes("22 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("GiB").is_err());
    }

    #[test]
    fn formats_binary_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 << 30), "3.00 GiB");
    }
}
