//! The inverse problem's blur K and its adjoint (kernels/blur.cu; CPU twin:
//! src/backend/cpu/blur.rs). blur_sub and blur_t_step, the fused data step's halves, are
//! launched by diffpir.rs.

use super::launch::dims4;
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// The kernels of kernels/blur.cu.
pub(super) const KERNELS: &[&str] = &["blur", "blur_sub", "blur_t_step"];

impl CudaBackend {
    pub(super) fn blur_cfg(planes: usize, h: usize, w: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                (w as u32).div_ceil(16),
                (h as u32).div_ceil(16),
                planes as u32,
            ),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(super) fn blur(
        &self,
        x: &CudaTensor,
        kernel: &CudaTensor,
        adjoint: bool,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        let mut y = self.output(&x.shape)?;
        let (p, hi, wi, k, adj) = (
            (n * c) as i32,
            h as i32,
            w as i32,
            kernel.shape[0] as i32,
            adjoint as i32,
        );
        let mut l = self.stream.launch_builder(self.f("blur"));
        l.arg(x.dev())
            .arg(kernel.dev())
            .arg(y.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k)
            .arg(&adj);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        Ok(y)
    }
}
