//! Classical baselines on the same measurements, so a table shows what the diffusion prior
//! buys: Tikhonov by conjugate gradients, total variation by a primal-dual solver, and (for CT)
//! filtered back-projection. Written once over the backend and the operator, so they run on
//! the CPU and the GPU alike.

use crate::backend::Backend;
use crate::error::Result;
use crate::operators::LinOp;
use crate::params::check_param;
use crate::samplers::cg::{self, CgSettings};
use crate::tensor::Tensor;

/// Solver iteration limits.
const TIKHONOV_CG: CgSettings = CgSettings {
    max_iters: 300,
    tol: 1e-6,
};
const TV_ITERS: usize = 400;

/// argmin ‖Ax − y‖² + λ‖x‖² per slice: conjugate gradients on (AᵀA + λI) x = Aᵀy from x = 0,
/// then clamped to [−1, 1].
pub fn tikhonov<B: Backend>(be: &B, op: LinOp<B>, y: &B::Buf, lambda: f64) -> Result<B::Buf> {
    check_param("--lambda", lambda, true)?;
    let image = op.image_shape(be.shape(y))?;
    let zero = be.upload(&Tensor::zeros(&image))?;
    let mu = vec![lambda as f32; image[0]];
    let (mut x, _) = cg::prox_solve(be, op, y, &zero, &mu, &TIKHONOV_CG)?;
    be.clamp(&mut x, -1.0, 1.0)?;
    Ok(x)
}

/// argmin ½‖Ax − y‖² + λ·TV(x) over x in [−1, 1] (isotropic TV, forward differences with
/// Neumann boundary) per slice, by Chambolle–Pock from the operator's estimate from y.
pub fn total_variation<B: Backend>(
    be: &B,
    op: LinOp<B>,
    y: &B::Buf,
    lambda: f64,
) -> Result<B::Buf> {
    check_param("--lambda", lambda, true)?;
    let image = op.image_shape(be.shape(y))?;
    // ‖[A; ∇]‖² ≤ ‖A‖² + 8; step sizes σ = τ with σ·τ·L² < 1.
    let norm = op.norm();
    let step = (0.99 / (norm * norm + 8.0).sqrt()) as f32;
    let lam = lambda as f32;
    let mut x = op.initial_estimate(be, y)?;
    let mut xbar = x.clone();
    let zeros = be.upload(&Tensor::zeros(&image))?;
    let (mut px, mut py) = (zeros.clone(), zeros);
    let mut q = be.upload(&Tensor::zeros(be.shape(y)))?;
    let keep = 1.0 / (1.0 + step);
    for _ in 0..TV_ITERS {
        be.tv_dual_update(&mut px, &mut py, &xbar, step, lam)?;
        // q ← (q + σ(A x̄ − y)) / (1 + σ): the prox of the data term's conjugate.
        let r = be.lincomb(&op.apply(be, &xbar)?, 1.0, y, -1.0)?;
        q = be.lincomb(&q, keep, &r, step * keep)?;
        let atq = op.adjoint(be, &q)?;
        be.tv_primal_update(&mut x, &mut xbar, &atq, &px, &py, step)?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::operators::{Kernel, Operator};

    /// Both solvers bring a blurred piecewise-constant image closer to the truth.
    #[test]
    fn baselines_improve_on_the_blurred_image() {
        let (h, w) = (32, 32);
        let truth: Vec<f32> = (0..h * w)
            .map(|i| {
                if (i / w) % 16 < 8 && (i % w) > 10 {
                    0.8
                } else {
                    -0.6
                }
            })
            .collect();
        let t = Tensor::new(vec![1, 1, h, w], truth.clone()).unwrap();
        let op = Operator::Blur(Kernel::motion(9, 20.0).unwrap());
        let y = op.apply(&t).unwrap();
        let err = |x: &Tensor| {
            x.data()
                .iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        let be = CpuBackend::default();
        let up = op.upload(&be).unwrap();
        let base = err(&y);
        let tik = tikhonov(&be, up.view(), &y, 1e-3).unwrap();
        let tv = total_variation(&be, up.view(), &y, 1e-3).unwrap();
        assert!(
            err(&tik) < 0.5 * base,
            "tikhonov {} vs blurred {base}",
            err(&tik)
        );
        assert!(err(&tv) < 0.5 * base, "tv {} vs blurred {base}", err(&tv));
        assert!(tikhonov(&be, up.view(), &y, -1.0).is_err());
    }
}
