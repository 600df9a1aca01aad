//! The diffusion schedule (cosine, T = 400, float32) and the sampling timestep rule.

use crate::bail;
use crate::error::Result;

pub const T_DEFAULT: usize = 400;
const COSINE_S: f32 = 0.008;

#[derive(Debug, Clone)]
pub struct Schedule {
    /// ᾱ_t for t = 0..T-1 (float32 cumulative product, as the reference).
    pub alpha_bars: Vec<f32>,
}

impl Schedule {
    /// Cosine schedule: f(u) = cos(((u/T) + s)/(1 + s)·π/2)², ᾱ = f/f(0),
    /// β = clamp(1 − ᾱ[1:]/ᾱ[:-1], 1e-5, 0.999), alpha_bars = cumprod(1 − β).
    pub fn cosine(t_max: usize) -> Self {
        let tf = t_max as f32;
        let f: Vec<f32> = (0..=t_max)
            .map(|u| {
                let arg =
                    ((u as f32 / tf) + COSINE_S) / (1.0 + COSINE_S) * std::f32::consts::PI * 0.5;
                arg.cos().powi(2)
            })
            .collect();
        let ab: Vec<f32> = f.iter().map(|v| v / f[0]).collect();
        // PyTorch's CPU cumprod accumulates in f64 and rounds each output to f32.
        let mut prod = 1.0f64;
        let alpha_bars = (0..t_max)
            .map(|i| {
                let beta = (1.0 - ab[i + 1] / ab[i]).clamp(1e-5, 0.999);
                prod *= (1.0 - beta) as f64;
                prod as f32
            })
            .collect();
        Schedule { alpha_bars }
    }

    pub fn len(&self) -> usize {
        self.alpha_bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alpha_bars.is_empty()
    }

    /// (sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) in float32.
    pub fn coeffs(&self, t: usize) -> (f32, f32) {
        let ab = self.alpha_bars[t];
        (ab.sqrt(), (1.0 - ab).sqrt())
    }

    /// The values of PyTorch's `linspace(T-1, 0, steps, dtype=long)`: the sampling timesteps.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<usize>> {
        let t = self.len();
        if steps < 2 || steps > t {
            bail!("--steps must be between 2 and {t} (the schedule's length), got {steps}");
        }
        let step = -((t - 1) as f64) / (steps - 1) as f64;
        Ok((0..steps)
            .map(|i| {
                let v = if i < steps / 2 {
                    (t - 1) as f64 + step * i as f64
                } else {
                    0.0 - step * (steps - 1 - i) as f64
                };
                v.trunc() as usize
            })
            .collect())
    }
}

/// How the published samplers space their timesteps from `t_start` down to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Evenly spaced (truncated), as the notebook's list when t_start = T − 1.
    Uniform,
    /// Quadratically spaced, dense near t = 0 (DiffPIR's `quad` skip type).
    Quad,
}

impl Schedule {
    /// `steps` strictly decreasing timesteps from `t_start` to 0.
    pub fn spaced_timesteps(&self, t_start: usize, steps: usize, skip: Skip) -> Result<Vec<usize>> {
        if t_start >= self.len() {
            bail!(
                "--t-start must be below the schedule's length {}, got {t_start}",
                self.len()
            );
        }
        if steps < 2 || steps > t_start + 1 {
            bail!(
                "--steps must be between 2 and t_start + 1 = {}, got {steps}",
                t_start + 1
            );
        }
        let last = (steps - 1) as f64;
        let mut ts: Vec<usize> = (0..steps)
            .map(|i| {
                let u = (last - i as f64) / last;
                let frac = match skip {
                    Skip::Uniform => u,
                    Skip::Quad => u * u,
                };
                (frac * t_start as f64).round() as usize
            })
            .collect();
        // Rounding can repeat values where the spacing is below one step: push them apart from
        // the end (t = 0 stays), which keeps the list strictly decreasing and ≤ t_start.
        for i in (0..steps - 1).rev() {
            ts[i] = ts[i].max(ts[i + 1] + 1);
        }
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_timesteps_are_strictly_decreasing_from_t_start_to_zero() {
        let s = Schedule::cosine(T_DEFAULT);
        for skip in [Skip::Uniform, Skip::Quad] {
            for (t0, n) in [(399, 40), (399, 400), (199, 20), (5, 6), (1, 2)] {
                let ts = s.spaced_timesteps(t0, n, skip).unwrap();
                assert_eq!(ts.len(), n);
                assert_eq!((ts[0], ts[n - 1]), (t0, 0), "{skip:?} {t0} {n}");
                assert!(ts.windows(2).all(|w| w[0] > w[1]), "{skip:?} {ts:?}");
            }
        }
        let quad = s.spaced_timesteps(399, 40, Skip::Quad).unwrap();
        assert!(quad[38] < 5, "quad is dense near 0: {quad:?}");
        assert!(s.spaced_timesteps(400, 40, Skip::Uniform).is_err());
        assert!(s.spaced_timesteps(10, 12, Skip::Uniform).is_err());
    }

    #[test]
    fn notebook_timesteps_for_40_steps() {
        let want = [
            399, 388, 378, 368, 358, 347, 337, 327, 317, 306, 296, 286, 276, 266, 255, 245, 235,
            225, 214, 204, 194, 184, 173, 163, 153, 143, 133, 122, 112, 102, 92, 81, 71, 61, 51,
            40, 30, 20, 10, 0,
        ];
        assert_eq!(Schedule::cosine(400).timesteps(40).unwrap(), want);
    }

    #[test]
    fn impossible_step_counts_are_rejected() {
        let s = Schedule::cosine(400);
        for bad in [0, 1, 401] {
            assert_eq!(s.timesteps(bad).unwrap_err().exit_code(), 2);
        }
    }

    #[test]
    fn alpha_bars_decrease_from_near_one() {
        let s = Schedule::cosine(400);
        assert!(s.alpha_bars[0] > 0.999 && s.alpha_bars[399] < 1e-3);
        assert!(s.alpha_bars.windows(2).all(|w| w[1] < w[0]));
    }
}
