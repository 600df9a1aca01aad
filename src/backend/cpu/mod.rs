//! The reference backend: plain f32 on the host, multi-threaded, convolutions through GEMM.

pub mod attention;
pub mod blur;
pub mod conv;
pub mod ct;
pub mod downsample;
pub mod elementwise;
pub mod gemm;
pub mod groupnorm;
pub mod inpaint;
pub mod math;
pub mod profile;
pub mod simd;
pub mod tv;

use super::{AttnParams, Backend, CtGeometry};
use crate::error::Result;
use crate::precision::Precision;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// The CPU backend; `precision` rounds the GEMMs' operands as the GPU's tensor-core path does
/// (an emulation, for reproducing and measuring that path without a GPU).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend {
    precision: Precision,
}

impl CpuBackend {
    pub fn with_precision(precision: Precision) -> Self {
        CpuBackend { precision }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }
}

fn internal(msg: String) -> crate::error::Error {
    crate::error::Error::internal(msg)
}

/// A CT op's operands: an (N, 1, rows, cols) stack with `plane` = [rows, cols] of the geometry
/// and the (V, 2) angle table. Returns N.
fn ct_operands(
    t: &Tensor,
    g: &CtGeometry,
    angles: &Tensor,
    plane: [usize; 2],
    op: &str,
) -> Result<usize> {
    let n = t.shape()[0];
    same_shape(&[t.shape()], &[n, 1, plane[0], plane[1]], op)?;
    same_shape(&[angles.shape()], &[g.views, 2], op)?;
    Ok(n)
}

/// One CT pass (`ct::project` or `ct::backproject`) slice by slice, in parallel, from `input`
/// (n, 1, in plane) to (n, 1, out plane).
fn ct_slices(
    op: &str,
    input: &Tensor,
    g: &CtGeometry,
    angles: &Tensor,
    [in_plane, out_plane]: [[usize; 2]; 2],
    pass: fn(&[f32], &CtGeometry, &mut [f32]),
) -> Result<Tensor> {
    let n = ct_operands(input, g, angles, in_plane, op)?;
    let mut out = out_like(&[n, 1, out_plane[0], out_plane[1]]);
    out.data_mut()
        .par_chunks_mut(out_plane[0] * out_plane[1])
        .zip(input.data().par_chunks(in_plane[0] * in_plane[1]))
        .for_each(|(o, slice)| pass(slice, g, o));
    Ok(out)
}

/// h and w divisible by a factor f ≥ 1.
fn block_fits(h: usize, w: usize, f: usize) -> Result<()> {
    if f == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
        return Err(internal(format!(
            "downsample: {h}×{w} is not divisible by {f}"
        )));
    }
    Ok(())
}

/// Every operand of an op has the reference shape, or an internal error naming the op.
fn same_shape(shapes: &[&[usize]], reference: &[usize], op: &str) -> Result<()> {
    match shapes.iter().find(|s| **s != reference) {
        Some(s) => Err(crate::error::Error::internal(format!(
            "{op}: operand shape {s:?} differs from {reference:?}"
        ))),
        None => Ok(()),
    }
}

fn out_like(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
}

fn dims4(t: &Tensor) -> (usize, usize, usize, usize) {
    match *t.shape() {
        [n, c, h, w] => (n, c, h, w),
        ref s => panic!("expected an NCHW tensor, got shape {s:?}"),
    }
}

/// A convolution's weights on the CPU: the tensor and the direct kernel's packings of it.
#[derive(Debug)]
pub struct ConvWeight {
    w: Tensor,
    packs: conv::Packings,
}

impl ConvWeight {
    pub fn shape(&self) -> &[usize] {
        self.w.shape()
    }

    fn parts(&self) -> (&[f32], &conv::Packings) {
        (self.w.data(), &self.packs)
    }
}

impl Backend for CpuBackend {
    type Buf = Tensor;
    type ConvWeight = ConvWeight;

    fn profile_kernels(&self, on: bool) -> Result<Option<String>> {
        profile::set(on);
        Ok((!on).then(profile::report_table))
    }

    /// "cpu (2 threads, avx512f kernels)": the thread count and the instruction set the
    /// convolutions run on here, so every table that names the device names the ISA it was
    /// measured on.
    fn name(&self) -> String {
        let threads = rayon::current_num_threads();
        let isa = conv::DirectConvIsa::detect().map_or("im2col + gemm", |i| i.name());
        match self.precision {
            Precision::F32 => format!("cpu ({threads} threads, {isa} kernels)"),
            p => format!("cpu ({threads} threads, {isa} kernels, {p} operand rounding emulated)"),
        }
    }

    fn upload(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }

    fn download(&self, b: &Tensor) -> Result<Tensor> {
        Ok(b.clone())
    }

    fn shape<'a>(&self, b: &'a Tensor) -> &'a [usize] {
        b.shape()
    }

    fn conv_weight(&self, w: Tensor) -> Result<ConvWeight> {
        Ok(ConvWeight {
            w,
            packs: conv::Packings::default(),
        })
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &ConvWeight,
        b: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        profile::timed(
            profile::name(|| conv_name("conv2d", w.shape(), stride, x.shape())),
            || {
                let g = geom(x.shape(), w.shape(), stride, pad);
                let (ho, wo) = g.out_hw();
                let mut out = out_like(&[g.n, g.cout, ho, wo]);
                conv::conv2d(
                    x.data(),
                    w.parts(),
                    b.data(),
                    &g,
                    out.data_mut(),
                    self.precision,
                );
                Ok(out)
            },
        )
    }

    fn conv2d_vjp(
        &self,
        dy: &Tensor,
        w: &ConvWeight,
        in_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        profile::timed(
            profile::name(|| conv_name("conv2d_vjp", w.shape(), stride, in_shape)),
            || {
                let g = geom(in_shape, w.shape(), stride, pad);
                let mut dx = out_like(in_shape);
                conv::conv2d_vjp_input(dy.data(), w.parts(), &g, dx.data_mut(), self.precision);
                Ok(dx)
            },
        )
    }

    fn group_norm(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        groups: usize,
        silu: bool,
    ) -> Result<Tensor> {
        profile::timed(profile::name(|| gn_name("", silu, x.shape())), || {
            let g = gn_geom(x, groups);
            let mut y = out_like(x.shape());
            groupnorm::group_norm(x.data(), gamma.data(), beta.data(), &g, silu, y.data_mut());
            Ok(y)
        })
    }

    fn group_norm_vjp(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        groups: usize,
        silu: bool,
        dy: &Tensor,
    ) -> Result<Tensor> {
        profile::timed(profile::name(|| gn_name("_vjp", silu, x.shape())), || {
            let g = gn_geom(x, groups);
            let mut dx = out_like(x.shape());
            groupnorm::group_norm_vjp(
                x.data(),
                gamma.data(),
                beta.data(),
                &g,
                silu,
                dy.data(),
                dx.data_mut(),
            );
            Ok(dx)
        })
    }

    fn attention(&self, y: &Tensor, p: &AttnParams<Tensor>, heads: usize) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("attention {:?}", y.shape())),
            || {
                let (_, c, h, w) = dims4(y);
                let mut out = out_like(y.shape());
                attention::attention(
                    y.data(),
                    &attn_view(p, self.precision),
                    c,
                    h * w,
                    heads,
                    out.data_mut(),
                );
                Ok(out)
            },
        )
    }

    fn attention_vjp(
        &self,
        y: &Tensor,
        p: &AttnParams<Tensor>,
        heads: usize,
        dout: &Tensor,
    ) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("attention_vjp {:?}", y.shape())),
            || {
                let (_, c, h, w) = dims4(y);
                let mut dy = out_like(y.shape());
                attention::attention_vjp(
                    y.data(),
                    &attn_view(p, self.precision),
                    c,
                    h * w,
                    heads,
                    dout.data(),
                    dy.data_mut(),
                );
                Ok(dy)
            },
        )
    }

    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor, silu_input: bool) -> Result<Tensor> {
        profile::timed(profile::name(|| format!("linear {:?}", x.shape())), || {
            let (n, fin) = (x.shape()[0], x.shape()[1]);
            let mut out = out_like(&[n, b.len()]);
            elementwise::linear(
                x.data(),
                w.data(),
                b.data(),
                fin,
                silu_input,
                out.data_mut(),
            );
            Ok(out)
        })
    }

    fn linear_split(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        silu_input: bool,
        widths: &[usize],
    ) -> Result<Vec<Tensor>> {
        let fout = b.len();
        if widths.iter().try_fold(0usize, |a, &c| a.checked_add(c)) != Some(fout) {
            return Err(crate::error::Error::internal(format!(
                "linear_split: widths {widths:?} for {fout} outputs"
            )));
        }
        let all = self.linear(x, w, b, silu_input)?;
        let n = x.shape()[0];
        let mut first = 0;
        widths
            .iter()
            .map(|&c| {
                let cols = first..first + c;
                first += c;
                let data = all
                    .data()
                    .chunks(fout.max(1))
                    .flat_map(|row| &row[cols.clone()])
                    .copied()
                    .collect();
                Tensor::new(vec![n, c], data)
            })
            .collect()
    }

    fn add_channel_bias(&self, h: &mut Tensor, v: &Tensor) -> Result<()> {
        profile::timed(
            profile::name(|| format!("add_channel_bias {:?}", h.shape())),
            || {
                let (_, _, hh, ww) = dims4(h);
                elementwise::add_channel_bias(h.data_mut(), v.data(), hh * ww);
                Ok(())
            },
        )
    }

    fn add_assign(&self, a: &mut Tensor, b: &Tensor) -> Result<()> {
        profile::timed(
            profile::name(|| format!("add_assign {:?}", a.shape())),
            || {
                elementwise::add_assign(a.data_mut(), b.data());
                Ok(())
            },
        )
    }

    fn upsample2x(&self, x: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("upsample2x {:?}", x.shape())),
            || {
                let (n, c, h, w) = dims4(x);
                let mut out = out_like(&[n, c, 2 * h, 2 * w]);
                elementwise::upsample2x(x.data(), n * c, h, w, out.data_mut());
                Ok(out)
            },
        )
    }

    fn upsample2x_vjp(&self, dy: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("upsample2x_vjp {:?}", dy.shape())),
            || {
                let (n, c, h, w) = dims4(dy);
                let mut dx = out_like(&[n, c, h / 2, w / 2]);
                elementwise::upsample2x_vjp(dy.data(), n * c, h / 2, w / 2, dx.data_mut());
                Ok(dx)
            },
        )
    }

    fn concat_channels(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("concat_channels {:?}", a.shape())),
            || {
                let (n, ca, h, w) = dims4(a);
                let cb = b.shape()[1];
                let mut out = out_like(&[n, ca + cb, h, w]);
                elementwise::concat_channels(a.data(), b.data(), n, h * w, out.data_mut());
                Ok(out)
            },
        )
    }

    fn split_channels(&self, x: &Tensor, ca: usize) -> Result<(Tensor, Tensor)> {
        profile::timed(
            profile::name(|| format!("split_channels {:?}", x.shape())),
            || {
                let (n, c, h, w) = dims4(x);
                let mut a = out_like(&[n, ca, h, w]);
                let mut b = out_like(&[n, c - ca, h, w]);
                elementwise::split_channels(x.data(), n, ca * h * w, a.data_mut(), b.data_mut());
                Ok((a, b))
            },
        )
    }

    fn blur(&self, x: &Tensor, kernel: &Tensor, adjoint: bool) -> Result<Tensor> {
        profile::timed(profile::name(|| format!("blur {:?}", x.shape())), || {
            let (_, _, h, w) = dims4(x);
            let mut out = out_like(x.shape());
            blur::blur(
                x.data(),
                h,
                w,
                kernel.data(),
                kernel.shape()[0],
                adjoint,
                out.data_mut(),
            );
            Ok(out)
        })
    }

    fn ct_project(&self, x: &Tensor, g: &CtGeometry, angles: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("ct_project {:?}", x.shape())),
            || {
                let planes = [[g.height, g.width], [g.views, g.detectors]];
                ct_slices("ct_project", x, g, angles, planes, ct::project)
            },
        )
    }

    fn ct_backproject(&self, s: &Tensor, g: &CtGeometry, angles: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("ct_backproject {:?}", s.shape())),
            || {
                let planes = [[g.views, g.detectors], [g.height, g.width]];
                ct_slices("ct_backproject", s, g, angles, planes, ct::backproject)
            },
        )
    }

    fn ct_ramp_filter(&self, s: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("ct_ramp_filter {:?}", s.shape())),
            || {
                let (_, _, v, d) = dims4(s);
                let mut out = out_like(s.shape());
                out.data_mut()
                    .par_chunks_mut(v * d)
                    .zip(s.data().par_chunks(v * d))
                    .for_each(|(o, sino)| ct::ramp_filter(sino, v, d, o));
                Ok(out)
            },
        )
    }

    fn downsample(&self, x: &Tensor, f: usize) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("downsample {:?}", x.shape())),
            || {
                let (n, c, h, w) = dims4(x);
                block_fits(h, w, f)?;
                let mut out = out_like(&[n, c, h / f, w / f]);
                downsample::downsample(x.data(), h, w, f, out.data_mut());
                Ok(out)
            },
        )
    }

    fn downsample_adjoint(&self, y: &Tensor, f: usize) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("downsample_adjoint {:?}", y.shape())),
            || {
                let (n, c, ho, wo) = dims4(y);
                let (h, w) = match (ho.checked_mul(f), wo.checked_mul(f)) {
                    (Some(h), Some(w)) if f > 0 => (h, w),
                    _ => {
                        return Err(internal(format!(
                            "downsample_adjoint: factor {f} on {ho}×{wo}"
                        )))
                    }
                };
                let mut out = out_like(&[n, c, h, w]);
                downsample::downsample_adjoint(y.data(), h, w, f, out.data_mut());
                Ok(out)
            },
        )
    }

    fn inpaint_mask(&self, x: &Tensor, m: &Tensor) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("inpaint_mask {:?}", x.shape())),
            || {
                let (_, _, h, w) = dims4(x);
                same_shape(&[m.shape()], &[h, w], "inpaint_mask")?;
                let mut out = out_like(x.shape());
                inpaint::mask(x.data(), m.data(), out.data_mut());
                Ok(out)
            },
        )
    }

    fn tv_dual_update(
        &self,
        px: &mut Tensor,
        py: &mut Tensor,
        xbar: &Tensor,
        step: f32,
        lam: f32,
    ) -> Result<()> {
        profile::timed(
            profile::name(|| format!("tv_dual_update {:?}", px.shape())),
            || {
                let (_, _, h, w) = dims4(xbar);
                same_shape(&[px.shape(), py.shape()], xbar.shape(), "tv_dual_update")?;
                px.data_mut()
                    .par_chunks_mut(h * w)
                    .zip(py.data_mut().par_chunks_mut(h * w))
                    .zip(xbar.data().par_chunks(h * w))
                    .for_each(|((a, b), xb)| tv::dual_update(a, b, xb, h, w, step, lam));
                Ok(())
            },
        )
    }

    fn tv_primal_update(
        &self,
        x: &mut Tensor,
        xbar: &mut Tensor,
        atq: &Tensor,
        px: &Tensor,
        py: &Tensor,
        step: f32,
    ) -> Result<()> {
        profile::timed(
            profile::name(|| format!("tv_primal_update {:?}", x.shape())),
            || {
                let (_, _, h, w) = dims4(x);
                let shapes = [xbar.shape(), atq.shape(), px.shape(), py.shape()];
                same_shape(&shapes, x.shape(), "tv_primal_update")?;
                let hw = h * w;
                x.data_mut()
                    .par_chunks_mut(hw)
                    .zip(xbar.data_mut().par_chunks_mut(hw))
                    .zip(atq.data().par_chunks(hw))
                    .zip(px.data().par_chunks(hw).zip(py.data().par_chunks(hw)))
                    .for_each(|(((x, xb), q), (a, b))| {
                        tv::primal_update(x, xb, q, a, b, h, w, step)
                    });
                Ok(())
            },
        )
    }

    fn lincomb(&self, a: &Tensor, ca: f32, b: &Tensor, cb: f32) -> Result<Tensor> {
        profile::timed(profile::name(|| format!("lincomb {:?}", a.shape())), || {
            let mut out = out_like(a.shape());
            elementwise::lincomb(a.data(), ca, b.data(), cb, out.data_mut());
            Ok(out)
        })
    }

    fn predict_x0(&self, x: &Tensor, eps: &Tensor, sab: f32, s1m: f32) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("predict_x0 {:?}", x.shape())),
            || {
                let mut out = out_like(x.shape());
                elementwise::predict_x0(x.data(), eps.data(), sab, s1m, out.data_mut());
                Ok(out)
            },
        )
    }

    fn clamp(&self, x: &mut Tensor, lo: f32, hi: f32) -> Result<()> {
        profile::timed(profile::name(|| format!("clamp {:?}", x.shape())), || {
            elementwise::clamp(x.data_mut(), lo, hi);
            Ok(())
        })
    }

    fn clamp_vjp(&self, reference: &Tensor, lo: f32, hi: f32, d: &mut Tensor) -> Result<()> {
        profile::timed(
            profile::name(|| format!("clamp_vjp {:?}", reference.shape())),
            || {
                elementwise::clamp_vjp(reference.data(), lo, hi, d.data_mut());
                Ok(())
            },
        )
    }

    fn sum_sq_per_item(&self, x: &Tensor) -> Result<Vec<f64>> {
        profile::timed(
            profile::name(|| format!("sum_sq_per_item {:?}", x.shape())),
            || Ok(elementwise::sum_sq_per_item(x.data(), x.shape()[0])),
        )
    }

    fn dot_per_item(&self, a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
        profile::timed(
            profile::name(|| format!("dot_per_item {:?}", a.shape())),
            || Ok(elementwise::dot_per_item(a.data(), b.data(), a.shape()[0])),
        )
    }

    fn lincomb_per_item(&self, a: &Tensor, ca: &[f32], b: &Tensor, cb: &[f32]) -> Result<Tensor> {
        profile::timed(
            profile::name(|| format!("lincomb_per_item {:?}", a.shape())),
            || {
                let n = a.shape()[0];
                let mut out = out_like(a.shape());
                elementwise::lincomb_per_item(
                    a.data(),
                    &ca[..n],
                    b.data(),
                    &cb[..n],
                    out.data_mut(),
                );
                Ok(out)
            },
        )
    }
}

/// A convolution's profile name: kernel, stride, channels in → out, input size.
fn conv_name(op: &str, w: &[usize], stride: usize, input: &[usize]) -> String {
    let (k, cout, cin) = (w[2], w[0], input[1]);
    format!(
        "{op} {k}x{k}/{stride} {cin}→{cout} at {}x{}",
        input[2], input[3]
    )
}

/// A GroupNorm's profile name (`suffix` "" or "_vjp").
fn gn_name(suffix: &str, silu: bool, shape: &[usize]) -> String {
    let fused = if silu { "+silu" } else { "" };
    format!("group_norm{fused}{suffix} {shape:?}")
}

fn geom(in_shape: &[usize], w_shape: &[usize], stride: usize, pad: usize) -> conv::ConvGeom {
    conv::ConvGeom {
        n: in_shape[0],
        cin: in_shape[1],
        h: in_shape[2],
        w: in_shape[3],
        cout: w_shape[0],
        k: w_shape[2],
        stride,
        pad,
    }
}

fn gn_geom(x: &Tensor, groups: usize) -> groupnorm::GnGeom {
    let (n, c, h, w) = dims4(x);
    groupnorm::GnGeom {
        n,
        c,
        hw: h * w,
        groups,
    }
}

fn attn_view(p: &AttnParams<Tensor>, precision: Precision) -> attention::AttnWeights<'_> {
    attention::AttnWeights {
        in_w: p.in_w.data(),
        in_b: p.in_b.data(),
        out_w: p.out_w.data(),
        out_b: p.out_b.data(),
        precision,
    }
}
