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
        DiffPirParams { steps: 40, tau: 0.6 }
    }
}

pub fn run<B: Backend>(p: &Problem<B>, params: &DiffPirParams, progress: Progress) -> Result<B::Buf> {
    p.check()?;
    check_param("--tau", params.tau, false)?;
    let be = p.be;
    let ts = p.schedule.timesteps(params.steps)?;
    let mut x = p.y.clone();
    for (i, pair) in ts.windows(2).enumerate() {
        let (t, t_next) = (pair[0], pair[1]);
        let eps = p.net.forward(be, &x, &[t as f32])?;
        let (sab, s1m) = p.schedule.coeffs(t);
        let mut x0 = be.predict_x0(&x, &eps, sab, s1m)?;
        be.clamp(&mut x0, -1.0, 1.0)?;
        let prior = p.ddim(&x0, &eps, Some(t_next))?;
        let correction = be.blur(&p.residual(&prior)?, p.kernel, true)?;
        x = be.lincomb(&prior, 1.0, &correction, -params.tau as f32)?;
        be.clamp(&mut x, -1.0, 1.0)?;
        progress(i + 1, ts.len() - 1);
    }
    Ok(x)
}
