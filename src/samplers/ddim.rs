//! Unconditional DDIM sampling (η = 0): what the prior alone produces, for model cards.

use super::Progress;
use crate::backend::Backend;
use crate::error::Result;
use crate::schedule::Schedule;
use crate::unet::UNet;

/// From x_T, step down the sampling timesteps with the deterministic DDIM update, x0 clamped.
pub fn sample<B: Backend>(
    be: &B,
    net: &UNet<B>,
    schedule: &Schedule,
    x_t: B::Buf,
    steps: usize,
    progress: Progress,
) -> Result<B::Buf> {
    net.check_input(be.shape(&x_t), &[0.0])?;
    let ts = schedule.timesteps(steps)?;
    let mut x = x_t;
    for (i, &t) in ts.iter().enumerate() {
        let eps = net.forward(be, &x, &[t as f32])?;
        let (sab, s1m) = schedule.coeffs(t);
        let mut x0 = be.predict_x0(&x, &eps, sab, s1m)?;
        be.clamp(&mut x0, -1.0, 1.0)?;
        x = super::ddim_step(be, schedule, &x0, &eps, ts.get(i + 1).copied())?;
        progress(i + 1, ts.len());
    }
    Ok(x)
}
