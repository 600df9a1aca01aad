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
    let be = p.be;
    let eps = p.net.forward(be, x, &[t as f32])?;
    let (sab, s1m) = p.schedule.coeffs(t);
    let mut x0 = be.predict_x0(x, &eps, sab, s1m)?;
    be.clamp(&mut x0, -1.0, 1.0)?;
    let prior = p.ddim(&x0, &eps, Some(t_next))?;
    let correction = be.blur(&p.residual(&prior)?, p.kernel, true)?;
    let mut x = be.lincomb(&prior, 1.0, &correction, -tau as f32)?;
    be.clamp(&mut x, -1.0, 1.0)?;
    Ok(x)
}
