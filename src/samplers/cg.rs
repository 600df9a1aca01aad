//! The exact proximal data step of published DiffPIR, FFT-free: for each slice i,
//! `argmin_x ‖Ax − y‖² + μ_i‖x − x0‖²`, i.e. conjugate gradients on `(AᵀA + μ_i I) x = Aᵀy + μ_i x0`
//! (also Tikhonov's solve, with x0 = 0 and μ = λ).
//! Every scalar (step, β, convergence) is kept per slice, and a slice that has converged is frozen,
//! so a slice of a batch takes exactly the iterations it would take alone.

use crate::backend::{Backend, NormalOp, CG_STATS};
use crate::error::{Error, Result};
use crate::operators::LinOp;
use crate::tensor::Tensor;

/// How one slice's CG solve ended: iterations taken, final ‖r‖² and ‖b‖².
#[derive(Debug, Clone, Copy, PartialEq)]
struct CgSlice {
    iters: usize,
    rr: f64,
    bb: f64,
}

/// Iteration limit and relative tolerance ‖b − A x‖ ≤ tol·‖b‖.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgSettings {
    pub max_iters: usize,
    pub tol: f64,
}

/// How well the solves went, worst case over slices (and over calls, via `merge`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgReport {
    /// Largest number of iterations any slice took.
    pub iters: usize,
    /// Largest final relative residual ‖b − A x‖ / ‖b‖.
    pub rel_residual: f64,
    /// Solves run (one per sampler step).
    pub solves: usize,
}

impl CgReport {
    pub fn merge(&mut self, other: &CgReport) {
        self.iters = self.iters.max(other.iters);
        self.rel_residual = worst(self.rel_residual, other.rel_residual);
        self.solves += other.solves;
    }

    /// The report of one solve from its [N, CG_STATS] statistics (`prox_solve_on_device`).
    pub fn from_stats(stats: &Tensor) -> Result<CgReport> {
        let n = stats.shape().first().copied().unwrap_or(0);
        if stats.shape() != [n, CG_STATS] {
            return Err(Error::internal(format!(
                "CG statistics of shape {:?}, expected (N, {CG_STATS})",
                stats.shape()
            )));
        }
        let slices: Vec<CgSlice> = stats
            .data()
            .chunks(CG_STATS)
            .map(|s| CgSlice {
                iters: s[0] as usize,
                rr: s[1] as f64,
                bb: s[2] as f64,
            })
            .collect();
        Ok(report(&slices))
    }
}

/// The larger of two residuals, NaN if either is (`f64::max` would drop a NaN and report a
/// diverged solve as converged).
fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Solve the proximal problem for every slice of y, starting from `x0` (the natural warm
/// start: the prior's estimate). Returns the solution and how well it converged.
pub fn prox_solve<B: Backend>(
    be: &B,
    op: LinOp<B>,
    y: &B::Buf,
    x0: &B::Buf,
    mu: &[f32],
    cg: &CgSettings,
) -> Result<(B::Buf, CgReport)> {
    let mu = be.upload(&Tensor::new(vec![mu.len()], mu.to_vec())?)?;
    let aty = op.adjoint(be, y)?;
    let (x, stats) = prox_solve_on_device(be, op, &aty, x0, &mu, cg)?;
    Ok((x, CgReport::from_stats(&be.download(&stats)?)?))
}

/// As `prox_solve` from Aᵀy (a sampler computes it once per run) with μ as an [N] buffer,
/// returning the [N, CG_STATS] statistics as a buffer: device work where the backend runs the
/// loop itself (the GPU: no host round trip per iteration, so a sampler step can run under
/// `replay_many`), else the generic loop.
pub fn prox_solve_on_device<B: Backend>(
    be: &B,
    op: LinOp<B>,
    aty: &B::Buf,
    x0: &B::Buf,
    mu: &B::Buf,
    cg: &CgSettings,
) -> Result<(B::Buf, B::Buf)> {
    let normal = |v: &B::Buf| op.normal(be, v);
    if let Some(done) = be.prox_cg(&normal, aty, x0, mu, cg.max_iters, cg.tol)? {
        return Ok(done);
    }
    let mu = be.download(mu)?;
    let (x, slices) = generic_solve(be, &normal, aty, x0, mu.data(), cg)?;
    let stats: Vec<f32> = slices
        .iter()
        .flat_map(|s| [s.iters as f32, s.rr as f32, s.bb as f32])
        .collect();
    let stats = be.upload(&Tensor::new(vec![slices.len(), CG_STATS], stats)?)?;
    Ok((x, stats))
}

/// Worst case over slices; a NaN residual stays NaN. Where b = 0 the residual is absolute
/// (‖b − A x‖), which is also 0 when the solve is exact.
fn report(slices: &[CgSlice]) -> CgReport {
    CgReport {
        iters: slices.iter().map(|s| s.iters).max().unwrap_or(0),
        rel_residual: slices
            .iter()
            .map(|s| {
                if s.bb > 0.0 {
                    (s.rr / s.bb).sqrt()
                } else {
                    s.rr.sqrt()
                }
            })
            .fold(0.0, worst),
        solves: 1,
    }
}

/// The CG loop over backend ops, with per-slice scalars on the host.
fn generic_solve<B: Backend>(
    be: &B,
    ata: NormalOp<'_, B::Buf>,
    aty: &B::Buf,
    x0: &B::Buf,
    mu: &[f32],
    cg: &CgSettings,
) -> Result<(B::Buf, Vec<CgSlice>)> {
    let n = mu.len();
    let ones = vec![1.0f32; n];
    // (AᵀA + μ_i I) v for each slice.
    let normal_op = |v: &B::Buf| be.lincomb_per_item(&ata(v)?, &ones, v, mu);
    let b = be.lincomb_per_item(aty, &ones, x0, mu)?;
    let b_norm = be.sum_sq_per_item(&b)?;
    let mut x = x0.clone();
    let mut r = be.lincomb(&b, 1.0, &normal_op(&x)?, -1.0)?;
    let mut rr = be.sum_sq_per_item(&r)?;
    let mut dir = r.clone();
    let converged = |rr: f64, bb: f64| rr <= cg.tol * cg.tol * bb;
    let mut done: Vec<bool> = (0..n).map(|i| converged(rr[i], b_norm[i])).collect();
    let mut iters = vec![0usize; n];
    for _ in 0..cg.max_iters {
        if done.iter().all(|&d| d) {
            break;
        }
        let a_dir = normal_op(&dir)?;
        let curv = be.dot_per_item(&dir, &a_dir)?;
        let alpha: Vec<f32> = (0..n)
            .map(|i| {
                if done[i] || curv[i] <= 0.0 {
                    0.0
                } else {
                    (rr[i] / curv[i]) as f32
                }
            })
            .collect();
        x = be.lincomb_per_item(&x, &ones, &dir, &alpha)?;
        let neg: Vec<f32> = alpha.iter().map(|a| -a).collect();
        r = be.lincomb_per_item(&r, &ones, &a_dir, &neg)?;
        let rr_new = be.sum_sq_per_item(&r)?;
        let beta: Vec<f32> = (0..n)
            .map(|i| {
                if done[i] || rr[i] == 0.0 {
                    0.0
                } else {
                    (rr_new[i] / rr[i]) as f32
                }
            })
            .collect();
        dir = be.lincomb_per_item(&r, &ones, &dir, &beta)?;
        for i in 0..n {
            if !done[i] {
                iters[i] += 1;
                rr[i] = rr_new[i];
                // A zero curvature means the residual is already zero along every direction.
                done[i] = converged(rr[i], b_norm[i]) || curv[i] <= 0.0;
            }
        }
    }
    let slices = (0..n)
        .map(|i| CgSlice {
            iters: iters[i],
            rr: rr[i],
            bb: b_norm[i],
        })
        .collect();
    Ok((x, slices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_residual_is_reported_not_dropped() {
        let slice = |rr: f64| CgSlice {
            iters: 3,
            rr,
            bb: 4.0,
        };
        let r = report(&[slice(1.0), slice(f64::NAN), slice(0.25)]);
        assert!(r.rel_residual.is_nan(), "{r:?}");
        let mut merged = report(&[slice(1.0)]);
        assert_eq!(merged.rel_residual, 0.5);
        merged.merge(&r);
        assert!(merged.rel_residual.is_nan());
        let mut clean = report(&[slice(0.25)]);
        clean.merge(&report(&[slice(1.0)]));
        assert_eq!((clean.rel_residual, clean.solves), (0.5, 2));
    }

    /// The statistics buffer's rows are (iterations, ‖r‖², ‖b‖²), worst over rows; any other
    /// shape is refused.
    #[test]
    fn the_report_comes_from_the_statistics_rows() {
        let stats = Tensor::new(vec![2, CG_STATS], vec![3.0, 1.0, 4.0, 7.0, 0.25, 1.0]).unwrap();
        let r = CgReport::from_stats(&stats).unwrap();
        assert_eq!((r.iters, r.rel_residual, r.solves), (7, 0.5, 1));
        let wrong = Tensor::new(vec![3, 2], vec![0.0; 6]).unwrap();
        assert!(CgReport::from_stats(&wrong).is_err());
    }
}
