//! Super-resolution's operator: the mean of each f × f block and its adjoint
//! (kernels/downsample.cu; CPU twin: src/backend/cpu/downsample.rs), on every (h, w) plane.

use super::checks::{downsample_adjoint_dims, downsample_dims};
use super::launch::dim;
use super::planes::{int_len, span, PlaneGrid};
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The kernels of kernels/downsample.cu.
pub(super) const KERNELS: &[&str] = &["downsample", "downsample_adjoint"];

/// The kernels' ints (h, w, f) of full-size (h, w) planes. With a non-empty image f ≤ h, w,
/// so the kernels' f·f ≤ h·w fits an int too.
fn ints(h: usize, w: usize, f: usize) -> Result<[i32; 3]> {
    Ok([
        dim(h, "downsample height")?,
        dim(w, "downsample width")?,
        dim(f, "downsample factor")?,
    ])
}

impl CudaBackend {
    /// y (n, c, h/f, w/f) = the f × f block means of x (n, c, h, w): one thread per mean.
    pub(super) fn downsample(&self, x: &CudaTensor, f: usize) -> Result<CudaTensor> {
        let (n, c, h, w) = downsample_dims(&x.shape, f)?;
        let out_shape = [n, c, h / f, w / f];
        int_len(&x.shape, "downsample input")?;
        int_len(&out_shape, "downsample output")?;
        let [hi, wi, fi] = ints(h, w, f)?;
        let grid = PlaneGrid::new(n * c, h / f, w / f, "downsample")?;
        let mut y = self.output(&out_shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let xs = x.dev()?.slice(span(&p, h * w));
            let mut ys = y.dev_mut()?.slice_mut(span(&p, (h / f) * (w / f)));
            let mut l = self.stream.launch_builder(self.f("downsample"));
            l.arg(&xs)
                .arg(&mut ys)
                .arg(&planes)
                .arg(&hi)
                .arg(&wi)
                .arg(&fi);
            self.run(l, cfg)?;
        }
        Ok(y)
    }

    /// x (n, c, h·f, w·f) = the adjoint of `downsample` applied to y (n, c, h, w): one thread
    /// per full-size pixel.
    pub(super) fn downsample_adjoint(&self, y: &CudaTensor, f: usize) -> Result<CudaTensor> {
        let (n, c, h, w) = downsample_adjoint_dims(&y.shape, f)?;
        let out_shape = [n, c, h, w];
        int_len(&y.shape, "downsample_adjoint input")?;
        int_len(&out_shape, "downsample_adjoint output")?;
        let [hi, wi, fi] = ints(h, w, f)?;
        let grid = PlaneGrid::new(n * c, h, w, "downsample_adjoint")?;
        let mut x = self.output(&out_shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let ys = y.dev()?.slice(span(&p, (h / f) * (w / f)));
            let mut xs = x.dev_mut()?.slice_mut(span(&p, h * w));
            let mut l = self.stream.launch_builder(self.f("downsample_adjoint"));
            l.arg(&ys)
                .arg(&mut xs)
                .arg(&planes)
                .arg(&hi)
                .arg(&wi)
                .arg(&fi);
            self.run(l, cfg)?;
        }
        Ok(x)
    }
}
