//! Comparing a kernel's output with a reference: `|got - want| <= atol + rtol * |want|`
//! element-wise, and on failure a message that lists the first mismatches
//! (index, got, want, error, allowance) so a broken kernel is diagnosed from
//! the test log alone. Public because the runtime's tests compare logits the same way.

/// How close a comparison came: the largest absolute error, and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Closeness {
    pub max_abs_err: f64,
    pub at: usize,
}

/// Mismatches listed in a failure message.
pub const LISTED: usize = 8;

/// Checks `got` against `want` (same length); `what` names the output in the message.
pub fn close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Result<Closeness, String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} elements, reference has {}", got.len(), want.len()));
    }
    let mut worst = Closeness { max_abs_err: 0.0, at: 0 };
    let mut bad = Vec::new();
    let mut count = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let allowed = atol + rtol * w.abs();
        // NaN fails: `err <= allowed` is false.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(err <= allowed) {
            count += 1;
            if bad.len() < LISTED {
                bad.push(format!("  [{i}] got {g:.6e} want {w:.6e} |err| {err:.3e} > {allowed:.3e}"));
            }
        }
        if err > worst.max_abs_err || err.is_nan() {
            worst = Closeness { max_abs_err: err, at: i };
        }
    }
    if count == 0 {
        Ok(worst)
    } else {
        Err(format!(
            "{what}: {count} of {} elements outside atol {atol:e} + rtol {rtol:e}·|ref|; first mismatches:\n{}",
            got.len(),
            bad.join("\n")
        ))
    }
}

/// [`close`] with an f32 reference.
pub fn close_f32(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Result<Closeness, String> {
    close(what, got, &want.iter().map(|&v| v as f64).collect::<Vec<_>>(), atol, rtol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_within_tolerance_and_lists_the_first_mismatches() {
        assert!(close("x", &[1.0, 2.0], &[1.0005, 2.0], 1e-3, 0.0).is_ok());
        let err = close("logits", &[1.0, 5.0, f32::NAN], &[1.0, 2.0, 0.0], 1e-3, 1e-3).unwrap_err();
        assert!(err.contains("logits: 2 of 3") && err.contains("[1] got") && err.contains("[2] got NaN"), "{err}");
        assert!(close("x", &[1.0], &[1.0, 2.0], 1.0, 1.0).is_err());
    }
}
