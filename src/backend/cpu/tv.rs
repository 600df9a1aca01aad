//! The two fused updates of the Chambolle–Pock total-variation solver (baselines.rs), one
//! (h, w) slice at a time: forward differences with Neumann boundary and their adjoint.

/// p ← proj_{|p| ≤ λ}(p + step·∇x̄), pointwise on the isotropic pair (px, py).
pub fn dual_update(px: &mut [f32], py: &mut [f32], xbar: &[f32], h: usize, w: usize, step: f32, lam: f32) {
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

/// x_new = clamp(x − step·(atq + ∇ᵀp), −1, 1); x̄ = 2·x_new − x; x = x_new.
#[allow(clippy::too_many_arguments)]
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
    for i in 0..h {
        for j in 0..w {
            let idx = i * w + j;
            // ∇ᵀp = −div p.
            let mut gtp = 0.0;
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
