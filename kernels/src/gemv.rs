//! The decode products' twins: `gemv.cu`'s `gemv_{dtype}` and `gemv_silu_{dtype}`.
//!
//! On the GPU, a product with a few input rows (`m <= 8`: decode) is bound by
//! streaming its weights once, and the work around it — storing the output,
//! adding it into the residual stream, the SiLU gate — costs a launch and a
//! round trip through memory each. The GEMV kernel therefore ends in an
//! epilogue ([`GemvOut`]) and takes up to three weight matrices that share
//! their input in one launch (q, k and v); `gemv_silu` computes the gate and
//! up products of the same rows together and writes `silu(gate) * up`. These
//! twins define what those launches compute, rounding included: each product
//! is accumulated in f32, rounded to the model dtype where the unfused ops
//! would store it, then used — so a fused launch and the ops it replaces
//! (`matmul`, `add`, `silu_mul`) agree to the summation order. A launch with
//! several matrices is one call of [`gemv`] per matrix.

use crate::elem::Half;
use crate::matmul::matmul;

/// Where a [`gemv`] result goes.
#[derive(Debug)]
pub enum GemvOut<'a, W> {
    /// `out[b, r] = W(acc)`: stored in the model dtype.
    Store(&'a mut [W]),
    /// `out[b, r] = acc`: kept f32 (the LM head's logits).
    F32(&'a mut [f32]),
    /// `x[b, r] += f32(W(acc))`: added into the f32 residual stream after the
    /// rounding a stored projection would get.
    Residual(&'a mut [f32]),
}

/// `out[b, r] = Σ_k x[b, k] · w[r, k]` for `b < m`, `r < n`, finished as `out` says.
pub fn gemv<W: Half>(out: GemvOut<'_, W>, w: &[W], x: &[W], m: usize, n: usize, k: usize) {
    let mut acc = vec![0f32; m * n];
    matmul(&mut acc, x, w, m, n, k);
    match out {
        GemvOut::Store(o) => o[..m * n].iter_mut().zip(&acc).for_each(|(o, a)| *o = W::from_f32(*a)),
        GemvOut::F32(o) => o[..m * n].copy_from_slice(&acc),
        GemvOut::Residual(x) => x[..m * n].iter_mut().zip(&acc).for_each(|(x, a)| *x += W::from_f32(*a).to_f32()),
    }
}

/// `out[b, r] = silu(W(gate_b · w_gate[r])) · W(up_b · w_up[r])`, rounded to
/// the model dtype: the MLP's gate and up products and its SiLU gate in one.
pub fn gemv_silu<W: Half>(out: &mut [W], gate: &[W], up: &[W], x: &[W], m: usize, n: usize, k: usize) {
    let (mut g, mut u) = (vec![W::from_f32(0.0); m * n], vec![W::from_f32(0.0); m * n]);
    matmul(&mut g, x, gate, m, n, k);
    matmul(&mut u, x, up, m, n, k);
    for ((o, g), u) in out[..m * n].iter_mut().zip(&g).zip(&u) {
        let g = g.to_f32();
        *o = W::from_f32(g / (1.0 + (-g).exp()) * u.to_f32());
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::elementwise::{add, silu_mul};
    use crate::rng::Rng;

    fn halves<W: Half>(rng: &mut Rng, n: usize, scale: f32) -> Vec<W> {
        rng.normals(n, scale).into_iter().map(W::from_f32).collect()
    }

    /// Each epilogue is exactly the unfused ops it replaces.
    fn epilogues_are_the_unfused_ops<W: Half>() {
        let (m, n, k) = (3, 37, 40);
        let mut rng = Rng::new(7);
        let (x, w, w2) =
            (halves::<W>(&mut rng, m * k, 1.0), halves(&mut rng, n * k, 0.2), halves(&mut rng, n * k, 0.2));
        let mut stored = vec![W::from_f32(0.0); m * n];
        gemv(GemvOut::Store(&mut stored), &w, &x, m, n, k);
        let mut want = vec![W::from_f32(0.0); m * n];
        matmul(&mut want, &x, &w, m, n, k);
        assert_eq!(stored, want, "{} store", W::NAME);

        let resid = rng.normals(m * n, 1.0);
        let mut fused = resid.clone();
        gemv(GemvOut::Residual(&mut fused), &w, &x, m, n, k);
        let mut unfused = resid;
        add(&mut unfused, &want, m * n);
        assert_eq!(fused, unfused, "{} residual", W::NAME);

        let mut logits = vec![0f32; m * n];
        gemv(GemvOut::F32(&mut logits), &w, &x, m, n, k);
        let mut want32 = vec![0f32; m * n];
        matmul(&mut want32, &x, &w, m, n, k);
        assert_eq!(logits, want32, "{} f32", W::NAME);

        let mut silu = vec![W::from_f32(f32::NAN); m * n];
        gemv_silu(&mut silu, &w, &w2, &x, m, n, k);
        let mut up = vec![W::from_f32(0.0); m * n];
        matmul(&mut up, &x, &w2, m, n, k);
        silu_mul(&mut want, &up, m * n);
        assert_eq!(silu, want, "{} silu", W::NAME);
    }

    #[test]
    fn epilogues_match_matmul_then_add_or_silu_mul() {
        epilogues_are_the_unfused_ops::<f16>();
        epilogues_are_the_unfused_ops::<bf16>();
    }
}
