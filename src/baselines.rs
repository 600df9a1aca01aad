//! Classical deblurring baselines on the same measurements, so a table shows what the diffusion
//! prior buys: Tikhonov by conjugate gradients and total variation by a primal-dual solver.
//! Both run per slice on the CPU, in model space, with the operator's blur and its adjoint.

use crate::backend::cpu::blur::blur;
use crate::bail;
use crate::error::Result;
use crate::operators::Kernel;
use crate::tensor::Tensor;

/// Solver iteration limits.
const CG_MAX_ITERS: usize = 300;
const CG_TOL: f64 = 1e-6;
const TV_ITERS: usize = 400;

fn apply(x: &[f32], h: usize, w: usize, k: &Kernel, adjoint: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    blur(x, h, w, &k.data, k.size, adjoint, &mut out);
    out
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
}

fn check_lambda(lambda: f64) -> Result<()> {
    if !(lambda.is_finite() && lambda > 0.0) {
        bail!("--lambda must be a positive number, got {lambda}");
    }
    Ok(())
}

fn per_slice(y: &Tensor, f: impl Fn(&[f32], usize, usize) -> Vec<f32> + Sync) -> Result<Tensor> {
    use rayon::prelude::*;
    let (h, w) = (y.shape()[2], y.shape()[3]);
    let slices: Vec<Vec<f32>> = y.data().par_chunks(h * w).map(|s| f(s, h, w)).collect();
    Tensor::new(y.shape().to_vec(), slices.concat())
}

/// argmin ‖Kx − y‖² + λ‖x‖²: conjugate gradients on (KᵀK + λI) x = Kᵀy, from x = 0.
pub fn tikhonov(y: &Tensor, k: &Kernel, lambda: f64) -> Result<Tensor> {
    check_lambda(lambda)?;
    per_slice(y, |ys, h, w| {
        let normal = |v: &[f32]| -> Vec<f32> {
            let ktk = apply(&apply(v, h, w, k, false), h, w, k, true);
            ktk.iter()
                .zip(v)
                .map(|(a, b)| a + lambda as f32 * b)
                .collect()
        };
        let b = apply(ys, h, w, k, true);
        let mut x = vec![0.0f32; b.len()];
        let mut r = b.clone();
        let mut p = r.clone();
        let mut rr = dot(&r, &r);
        let stop = CG_TOL * CG_TOL * dot(&b, &b);
        for _ in 0..CG_MAX_ITERS {
            if rr <= stop {
                break;
            }
            let ap = normal(&p);
            let alpha = rr / dot(&p, &ap);
            x.iter_mut()
                .zip(&p)
                .for_each(|(xi, pi)| *xi += (alpha * *pi as f64) as f32);
            r.iter_mut()
                .zip(&ap)
                .for_each(|(ri, ai)| *ri -= (alpha * *ai as f64) as f32);
            let rr_new = dot(&r, &r);
            let beta = rr_new / rr;
            p.iter_mut()
                .zip(&r)
                .for_each(|(pi, ri)| *pi = ri + (beta * *pi as f64) as f32);
            rr = rr_new;
        }
        x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        x
    })
}

/// Forward differences with Neumann boundary: (dx, dy).
fn grad(x: &[f32], h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let mut gx = vec![0.0f32; x.len()];
    let mut gy = vec![0.0f32; x.len()];
    for i in 0..h {
        for j in 0..w {
            let v = x[i * w + j];
            if j + 1 < w {
                gx[i * w + j] = x[i * w + j + 1] - v;
            }
            if i + 1 < h {
                gy[i * w + j] = x[(i + 1) * w + j] - v;
            }
        }
    }
    (gx, gy)
}

/// The adjoint of `grad` (minus the divergence).
fn grad_adjoint(px: &[f32], py: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; px.len()];
    for i in 0..h {
        for j in 0..w {
            let idx = i * w + j;
            let mut v = 0.0;
            if j + 1 < w {
                v -= px[idx];
            }
            if j > 0 {
                v += px[idx - 1];
            }
            if i + 1 < h {
                v -= py[idx];
            }
            if i > 0 {
                v += py[idx - w];
            }
            out[idx] = v;
        }
    }
    out
}

/// argmin ½‖Kx − y‖² + λ·TV(x) over x in [−1, 1] (isotropic TV), by Chambolle–Pock.
pub fn total_variation(y: &Tensor, k: &Kernel, lambda: f64) -> Result<Tensor> {
    check_lambda(lambda)?;
    let lam = lambda as f32;
    per_slice(y, |ys, h, w| {
        // ‖[K; ∇]‖² ≤ ‖K‖₁² + 8; step sizes with σ·τ·L² < 1.
        let l1: f32 = k.data.iter().map(|v| v.abs()).sum();
        let step = 0.99 / (l1 * l1 + 8.0).sqrt();
        let n = ys.len();
        let mut x = ys.to_vec();
        let mut xbar = x.clone();
        let (mut px, mut py, mut q) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        for _ in 0..TV_ITERS {
            let (gx, gy) = grad(&xbar, h, w);
            for i in 0..n {
                let (a, b) = (px[i] + step * gx[i], py[i] + step * gy[i]);
                let scale = ((a * a + b * b).sqrt() / lam).max(1.0);
                px[i] = a / scale;
                py[i] = b / scale;
            }
            let kx = apply(&xbar, h, w, k, false);
            for i in 0..n {
                q[i] = (q[i] + step * (kx[i] - ys[i])) / (1.0 + step);
            }
            let ktq = apply(&q, h, w, k, true);
            let gtp = grad_adjoint(&px, &py, h, w);
            for i in 0..n {
                let new = (x[i] - step * (ktq[i] + gtp[i])).clamp(-1.0, 1.0);
                xbar[i] = 2.0 * new - x[i];
                x[i] = new;
            }
        }
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dotv(a: &[f32], b: &[f32]) -> f64 {
        dot(a, b)
    }

    #[test]
    fn gradient_adjoint_identity() {
        let mut rng = crate::rng::Rng::new(3);
        let (h, w) = (5, 7);
        let x = rng.normal_vec(h * w);
        let (px, py) = (rng.normal_vec(h * w), rng.normal_vec(h * w));
        let (gx, gy) = grad(&x, h, w);
        let lhs = dotv(&gx, &px) + dotv(&gy, &py);
        let rhs = dotv(&x, &grad_adjoint(&px, &py, h, w));
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

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
        let k = Kernel::motion(9, 20.0).unwrap();
        let y = crate::operators::apply(&t, &k).unwrap();
        let err = |x: &Tensor| {
            x.data()
                .iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        let base = err(&y);
        let tik = tikhonov(&y, &k, 1e-3).unwrap();
        let tv = total_variation(&y, &k, 1e-3).unwrap();
        assert!(
            err(&tik) < 0.5 * base,
            "tikhonov {} vs blurred {base}",
            err(&tik)
        );
        assert!(err(&tv) < 0.5 * base, "tv {} vs blurred {base}", err(&tv));
        assert!(tikhonov(&y, &k, -1.0).is_err());
    }
}
