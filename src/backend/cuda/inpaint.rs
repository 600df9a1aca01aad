//! Inpainting's operator y = x ⊙ m, m one (h, w) plane's 0/1 mask (kernels/inpaint.cu; CPU
//! twin: src/backend/cpu/inpaint.rs); its own adjoint.

use super::checks::{check_shape, nchw};
use super::launch::dim;
use super::planes::{int_len, span, PlaneGrid};
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The kernels of kernels/inpaint.cu.
pub(super) const KERNELS: &[&str] = &["inpaint_mask"];

impl CudaBackend {
    /// x ⊙ m on every plane of x (n, c, h, w), m (h, w): one thread per pixel.
    pub(super) fn inpaint_mask(&self, x: &CudaTensor, m: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, h, w) = nchw("inpaint_mask", "x", &x.shape)?;
        check_shape("inpaint_mask", "the mask", &m.shape, &[h, w])?;
        int_len(&x.shape, "inpaint_mask input")?;
        let (hi, wi) = (dim(h, "inpaint height")?, dim(w, "inpaint width")?);
        let grid = PlaneGrid::new(n * c, h, w, "inpaint_mask")?;
        let mut y = self.output(&x.shape)?;
        for (p, planes, cfg) in grid.chunks() {
            let xs = x.dev()?.slice(span(&p, h * w));
            let mut ys = y.dev_mut()?.slice_mut(span(&p, h * w));
            let mut l = self.stream.launch_builder(self.f("inpaint_mask"));
            l.arg(&xs)
                .arg(m.dev()?)
                .arg(&mut ys)
                .arg(&planes)
                .arg(&hi)
                .arg(&wi);
            self.run(l, cfg)?;
        }
        Ok(y)
    }
}
