//! Summaries of repeated timings and the straight-line fit behind the copy
//! latency. Pure arithmetic, so the profiler's conclusions can be tested
//! without a GPU.

use serde::Serialize;

/// Median, minimum and maximum of repeated timings, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    pub median_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub runs: usize,
}

impl Timing {
    /// Summarises `samples` (µs; at least one, all finite).
    pub fn of(samples: &[f64]) -> Timing {
        assert!(!samples.is_empty(), "a timing needs at least one sample");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Timing { median_us: median_sorted(&s), min_us: s[0], max_us: s[s.len() - 1], runs: s.len() }
    }
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `y = intercept + slope · x`, fitted by least squares with each point
/// weighted by `1 / y²`, i.e. minimising *relative* errors: a fixed cost of a
/// few µs must not be swamped by the absolute noise of the larger points.
/// Needs two distinct `x` and positive `y`.
pub fn fit_relative(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let (mut s, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y) in points {
        if !(y > 0.0 && x.is_finite() && y.is_finite()) {
            return None;
        }
        let w = 1.0 / (y * y);
        s += w;
        sx += w * x;
        sy += w * y;
        sxx += w * x * x;
        sxy += w * x * y;
    }
    let det = s * sxx - sx * sx;
    if points.len() < 2 || det.abs() <= f64::EPSILON * s * sxx {
        return None;
    }
    let slope = (s * sxy - sx * sy) / det;
    Some(((sy - slope * sx) / s, slope))
}

/// Rounds `v` to `digits` decimals (profiles are read by people too).
pub fn round_to(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_takes_the_median_whatever_the_order() {
        let t = Timing::of(&[5.0, 1.0, 3.0]);
        assert_eq!((t.median_us, t.min_us, t.max_us, t.runs), (3.0, 1.0, 5.0, 3));
        assert_eq!(Timing::of(&[4.0, 1.0, 2.0, 3.0]).median_us, 2.5);
        assert_eq!(Timing::of(&[7.0]).median_us, 7.0);
    }

    #[test]
    fn fit_recovers_an_exact_line() {
        let pts: Vec<(f64, f64)> =
            [4096.0, 65536.0, 1048576.0, 4194304.0].iter().map(|&x| (x, 3.0 + x / 25e3)).collect();
        let (a, b) = fit_relative(&pts).unwrap();
        assert!((a - 3.0).abs() < 1e-9, "{a}");
        assert!((b - 1.0 / 25e3).abs() < 1e-15, "{b}");
    }

    #[test]
    fn fit_weights_relative_error_so_small_points_pin_the_intercept() {
        // 2% and 1% noise on the two largest copies: an unweighted fit puts
        // the fixed cost at 3.24 µs, the relative one within 0.01 of 3.
        let mut pts: Vec<(f64, f64)> =
            [4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0].iter().map(|&x| (x, 3.0 + x / 25e3)).collect();
        pts[4].1 *= 1.02;
        pts[5].1 *= 0.99;
        let (a, _) = fit_relative(&pts).unwrap();
        assert!((a - 3.0).abs() < 0.01, "{a}");
    }

    #[test]
    fn fit_refuses_degenerate_input() {
        assert_eq!(fit_relative(&[(1.0, 2.0)]), None);
        assert_eq!(fit_relative(&[(1.0, 2.0), (1.0, 3.0)]), None);
        assert_eq!(fit_relative(&[(1.0, 0.0), (2.0, 3.0)]), None);
    }

    #[test]
    fn rounding() {
        assert_eq!(round_to(53.04999, 1), 53.0);
        assert_eq!(round_to(2.345678, 2), 2.35);
    }
}
