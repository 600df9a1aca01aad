//! The fused dual and primal updates of the Chambolle–Pock TV baseline (kernels/tv.cu; CPU
//! twin: src/backend/cpu/tv.rs), in place on every (h, w) plane.

use super::checks::{check_shape, nchw};
use super::launch::dim;
use super::planes::{int_len, span, PlaneGrid};
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The kernels of kernels/tv.cu.
pub(super) const KERNELS: &[&str] = &["tv_dual_update", "tv_primal_update"];

/// The launch over `reference`'s planes after checking that every operand has its shape;
/// returns the grid, (h, w) and the plane length.
fn tv_grid(
    op: &str,
    reference: &CudaTensor,
    others: &[(&str, &CudaTensor)],
) -> Result<(PlaneGrid, [i32; 2], usize)> {
    let (n, c, h, w) = nchw(op, "the image", &reference.shape)?;
    for (what, t) in others {
        check_shape(op, what, &t.shape, &reference.shape)?;
    }
    int_len(&reference.shape, op)?;
    let ints = [dim(h, "TV height")?, dim(w, "TV width")?];
    Ok((PlaneGrid::new(n * c, h, w, op)?, ints, h * w))
}

impl CudaBackend {
    /// p ← proj_{|p| ≤ lam}(p + step·∇x̄) on (px, py), all three of one shape.
    pub(super) fn tv_dual_update(
        &self,
        px: &mut CudaTensor,
        py: &mut CudaTensor,
        xbar: &CudaTensor,
        step: f32,
        lam: f32,
    ) -> Result<()> {
        let op = "tv_dual_update";
        let (grid, [h, w], hw) = tv_grid(op, xbar, &[("px", px), ("py", py)])?;
        for (p, planes, cfg) in grid.chunks() {
            let xs = xbar.dev()?.slice(span(&p, hw));
            let mut pxs = px.dev_mut()?.slice_mut(span(&p, hw));
            let mut pys = py.dev_mut()?.slice_mut(span(&p, hw));
            let mut l = self.stream.launch_builder(self.f("tv_dual_update"));
            l.arg(&xs)
                .arg(&step)
                .arg(&lam)
                .arg(&mut pxs)
                .arg(&mut pys)
                .arg(&planes)
                .arg(&h)
                .arg(&w);
            self.run(l, cfg)?;
        }
        Ok(())
    }

    /// x_new = clamp(x − step·(atq + ∇ᵀp), −1, 1), x̄ = 2·x_new − x, x = x_new; all five of
    /// one shape.
    pub(super) fn tv_primal_update(
        &self,
        x: &mut CudaTensor,
        xbar: &mut CudaTensor,
        atq: &CudaTensor,
        px: &CudaTensor,
        py: &CudaTensor,
        step: f32,
    ) -> Result<()> {
        let op = "tv_primal_update";
        let others = [("xbar", &*xbar), ("atq", atq), ("px", px), ("py", py)];
        let (grid, [h, w], hw) = tv_grid(op, x, &others)?;
        for (p, planes, cfg) in grid.chunks() {
            let (qs, pxs, pys) = (
                atq.dev()?.slice(span(&p, hw)),
                px.dev()?.slice(span(&p, hw)),
                py.dev()?.slice(span(&p, hw)),
            );
            let mut xs = x.dev_mut()?.slice_mut(span(&p, hw));
            let mut xbs = xbar.dev_mut()?.slice_mut(span(&p, hw));
            let mut l = self.stream.launch_builder(self.f("tv_primal_update"));
            l.arg(&qs)
                .arg(&pxs)
                .arg(&pys)
                .arg(&step)
                .arg(&mut xs)
                .arg(&mut xbs)
                .arg(&planes)
                .arg(&h)
                .arg(&w);
            self.run(l, cfg)?;
        }
        Ok(())
    }
}
