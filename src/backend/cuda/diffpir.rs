//! DiffPIR's fused sampler steps: the prior step (kernels/diffpir.cu) and the data step
//! (blur_sub then blur_t_step of kernels/blur.cu); reference: src/samplers/diffpir.rs, which
//! the CPU runs as the separate ops.

use super::launch::{dims4, grid1d};
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
        let mut xp = self.output(&x.shape)?;
        let li = x.len() as i32;
        let mut l = self.stream.launch_builder(self.f("diffpir_prior"));
        l.arg(x.dev())
            .arg(eps.dev())
            .arg(&cur.0)
            .arg(&cur.1)
            .arg(&next.0)
            .arg(&next.1)
            .arg(xp.dev_mut())
            .arg(&li);
        self.run(l, grid1d(x.len()))?;
        Ok(xp)
    }

    pub(super) fn data_step(
        &self,
        xp: &CudaTensor,
        y: &CudaTensor,
        kernel: &CudaTensor,
        tau: f32,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(xp);
        let (p, hi, wi, k) = ((n * c) as i32, h as i32, w as i32, kernel.shape[0] as i32);
        let mut r = self.output(&xp.shape)?;
        let mut l = self.stream.launch_builder(self.f("blur_sub"));
        l.arg(xp.dev())
            .arg(kernel.dev())
            .arg(y.dev())
            .arg(r.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        let mut out = self.output(&xp.shape)?;
        let mut l = self.stream.launch_builder(self.f("blur_t_step"));
        l.arg(r.dev())
            .arg(kernel.dev())
            .arg(xp.dev())
            .arg(&tau)
            .arg(out.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        Ok(out)
    }
}
