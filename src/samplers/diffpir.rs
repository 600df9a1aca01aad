//! The notebook's DiffPIR-style sampler: a DDIM prior step from the clamped x0 estimate, then
//! one gradient step on ½‖Kx − y‖² with step size tau, clamped. Starts from y itself.

use super::{check_param, Problem, Progress};
use crate::backend::Backend;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffPirParams {
    pub steps: usize,
    pub tau: f64,
}

impl Default for DiffPirParams {
    fn default() -> Self {
        DiffPirParams {
            steps: 40,
            tau: 0.6,
        }
    }
}

pub fn run<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirParams,
    progress: Progress,
) -> Result<B::Buf> {
    p.check()?;
    check_param("--tau", params.tau, false)?;
    let ts = p.schedule.timesteps(params.steps)?;
    let mut x = p.y.clone();
    for (i, pair) in ts.windows(2).enumerate() {
        x = step(p, &x, pair[0], pair[1], params.tau)?;
        progress(i + 1, ts.len() - 1);
    }
    Ok(x)
}

/// One step from t to t_next: prior DDIM step, then x = clamp(xp − tau·Kᵀ(K xp − y), −1, 1).
pub fn step<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    t_next: usize,
    tau: f64,
) -> Result<B::Buf> {
    let eps = p.net.forward(p.be, x, &[t as f32])?;
    let prior =
        p.be.diffpir_prior(x, &eps, p.schedule.coeffs(t), p.schedule.coeffs(t_next))?;
    p.be.data_step(&prior, p.y, p.kernel, tau as f32)
}
