//! DPS as in the notebook: a DDIM step from the clamped x0 estimate, corrected by the gradient
//! of the data loss taken through the clamp and the UNet (a manual VJP).
//! The loss is each slice's own mean, so slices of a batch do not couple.

use super::{check_param, Problem, Progress};
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpsParams {
    pub steps: usize,
    pub guidance: f64,
    pub sigma_y: f64,
}

impl Default for DpsParams {
    fn default() -> Self {
        DpsParams {
            steps: 40,
            guidance: 0.15,
            sigma_y: 0.01,
        }
    }
}

impl DpsParams {
    pub fn check(&self) -> Result<()> {
        check_param("--guidance", self.guidance, false)?;
        check_param("--sigma-y", self.sigma_y, true)
    }
}

/// What one DPS gradient evaluation produces.
pub struct DpsGrad<T> {
    /// dL/dx at the current state.
    pub grad: T,
    pub eps: T,
    /// The clamped x0 estimate.
    pub x0: T,
}

/// g = dL/dx with L = Σ_slices mean((K x0 − y)²) / (2σ²), x0 = clamp(x0_hat(x, eps(x, t))).
pub fn gradient<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    sigma_y: f64,
) -> Result<DpsGrad<B::Buf>> {
    let shape = p.be.shape(x);
    let pixels: usize = shape[1..].iter().product();
    scaled_gradient(p, x, t, (1.0 / (pixels as f64 * sigma_y * sigma_y)) as f32)
}

/// g = dL/dx with L = Σ_slices scale·½‖K x0 − y‖² (the published DPS uses scale 1).
pub fn scaled_gradient<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    scale: f32,
) -> Result<DpsGrad<B::Buf>> {
    let be = p.be;
    let (eps, tape) = p.net.forward_with_tape(be, x, &[t as f32])?;
    let (sab, s1m) = p.schedule.coeffs(t);
    let x0_raw = be.predict_x0(x, &eps, sab, s1m)?;
    let mut x0 = x0_raw.clone();
    be.clamp(&mut x0, -1.0, 1.0)?;
    // r = scale·Kᵀ(K x0 − y), the scale folded into the residual (Kᵀ is linear).
    let kx0 = be.blur(&x0, p.kernel, false)?;
    let mut r = be.blur(&be.lincomb(&kx0, scale, p.y, -scale)?, p.kernel, true)?;
    be.clamp_vjp(&x0_raw, -1.0, 1.0, &mut r)?;
    // x0_hat = (x − s1m·eps)/sab, so dL/dx = (r − s1m·Jᵀr)/sab.
    let jtr = p.net.vjp(be, &tape, &r)?;
    let grad = be.lincomb(&r, 1.0 / sab, &jtr, -s1m / sab)?;
    Ok(DpsGrad { grad, eps, x0 })
}

/// One DPS step from timestep t to t_next: clamp(DDIM(x0, eps, t_next) − guidance·g, −1, 1).
pub fn step<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    t_next: usize,
    params: &DpsParams,
) -> Result<B::Buf> {
    let be = p.be;
    let g = gradient(p, x, t, params.sigma_y)?;
    let prior = p.ddim(&g.x0, &g.eps, Some(t_next))?;
    let mut x = be.lincomb(&prior, 1.0, &g.grad, -params.guidance as f32)?;
    be.clamp(&mut x, -1.0, 1.0)?;
    Ok(x)
}

/// Run DPS from the starting noise `x_t` (same shape as y).
pub fn run<B: Backend>(
    p: &Problem<B>,
    x_t: B::Buf,
    params: &DpsParams,
    progress: Progress,
) -> Result<B::Buf> {
    p.check()?;
    params.check()?;
    let be = p.be;
    if be.shape(&x_t) != be.shape(p.y) {
        bail!(
            "--init has shape {:?} but the measurement has {:?}",
            be.shape(&x_t),
            be.shape(p.y)
        );
    }
    let ts = p.schedule.timesteps(params.steps)?;
    let mut x = x_t;
    for (i, pair) in ts.windows(2).enumerate() {
        x = step(p, &x, pair[0], pair[1], params)?;
        progress(i + 1, ts.len());
    }
    let eps = p.net.forward(be, &x, &[0.0])?;
    let (sab, s1m) = p.schedule.coeffs(0);
    let mut out = be.predict_x0(&x, &eps, sab, s1m)?;
    be.clamp(&mut out, -1.0, 1.0)?;
    progress(ts.len(), ts.len());
    Ok(out)
}
