//! Image quality on model-space slices, computed after mapping to [0, 1] with
//! clamp((x + 1) / 2, 0, 1): MSE, PSNR and SSIM (Gaussian 11x11, sigma 1.5, zero padding 5).
//! Everything accumulates in f64.

use crate::bail;
use crate::error::Result;
use crate::tensor::Tensor;

const WIN: usize = 11;
const RADIUS: usize = WIN / 2;
const SIGMA: f64 = 1.5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub mse: f64,
    pub psnr: f64,
    pub ssim: f64,
}

fn to01(x: f32) -> f64 {
    ((x as f64 + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// Mean squared error between two model-space slices, in [0, 1] pixel units.
pub fn mse(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "mse of slices of different lengths");
    let sum: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (to01(a) - to01(b)).powi(2))
        .sum();
    sum / x.len() as f64
}

/// PSNR for a peak of 1; infinite for identical images.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    }
}

/// Mean SSIM of two model-space h x w slices.
pub fn ssim(x: &[f32], y: &[f32], h: usize, w: usize) -> f64 {
    assert!(
        x.len() == h * w && y.len() == h * w,
        "ssim slices must hold h*w values"
    );
    let a: Vec<f64> = x.iter().map(|&v| to01(v)).collect();
    let b: Vec<f64> = y.iter().map(|&v| to01(v)).collect();
    let product = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
        let p: Vec<f64> = a.iter().zip(&b).map(|(&u, &v)| f(u, v)).collect();
        blur(&p, h, w)
    };
    let (mu_x, mu_y) = (blur(&a, h, w), blur(&b, h, w));
    let (exx, eyy, exy) = (
        product(&|u, _| u * u),
        product(&|_, v| v * v),
        product(&|u, v| u * v),
    );
    let total: f64 = (0..h * w)
        .map(|i| {
            let (mx, my) = (mu_x[i], mu_y[i]);
            let sxx = exx[i] - mx * mx;
            let syy = eyy[i] - my * my;
            let sxy = exy[i] - mx * my;
            ((2.0 * mx * my + C1) * (2.0 * sxy + C2))
                / ((mx * mx + my * my + C1) * (sxx + syy + C2))
        })
        .sum();
    total / (h * w) as f64
}

/// Per-slice quality of an (N, 1, H, W) stack against a ground truth of the same shape.
pub fn quality(x: &Tensor, truth: &Tensor) -> Result<Vec<Quality>> {
    if x.shape() != truth.shape() {
        bail!(
            "cannot compare an image of shape {:?} with a ground truth of shape {:?}; they must match",
            x.shape(),
            truth.shape()
        );
    }
    let (h, w) = match x.shape() {
        [_, 1, h, w] if *h > 0 && *w > 0 => (*h, *w),
        s => bail!("quality needs (N, 1, H, W) images; got shape {s:?}"),
    };
    let slices = x
        .data()
        .chunks_exact(h * w)
        .zip(truth.data().chunks_exact(h * w));
    Ok(slices
        .map(|(a, b)| {
            let m = mse(a, b);
            Quality {
                mse: m,
                psnr: psnr_from_mse(m),
                ssim: ssim(a, b, h, w),
            }
        })
        .collect())
}

/// The normalised 1-D Gaussian; its outer product is the normalised 2-D window.
fn gaussian() -> [f64; WIN] {
    let mut g = [0.0; WIN];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - RADIUS as f64;
        *v = (-d * d / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Same-size 2-D correlation with the Gaussian window and zero padding, done separably.
fn blur(img: &[f64], h: usize, w: usize) -> Vec<f64> {
    let g = gaussian();
    let taps = |n: usize, i: usize| {
        let lo = i.saturating_sub(RADIUS);
        let hi = (i + RADIUS).min(n - 1);
        (lo..=hi).map(move |j| (j, g[j + RADIUS - i]))
    };
    let mut rows = vec![0.0; h * w];
    for r in 0..h {
        for c in 0..w {
            rows[r * w + c] = taps(w, c).map(|(j, k)| k * img[r * w + j]).sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for r in 0..h {
        for c in 0..w {
            out[r * w + c] = taps(h, r).map(|(j, k)| k * rows[j * w + c]).sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::rng::Rng;

    fn noise(seed: u64, n: usize, scale: f64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| (r.normal() * scale) as f32).collect()
    }

    /// A smooth test image in model space.
    fn phantom(h: usize, w: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(h * w);
        for r in 0..h {
            for c in 0..w {
                let (y, x) = (r as f32 / h as f32 - 0.5, c as f32 / w as f32 - 0.5);
                v.push(if x * x + y * y < 0.12 {
                    0.6 - 2.0 * y * x
                } else {
                    -0.8
                });
            }
        }
        v
    }

    #[test]
    fn identical_images_are_perfect() {
        let x = phantom(64, 64);
        assert_eq!(mse(&x, &x), 0.0);
        assert_eq!(psnr_from_mse(0.0), f64::INFINITY);
        assert!((ssim(&x, &x, 64, 64) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mse_and_psnr_by_hand() {
        // In [0, 1]: (0.5, 1.0) vs (0.0, 0.75) -> errors 0.5 and 0.25 -> mse (0.25 + 0.0625) / 2.
        let m = mse(&[0.0, 1.0], &[-1.0, 0.5]);
        assert!((m - 0.156_25).abs() < 1e-15, "{m}");
        assert!((psnr_from_mse(0.01) - 20.0).abs() < 1e-12);
        assert!((psnr_from_mse(0.001) - 30.0).abs() < 1e-12);
    }

    #[test]
    fn metrics_ignore_values_beyond_the_clamp() {
        // Wide noise: about a fifth of the values lie outside [-1, 1].
        let wild = noise(2, 256, 0.8);
        let clipped: Vec<f32> = wild.iter().map(|&v| v.clamp(-1.0, 1.0)).collect();
        let y = phantom(16, 16);
        assert_eq!(ssim(&wild, &y, 16, 16), ssim(&clipped, &y, 16, 16));
        assert_eq!(mse(&wild, &y), mse(&clipped, &y));
        // Control: changing values inside the range does change the scores.
        let shrunk: Vec<f32> = clipped.iter().map(|&v| v * 0.5).collect();
        assert_ne!(ssim(&shrunk, &y, 16, 16), ssim(&clipped, &y, 16, 16));
        assert_ne!(mse(&shrunk, &y), mse(&clipped, &y));
    }

    #[test]
    fn ssim_is_symmetric_and_drops_with_noise() {
        let x = phantom(32, 32);
        let n = noise(7, 32 * 32, 0.2);
        let y: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + b).collect();
        let (s1, s2) = (ssim(&x, &y, 32, 32), ssim(&y, &x, 32, 32));
        assert!((s1 - s2).abs() < 1e-12);
        assert!(s1 < 0.9 && s1 > 0.0, "{s1}");
        let z: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + 0.25 * b).collect();
        assert!(ssim(&x, &z, 32, 32) > s1, "less noise must score higher");
    }

    /// Direct 2-D SSIM straight from the definition, for checking the separable version.
    fn naive_ssim(x: &[f32], y: &[f32], h: usize, w: usize) -> f64 {
        let g = gaussian();
        let at = |img: &[f32], r: isize, c: isize| -> f64 {
            let inside = r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w;
            if inside {
                to01(img[r as usize * w + c as usize])
            } else {
                0.0
            }
        };
        let mut total = 0.0;
        for r in 0..h as isize {
            for c in 0..w as isize {
                let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for i in 0..WIN {
                    for j in 0..WIN {
                        let k = g[i] * g[j];
                        let (rr, cc) = (r + i as isize - 5, c + j as isize - 5);
                        let (a, b) = (at(x, rr, cc), at(y, rr, cc));
                        mx += k * a;
                        my += k * b;
                        xx += k * a * a;
                        yy += k * b * b;
                        xy += k * a * b;
                    }
                }
                let (sx, sy, sxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
                total += ((2.0 * mx * my + C1) * (2.0 * sxy + C2))
                    / ((mx * mx + my * my + C1) * (sx + sy + C2));
            }
        }
        total / (h * w) as f64
    }

    #[test]
    fn separable_ssim_matches_the_direct_definition() {
        let (h, w) = (13, 9);
        let x = noise(4, h * w, 0.6);
        let y = phantom(h, w);
        let (fast, slow) = (ssim(&x, &y, h, w), naive_ssim(&x, &y, h, w));
        assert!((fast - slow).abs() < 1e-12, "{fast} vs {slow}");
        // Constant images: zero padding still makes the score position dependent.
        let (a, b) = (vec![0.0f32; h * w], vec![-0.5f32; h * w]);
        let (fast, slow) = (ssim(&a, &b, h, w), naive_ssim(&a, &b, h, w));
        assert!(
            (fast - slow).abs() < 1e-12 && fast < 0.99,
            "{fast} vs {slow}"
        );
    }

    #[test]
    fn gaussian_window_is_normalised_and_peaked() {
        let g = gaussian();
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((g[5] - 0.266_011_2).abs() < 1e-6, "{}", g[5]);
        assert_eq!(g[0], g[10]);
        // A 1-pixel impulse far from the border blurs to the 2-D window with the same total.
        let mut img = vec![0.0; 21 * 21];
        img[10 * 21 + 10] = 1.0;
        let out = blur(&img, 21, 21);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((out[10 * 21 + 10] - g[5] * g[5]).abs() < 1e-15);
        assert!((out[7 * 21 + 12] - g[2] * g[7]).abs() < 1e-15);
    }

    #[test]
    fn quality_per_slice_and_shape_errors() {
        let x = phantom(8, 8);
        let y = noise(3, 64, 0.5);
        let mut both = x.clone();
        both.extend_from_slice(&y);
        let a = Tensor::new(vec![2, 1, 8, 8], both.clone()).unwrap();
        let mut swapped = y.clone();
        swapped.extend_from_slice(&y);
        let b = Tensor::new(vec![2, 1, 8, 8], swapped).unwrap();
        let q = quality(&a, &b).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].mse, mse(&x, &y));
        assert_eq!(q[0].ssim, ssim(&x, &y, 8, 8));
        assert_eq!(q[1].psnr, f64::INFINITY);
        let c = Tensor::new(vec![1, 1, 16, 8], both).unwrap();
        match quality(&a, &c) {
            Err(Error::Input(m)) => assert!(
                m.contains("[2, 1, 8, 8]") && m.contains("[1, 1, 16, 8]"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
