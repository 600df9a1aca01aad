//! 2-D convolution (cross-correlation, NCHW, square kernel, zero padding) and its input-VJP.
//! Stride-1 convolutions with k > 1 run the direct kernel of `direct.rs` on x86-64 with AVX2+FMA
//! or AVX-512, except 3×3 ones with padding 1 and enough channels at f32, which run Winograd's
//! F(2×2, 3×3) of `winograd.rs` on the same register tiles; 1×1 convolutions are one GEMM; the rest (stride 2, or a CPU without those
//! kernels) go through im2col + GEMM. The weight-VJP is never needed: only dL/dx flows back.

mod avx2_taps;
mod direct;
mod winograd;

pub use direct::{pack_rows, rows_times_runs, Isa as DirectConvIsa, Rows, Weights};

use super::gemm::{sgemm, sgemm_serial, View};
use crate::precision::Precision;
use rayon::prelude::*;
use std::sync::OnceLock;

/// The packings of one convolution's weights for the forward conv and for its adjoint, each made
/// on first use at f32 and kept: the layout depends on the weights' shape alone, so a model packs
/// each layer once instead of at every call. Other precisions pack their rounded copies per call.
#[derive(Debug, Default)]
pub struct Packings {
    forward: Packed,
    adjoint: Packed,
}

/// One direction's packings: the direct kernel's blocks, or the Winograd path's transformed
/// weights (whichever `conv2d_tiled_at` takes for the geometry).
#[derive(Debug, Default)]
struct Packed {
    direct: OnceLock<Vec<f32>>,
    winograd: OnceLock<Vec<f32>>,
}

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

/// Output pixels per task: the unfolded chunk (cin·k·k × this) stays in cache for its GEMM.
const PIXELS_PER_TASK: usize = 256;

/// out = conv(x, weight) + bias; x is (n, cin, h, w), weight (cout, cin, k, k), out (n, cout, ho, wo);
/// the products at precision `prec` (operands rounded, f32 accumulation).
pub fn conv2d(
    x: &[f32],
    (weight, packs): (&[f32], &Packings),
    bias: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    prec: Precision,
) {
    let (ho, wo) = g.out_hw();
    let (in_len, npix) = (g.cin * g.h * g.w, ho * wo);
    assert_eq!(x.len(), g.n * in_len);
    assert_eq!(out.len(), g.n * g.cout * npix);
    assert_eq!(weight.len(), g.cout * g.col_rows());
    assert_eq!(bias.len(), g.cout);
    match direct_isa(g) {
        Some(isa) => conv2d_tiled_at(
            x,
            Weights::Plain(weight),
            &packs.forward,
            bias,
            g,
            out,
            prec,
            isa,
        ),
        None => conv2d_gemm(x, weight, bias, g, out, prec),
    }
}

/// `conv2d` as GEMMs: one per image for 1×1, else im2col per pixel chunk + GEMM.
fn conv2d_gemm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    prec: Precision,
) {
    let (ho, wo) = g.out_hw();
    let (in_len, npix) = (g.cin * g.h * g.w, ho * wo);
    if g.is_pointwise() {
        out.chunks_mut(g.cout * npix)
            .zip(x.chunks(in_len))
            .for_each(|(o, xi)| {
                fill_bias(o, bias, npix);
                sgemm(
                    prec,
                    g.cout,
                    g.cin,
                    npix,
                    View::rows(weight, g.cin),
                    View::rows(xi, npix),
                    1.0,
                    o,
                );
            });
        return;
    }
    // Tasks are (image, pixel chunk): each unfolds only its chunk, then multiplies.
    let chunks = npix.div_ceil(PIXELS_PER_TASK);
    let results: Vec<Vec<f32>> = (0..g.n * chunks)
        .into_par_iter()
        .map(|task| {
            let (img, p0) = (task / chunks, (task % chunks) * PIXELS_PER_TASK);
            let np = PIXELS_PER_TASK.min(npix - p0);
            let col = im2col_chunk(&x[img * in_len..(img + 1) * in_len], g, p0, np);
            let mut c = vec![0.0f32; g.cout * np];
            fill_bias(&mut c, bias, np);
            sgemm_serial(
                prec,
                g.cout,
                g.col_rows(),
                np,
                View::rows(weight, g.col_rows()),
                View::rows(&col, np),
                1.0,
                &mut c,
            );
            c
        })
        .collect();
    for (task, c) in results.iter().enumerate() {
        let (img, p0) = (task / chunks, (task % chunks) * PIXELS_PER_TASK);
        let np = c.len() / g.cout;
        let o = &mut out[img * g.cout * npix..(img + 1) * g.cout * npix];
        for (co, row) in c.chunks(np).enumerate() {
            o[co * npix + p0..co * npix + p0 + np].copy_from_slice(row);
        }
    }
}

/// The direct kernel this machine runs `g` on, if it has one and `g` is a geometry it takes.
fn direct_isa(g: &ConvGeom) -> Option<direct::Isa> {
    direct::Isa::detect().filter(|_| direct::handles(g))
}

/// A stride-1 conv on the register tiles `isa`, operands rounded to `prec`: at f32 the
/// operands as they are and the weights packed once into `pack`, by Winograd where it
/// `pays`, else the direct kernel; otherwise the direct kernel on rounded copies, packed on
/// the call.
#[allow(clippy::too_many_arguments)]
fn conv2d_tiled_at(
    x: &[f32],
    weight: Weights,
    pack: &Packed,
    bias: &[f32],
    g: &ConvGeom,
    out: &mut [f32],
    prec: Precision,
    isa: direct::Isa,
) {
    if prec == Precision::F32 && winograd::pays(g) {
        let adjoint = matches!(weight, Weights::Adjoint(_));
        let packed =
            (pack.winograd).get_or_init(|| winograd::pack_weights(weight.data(), g, adjoint));
        return winograd::conv2d_winograd(x, packed, bias, g, out, isa);
    }
    if prec == Precision::F32 {
        let packed = pack.direct.get_or_init(|| direct::pack_weights(weight, g));
        return direct::conv2d_direct(x, packed, bias, g, out, isa);
    }
    let round = |v: &[f32]| v.iter().map(|&e| prec.round(e)).collect::<Vec<f32>>();
    let w = round(weight.data());
    let packed = direct::pack_weights(weight.with_data(&w), g);
    direct::conv2d_direct(&round(x), &packed, bias, g, out, isa);
}

fn fill_bias(c: &mut [f32], bias: &[f32], cols: usize) {
    for (row, &b) in c.chunks_mut(cols).zip(bias) {
        row.fill(b);
    }
}

/// dx = conv^T(dy): the gradient of `conv2d` with respect to its input, at precision `prec`.
pub fn conv2d_vjp_input(
    dy: &[f32],
    (weight, packs): (&[f32], &Packings),
    g: &ConvGeom,
    dx: &mut [f32],
    prec: Precision,
) {
    let (ho, wo) = g.out_hw();
    let (in_len, out_len) = (g.cin * g.h * g.w, g.cout * ho * wo);
    assert_eq!(dy.len(), g.n * out_len);
    assert_eq!(dx.len(), g.n * in_len);
    if g.is_pointwise() {
        for (dxi, dyi) in dx.chunks_mut(in_len).zip(dy.chunks(out_len)) {
            sgemm(
                prec,
                g.cin,
                g.cout,
                ho * wo,
                View::transposed(weight, g.cin),
                View::rows(dyi, ho * wo),
                0.0,
                dxi,
            );
        }
    } else if g.stride == 1 && 2 * g.pad + 1 == g.k {
        // A same-size stride-1 conv's adjoint is the conv with the kernel flipped and the
        // channel axes swapped: a gather, so it reuses the fast forward path (the direct
        // kernel and the Winograd path flip the weights as they pack them).
        let gt = ConvGeom {
            cin: g.cout,
            cout: g.cin,
            ..*g
        };
        let zeros = vec![0.0; g.cin];
        match direct_isa(&gt) {
            Some(isa) => {
                let w = Weights::Adjoint(weight);
                conv2d_tiled_at(dy, w, &packs.adjoint, &zeros, &gt, dx, prec, isa)
            }
            None => conv2d_gemm(dy, &flip_transpose(weight, g), &zeros, &gt, dx, prec),
        }
    } else {
        dx.par_chunks_mut(in_len)
            .zip(dy.par_chunks(out_len))
            .for_each(|(dxi, dyi)| {
                let mut dcol = vec![0.0f32; g.col_rows() * ho * wo];
                let wt = View::transposed(weight, g.col_rows());
                sgemm(
                    prec,
                    g.col_rows(),
                    g.cout,
                    ho * wo,
                    wt,
                    View::rows(dyi, ho * wo),
                    0.0,
                    &mut dcol,
                );
                col2im(&dcol, g, dxi);
            });
    }
}

/// W'[ci][co][ky][kx] = W[co][ci][k-1-ky][k-1-kx].
fn flip_transpose(weight: &[f32], g: &ConvGeom) -> Vec<f32> {
    let kk = g.k * g.k;
    let mut out = vec![0.0f32; weight.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &weight[(co * g.cin + ci) * kk..(co * g.cin + ci + 1) * kk];
            let dst = &mut out[(ci * g.cout + co) * kk..(ci * g.cout + co + 1) * kk];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}

/// Unfold output pixels p0..p0+np of one image into (cin·k·k) rows of np columns. The chunk
/// arrives zeroed, so padding taps are simply skipped; stride-1 runs are plain copies.
fn im2col_chunk(x: &[f32], g: &ConvGeom, p0: usize, np: usize) -> Vec<f32> {
    let (_, wo) = g.out_hw();
    let mut col = vec![0.0f32; g.col_rows() * np];
    for (r, row) in col.chunks_mut(np).enumerate() {
        let (ci, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        // Walk the chunk one output row segment at a time.
        let mut j = 0;
        while j < np {
            let (oy, ox0) = ((p0 + j) / wo, (p0 + j) % wo);
            let seg = (wo - ox0).min(np - j);
            if let Some(iy) = tap(oy, ky, g.stride, g.pad, g.h) {
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                let dst = &mut row[j..j + seg];
                if g.stride == 1 {
                    // ix = ox + kx - pad must lie in 0..w.
                    let lo = g.pad.saturating_sub(kx).max(ox0);
                    let hi = (g.w + g.pad).saturating_sub(kx).min(ox0 + seg);
                    if lo < hi {
                        let ix0 = lo + kx - g.pad;
                        dst[lo - ox0..hi - ox0].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    }
                } else {
                    for (i, d) in dst.iter_mut().enumerate() {
                        if let Some(ix) = tap(ox0 + i, kx, g.stride, g.pad, g.w) {
                            *d = src[ix];
                        }
                    }
                }
            }
            j += seg;
        }
    }
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
            g(2, 3, 23, 19, 5, 3, 1, 1),
            g(1, 2, 9, 11, 3, 5, 1, 2),
            g(1, 2, 1, 3, 2, 5, 1, 2),
            // Channels enough for the Winograd path, forward and adjoint.
            g(1, 64, 10, 12, 72, 3, 1, 1),
        ]
    }

    /// At f32 a 3×3 same-size conv with 64 channels or more is the Winograd path, forward and
    /// adjoint (the same bits), where this CPU has the register tiles.
    #[test]
    fn wide_three_by_three_convs_take_the_winograd_path() {
        let Some(isa) = direct::Isa::detect() else {
            eprintln!("SKIP: no vector kernel on this CPU (the im2col path runs instead)");
            return;
        };
        let mut rng = Rng::new(14);
        let g = ConvGeom {
            n: 2,
            cin: 64,
            h: 9,
            w: 8,
            cout: 66,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
        let w = rng.normal_vec(g.cout * g.cin * 9);
        let b = rng.normal_vec(g.cout);
        let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<u32>>();
        let mut out = vec![f32::NAN; g.n * g.cout * g.h * g.w];
        conv2d(
            &x,
            (&w, &Packings::default()),
            &b,
            &g,
            &mut out,
            Precision::F32,
        );
        let mut want = vec![f32::NAN; out.len()];
        let packed = winograd::pack_weights(&w, &g, false);
        winograd::conv2d_winograd(&x, &packed, &b, &g, &mut want, isa);
        assert_eq!(bits(&out), bits(&want));
        let gt = ConvGeom {
            cin: g.cout,
            cout: g.cin,
            ..g
        };
        let mut dx = vec![f32::NAN; x.len()];
        conv2d_vjp_input(
            &out,
            (&w, &Packings::default()),
            &g,
            &mut dx,
            Precision::F32,
        );
        let mut want = vec![f32::NAN; x.len()];
        let packed = winograd::pack_weights(&w, &gt, true);
        winograd::conv2d_winograd(&out, &packed, &vec![0.0; g.cin], &gt, &mut want, isa);
        assert_eq!(bits(&dx), bits(&want));
    }

    #[test]
    fn forward_matches_direct_definition() {
        let mut rng = Rng::new(11);
        for g in geoms() {
            let (ho, wo) = g.out_hw();
            let x = rng.normal_vec(g.n * g.cin * g.h * g.w);
            let w = rng.normal_vec(g.cout * g.cin * g.k * g.k);
            let b = rng.normal_vec(g.cout);
            let want = conv_naive(&x, &w, &b, &g);
            // The dispatched path and the GEMM path (which runs where no direct kernel does).
            for gemm_only in [false, true] {
                let mut out = vec![f32::NAN; g.n * g.cout * ho * wo];
                match gemm_only {
                    false => conv2d(
                        &x,
                        (&w, &Packings::default()),
                        &b,
                        &g,
                        &mut out,
                        Precision::F32,
                    ),
                    true => conv2d_gemm(&x, &w, &b, &g, &mut out, Precision::F32),
                }
                let err = want
                    .iter()
                    .zip(&out)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(err < 1e-4, "{g:?} (gemm only: {gemm_only}): max err {err}");
            }
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
            conv2d_vjp_input(&dy, (&w, &Packings::default()), &g, &mut dx, Precision::F32);
            let lhs: f64 = y.iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }

    /// The direct kernel reading a conv's weights as its adjoint's (flipped and transposed while
    /// packed) gives the bits it gives on the flipped copy, on every kernel this CPU has.
    #[test]
    fn adjoint_packing_is_the_flipped_copy() {
        let mut rng = Rng::new(13);
        for g in geoms()
            .into_iter()
            .filter(|g| g.stride == 1 && 2 * g.pad + 1 == g.k)
        {
            let gt = ConvGeom {
                cin: g.cout,
                cout: g.cin,
                ..g
            };
            let w = rng.normal_vec(g.cout * g.cin * g.k * g.k);
            let dy = rng.normal_vec(g.n * g.cout * g.h * g.w);
            let zeros = vec![0.0; g.cin];
            let flipped = flip_transpose(&w, &g);
            for isa in direct::Isa::available() {
                let run = |wts| {
                    let mut dx = vec![f32::NAN; g.n * g.cin * g.h * g.w];
                    let packed = direct::pack_weights(wts, &gt);
                    direct::conv2d_direct(&dy, &packed, &zeros, &gt, &mut dx, isa);
                    dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let got = run(Weights::Adjoint(&w));
                assert_eq!(got, run(Weights::Plain(&flipped)), "{}: {g:?}", isa.name());
            }
        }
    }
}
