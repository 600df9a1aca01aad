//! Single-channel 2-D cross-correlation with a k×k kernel (k odd), zero padding, same size
//! (PyTorch's conv2d(x, K, padding='same')), and its adjoint (the kernel flipped in both axes).
//! Direct loops: the kernels are small and the images 64×64, so no FFT and no GEMM.

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
    let c = (k / 2) as isize;
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, img)| {
            for y in 0..h as isize {
                for xq in 0..w as isize {
                    let mut s = 0.0f32;
                    for ky in 0..k as isize {
                        let iy = y + ky - c;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..k as isize {
                            let ix = xq + kx - c;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let kv = if adjoint {
                                kernel[((k as isize - 1 - ky) * k as isize + (k as isize - 1 - kx))
                                    as usize]
                            } else {
                                kernel[(ky * k as isize + kx) as usize]
                            };
                            if kv != 0.0 {
                                s += kv * img[(iy * w as isize + ix) as usize];
                            }
                        }
                    }
                    o[(y * w as isize + xq) as usize] = s;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

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
