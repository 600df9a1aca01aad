//! GroupNorm (affine, eps 1e-5) with an optional fused SiLU, and its input-VJP. Statistics are
//! accumulated in f64 and recomputed in the VJP rather than stored.

use super::math::{silu, silu_grad};
use super::simd::wide;
use rayon::prelude::*;

pub const GN_EPS: f64 = 1e-5;

/// Shapes of one GroupNorm call over an (n, c, h, w) tensor.
#[derive(Debug, Clone, Copy)]
pub struct GnGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}

impl GnGeom {
    fn group_len(&self) -> usize {
        self.c / self.groups * self.hw
    }
}

/// Mean and 1/sqrt(var + eps) of one group's values (biased variance, as PyTorch).
#[inline(always)]
fn stats(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = lane_sum(x, |v| v as f64) / n;
    let var = lane_sum(x, |v| (v as f64 - mean).powi(2)) / n;
    (mean, 1.0 / (var + GN_EPS).sqrt())
}

/// Σ f(v) in f64 over 8 interleaved partial sums (so the loop vectorises), then across them.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().map(|&v| f(v)).sum::<f64>();
    for c in chunks {
        for l in 0..8 {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

wide! {
    /// One group of `group_norm`: its statistics, then the affine map (and SiLU) per channel.
    fn normalize_group(xg: &[f32], gamma: &[f32], beta: &[f32], hw: usize, fuse_silu: bool, yg: &mut [f32]) {
        let (mean, rstd) = stats(xg);
        for (j, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
            let scale = (gamma[j] as f64 * rstd) as f32;
            let shift = (beta[j] as f64 - mean * gamma[j] as f64 * rstd) as f32;
            for (o, &v) in yc.iter_mut().zip(xc) {
                let z = v * scale + shift;
                *o = if fuse_silu { silu(z) } else { z };
            }
        }
    }
}

/// y = GroupNorm(x)·gamma + beta, then SiLU when `fuse_silu`.
pub fn group_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    g: &GnGeom,
    fuse_silu: bool,
    y: &mut [f32],
) {
    assert_eq!(x.len(), g.n * g.c * g.hw);
    assert_eq!(y.len(), x.len());
    let cpg = g.c / g.groups;
    y.par_chunks_mut(g.group_len())
        .zip(x.par_chunks(g.group_len()))
        .enumerate()
        .for_each(|(ng, (yg, xg))| {
            let c = (ng % g.groups) * cpg..(ng % g.groups + 1) * cpg;
            normalize_group(xg, &gamma[c.clone()], &beta[c], g.hw, fuse_silu, yg);
        });
}

/// dx for `group_norm` given dy (the gradient of its output, after SiLU when fused).
pub fn group_norm_vjp(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    g: &GnGeom,
    fuse_silu: bool,
    dy: &[f32],
    dx: &mut [f32],
) {
    assert_eq!(x.len(), g.n * g.c * g.hw);
    assert_eq!(dy.len(), x.len());
    assert_eq!(dx.len(), x.len());
    let cpg = g.c / g.groups;
    dx.par_chunks_mut(g.group_len())
        .zip(
            x.par_chunks(g.group_len())
                .zip(dy.par_chunks(g.group_len())),
        )
        .enumerate()
        .for_each(|(ng, (dxg, (xg, dyg)))| {
            let c = (ng % g.groups) * cpg..(ng % g.groups + 1) * cpg;
            let (gamma, beta) = (&gamma[c.clone()], &beta[c]);
            group_vjp(xg, gamma, beta, g.hw, fuse_silu, dyg, dxg);
        });
}

wide! {
    /// One group of `group_norm_vjp`. With g = dL/d(xhat) = dy · silu'(z) · gamma and
    /// xhat = (x − mean)·rstd: dx = rstd · (g − mean(g) − xhat · mean(g · xhat)).
    fn group_vjp(xg: &[f32], gamma: &[f32], beta: &[f32], hw: usize, fuse_silu: bool, dyg: &[f32], dxg: &mut [f32]) {
        let (mean, rstd) = stats(xg);
        let (mut sum_g, mut sum_gx) = ([0.0f64; 8], [0.0f64; 8]);
        for (j, (dxc, (xc, dyc))) in dxg
            .chunks_mut(hw)
            .zip(xg.chunks(hw).zip(dyg.chunks(hw)))
            .enumerate()
        {
            let (gam, bet) = (gamma[j] as f64, beta[j] as f64);
            let grad = |v: f32, d: f32| {
                let xhat = (v as f64 - mean) * rstd;
                let dz = match fuse_silu {
                    true => d as f64 * silu_grad((xhat * gam + bet) as f32) as f64,
                    false => d as f64,
                };
                (dz * gam, xhat)
            };
            // Partial sums by position mod 8 in the channel: a fixed order, and a vector loop.
            let mut o8 = dxc.chunks_exact_mut(8);
            for (o, (v, d)) in (&mut o8).zip(xc.chunks_exact(8).zip(dyc.chunks_exact(8))) {
                for l in 0..8 {
                    let (gx, xhat) = grad(v[l], d[l]);
                    sum_g[l] += gx;
                    sum_gx[l] += gx * xhat;
                    o[l] = gx as f32; // stash g_xhat; finished below
                }
            }
            let done = xc.len() / 8 * 8;
            for (l, (o, (&v, &d))) in o8.into_remainder().iter_mut().zip(xc[done..].iter().zip(&dyc[done..])).enumerate() {
                let (gx, xhat) = grad(v, d);
                sum_g[l] += gx;
                sum_gx[l] += gx * xhat;
                *o = gx as f32;
            }
        }
        let m = xg.len() as f64;
        let (mean_g, mean_gx) = (sum_g.iter().sum::<f64>() / m, sum_gx.iter().sum::<f64>() / m);
        for (o, &v) in dxg.iter_mut().zip(xg) {
            let xhat = (v as f64 - mean) * rstd;
            *o = (rstd * (*o as f64 - mean_g - xhat * mean_gx)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn normalised_groups_have_zero_mean_unit_variance() {
        let g = GnGeom {
            n: 2,
            c: 6,
            hw: 10,
            groups: 3,
        };
        let mut rng = Rng::new(2);
        let x: Vec<f32> = rng.normal_vec(120).iter().map(|v| 3.0 * v + 1.5).collect();
        let mut y = vec![f32::NAN; 120];
        group_norm(&x, &[1.0; 6], &[0.0; 6], &g, false, &mut y);
        for grp in y.chunks(20) {
            let m: f32 = grp.iter().sum::<f32>() / 20.0;
            let v: f32 = grp.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 20.0;
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-3, "mean {m} var {v}");
        }
    }

    /// Finite differences in f64 on a scalar loss <y, r>.
    #[test]
    fn vjp_matches_finite_differences() {
        let g = GnGeom {
            n: 1,
            c: 4,
            hw: 6,
            groups: 2,
        };
        let mut rng = Rng::new(5);
        let x = rng.normal_vec(24);
        let gamma = rng.normal_vec(4);
        let beta = rng.normal_vec(4);
        let r = rng.normal_vec(24);
        for fuse in [false, true] {
            let loss = |x: &[f32]| {
                let mut y = vec![0.0; 24];
                group_norm(x, &gamma, &beta, &g, fuse, &mut y);
                y.iter()
                    .zip(&r)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let mut dx = vec![f32::NAN; 24];
            group_norm_vjp(&x, &gamma, &beta, &g, fuse, &r, &mut dx);
            for i in 0..24 {
                let h = 1e-2f32;
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
                assert!(
                    (fd - dx[i] as f64).abs() < 2e-2 * (1.0 + fd.abs()),
                    "fuse {fuse} i {i}: fd {fd} vs {}",
                    dx[i]
                );
            }
        }
    }
}
