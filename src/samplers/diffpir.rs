//! The notebook's DiffPIR-style sampler: a DDIM prior step from the clamped x0 estimate, then
//! one gradient step on ½‖Ax − y‖² with step size tau/‖A‖², clamped. Starts from y itself
//! (blur, inpainting) or the operator's image-shaped estimate from y (`LinOp::initial_estimate`).

use super::{check_range, Problem, Progress, MAX_TAU};
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

impl DiffPirParams {
    pub fn check(&self) -> Result<()> {
        check_range("--tau", self.tau, 0.0, MAX_TAU)
    }
}

pub fn run<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirParams,
    progress: Progress,
) -> Result<B::Buf> {
    p.check()?;
    params.check()?;
    let ts = p.schedule.timesteps(params.steps)?;
    let mut x = p.op.initial_estimate(p.be, p.y)?;
    for (i, pair) in ts.windows(2).enumerate() {
        x = step(p, &x, pair[0], pair[1], params.tau)?;
        progress(i + 1, ts.len() - 1);
    }
    Ok(x)
}

/// One step from t to t_next: prior DDIM step, then x = clamp(xp − tau/‖A‖²·Aᵀ(A xp − y), −1, 1).
/// Everything after the embedding's upload is device work handed to `Backend::replay`, keyed by
/// the step's scalars, so a CUDA backend replays one graph per step from a sampler's second run
/// with the same schedule on.
pub fn step<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    t: usize,
    t_next: usize,
    tau: f64,
) -> Result<B::Buf> {
    let be = p.be;
    let emb = p.net.embedding(be, x, &[t as f32])?;
    let (now, next) = (p.schedule.coeffs(t), p.schedule.coeffs(t_next));
    let mut inputs = vec![x, &emb, p.y];
    inputs.extend(p.op.buffer());
    let mut values = vec![0xD1FFu64, t as u64, t_next as u64, tau.to_bits()];
    values.extend([now.0, now.1, next.0, next.1].map(|c| c.to_bits() as u64));
    values.extend(p.op.key_values());
    be.replay(p.net.replay_key(&values), &inputs, &|inputs| {
        let &[x, emb, y, ref op_buf @ ..] = inputs else {
            unreachable!("replay passes x, the embedding, y and the operator's buffer")
        };
        let q = p.rebound(y, op_buf);
        let eps = p.net.forward_emb(be, x, emb)?;
        let prior = be.diffpir_prior(x, &eps, now, next)?;
        q.op.gradient_step(be, &prior, q.y, tau)
    })
}
