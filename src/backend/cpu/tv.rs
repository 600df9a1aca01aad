//! The two fused updates of the Chambolle–Pock total-variation solver of
//! `baselines::total_variation`, one (h, w) slice at a time, so that the TV baseline can run on
//! any backend with any operator A. The arithmetic is the loop body's there, operation for
//! operation (forward differences with a Neumann boundary; its adjoint, minus the divergence),
//! so that a loop built from these reproduces it bit for bit (tested below).

/// p ← proj_{|p| ≤ λ}(p + step·∇x̄), pointwise on the isotropic pair (px, py).
pub fn dual_update(
    px: &mut [f32],
    py: &mut [f32],
    xbar: &[f32],
    h: usize,
    w: usize,
    step: f32,
    lam: f32,
) {
    assert!(px.len() == h * w && py.len() == h * w && xbar.len() == h * w);
    for i in 0..h {
        for j in 0..w {
            let idx = i * w + j;
            let v = xbar[idx];
            let gx = if j + 1 < w { xbar[idx + 1] - v } else { 0.0 };
            let gy = if i + 1 < h { xbar[idx + w] - v } else { 0.0 };
            let (a, b) = (px[idx] + step * gx, py[idx] + step * gy);
            let scale = ((a * a + b * b).sqrt() / lam).max(1.0);
            px[idx] = a / scale;
            py[idx] = b / scale;
        }
    }
}

/// x_new = clamp(x − step·(Aᵀq + ∇ᵀp), −1, 1); x̄ = 2·x_new − x; x = x_new. `atq` is Aᵀq.
#[allow(clippy::too_many_arguments)] // the solver's state, named as in the loop it mirrors
pub fn primal_update(
    x: &mut [f32],
    xbar: &mut [f32],
    atq: &[f32],
    px: &[f32],
    py: &[f32],
    h: usize,
    w: usize,
    step: f32,
) {
    let n = h * w;
    assert!(x.len() == n && xbar.len() == n && atq.len() == n && px.len() == n && py.len() == n);
    for i in 0..h {
        for j in 0..w {
            let idx = i * w + j;
            let mut gtp = 0.0f32;
            if j + 1 < w {
                gtp -= px[idx];
            }
            if j > 0 {
                gtp += px[idx - 1];
            }
            if i + 1 < h {
                gtp -= py[idx];
            }
            if i > 0 {
                gtp += py[idx - w];
            }
            let new = (x[idx] - step * (atq[idx] + gtp)).clamp(-1.0, 1.0);
            xbar[idx] = 2.0 * new - x[idx];
            x[idx] = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::blur::blur;
    use crate::operators::Kernel;
    use crate::tensor::Tensor;

    /// baselines::total_variation's loop, rebuilt from the two updates plus the data-term dual
    /// step (which stays with the operator): the same output bits.
    #[test]
    fn a_loop_of_the_updates_reproduces_the_tv_baseline_bit_for_bit() {
        let (h, w) = (13, 11);
        let truth: Vec<f32> = (0..h * w)
            .map(|i| {
                if (i / w) % 8 < 4 && i % w > 4 {
                    0.8
                } else {
                    -0.6
                }
            })
            .collect();
        let t = Tensor::new(vec![1, 1, h, w], truth).unwrap();
        let k = Kernel::motion(5, 30.0).unwrap();
        let op = crate::operators::Operator::Blur(k.clone());
        let y = op.apply(&t).unwrap();
        let lambda = 2e-2;
        let be = crate::backend::cpu::CpuBackend::default();
        let up = op.upload(&be).unwrap();
        let want = crate::baselines::total_variation(&be, up.view(), &y, lambda).unwrap();

        let apply = |v: &[f32], adjoint: bool| {
            let mut out = vec![0.0f32; v.len()];
            blur(v, h, w, &k.data, k.size, adjoint, &mut out);
            out
        };
        let ys = y.data();
        let (lam, n) = (lambda as f32, h * w);
        let norm = op.norm();
        let step = (0.99 / (norm * norm + 8.0).sqrt()) as f32;
        let keep = 1.0 / (1.0 + step);
        let mut x = ys.to_vec();
        let mut xbar = x.clone();
        let (mut px, mut py, mut q) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        for _ in 0..400 {
            // baselines' TV_ITERS
            dual_update(&mut px, &mut py, &xbar, h, w, step, lam);
            let kx = apply(&xbar, false);
            for i in 0..n {
                let r = kx[i] - ys[i]; // = 1·kx + (−1)·y, as lincomb computes it
                q[i] = keep * q[i] + (step * keep) * r;
            }
            let ktq = apply(&q, true);
            primal_update(&mut x, &mut xbar, &ktq, &px, &py, h, w, step);
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x), bits(want.data()));
        // Not a trivial fixed point: the solver moved the image.
        assert!(x.iter().zip(ys).any(|(a, b)| a != b));
    }
}
