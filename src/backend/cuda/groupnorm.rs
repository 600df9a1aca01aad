//! GroupNorm with optional fused SiLU and its input-VJP (kernels/groupnorm.cu; CPU twin:
//! src/backend/cpu/groupnorm.rs).

use super::launch::{dim, dims4, BLOCK};
use super::{CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// The kernels of kernels/groupnorm.cu.
pub(super) const KERNELS: &[&str] = &["group_norm_fwd", "group_norm_vjp"];

/// One block of BLOCK threads per (group, image): the GroupNorm kernels.
pub(super) fn per_group_cfg(groups: usize, n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (groups as u32, n as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    pub(super) fn group_norm(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
        silu: bool,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        let mut y = self.output(&x.shape)?;
        let (ci, hw, g, s) = (c as i32, (h * w) as i32, groups as i32, silu as i32);
        let cfg = per_group_cfg(groups, n);
        let mut l = self.stream.launch_builder(self.f("group_norm_fwd"));
        l.arg(x.dev())
            .arg(gamma.dev())
            .arg(beta.dev())
            .arg(y.dev_mut())
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(y)
    }

    pub(super) fn group_norm_vjp(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
        silu: bool,
        dy: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        if groups == 0 || c % groups != 0 || dy.shape != x.shape || gamma.len() != c {
            return Err(Error::internal(format!(
                "group_norm_vjp: x {:?}, dy {:?}, {} γ values, {groups} groups",
                x.shape,
                dy.shape,
                gamma.len()
            )));
        }
        dim(x.len(), "tensor size")?;
        let mut dx = self.output(&x.shape)?;
        let (ci, hw, g, s) = (c as i32, (h * w) as i32, groups as i32, silu as i32);
        // One block per (group, image), as the forward.
        let cfg = per_group_cfg(groups, n);
        let mut l = self.stream.launch_builder(self.f("group_norm_vjp"));
        l.arg(x.dev())
            .arg(gamma.dev())
            .arg(beta.dev())
            .arg(dy.dev())
            .arg(dx.dev_mut())
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(dx)
    }
}
