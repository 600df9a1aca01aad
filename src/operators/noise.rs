//! The relative measurement-noise model and simulated measurements y = A x + e.

use super::Operator;
use crate::error::Result;
use crate::params::{check_range, MAX_NOISE_LEVEL};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Mixed into the seed so the measurement noise never repeats DPS's starting noise.
const NOISE_STREAM: u64 = 0x5EED_0000_0000_0001;

/// y = A x + e with relative noise (see `relative_noise`), seeded by `seed`.
pub fn simulate(x: &Tensor, op: &Operator, noise_level: f64, seed: u64) -> Result<Tensor> {
    let ax = op.apply(x)?;
    let e = relative_noise(&ax, noise_level, &mut Rng::new(seed ^ NOISE_STREAM))?;
    let data = ax.data().iter().zip(e.data()).map(|(a, b)| a + b).collect();
    Tensor::new(ax.shape().to_vec(), data)
}

/// Noise for each slice of `ax` (N,1,·,·): e = n/‖n‖ · ‖Ax‖ · level, n standard normal.
pub fn relative_noise(ax: &Tensor, level: f64, rng: &mut Rng) -> Result<Tensor> {
    check_range("--noise-level", level, 0.0, MAX_NOISE_LEVEL)?;
    let n = ax.shape()[0];
    let per = ax.len() / n.max(1);
    let mut out = Vec::with_capacity(ax.len());
    for slice in ax.data().chunks(per.max(1)) {
        let noise = rng.normal_vec(per);
        let nn = noise
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        let nk = slice
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        let s = if nn > 0.0 { nk * level / nn } else { 0.0 };
        out.extend(noise.iter().map(|&v| (v as f64 * s) as f32));
    }
    let t = Tensor::new(ax.shape().to_vec(), out)?;
    t.check_finite("the simulated noise (lower --noise-level)")?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_requested_relative_norm() {
        let kx = Tensor::new(vec![2, 1, 4, 4], (0..32).map(|i| i as f32).collect()).unwrap();
        let e = relative_noise(&kx, 0.01, &mut Rng::new(1)).unwrap();
        for (s, n) in kx.data().chunks(16).zip(e.data().chunks(16)) {
            let ns: f64 = s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            let ne: f64 = n.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            assert!((ne / ns - 0.01).abs() < 1e-6);
        }
    }
}
