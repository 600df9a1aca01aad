//! DiffPIR as published (Zhu et al., CVPR-W 2023), beside the notebook's simplified version:
//! each step denoises with the prior, solves the data subproblem exactly
//! `x̂0 = argmin ‖Ax − y‖²/(2σ_n²) + (ρ_t/2)‖x − x0‖²` with ρ_t = λ/σ̄_t², σ̄_t² = (1 − ᾱ_t)/ᾱ_t
//! (by conjugate gradients, see `cg`), then steps to t_next re-injecting a fraction ζ of fresh
//! noise. It starts from y (or the operator's image-shaped estimate from y) with the noise level
//! of the first timestep.

use super::cg::{self, CgReport, CgSettings};
use super::{check_param, check_range, Problem, Progress, MAX_NOISE_LEVEL};
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::rng::slice_noise;
use crate::schedule::Skip;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffPirPnpParams {
    pub steps: usize,
    /// λ: weight of the prior against the data (larger trusts the prior more).
    pub lambda: f64,
    /// ζ in [0, 1]: fraction of fresh noise in each step (0 = deterministic DDIM-like).
    pub zeta: f64,
    /// Relative measurement noise ‖e‖/‖Kx‖; σ_n of each slice is estimated as
    /// noise_level·‖y‖/√n.
    pub noise_level: f64,
    /// First timestep; the start is sqrt(ᾱ)·y + sqrt(1 − ᾱ)·z there.
    pub t_start: usize,
    pub skip: Skip,
    pub cg: CgSettings,
}

impl Default for DiffPirPnpParams {
    /// Chosen by `evaluate --sweep` on phantoms outside the evaluation set (README).
    fn default() -> Self {
        DiffPirPnpParams {
            steps: 40,
            lambda: 1.0,
            zeta: 1.0,
            noise_level: 0.01,
            t_start: 399,
            skip: Skip::Quad,
            cg: CgSettings {
                max_iters: 20,
                tol: 1e-4,
            },
        }
    }
}

impl DiffPirPnpParams {
    pub fn check(&self) -> Result<()> {
        check_param("--lambda", self.lambda, true)?;
        check_param("--zeta", self.zeta, false)?;
        if self.zeta > 1.0 {
            bail!("--zeta must lie in [0, 1], got {}", self.zeta);
        }
        check_range("--noise-level", self.noise_level, 0.0, MAX_NOISE_LEVEL)?;
        check_range("--cg-tol", self.cg.tol, f64::MIN_POSITIVE, 1.0)?;
        if self.cg.max_iters == 0 {
            bail!("--cg-iters must be at least 1");
        }
        Ok(())
    }
}

/// Run from y; `seeds` gives each slice its own noise streams (start and re-injection).
pub fn run<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirPnpParams,
    seeds: &[u64],
    progress: Progress,
) -> Result<(B::Buf, CgReport)> {
    p.check()?;
    params.check()?;
    let be = p.be;
    let shape = p.image_shape()?;
    if seeds.len() != shape[0] {
        bail!("{} noise seeds for {} slices", seeds.len(), shape[0]);
    }
    let ts = p
        .schedule
        .spaced_timesteps(params.t_start, params.steps, params.skip)?;
    let values: usize = be.shape(p.y)[1..].iter().product();
    let sigma_n2: Vec<f64> = be
        .sum_sq_per_item(p.y)?
        .iter()
        .map(|yy| params.noise_level.powi(2) * yy / values as f64)
        .collect();
    let noise = |stream: u64| be.upload(&slice_noise(&shape, seeds, stream));
    let (sab0, s1m0) = p.schedule.coeffs(ts[0]);
    let start = p.op.initial_estimate(be, p.y)?;
    let mut x = be.lincomb(&start, sab0, &noise(0)?, s1m0)?;
    let mut report = CgReport::default();
    for (i, &t) in ts.iter().enumerate() {
        let eps = p.net.forward(be, &x, &[t as f32])?;
        let (sab, s1m) = p.schedule.coeffs(t);
        let mut x0 = be.predict_x0(&x, &eps, sab, s1m)?;
        be.clamp(&mut x0, -1.0, 1.0)?;
        // μ = ρ_t·σ_n² = λ·σ_n²/σ̄_t² multiplies ‖x − x0‖² once ‖Ax − y‖² is unscaled.
        let ab = p.schedule.alpha_bars[t] as f64;
        let sigma_bar2 = (1.0 - ab) / ab;
        let mu: Vec<f32> = sigma_n2
            .iter()
            .map(|s2| (params.lambda * s2 / sigma_bar2) as f32)
            .collect();
        let (mut x0_data, r) = cg::prox_solve(be, p.op, p.y, &x0, &mu, &params.cg)?;
        report.merge(&r);
        be.clamp(&mut x0_data, -1.0, 1.0)?;
        x = match ts.get(i + 1) {
            Some(&t_next) => {
                // The noise direction implied by x and the data-consistent estimate.
                let eps_hat = be.lincomb(&x, 1.0 / s1m, &x0_data, -sab / s1m)?;
                let z = noise(i as u64 + 1)?;
                let mixed = be.lincomb(
                    &eps_hat,
                    (1.0 - params.zeta).sqrt() as f32,
                    &z,
                    params.zeta.sqrt() as f32,
                )?;
                let (sab_n, s1m_n) = p.schedule.coeffs(t_next);
                be.lincomb(&x0_data, sab_n, &mixed, s1m_n)?
            }
            None => x0_data,
        };
        progress(i + 1, ts.len());
    }
    Ok((x, report))
}
