//! Posterior spread: several independent samples per slice drawn in one batched run, their
//! per-pixel mean and standard deviation, and how well that spread predicts the actual error.

use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

/// Repeat every slice of an (N, C, H, W) stack `m` times in a row: (N·m, C, H, W).
pub fn tile(x: &Tensor, m: usize) -> Result<Tensor> {
    if m == 0 {
        bail!("--samples must be at least 1");
    }
    let per = x.len() / x.shape()[0];
    let data = x
        .data()
        .chunks(per)
        .flat_map(|s| std::iter::repeat_n(s, m).flatten().copied())
        .collect();
    let mut shape = x.shape().to_vec();
    shape[0] *= m;
    Tensor::new(shape, data)
}

/// Per-pixel mean and sample standard deviation over each group of `m` consecutive slices:
/// (N·m, C, H, W) → two (N, C, H, W) tensors (std 0 when m = 1).
pub fn mean_std(samples: &Tensor, m: usize) -> Result<(Tensor, Tensor)> {
    let n_all = samples.shape()[0];
    if m == 0 || !n_all.is_multiple_of(m) {
        bail!("{n_all} samples do not split into groups of {m}");
    }
    let per = samples.len() / n_all;
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for group in samples.data().chunks(per * m) {
        for j in 0..per {
            let vals = (0..m).map(|s| group[s * per + j] as f64);
            let mu = vals.clone().sum::<f64>() / m as f64;
            let var = if m > 1 {
                vals.map(|v| (v - mu).powi(2)).sum::<f64>() / (m - 1) as f64
            } else {
                0.0
            };
            mean.push(mu as f32);
            std.push(var.sqrt() as f32);
        }
    }
    let mut shape = samples.shape().to_vec();
    shape[0] = n_all / m;
    Ok((Tensor::new(shape.clone(), mean)?, Tensor::new(shape, std)?))
}

/// How well a per-pixel std predicts the error of the mean, pooled over all pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Pearson correlation between std and |mean − truth|.
    pub correlation: f64,
    /// Fraction of pixels with |mean − truth| ≤ 2·std.
    pub coverage_2std: f64,
    /// Mean std and mean |error| (model space), for scale.
    pub mean_std: f64,
    pub mean_abs_error: f64,
}

pub fn calibration(mean: &Tensor, std: &Tensor, truth: &Tensor) -> Result<Calibration> {
    if mean.shape() != truth.shape() || std.shape() != truth.shape() {
        bail!(
            "mean {:?}, std {:?} and truth {:?} differ in shape",
            mean.shape(),
            std.shape(),
            truth.shape()
        );
    }
    let err: Vec<f64> = mean
        .data()
        .iter()
        .zip(truth.data())
        .map(|(m, t)| (*m as f64 - *t as f64).abs())
        .collect();
    let sd: Vec<f64> = std.data().iter().map(|v| *v as f64).collect();
    let n = err.len() as f64;
    let (me, ms) = (err.iter().sum::<f64>() / n, sd.iter().sum::<f64>() / n);
    let cov: f64 = err.iter().zip(&sd).map(|(e, s)| (e - me) * (s - ms)).sum();
    let ve: f64 = err.iter().map(|e| (e - me).powi(2)).sum();
    let vs: f64 = sd.iter().map(|s| (s - ms).powi(2)).sum();
    let correlation = if ve > 0.0 && vs > 0.0 {
        cov / (ve * vs).sqrt()
    } else {
        0.0
    };
    let covered = err
        .iter()
        .zip(&sd)
        .filter(|(e, s)| **e <= 2.0 * **s)
        .count();
    Ok(Calibration {
        correlation,
        coverage_2std: covered as f64 / n,
        mean_std: ms,
        mean_abs_error: me,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_then_mean_std_recovers_the_slices() {
        let x = Tensor::new(vec![2, 1, 1, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let t = tile(&x, 3).unwrap();
        assert_eq!(t.shape(), &[6, 1, 1, 3]);
        assert_eq!(&t.data()[..9], &[1., 2., 3., 1., 2., 3., 1., 2., 3.]);
        let (m, s) = mean_std(&t, 3).unwrap();
        assert_eq!(m.data(), x.data());
        assert!(s.data().iter().all(|v| *v == 0.0));
        assert!(mean_std(&t, 4).is_err());
    }

    #[test]
    fn std_of_two_samples_and_calibration() {
        let s = Tensor::new(vec![2, 1, 1, 2], vec![0., 1., 2., 1.]).unwrap();
        let (m, sd) = mean_std(&s, 2).unwrap();
        assert_eq!(m.data(), &[1.0, 1.0]);
        assert!((sd.data()[0] - 2f32.sqrt()).abs() < 1e-6 && sd.data()[1] == 0.0);
        // Error 1 where std is √2 (covered), error 0.5 where std is 0 (not covered).
        let truth = Tensor::new(vec![1, 1, 1, 2], vec![0.0, 1.5]).unwrap();
        let c = calibration(&m, &sd, &truth).unwrap();
        assert_eq!(c.coverage_2std, 0.5);
        assert!((c.correlation - 1.0).abs() < 1e-12, "{c:?}");
    }
}
