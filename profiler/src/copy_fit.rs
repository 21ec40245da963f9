//! From copy timings to the profile's copy model.
//!
//! The compiler prices a copy as `copy_latency_us + bytes / (gbps(bytes)·10³)`
//! with `gbps` interpolated from `h2d_curve` (`compiler/src/cost.rs`). So the
//! fixed cost comes from a fit over small copies, where it matters, and each
//! curve point's bandwidth is computed *without* it: then the compiler's
//! price of a copy of a measured size is exactly its measured median.

use djinn_core::gpu::BandwidthPoint;

use crate::measurements::CopyTiming;
use crate::stats::{fit_relative, round_to};

/// `time = latency_us + bytes / (gbps·10³)`, fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyFit {
    pub latency_us: f64,
    pub gbps: f64,
}

/// Fits the medians of `small` by relative least squares; the fixed cost is
/// clamped at zero. `None` for fewer than two sizes or a non-positive slope.
pub fn fit(small: &[CopyTiming]) -> Option<CopyFit> {
    let pts: Vec<(f64, f64)> = small.iter().map(|c| (c.bytes as f64, c.time.median_us)).collect();
    let (a, b) = fit_relative(&pts)?;
    (b > 0.0).then(|| CopyFit { latency_us: a.max(0.0), gbps: 1.0 / b / 1e3 })
}

/// GB/s of `bytes` moved in `us` µs.
pub fn gbps(bytes: u64, us: f64) -> f64 {
    bytes as f64 / us / 1e3
}

/// The curve: each size's bandwidth net of `latency_us` (rounded to 0.01 GB/s).
/// A time not clearly above the fixed cost (a degenerate fit) keeps its gross rate.
pub fn curve(large: &[CopyTiming], latency_us: f64) -> Vec<BandwidthPoint> {
    large
        .iter()
        .map(|c| {
            let t = c.time.median_us;
            let net = if t - latency_us > t / 2.0 { t - latency_us } else { t };
            BandwidthPoint { bytes: c.bytes, gbps: round_to(gbps(c.bytes, net), 2) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Timing;

    pub(crate) fn copies(sizes: &[u64], latency: f64, gbps: f64) -> Vec<CopyTiming> {
        sizes
            .iter()
            .map(|&bytes| CopyTiming { bytes, time: Timing::of(&[latency + bytes as f64 / (gbps * 1e3)]) })
            .collect()
    }

    #[test]
    fn fit_finds_the_fixed_cost_and_rate() {
        let f = fit(&copies(&[4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20], 2.5, 50.0)).unwrap();
        assert!((f.latency_us - 2.5).abs() < 1e-6, "{f:?}");
        assert!((f.gbps - 50.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn negative_intercepts_clamp_to_zero_and_degenerate_input_is_none() {
        let mut c = copies(&[1 << 20, 4 << 20], 0.0, 50.0);
        c[0].time = Timing::of(&[c[0].time.median_us - 5.0]);
        assert_eq!(fit(&c).unwrap().latency_us, 0.0);
        assert_eq!(fit(&c[..1]), None);
    }

    #[test]
    fn curve_points_exclude_the_fixed_cost() {
        let c = copies(&[4 << 20, 1 << 30], 3.0, 50.0);
        let pts = curve(&c, 3.0);
        assert_eq!(pts.iter().map(|p| p.gbps).collect::<Vec<_>>(), vec![50.0, 50.0]);
        // Gross rates would be lower, the small copy's visibly so.
        assert!(gbps(c[0].bytes, c[0].time.median_us) < 49.9);
        // A fixed cost above half the time is not subtracted.
        let pts = curve(&copies(&[4096], 3.0, 50.0), 3.0);
        assert!((pts[0].gbps - gbps(4096, 3.0 + 4096.0 / 50e3)).abs() < 0.01);
    }
}
