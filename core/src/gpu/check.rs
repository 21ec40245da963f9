//! Every number of a GPU profile, checked where the profile enters (a preset,
//! a `--gpu FILE.toml`), so that a NaN, zero, negative or infinite rate is an
//! error naming the file and the field, not a cost model that divides by it and
//! emits a plan of infinite or NaN times.
//!
//! Rates and times must also be plausible, within ranges far wider than any
//! device's: the cost model sums thousands of them, and a rate of 1e-300 GB/s
//! would overflow those sums to infinity just as surely as a zero.

use super::GpuProfile;

/// Plausible GB/s for any bandwidth: 1 MB/s to 1 PB/s.
const GBPS: (f64, f64) = (1e-3, 1e6);
/// Plausible TFLOP/s: a thousandth to a million.
const TFLOPS: (f64, f64) = (1e-3, 1e6);
/// Plausible fixed costs, µs: none to ten seconds.
const OVERHEAD_US: (f64, f64) = (0.0, 1e7);
/// Plausible measured block times, µs: positive, up to a thousand seconds.
const BLOCK_US: f64 = 1e9;

/// `field` is `v`, which must lie in `[lo, hi]` (and be above 0 where `lo` is not 0).
fn in_range(field: &str, v: f64, (lo, hi): (f64, f64), unit: &str) -> Result<(), String> {
    if v.is_finite() && v >= lo && v <= hi {
        return Ok(());
    }
    Err(format!("field `{field}` is {v}; expected a number of {unit} from {lo} to {hi}"))
}

fn positive_time(field: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v <= BLOCK_US {
        return Ok(());
    }
    Err(format!("field `{field}` is {v}; expected a positive number of µs up to {BLOCK_US}"))
}

/// The first field of `gpu` that is out of range, as a message naming it.
pub(super) fn check(gpu: &GpuProfile) -> Result<(), String> {
    if gpu.memory_bytes == 0 {
        return Err("field `memory_bytes` is 0; expected the device memory in bytes".into());
    }
    if gpu.usable_bytes == 0 || gpu.usable_bytes > gpu.memory_bytes {
        return Err(format!(
            "field `usable_bytes` must be between 1 and memory_bytes ({}), got {}",
            gpu.memory_bytes, gpu.usable_bytes
        ));
    }
    in_range("hbm_gbps", gpu.hbm_gbps, GBPS, "GB/s")?;
    in_range("fp16_tflops", gpu.fp16_tflops, TFLOPS, "TFLOP/s")?;
    if let Some(v) = gpu.attn_tflops {
        in_range("attn_tflops", v, TFLOPS, "TFLOP/s")?;
    }
    in_range("h2d_gbps", gpu.h2d_gbps, GBPS, "GB/s")?;
    in_range("copy_latency_us", gpu.copy_latency_us, OVERHEAD_US, "µs")?;
    in_range("kernel_overhead_us", gpu.kernel_overhead_us, OVERHEAD_US, "µs")?;
    for (i, p) in gpu.h2d_curve.iter().enumerate() {
        in_range(&format!("h2d_curve[{i}].gbps"), p.gbps, GBPS, "GB/s")?;
        if p.bytes == 0 {
            return Err(format!("field `h2d_curve[{i}].bytes` is 0; expected a copy size in bytes"));
        }
        if i > 0 && p.bytes <= gpu.h2d_curve[i - 1].bytes {
            return Err(format!("field `h2d_curve[{i}].bytes` must be larger than the point before it"));
        }
    }
    for (i, t) in gpu.block_times.iter().enumerate() {
        positive_time(&format!("block_times[{i}].us"), t.us)?;
        if t.tokens == 0 {
            return Err(format!("field `block_times[{i}].tokens` is 0; expected the tokens of the timed pass"));
        }
    }
    if let Some(cpu) = &gpu.cpu {
        if cpu.cores == 0 {
            return Err("field `cpu.cores` is 0; expected the host's core count".into());
        }
        in_range("cpu.gemv_f16_gbps", cpu.gemv_f16_gbps, GBPS, "GB/s")?;
        in_range("cpu.gemv_f16_gbps_during_copy", cpu.gemv_f16_gbps_during_copy, GBPS, "GB/s")?;
        for (field, v) in
            [("cpu.host_read_gbps", cpu.host_read_gbps), ("cpu.h2d_gbps_during_host", cpu.h2d_gbps_during_host)]
        {
            if let Some(v) = v {
                in_range(field, v, GBPS, "GB/s")?;
            }
        }
        if let Some(v) = cpu.handoff_us {
            in_range("cpu.handoff_us", v, OVERHEAD_US, "µs")?;
        }
        for (i, t) in cpu.block_times.iter().enumerate() {
            if t.kind.reads_kv() {
                return Err(format!(
                    "cpu.block_times[{i}].kind is {:?}, which reads the KV cache and never runs on the host; \
                     expected a kind that does not (mlp)",
                    t.kind
                ));
            }
            positive_time(&format!("cpu.block_times[{i}].us"), t.us)?;
            positive_time(&format!("cpu.block_times[{i}].hot_us"), t.hot_us)?;
            positive_time(&format!("cpu.block_times[{i}].cold_us"), t.cold_us)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::gpu::{BandwidthPoint, BlockTime, CpuLane, GpuProfile, GpuProfileError, PhaseKind};
    use crate::model::BlockKind;

    fn profile() -> GpuProfile {
        let mut gpu = crate::plan::tests::tiny_plan().gpu;
        gpu.attn_tflops = Some(4.0);
        gpu.h2d_curve =
            vec![BandwidthPoint { bytes: 1 << 20, gbps: 10.0 }, BandwidthPoint { bytes: 1 << 26, gbps: 20.0 }];
        gpu.block_times = vec![BlockTime {
            model: "tiny".into(),
            kind: BlockKind::Layer,
            phase: PhaseKind::Decode,
            tokens: 1,
            us: 12.5,
        }];
        gpu.cpu =
            Some(CpuLane { cores: 8, gemv_f16_gbps: 50.0, gemv_f16_gbps_during_copy: 40.0, ..Default::default() });
        gpu
    }

    /// The profile's TOML with `field = <old>` replaced by `field = value`.
    fn with(field: &str, value: &str) -> String {
        let text = toml::to_string(&profile()).unwrap();
        let (at, line) = text
            .lines()
            .scan(0, |pos, l| {
                let at = *pos;
                *pos += l.len() + 1;
                Some((at, l))
            })
            .find(|(_, l)| l.starts_with(&format!("{field} = ")))
            .unwrap_or_else(|| panic!("no {field} in\n{text}"));
        format!("{}{field} = {value}{}", &text[..at], &text[at + line.len()..])
    }

    fn refused(text: &str) -> String {
        match GpuProfile::from_toml_str(text, "my-gpu.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e @ GpuProfileError::Invalid { .. }) => e.to_string(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_valid_profile_round_trips() {
        let text = toml::to_string(&profile()).unwrap();
        assert_eq!(GpuProfile::from_toml_str(&text, "my-gpu.toml").unwrap(), profile());
    }

    #[test]
    fn nan_zero_negative_and_infinite_rates_name_the_file_and_field() {
        for field in
            ["hbm_gbps", "fp16_tflops", "attn_tflops", "h2d_gbps", "gemv_f16_gbps", "gemv_f16_gbps_during_copy"]
        {
            for bad in ["nan", "0.0", "-3.0", "inf", "1e-300"] {
                let msg = refused(&with(field, bad));
                assert!(msg.starts_with("GPU profile my-gpu.toml is invalid: field `"), "{msg}");
                assert!(msg.contains(&format!("{field}` is ")), "{field} = {bad}: {msg}");
            }
        }
        let msg = refused(&with("h2d_gbps", "nan"));
        assert_eq!(msg, "GPU profile my-gpu.toml is invalid: field `h2d_gbps` is NaN; expected a number of GB/s from 0.001 to 1000000");
    }

    #[test]
    fn attn_tflops_is_optional() {
        let text = toml::to_string(&profile()).unwrap();
        let old: String = text.lines().filter(|l| !l.starts_with("attn_tflops = ")).map(|l| format!("{l}\n")).collect();
        assert_ne!(old, text);
        let gpu = GpuProfile::from_toml_str(&old, "my-gpu.toml").unwrap();
        assert_eq!(gpu, GpuProfile { attn_tflops: None, ..profile() }, "a profile from before the field loads");
    }

    #[test]
    fn nan_negative_and_infinite_block_times_name_the_entry() {
        for bad in ["nan", "-1.0", "inf", "0.0"] {
            let msg = refused(&with("us", bad));
            assert!(msg.contains("field `block_times[0].us` is "), "us = {bad}: {msg}");
        }
        assert!(refused(&with("tokens", "0")).contains("`block_times[0].tokens` is 0"));
    }

    #[test]
    fn fixed_costs_may_be_zero_but_not_negative_or_nan() {
        GpuProfile::from_toml_str(&with("copy_latency_us", "0.0"), "my-gpu.toml").unwrap();
        for bad in ["nan", "-1.0", "inf"] {
            assert!(refused(&with("kernel_overhead_us", bad)).contains("`kernel_overhead_us` is "), "{bad}");
        }
    }

    #[test]
    fn the_host_lane_figures_are_checked_and_name_the_field() {
        use crate::gpu::HostBlockTime;
        let base = GpuProfile::from_toml_str(&with("copy_latency_us", "0.0"), "my-gpu.toml").unwrap();
        let check = |edit: &dyn Fn(&mut CpuLane)| {
            let mut g = base.clone();
            edit(g.cpu.as_mut().unwrap());
            let text = toml::to_string(&g).unwrap();
            GpuProfile::from_toml_str(&text, "my-gpu.toml").map(|_| ()).map_err(|e| e.to_string())
        };
        let mlp = |us: f64| HostBlockTime {
            model: "m".into(),
            kind: BlockKind::Mlp,
            context: 512,
            us,
            hot_us: 6000.0,
            cold_us: 7000.0,
        };
        check(&|c| {
            c.host_read_gbps = Some(100.0);
            c.handoff_us = Some(20.0);
            c.block_times = vec![mlp(9000.0)];
        })
        .unwrap();
        let err = check(&|c| c.block_times = vec![mlp(-1.0)]).unwrap_err();
        assert!(err.contains("cpu.block_times[0].us"), "{err}");
        let err =
            check(&|c| c.block_times = vec![HostBlockTime { kind: BlockKind::Layer, ..mlp(9000.0) }]).unwrap_err();
        assert!(err.contains("cpu.block_times[0].kind") && err.contains("KV cache"), "{err}");
        let err = check(&|c| c.host_read_gbps = Some(0.0)).unwrap_err();
        assert!(err.contains("cpu.host_read_gbps"), "{err}");
        let err = check(&|c| c.handoff_us = Some(-5.0)).unwrap_err();
        assert!(err.contains("cpu.handoff_us"), "{err}");
    }

    #[test]
    fn zero_memory_cores_and_copy_sizes_are_refused() {
        assert!(refused(&with("memory_bytes", "0")).contains("`memory_bytes` is 0"));
        assert!(refused(&with("usable_bytes", "0")).contains("`usable_bytes` must be between 1 and memory_bytes"));
        assert!(refused(&with("cores", "0")).contains("`cpu.cores` is 0"));
        assert!(refused(&with("bytes", "0")).contains("`h2d_curve[0].bytes` is 0"));
    }

    #[test]
    fn a_profile_over_the_size_or_point_limits_is_refused() {
        let padded = format!("{}{}", toml::to_string(&profile()).unwrap(), "#\n".repeat(1 << 20));
        let msg = GpuProfile::from_toml_str(&padded, "my-gpu.toml").unwrap_err().to_string();
        assert!(msg.starts_with("cannot read GPU profile my-gpu.toml: it is "), "{msg}");
        assert!(msg.contains("bytes, over the limit of 1048576 bytes (1.00 MiB;"), "{msg}");
        let mut gpu = profile();
        gpu.h2d_curve = (1..=crate::limits::MAX_PROFILE_POINTS as u64 + 1)
            .map(|i| BandwidthPoint { bytes: i << 20, gbps: 10.0 })
            .collect();
        let msg = GpuProfile::from_toml_str(&toml::to_string(&gpu).unwrap(), "my-gpu.toml").unwrap_err().to_string();
        assert!(msg.contains("`h2d_curve` has 4097 points, over the limit of 4096"), "{msg}");
    }

    #[test]
    fn a_profile_that_is_a_directory_names_the_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = GpuProfile::load(dir.path()).unwrap_err();
        assert!(std::error::Error::source(&e).is_none(), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("cannot read GPU profile ") && msg.matches("Is a directory").count() == 1, "{msg}");
    }
}
