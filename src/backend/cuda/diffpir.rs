//! DiffPIR's fused sampler steps: the prior step (kernels/diffpir.cu) and the data step
//! (blur_sub then blur_t_step of kernels/blur.cu); reference: src/samplers/diffpir.rs, which
//! the CPU runs as the separate ops.

use super::blur::BlurLaunch;
use super::launch::{dim, grid1d};
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

/// The kernels of kernels/diffpir.cu.
pub(super) const KERNELS: &[&str] = &["diffpir_prior"];

impl CudaBackend {
    pub(super) fn diffpir_prior(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        cur: (f32, f32),
        next: (f32, f32),
    ) -> Result<CudaTensor> {
        let len = Self::same_len(x, eps, "diffpir_prior")?;
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut xp = self.output(&x.shape)?;
        let mut l = self.stream.launch_builder(self.f("diffpir_prior"));
        l.arg(x.dev()?)
            .arg(eps.dev()?)
            .arg(&cur.0)
            .arg(&cur.1)
            .arg(&next.0)
            .arg(&next.1)
            .arg(xp.dev_mut()?)
            .arg(&li);
        self.run(l, cfg)?;
        Ok(xp)
    }

    /// clamp(xp − tau·Kᵀ(K xp − y), −1, 1) as blur_sub then blur_t_step; y indexed as xp.
    pub(super) fn data_step(
        &self,
        xp: &CudaTensor,
        y: &CudaTensor,
        kernel: &CudaTensor,
        tau: f32,
    ) -> Result<CudaTensor> {
        let g = BlurLaunch::new("data_step", xp, kernel)?;
        Self::same_len(xp, y, "data_step")?;
        let mut r = self.output(&xp.shape)?;
        for (elems, p, cfg) in g.chunks() {
            let (xs, ys) = (
                xp.dev()?.slice(elems.clone()),
                y.dev()?.slice(elems.clone()),
            );
            let mut rs = r.dev_mut()?.slice_mut(elems);
            let mut l = self.stream.launch_builder(self.f("blur_sub"));
            l.arg(&xs)
                .arg(kernel.dev()?)
                .arg(&ys)
                .arg(&mut rs)
                .arg(&p)
                .arg(&g.hi)
                .arg(&g.wi)
                .arg(&g.k);
            self.run(l, cfg)?;
        }
        let mut out = self.output(&xp.shape)?;
        for (elems, p, cfg) in g.chunks() {
            let (rs, xs) = (
                r.dev()?.slice(elems.clone()),
                xp.dev()?.slice(elems.clone()),
            );
            let mut os = out.dev_mut()?.slice_mut(elems);
            let mut l = self.stream.launch_builder(self.f("blur_t_step"));
            l.arg(&rs)
                .arg(kernel.dev()?)
                .arg(&xs)
                .arg(&tau)
                .arg(&mut os)
                .arg(&p)
                .arg(&g.hi)
                .arg(&g.wi)
                .arg(&g.k);
            self.run(l, cfg)?;
        }
        Ok(out)
    }
}
