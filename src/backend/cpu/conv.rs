//! 2-D convolution (cross-correlation, NCHW, square kernel, zero padding) and its input-VJP,
//! both through im2col + GEMM. The weight-VJP is never needed: only dL/dx flows back.

use super::gemm::{sgemm, View};
use rayon::prelude::*;

/// Shapes of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    fn col_rows(&self) -> usize {
        self.cin * self.k * self.k
    }
}

/// out = conv(x, weight) + bias; x is (n, cin, h, w), weight (cout, cin, k, k), out (n, cout, ho, wo).
pub fn conv2d(x: &[f32], weight: &[f32], bias: &[f32], g: &ConvGeom, out: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (in_len, out_len) = (g.cin * g.h * g.w, g.cout * ho * wo);
    assert_eq!(x.len(), g.n * in_len);
    assert_eq!(out.len(), g.n * out_len);
    assert_eq!(weight.len(), g.cout * g.col_rows());
    assert_eq!(bias.len(), g.cout);
    out.par_chunks_mut(out_len)
        .zip(x.par_chunks(in_len))
        .for_each(|(o, xi)| {
            for (co, row) in o.chunks_mut(ho * wo).enumerate() {
                row.fill(bias[co]);
            }
            let col;
            let b = if g.is_pointwise() {
                xi
            } else {
                col = im2col(xi, g);
                &col
            };
            sgemm(
                g.cout,
                g.col_rows(),
                ho * wo,
                View::rows(weight, g.col_rows()),
                View::rows(b, ho * wo),
                1.0,
                o,
            );
        });
}

/// dx = conv^T(dy): the gradient of `conv2d` with respect to its input.
pub fn conv2d_vjp_input(dy: &[f32], weight: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (in_len, out_len) = (g.cin * g.h * g.w, g.cout * ho * wo);
    assert_eq!(dy.len(), g.n * out_len);
    assert_eq!(dx.len(), g.n * in_len);
    dx.par_chunks_mut(in_len)
        .zip(dy.par_chunks(out_len))
        .for_each(|(dxi, dyi)| {
            let wt = View::transposed(weight, g.col_rows());
            if g.is_pointwise() {
                sgemm(
                    g.cin,
                    g.cout,
                    ho * wo,
                    wt,
                    View::rows(dyi, ho * wo),
                    0.0,
                    dxi,
                );
            } else {
                let mut dcol = vec![0.0f32; g.col_rows() * ho * wo];
                sgemm(
                    g.col_rows(),
                    g.cout,
                    ho * wo,
                    wt,
                    View::rows(dyi, ho * wo),
                    0.0,
                    &mut dcol,
                );
                col2im(&dcol, g, dxi);
            }
        });
}

/// Unfold one image into (cin·k·k) rows of (ho·wo) columns; out-of-image taps are zero.
fn im2col(x: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (ho, wo) = g.out_hw();
    let mut col = vec![0.0f32; g.col_rows() * ho * wo];
    col.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
            let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for oy in 0..ho {
                let Some(iy) = tap(oy, ky, g.stride, g.pad, g.h) else {
                    continue;
                };
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                let dst = &mut row[oy * wo..(oy + 1) * wo];
                for (ox, d) in dst.iter_mut().enumerate() {
                    if let Some(ix) = tap(ox, kx, g.stride, g.pad, g.w) {
                        *d = src[ix];
                    }
                }
            }
        });
    col
}

/// Fold columns back, summing overlapping taps (the adjoint of `im2col`). One task per channel.
fn col2im(col: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let kk = g.k * g.k;
    dx.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(ci, plane)| {
            plane.fill(0.0);
            for kidx in 0..kk {
                let (ky, kx) = (kidx / g.k, kidx % g.k);
                let row = &col[(ci * kk + kidx) * ho * wo..(ci * kk + kidx + 1) * ho * wo];
                for oy in 0..ho {
                    let Some(iy) = tap(oy, ky, g.stride, g.pad, g.h) else {
                        continue;
                    };
                    for ox in 0..wo {
                        if let Some(ix) = tap(ox, kx, g.stride, g.pad, g.w) {
                            plane[iy * g.w + ix] += row[oy * wo + ox];
                        }
                    }
                }
            }
        });
}

/// Input coordinate read by output coordinate `o` at kernel offset `kq`, if inside the image.
#[inline]
fn tap(o: usize, kq: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    let i = (o * stride + kq).checked_sub(pad)?;
    (i < size).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Direct definition, accumulated in f64.
    fn conv_naive(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeom) -> Vec<f32> {
        let (ho, wo) = g.out_hw();
        let mut out = vec![0.0; g.n * g.cout * ho * wo];
        for n in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = b[co] as f64;
                        for ci in 0..g.cin {
                            for ky in 0..g.k {
                                for kx in 0..g.k {
                                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * g.cin + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * g.cin + ci) * g.k + ky) * g.k + kx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((n * g.cout + co) * ho + oy) * wo + ox] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn geoms() -> Vec<ConvGeom> {
        let g = |n, cin, h, w, cout, k, stride, pad| ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
        };
        vec![
            g(2, 3, 7, 5, 4, 3, 1, 1),
            g(1, 5, 8, 6, 3, 3, 2, 1),
            g(2, 4, 9, 7, 6, 3, 2, 1),
            g(1, 6, 5, 3, 2, 1, 1, 0),
        ]
    }

    #[test]
    fn forward_matches_direct_definition() {
        let mut rng = Rng::new(11);
        for g in geoms() {
            let (ho, wo) = g.out_hw();
            let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
            let w = rng.normal_vec(g.cout * g.cin * g.k * g.k);
            let b = rng.normal_vec(g.cout);
            let mut out = vec![f32::NAN; g.n * g.cout * ho * wo];
            conv2d(&x, &w, &b, &g, &mut out);
            let want = conv_naive(&x, &w, &b, &g);
            let err = want
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{g:?}: max err {err}");
        }
    }

    /// <conv(x), dy> must equal <x, conv^T(dy)> (bias zero): the adjoint identity.
    #[test]
    fn vjp_is_the_adjoint() {
        let mut rng = Rng::new(12);
        for g in geoms() {
            let (ho, wo) = g.out_hw();
            let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
            let w = rng.normal_vec(g.cout * g.cin * g.k * g.k);
            let dy = rng.normal_vec(g.n * g.cout * ho * wo);
            let y = conv_naive(&x, &w, &vec![0.0; g.cout], &g);
            let mut dx = vec![f32::NAN; x.len()];
            conv2d_vjp_input(&dy, &w, &g, &mut dx);
            let lhs: f64 = y.iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
