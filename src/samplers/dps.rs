//! DPS as in the notebook: a DDIM step from the clamped x0 estimate, corrected by the gradient
//! of the data loss taken through the clamp and the UNet (a manual VJP).
//! The loss is each slice's own mean, so slices of a batch do not couple.

use super::{check_param, check_range, Problem, Progress, MAX_SCALE, MIN_SIGMA_Y};
use crate::backend::Backend;
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
        check_range("--sigma-y", self.sigma_y, MIN_SIGMA_Y, MAX_SCALE)
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

/// g = dL/dx with L = Σ_slices mean((A x0 − y)²) / (2σ²), x0 = clamp(x0_hat(x, eps(x, t))).
pub fn gradient<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    sigma_y: f64,
) -> Result<DpsGrad<B::Buf>> {
    scaled_gradient(p, x, t, loss_scale(p.be.shape(p.y), sigma_y))
}

/// The notebook loss's factor 1/(values·σ²) per slice (its mean over the slice's own
/// measurement values; the image's pixels for blur).
fn loss_scale(shape: &[usize], sigma_y: f64) -> f32 {
    let pixels: usize = shape[1..].iter().product();
    (1.0 / (pixels as f64 * sigma_y * sigma_y)) as f32
}

/// g = dL/dx with L = Σ_slices scale·½‖A x0 − y‖² (the published DPS uses scale 1).
pub fn scaled_gradient<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    scale: f32,
) -> Result<DpsGrad<B::Buf>> {
    let emb = p.net.embedding(p.be, x, &[t as f32])?;
    scaled_gradient_emb(p, x, &emb, t, scale)
}

/// `scaled_gradient` with the time embedding already uploaded: device work only.
pub(super) fn scaled_gradient_emb<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    emb: &B::Buf,
    t: usize,
    scale: f32,
) -> Result<DpsGrad<B::Buf>> {
    let be = p.be;
    let (eps, tape) = p.net.forward_with_tape_emb(be, x, emb)?;
    let (sab, s1m) = p.schedule.coeffs(t);
    let x0_raw = be.predict_x0(x, &eps, sab, s1m)?;
    let mut x0 = x0_raw.clone();
    be.clamp(&mut x0, -1.0, 1.0)?;
    // r = scale·Aᵀ(A x0 − y), the scale folded into the residual (Aᵀ is linear).
    let ax0 = p.op.apply(be, &x0)?;
    let mut r = p.op.adjoint(be, &be.lincomb(&ax0, scale, p.y, -scale)?)?;
    be.clamp_vjp(&x0_raw, -1.0, 1.0, &mut r)?;
    // x0_hat = (x − s1m·eps)/sab, so dL/dx = (r − s1m·Jᵀr)/sab.
    let jtr = p.net.vjp(be, &tape, &r)?;
    let grad = be.lincomb(&r, 1.0 / sab, &jtr, -s1m / sab)?;
    Ok(DpsGrad { grad, eps, x0 })
}

/// One DPS step from timestep t to t_next: clamp(DDIM(x0, eps, t_next) − guidance/‖A‖²·g, −1, 1).
/// Everything after the embedding's upload is device work handed to `Backend::replay`, keyed by
/// the step's scalars (t, t_next, guidance, σ_y), which the kernels take as arguments: a CUDA
/// backend replays one graph per step from a sampler's second run with the same schedule on.
pub fn step<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    t_next: usize,
    params: &DpsParams,
) -> Result<B::Buf> {
    let be = p.be;
    let scale = loss_scale(be.shape(p.y), params.sigma_y);
    let emb = p.net.embedding(be, x, &[t as f32])?;
    // The guidance in units of 1/‖A‖² (the loss gradient's scale; ‖A‖ = 1 for blur).
    let guidance = params.guidance / p.op.norm().powi(2);
    let key = step_key(p, t, t_next, scale, guidance);
    let mut inputs = vec![x, &emb, p.y];
    inputs.extend(p.op.buffer());
    be.replay(key, &inputs, &|inputs| {
        let &[x, emb, y, ref op_buf @ ..] = inputs else {
            unreachable!("replay passes x, the embedding, y and the operator's buffer")
        };
        let q = p.rebound(y, op_buf);
        let g = scaled_gradient_emb(&q, x, emb, t, scale)?;
        let prior = q.ddim(&g.x0, &g.eps, Some(t_next))?;
        let mut x = be.lincomb(&prior, 1.0, &g.grad, -guidance as f32)?;
        be.clamp(&mut x, -1.0, 1.0)?;
        Ok(x)
    })
}

/// What a DPS step's captured work depends on besides its inputs' values: the network and
/// every scalar baked into its kernels' arguments (the timesteps' schedule coefficients, the
/// loss scale, the guidance).
fn step_key<B: Backend>(
    p: &Problem<B>,
    t: usize,
    t_next: usize,
    scale: f32,
    guidance: f64,
) -> usize {
    let (sab, s1m) = p.schedule.coeffs(t);
    let (sab_n, s1m_n) = p.schedule.coeffs(t_next);
    let coeffs = [sab, s1m, sab_n, s1m_n].map(|c| c.to_bits() as u64);
    let mut values = vec![0xD95u64, t as u64, t_next as u64];
    values.extend(coeffs);
    values.extend(p.op.key_values());
    values.extend([scale.to_bits() as u64, guidance.to_bits()]);
    p.net.replay_key(&values)
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
    p.check_init(&x_t)?;
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
