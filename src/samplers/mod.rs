//! The notebook's two samplers and the two published methods they simplify, written once over
//! the backend trait, plus what they share: the measurement model on the backend and the
//! data-consistency residual.

pub mod cg;
pub mod ddim;
pub mod diffpir;
pub mod diffpir_pnp;
pub mod dps;
pub mod dps_paper;

use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::operators::LinOp;
use crate::schedule::Schedule;
use crate::unet::UNet;

/// Everything a sampler needs besides its own parameters.
pub struct Problem<'a, B: Backend> {
    pub be: &'a B,
    pub net: &'a UNet<B>,
    pub schedule: &'a Schedule,
    /// The measurement y, (N, 1, rows, cols) in the operator's measurement space.
    pub y: &'a B::Buf,
    /// The forward operator A.
    pub op: LinOp<'a, B>,
}

impl<'a, B: Backend> Problem<'a, B> {
    /// The shape (N, 1, H, W) of the images this problem reconstructs.
    pub fn image_shape(&self) -> Result<Vec<usize>> {
        self.op.image_shape(self.be.shape(self.y))
    }

    /// Validates y against the operator and its image against the model; every sampler calls
    /// this first.
    pub fn check(&self) -> Result<()> {
        self.net.check_input(&self.image_shape()?, &[0.0])
    }

    /// The image shape, which a sampler's given starting noise `x_t` (`--init`) must have.
    pub fn check_init(&self, x_t: &B::Buf) -> Result<Vec<usize>> {
        let image = self.image_shape()?;
        if self.be.shape(x_t) != image.as_slice() {
            bail!(
                "--init has shape {:?} but the images of this measurement have {image:?}",
                self.be.shape(x_t),
            );
        }
        Ok(image)
    }

    /// This problem over a replay's copies of y and of the operator's buffer (`op_buf`: the
    /// operator's `buffer()`, if it has one, as `Backend::replay` passed it).
    pub fn rebound<'b>(&self, y: &'b B::Buf, op_buf: &[&'b B::Buf]) -> Problem<'b, B>
    where
        'a: 'b,
    {
        Problem {
            y,
            op: self.op.rebind(op_buf.first().copied()),
            ..*self
        }
    }

    /// A x − y.
    pub fn residual(&self, x: &B::Buf) -> Result<B::Buf> {
        let ax = self.op.apply(self.be, x)?;
        self.be.lincomb(&ax, 1.0, self.y, -1.0)
    }

    /// ‖A x − y‖ / ‖y‖ for each slice (‖A x − y‖ where y is zero).
    pub fn residual_ratio(&self, x: &B::Buf) -> Result<Vec<f64>> {
        let r = self.be.sum_sq_per_item(&self.residual(x)?)?;
        Ok(norm_ratios(&r, &self.be.sum_sq_per_item(self.y)?))
    }

    /// Deterministic DDIM step to `t_next` (x0 itself past the end).
    pub fn ddim(&self, x0: &B::Buf, eps: &B::Buf, t_next: Option<usize>) -> Result<B::Buf> {
        ddim_step(self.be, self.schedule, x0, eps, t_next)
    }
}

/// sqrt(a/b) per slice from squared norms (sqrt(a) where b is zero).
pub fn norm_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(a, b)| if *b > 0.0 { (a / b).sqrt() } else { a.sqrt() })
        .collect()
}

/// sqrt(ᾱ_next)·x0 + sqrt(1 − ᾱ_next)·eps, or x0 itself when there is no next timestep.
pub fn ddim_step<B: Backend>(
    be: &B,
    schedule: &Schedule,
    x0: &B::Buf,
    eps: &B::Buf,
    t_next: Option<usize>,
) -> Result<B::Buf> {
    match t_next {
        Some(tn) => {
            let (sab, s1m) = schedule.coeffs(tn);
            be.lincomb(x0, sab, eps, s1m)
        }
        None => Ok(x0.clone()),
    }
}

pub use crate::params::{
    check_param, check_range, MAX_INPUT, MAX_NOISE_LEVEL, MAX_SCALE, MAX_TAU, MIN_SIGMA_Y,
};

/// Called after each sampler step with (steps done, steps in all).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_outside_their_range_are_refused_by_name() {
        assert!(check_param("--zeta", 0.0, false).is_ok());
        assert!(check_param("--zeta", MAX_SCALE, false).is_ok());
        for (v, positive) in [(0.0, true), (-1.0, false), (1e7, false), (f64::NAN, false)] {
            let e = check_param("--zeta", v, positive).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().starts_with("--zeta must be"), "{e}");
        }
        let e = check_range("--sigma-y", 1e-20, MIN_SIGMA_Y, MAX_SCALE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--sigma-y must be a number in [1e-6, 1e6], got 1e-20"
        );
    }
}
