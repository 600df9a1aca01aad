//! Sparse-view CT: Joseph's projector, its adjoint and the Ram-Lak filter (kernels/ct.cu; CPU
//! twin: src/backend/cpu/ct.rs). `angles` is the (V, 2) table of `CtGeometry::angles` that the
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
        let n = ct_operands(
            "ct_project",
            &x.shape,
            [g.height, g.width],
            g,
            &angles.shape,
        )?;
        let [h, w, v, d] = ints(g)?;
        let out_shape = [n, 1, g.views, g.detectors];
        int_len(&x.shape, "ct_project image")?;
        int_len(&out_shape, "ct_project sinogram")?;
        let grid = PlaneGrid::new(n, g.views, g.detectors, "ct_project")?;
        let mut sino = self.output(&out_shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let xs = x.dev()?.slice(span(&p, g.image_len()));
            let mut ss = sino.dev_mut()?.slice_mut(span(&p, g.sinogram_len()));
            let mut l = self.stream.launch_builder(self.f("ct_project"));
            l.arg(&xs)
                .arg(angles.dev()?)
                .arg(&mut ss)
                .arg(&planes)
                .arg(&h)
                .arg(&w)
                .arg(&v)
                .arg(&d);
            self.run(l, cfg)?;
        }
        Ok(sino)
    }

    /// x (n, 1, H, W) = the adjoint projection of sino (n, 1, V, D): one thread per pixel.
    pub(super) fn ct_backproject(
        &self,
        sino: &CudaTensor,
        g: &CtGeometry,
        angles: &CudaTensor,
    ) -> Result<CudaTensor> {
        let op = "ct_backproject";
        let n = ct_operands(op, &sino.shape, [g.views, g.detectors], g, &angles.shape)?;
        let [h, w, v, d] = ints(g)?;
        let out_shape = [n, 1, g.height, g.width];
        int_len(&sino.shape, "ct_backproject sinogram")?;
        int_len(&out_shape, "ct_backproject image")?;
        let grid = PlaneGrid::new(n, g.height, g.width, op)?;
        let mut x = self.output(&out_shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let ss = sino.dev()?.slice(span(&p, g.sinogram_len()));
            let mut xs = x.dev_mut()?.slice_mut(span(&p, g.image_len()));
            let mut l = self.stream.launch_builder(self.f("ct_backproject"));
            l.arg(&ss)
                .arg(angles.dev()?)
                .arg(&mut xs)
                .arg(&planes)
                .arg(&h)
                .arg(&w)
                .arg(&v)
                .arg(&d);
            self.run(l, cfg)?;
        }
        Ok(x)
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
