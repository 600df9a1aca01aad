//! Super-resolution's operator (shared/OPERATORS.md, `downsample`): the mean of each
//! non-overlapping F × F block, and its exact adjoint. Any number of (h, w) slices.

use rayon::prelude::*;

/// out (h/f, w/f per slice) = the mean of each f × f block of x; h and w divisible by f. The
/// block sums in f64, rows then columns, and rounds once.
pub fn downsample(x: &[f32], h: usize, w: usize, f: usize, out: &mut [f32]) {
    assert!(
        f >= 1 && h.is_multiple_of(f) && w.is_multiple_of(f),
        "{h}×{w} not divisible by {f}"
    );
    let (ho, wo) = (h / f, w / f);
    assert_eq!(x.len() % (h * w), 0);
    assert_eq!(out.len(), x.len() / (f * f));
    let area = (f * f) as f64;
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, img)| {
            for bi in 0..ho {
                for bj in 0..wo {
                    let mut acc = 0.0f64;
                    for a in 0..f {
                        for &v in &img[(bi * f + a) * w + bj * f..][..f] {
                            acc += v as f64;
                        }
                    }
                    o[bi * wo + bj] = (acc / area) as f32;
                }
            }
        });
}

/// out (h, w per slice) = the adjoint of `downsample` applied to y (h/f, w/f per slice): each
/// value copied into its block, divided by f².
pub fn downsample_adjoint(y: &[f32], h: usize, w: usize, f: usize, out: &mut [f32]) {
    assert!(
        f >= 1 && h.is_multiple_of(f) && w.is_multiple_of(f),
        "{h}×{w} not divisible by {f}"
    );
    let (ho, wo) = (h / f, w / f);
    assert_eq!(out.len() % (h * w), 0);
    assert_eq!(y.len(), out.len() / (f * f));
    let area = (f * f) as f32;
    out.par_chunks_mut(h * w)
        .zip(y.par_chunks(ho * wo))
        .for_each(|(o, small)| {
            for i in 0..h {
                for j in 0..w {
                    o[i * w + j] = small[(i / f) * wo + j / f] / area;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
    }

    #[test]
    fn adjoint_identity_holds() {
        let mut rng = Rng::new(21);
        for (h, w, f, n) in [(12, 9, 3, 2), (64, 64, 4, 1), (5, 7, 1, 3), (6, 4, 2, 3)] {
            let x = rng.normal_vec(n * h * w);
            let y = rng.normal_vec(n * h * w / (f * f));
            let (mut ax, mut aty) = (vec![f32::NAN; y.len()], vec![f32::NAN; x.len()]);
            downsample(&x, h, w, f, &mut ax);
            downsample_adjoint(&y, h, w, f, &mut aty);
            let (lhs, rhs) = (dot(&ax, &y), dot(&x, &aty));
            let gap = (lhs - rhs).abs() / lhs.abs().max(rhs.abs());
            println!("downsample dot test {h}x{w} f {f} batch {n}: relative gap {gap:.2e}");
            assert!(gap <= 1e-6, "{h}x{w} f {f}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn block_means() {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 4];
        downsample(&x, 4, 4, 2, &mut out);
        assert_eq!(out, [2.5, 4.5, 10.5, 12.5]);
        let mut up = vec![f32::NAN; 16];
        downsample_adjoint(&[4.0, 8.0, 0.0, -4.0], 4, 4, 2, &mut up);
        assert_eq!(&up[..4], &[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(up[15], -1.0);
    }
}
