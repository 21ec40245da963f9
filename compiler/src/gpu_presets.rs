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
    Ok(GpuProfile::load(path)?)
}

/// Parses and checks a GPU profile; `origin` names it in errors.
pub fn parse_gpu_profile(text: &str, origin: &str) -> Result<GpuProfile, CompileError> {
    Ok(GpuProfile::from_toml_str(text, origin)?)
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
