//! The blur kernels: motion, Gaussian, user-supplied.

use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

/// A k×k blur kernel (k odd), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub size: usize,
    pub data: Vec<f32>,
}

fn check_size(k: usize) -> Result<()> {
    if k == 0 || k.is_multiple_of(2) {
        bail!("--kernel-size must be a positive odd number, got {k}");
    }
    if k > 255 {
        bail!("--kernel-size {k} is unreasonably large (at most 255)");
    }
    Ok(())
}

impl Kernel {
    /// Motion blur along a line at `angle_deg`: the taps (trunc(c + (i−c)cos a), trunc(c + (i−c)sin a)).
    pub fn motion(k: usize, angle_deg: f64) -> Result<Self> {
        check_size(k)?;
        if !angle_deg.is_finite() {
            bail!("--angle must be a finite number of degrees");
        }
        let c = (k / 2) as f64;
        let a = angle_deg.to_radians();
        let (sin, cos) = a.sin_cos();
        let mut data = vec![0.0f32; k * k];
        for i in 0..k {
            let x = (c + (i as f64 - c) * cos).trunc();
            let y = (c + (i as f64 - c) * sin).trunc();
            if (0.0..k as f64).contains(&x) && (0.0..k as f64).contains(&y) {
                data[y as usize * k + x as usize] = 1.0;
            }
        }
        Self::normalised(k, data)
    }

    /// Gaussian blur exp(−(i² + j²)/(2·variance)) on the centred grid.
    pub fn gaussian(k: usize, variance: f64) -> Result<Self> {
        check_size(k)?;
        if !(variance.is_finite() && variance > 0.0) {
            bail!("--variance must be a positive number, got {variance}");
        }
        let c = (k / 2) as f64;
        let data = (0..k * k)
            .map(|idx| {
                let (i, j) = ((idx / k) as f64 - c, (idx % k) as f64 - c);
                (-(i * i + j * j) / (2.0 * variance)).exp() as f32
            })
            .collect();
        Self::normalised(k, data)
    }

    /// A user kernel from a (k, k) array, used as given (not normalised).
    pub fn custom(t: &Tensor) -> Result<Self> {
        let k = match *t.shape() {
            [a, b] if a == b => a,
            [1, 1, a, b] if a == b => a,
            ref s => bail!("--kernel-file must hold a square (k, k) array, got shape {s:?}"),
        };
        check_size(k)?;
        t.check_finite("--kernel-file")?;
        if t.data().iter().all(|&v| v == 0.0) {
            bail!("--kernel-file holds an all-zero kernel");
        }
        Ok(Kernel {
            size: k,
            data: t.data().to_vec(),
        })
    }

    fn normalised(k: usize, mut data: Vec<f32>) -> Result<Self> {
        let sum: f32 = data.iter().sum();
        data.iter_mut().for_each(|v| *v /= sum);
        Ok(Kernel { size: k, data })
    }

    /// An upper bound of ‖K‖: Σ|k|, or exactly 1 for a non-negative kernel summing to 1 (to
    /// f32 rounding), whose 'same' correlation has norm at most 1.
    pub fn norm_bound(&self) -> f64 {
        let l1: f64 = self.data.iter().map(|v| v.abs() as f64).sum();
        let non_negative = self.data.iter().all(|&v| v >= 0.0);
        if non_negative && (l1 - 1.0).abs() <= 1e-5 {
            1.0
        } else {
            l1
        }
    }

    pub fn to_tensor(&self) -> Tensor {
        Tensor::new(vec![self.size, self.size], self.data.clone()).expect("square kernel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizontal_motion_is_a_centred_row() {
        let k = Kernel::motion(5, 0.0).unwrap();
        let row: Vec<f32> = k.data[10..15].to_vec();
        assert_eq!(row, vec![0.2; 5]);
        assert_eq!(k.data.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn even_and_zero_sizes_are_rejected() {
        for k in [0, 2, 8] {
            assert_eq!(Kernel::motion(k, 20.0).unwrap_err().exit_code(), 2);
            assert_eq!(Kernel::gaussian(k, 1.0).unwrap_err().exit_code(), 2);
        }
        assert!(Kernel::gaussian(3, -1.0).is_err());
    }
}
