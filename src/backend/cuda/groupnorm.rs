//! GroupNorm with optional fused SiLU, its input-VJP, and its per-channel scale and shift for a
//! conv that folds it (kernels/groupnorm.cu; CPU twin: src/backend/cpu/groupnorm.rs).

use super::checks::check_group_norm;
use super::launch::{dim, dims4, grid_x, grid_yz, BLOCK};
use super::{CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// The kernels of kernels/groupnorm.cu.
pub(super) const KERNELS: &[&str] = &["group_norm_fwd", "group_norm_vjp", "group_norm_scale_shift"];

/// One block of BLOCK threads per (group, image): the GroupNorm kernels.
/// Batches over 65,535 images (grid y) are refused.
pub(super) fn per_group_cfg(groups: usize, n: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (grid_x(groups, "groups")?, grid_yz(n, "GroupNorm batch")?, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// (c, h·w, groups, silu) as the kernels' ints, the tensor's size checked to fit one.
fn int_args(x: &CudaTensor, groups: usize, silu: bool) -> Result<[i32; 4]> {
    let (_, c, h, w) = dims4(x, "group_norm")?;
    dim(x.len(), "tensor size")?;
    Ok([
        dim(c, "channels")?,
        dim(h * w, "plane size")?,
        dim(groups, "groups")?,
        silu as i32,
    ])
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
        let (n, ..) = check_group_norm("group_norm", &x.shape, &gamma.shape, &beta.shape, groups)?;
        let [ci, hw, g, s] = int_args(x, groups, silu)?;
        let cfg = per_group_cfg(groups, n)?;
        let mut y = self.output(&x.shape)?;
        let mut l = self.stream.launch_builder(self.f("group_norm_fwd"));
        l.arg(x.dev()?)
            .arg(gamma.dev()?)
            .arg(beta.dev()?)
            .arg(y.dev_mut()?)
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(y)
    }

    /// The norm's (scale, shift) per (image, channel), (n, c, 2): what group_norm_fwd
    /// multiplies and adds (its bits), for a conv that folds the norm into its gather.
    pub(super) fn group_norm_scale_shift(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
    ) -> Result<CudaTensor> {
        let op = "group_norm";
        let (n, c, ..) = check_group_norm(op, &x.shape, &gamma.shape, &beta.shape, groups)?;
        let [ci, hw, g, _] = int_args(x, groups, false)?;
        let cfg = per_group_cfg(groups, n)?;
        let mut ss = self.output(&[n, c, 2])?;
        let mut l = self.stream.launch_builder(self.f("group_norm_scale_shift"));
        l.arg(x.dev()?)
            .arg(gamma.dev()?)
            .arg(beta.dev()?)
            .arg(ss.dev_mut()?)
            .arg(&ci)
            .arg(&hw)
            .arg(&g);
        self.run(l, cfg)?;
        Ok(ss)
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
        let op = "group_norm_vjp";
        let (n, ..) = check_group_norm(op, &x.shape, &gamma.shape, &beta.shape, groups)?;
        if dy.shape != x.shape {
            return Err(Error::internal(format!(
                "{op}: dy {:?} for x {:?}",
                dy.shape, x.shape
            )));
        }
        let [ci, hw, g, s] = int_args(x, groups, silu)?;
        // One block per (group, image), as the forward.
        let cfg = per_group_cfg(groups, n)?;
        let mut dx = self.output(&x.shape)?;
        let mut l = self.stream.launch_builder(self.f("group_norm_vjp"));
        l.arg(x.dev()?)
            .arg(gamma.dev()?)
            .arg(beta.dev()?)
            .arg(dy.dev()?)
            .arg(dx.dev_mut()?)
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(dx)
    }
}
