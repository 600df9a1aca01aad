//! DPS as published (Chung et al., ICLR 2023, Algorithm 1 and the official code), beside the
//! notebook's version: an ancestral step (DDIM with η; η = 1 on consecutive timesteps is the
//! DDPM step) from the clamped x0 estimate, corrected by ζ·∇_x‖y − A x̂0‖ — the gradient of the
//! unsquared residual norm, i.e. a step ζ/‖y − A x̂0‖ on ½‖y − A x̂0‖² with ζ in units of 1/‖A‖
//! (one ζ means the same on every operator; ‖A‖ = 1 for blur). Each slice uses its own
//! norm and its own noise streams, so slices of a batch do not couple.

use super::{check_param, dps, Problem, Progress};
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::rng::slice_noise;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpsPaperParams {
    pub steps: usize,
    /// ζ: step size on the residual norm.
    pub zeta: f64,
    /// η: 1 = DDPM ancestral noise, 0 = deterministic DDIM.
    pub eta: f64,
}

impl Default for DpsPaperParams {
    /// Chosen by `evaluate --sweep` on phantoms outside the evaluation set (README).
    fn default() -> Self {
        DpsPaperParams {
            steps: 40,
            zeta: 3.0,
            eta: 1.0,
        }
    }
}

impl DpsPaperParams {
    pub fn check(&self) -> Result<()> {
        check_param("--zeta", self.zeta, false)?;
        check_param("--eta", self.eta, false)?;
        if self.eta > 1.0 {
            bail!("--eta must lie in [0, 1], got {}", self.eta);
        }
        Ok(())
    }
}

/// Run from the starting noise `x_t`; `seeds` gives each slice its own ancestral-noise stream.
pub fn run<B: Backend>(
    p: &Problem<B>,
    x_t: B::Buf,
    params: &DpsPaperParams,
    seeds: &[u64],
    progress: Progress,
) -> Result<B::Buf> {
    p.check()?;
    params.check()?;
    let be = p.be;
    let shape = p.check_init(&x_t)?;
    if seeds.len() != shape[0] {
        bail!("{} noise seeds for {} slices", seeds.len(), shape[0]);
    }
    let ts = p.schedule.timesteps(params.steps)?;
    // ζ in units of 1/‖A‖ (the residual norm's gradient scale; ‖A‖ = 1 for blur).
    let zeta = params.zeta / p.op.norm();
    let mut x = x_t;
    for (i, &t) in ts.iter().enumerate() {
        let g = dps::scaled_gradient(p, &x, t, 1.0)?;
        let norms: Vec<f64> = be
            .sum_sq_per_item(&p.residual(&g.x0)?)?
            .iter()
            .map(|v| v.sqrt())
            .collect();
        let step: Vec<f32> = norms
            .iter()
            .map(|n| if *n > 0.0 { (-zeta / n) as f32 } else { 0.0 })
            .collect();
        let prior = match ts.get(i + 1) {
            Some(&t_next) => ancestral(p, &x, &g.x0, t, t_next, params.eta, seeds, i)?,
            None => g.x0,
        };
        x = be.lincomb_per_item(&prior, &vec![1.0; step.len()], &g.grad, &step)?;
        progress(i + 1, ts.len());
    }
    be.clamp(&mut x, -1.0, 1.0)?;
    Ok(x)
}

/// x_{t_next} = sqrt(ᾱ')·x0 + sqrt(1 − ᾱ' − σ²)·ε + σ·z with ε = (x − sqrt(ᾱ)·x0)/sqrt(1 − ᾱ)
/// and σ = η·sqrt((1 − ᾱ')/(1 − ᾱ))·sqrt(1 − ᾱ/ᾱ').
#[allow(clippy::too_many_arguments)]
fn ancestral<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    x0: &B::Buf,
    t: usize,
    t_next: usize,
    eta: f64,
    seeds: &[u64],
    step: usize,
) -> Result<B::Buf> {
    let be = p.be;
    let (ab, ab_next) = (
        p.schedule.alpha_bars[t] as f64,
        p.schedule.alpha_bars[t_next] as f64,
    );
    let (sab, s1m) = p.schedule.coeffs(t);
    let eps = be.lincomb(x, 1.0 / s1m, x0, -sab / s1m)?;
    let sigma = eta * ((1.0 - ab_next) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_next).max(0.0).sqrt();
    let eps_coef = (1.0 - ab_next - sigma * sigma).max(0.0).sqrt();
    let mean = be.lincomb(x0, ab_next.sqrt() as f32, &eps, eps_coef as f32)?;
    if sigma == 0.0 {
        return Ok(mean);
    }
    let z = be.upload(&slice_noise(be.shape(x), seeds, step as u64 + 1))?;
    be.lincomb(&mean, 1.0, &z, sigma as f32)
}
