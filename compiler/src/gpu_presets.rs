//! GPU presets, and how a `--gpu NAME|FILE.toml` argument is resolved.
//!
//! A GPU preset is a profile file in the `--gpu FILE.toml` format
//! (`compiler/presets/gpus/*.toml`) whose comments name each figure's source
//! and derating. Only djinn-compile reads `--gpu`, so these stay here; the
//! model presets, which djinn-profile and djinn-synth resolve too, are in
//! `djinn_core::model_presets`.

use std::path::Path;

use djinn_core::gpu::GpuProfile;

use crate::error::CompileError;

/// A GPU profile, embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuPreset {
    pub name: &'static str,
    pub toml: &'static str,
}

macro_rules! gpu {
    ($name:literal) => {
        GpuPreset { name: $name, toml: include_str!(concat!("../presets/gpus/", $name, ".toml")) }
    };
}

pub const GPU_PRESETS: &[GpuPreset] = &[
    gpu!("l4"),
    gpu!("t4"),
    gpu!("a10g"),
    gpu!("rtx4090"),
    gpu!("a100-40gb"),
    gpu!("a100-80gb"),
    gpu!("h100-pcie"),
    gpu!("h100-sxm"),
    gpu!("h200"),
];

pub fn gpu_preset(name: &str) -> Option<&'static GpuPreset> {
    GPU_PRESETS.iter().find(|p| p.name == name)
}

/// `--gpu NAME|FILE.toml`: a preset, or a profile file (any argument ending in
/// `.toml`, or naming an existing file that is not a preset name).
pub fn load_gpu(arg: &str) -> Result<GpuProfile, CompileError> {
    let path = Path::new(arg);
    if !arg.ends_with(".toml") {
        if let Some(p) = gpu_preset(arg) {
            return parse_gpu_profile(p.toml, &format!("compiler/presets/gpus/{}.toml", p.name));
        }
        if !path.is_file() {
            let valid = GPU_PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
            return Err(CompileError::UnknownGpu { name: arg.to_string(), valid });
        }
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| CompileError::GpuFileRead { path: arg.to_string(), source })?;
    parse_gpu_profile(&text, arg)
}

/// Parses and checks a GPU profile; `origin` names it in errors.
pub fn parse_gpu_profile(text: &str, origin: &str) -> Result<GpuProfile, CompileError> {
    let invalid = |message: String| CompileError::GpuFileInvalid { path: origin.to_string(), message };
    let gpu: GpuProfile = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
    let positive = [("hbm_gbps", gpu.hbm_gbps), ("fp16_tflops", gpu.fp16_tflops), ("h2d_gbps", gpu.h2d_gbps)];
    for (field, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            return Err(invalid(format!("field `{field}` must be a positive number, got {v}")));
        }
    }
    for (field, v) in [("copy_latency_us", gpu.copy_latency_us), ("kernel_overhead_us", gpu.kernel_overhead_us)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(invalid(format!("field `{field}` must be a non-negative number, got {v}")));
        }
    }
    if gpu.usable_bytes == 0 || gpu.usable_bytes > gpu.memory_bytes {
        return Err(invalid(format!(
            "field `usable_bytes` must be between 1 and memory_bytes ({}), got {}",
            gpu.memory_bytes, gpu.usable_bytes
        )));
    }
    for (i, p) in gpu.h2d_curve.iter().enumerate() {
        if !(p.gbps.is_finite() && p.gbps > 0.0) {
            return Err(invalid(format!("field `h2d_curve[{i}].gbps` must be a positive number, got {}", p.gbps)));
        }
        if i > 0 && p.bytes <= gpu.h2d_curve[i - 1].bytes {
            return Err(invalid(format!("field `h2d_curve[{i}].bytes` must be larger than the point before it")));
        }
    }
    Ok(gpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_preset_parses_and_is_named_after_its_file() {
        for p in GPU_PRESETS {
            let gpu = load_gpu(p.name).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(gpu.name, p.name);
            assert!(gpu.usable_bytes <= gpu.memory_bytes);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = load_gpu("v100").unwrap_err().to_string();
        assert!(e.contains("\"v100\"") && e.contains("l4, t4, a10g") && e.contains("h200"), "{e}");
    }

    #[test]
    fn malformed_profile_names_the_file_and_field() {
        let text = gpu_preset("l4").unwrap().toml.replace("hbm_gbps = 255.0\n", "");
        let e = parse_gpu_profile(&text, "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("hbm_gbps"), "{e}");
        let text = gpu_preset("l4").unwrap().toml.replace("h2d_gbps = 25.0", "h2d_gbps = 0.0");
        let e = parse_gpu_profile(&text, "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("`h2d_gbps`"), "{e}");
    }
}
