//! Sparse-view CT: Joseph's projector, its adjoint and the Ram-Lak filter (kernels/ct.cu; CPU
//! twin: src/backend/cpu/ct/). `angles` is the (V, 2) table of `CtGeometry::angles` that the
//! operator uploads once; these ops only read it.

use super::checks::{ct_operands, nchw};
use super::launch::dim;
use super::planes::{int_len, span, PlaneGrid};
use super::{CudaBackend, CudaTensor};
use crate::backend::CtGeometry;
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The kernels of kernels/ct.cu.
pub(super) const KERNELS: &[&str] = &["ct_project", "ct_backproject", "ct_ramp_filter"];

/// A checked geometry's sizes as the kernels' ints: (h, w, views, detectors).
fn ints(g: &CtGeometry) -> Result<[i32; 4]> {
    Ok([
        dim(g.height, "CT image height")?,
        dim(g.width, "CT image width")?,
        dim(g.views, "CT views")?,
        dim(g.detectors, "CT detectors")?,
    ])
}

impl CudaBackend {
    /// sino (n, 1, V, D) = the projection of x (n, 1, H, W): one thread per (view, bin).
    pub(super) fn ct_project(
        &self,
        x: &CudaTensor,
        g: &CtGeometry,
        angles: &CudaTensor,
    ) -> Result<CudaTensor> {
        let planes = [[g.height, g.width], [g.views, g.detectors]];
        let labels = ["ct_project image", "ct_project sinogram"];
        self.ct_pass("ct_project", x, g, angles, planes, labels)
    }

    /// x (n, 1, H, W) = the adjoint projection of sino (n, 1, V, D): one thread per pixel.
    pub(super) fn ct_backproject(
        &self,
        sino: &CudaTensor,
        g: &CtGeometry,
        angles: &CudaTensor,
    ) -> Result<CudaTensor> {
        let planes = [[g.views, g.detectors], [g.height, g.width]];
        let labels = ["ct_backproject sinogram", "ct_backproject image"];
        self.ct_pass("ct_backproject", sino, g, angles, planes, labels)
    }

    /// The launch both passes share: kernel `op` (arguments: input, angles, output, planes, h,
    /// w, v, d) from `input` (n, 1, in plane) to (n, 1, out plane), one thread per output
    /// element, over as many planes at a time as a grid holds. `labels` name the input and
    /// the output in size errors.
    fn ct_pass(
        &self,
        op: &'static str,
        input: &CudaTensor,
        g: &CtGeometry,
        angles: &CudaTensor,
        [in_plane, out_plane]: [[usize; 2]; 2],
        [in_label, out_label]: [&str; 2],
    ) -> Result<CudaTensor> {
        let n = ct_operands(op, &input.shape, in_plane, g, &angles.shape)?;
        let [h, w, v, d] = ints(g)?;
        let out_shape = [n, 1, out_plane[0], out_plane[1]];
        int_len(&input.shape, in_label)?;
        int_len(&out_shape, out_label)?;
        let grid = PlaneGrid::new(n, out_plane[0], out_plane[1], op)?;
        let mut out = self.output(&out_shape)?;
        let (in_len, out_len) = (in_plane[0] * in_plane[1], out_plane[0] * out_plane[1]);
        for (p, planes, cfg) in grid.chunks() {
            let src = input.dev()?.slice(span(&p, in_len));
            let mut dst = out.dev_mut()?.slice_mut(span(&p, out_len));
            let mut l = self.stream.launch_builder(self.f(op));
            l.arg(&src)
                .arg(angles.dev()?)
                .arg(&mut dst)
                .arg(&planes)
                .arg(&h)
                .arg(&w)
                .arg(&v)
                .arg(&d);
            self.run(l, cfg)?;
        }
        Ok(out)
    }

    /// Each (views, detectors) plane of s (n, c, V, D) filtered row by row, same shape.
    pub(super) fn ct_ramp_filter(&self, s: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, views, detectors) = nchw("ct_ramp_filter", "sinogram", &s.shape)?;
        int_len(&s.shape, "ct_ramp_filter sinogram")?;
        // int_len's running product passed n·c first: it cannot overflow.
        let grid = PlaneGrid::new(n * c, views, detectors, "ct_ramp_filter")?;
        let (v, d) = (dim(views, "CT views")?, dim(detectors, "CT detectors")?);
        let mut out = self.output(&s.shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let ss = s.dev()?.slice(span(&p, views * detectors));
            let mut os = out.dev_mut()?.slice_mut(span(&p, views * detectors));
            let mut l = self.stream.launch_builder(self.f("ct_ramp_filter"));
            l.arg(&ss).arg(&mut os).arg(&planes).arg(&v).arg(&d);
            self.run(l, cfg)?;
        }
        Ok(out)
    }
}
