//! Single-channel 2-D cross-correlation with a k×k kernel (k odd), zero padding, same size
//! (PyTorch's conv2d(x, K, padding='same')), and its adjoint (the kernel flipped in both axes).
//! Direct loops: the kernels are small and the images 64×64, so no FFT and no GEMM.

use super::simd::wide;
use rayon::prelude::*;

/// out = K(x) for each (h, w) slice of x; `adjoint` applies K^T instead.
pub fn blur(
    x: &[f32],
    h: usize,
    w: usize,
    kernel: &[f32],
    k: usize,
    adjoint: bool,
    out: &mut [f32],
) {
    assert_eq!(kernel.len(), k * k);
    assert!(k % 2 == 1, "blur kernels have odd size");
    assert_eq!(x.len() % (h * w), 0);
    assert_eq!(out.len(), x.len());
    // Kᵀ is the correlation with the kernel flipped in both axes.
    let taps: Vec<f32> = match adjoint {
        true => kernel.iter().rev().copied().collect(),
        false => kernel.to_vec(),
    };
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, img)| blur_slice(img, h, w, &taps, k, o));
}

wide! {
    /// One slice, as one row-long multiply-add per (output row, tap): each pixel still adds its
    /// in-image, non-zero taps in (ky, kx) order, one product at a time, so the sum is the one
    /// the per-pixel loop forms, bit for bit, and the row loops vectorise.
    fn blur_slice(img: &[f32], h: usize, w: usize, taps: &[f32], k: usize, o: &mut [f32]) {
        let c = k / 2;
        for (y, orow) in o.chunks_mut(w).enumerate() {
            orow.fill(0.0);
            for ky in 0..k {
                let Some(iy) = (y + ky).checked_sub(c).filter(|&iy| iy < h) else {
                    continue;
                };
                let irow = &img[iy * w..(iy + 1) * w];
                for kx in 0..k {
                    let kv = taps[ky * k + kx];
                    if kv == 0.0 {
                        continue;
                    }
                    // Output columns xq read column xq + kx − c, which must lie in 0..w.
                    let lo = c.saturating_sub(kx);
                    let hi = (w + c).saturating_sub(kx).min(w);
                    if lo >= hi {
                        continue;
                    }
                    let src = &irow[lo + kx - c..hi + kx - c];
                    for (acc, &v) in orow[lo..hi].iter_mut().zip(src) {
                        *acc += kv * v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The per-pixel definition: taps in (ky, kx) order, out-of-image and zero taps skipped.
    fn per_pixel(
        x: &[f32],
        h: usize,
        w: usize,
        kernel: &[f32],
        k: usize,
        adjoint: bool,
    ) -> Vec<f32> {
        let c = (k / 2) as isize;
        let mut out = Vec::with_capacity(x.len());
        for img in x.chunks(h * w) {
            for y in 0..h as isize {
                for xq in 0..w as isize {
                    let mut s = 0.0f32;
                    for ky in 0..k as isize {
                        for kx in 0..k as isize {
                            let (iy, ix) = (y + ky - c, xq + kx - c);
                            if iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let kv = match adjoint {
                                true => kernel[k * k - 1 - (ky as usize * k + kx as usize)],
                                false => kernel[ky as usize * k + kx as usize],
                            };
                            if kv != 0.0 {
                                s += kv * img[(iy * w as isize + ix) as usize];
                            }
                        }
                    }
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn rows_give_the_per_pixel_bits() {
        let mut rng = Rng::new(10);
        for (h, w, k) in [(9, 7, 5), (64, 64, 9), (3, 2, 7), (17, 33, 3), (5, 40, 1)] {
            let mut kernel = rng.normal_vec(k * k);
            kernel[k * k / 3] = 0.0;
            let x = rng.normal_vec(2 * h * w);
            for adjoint in [false, true] {
                let mut out = vec![f32::NAN; x.len()];
                blur(&x, h, w, &kernel, k, adjoint, &mut out);
                let want = per_pixel(&x, h, w, &kernel, k, adjoint);
                let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out), bits(&want), "{h}x{w} k {k} adjoint {adjoint}");
            }
        }
    }

    #[test]
    fn adjoint_identity_holds() {
        let mut rng = Rng::new(9);
        let (h, w, k) = (9, 7, 5);
        let kernel = rng.normal_vec(k * k);
        let x = rng.normal_vec(2 * h * w);
        let y = rng.normal_vec(2 * h * w);
        let (mut kx, mut kty) = (vec![f32::NAN; x.len()], vec![f32::NAN; y.len()]);
        blur(&x, h, w, &kernel, k, false, &mut kx);
        blur(&y, h, w, &kernel, k, true, &mut kty);
        let lhs: f64 = kx.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&kty).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn centred_delta_is_identity_and_shift_goes_the_right_way() {
        let x: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut out = vec![0.0; 20];
        let mut delta = vec![0.0; 9];
        delta[4] = 1.0;
        blur(&x, 4, 5, &delta, 3, false, &mut out);
        assert_eq!(out, x);
        // Correlation with a 1 at (row 1, col 2) reads the right neighbour: out[y][x] = x[y][x+1].
        let mut right = vec![0.0; 9];
        right[5] = 1.0;
        blur(&x, 4, 5, &right, 3, false, &mut out);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[4], 0.0);
    }
}
