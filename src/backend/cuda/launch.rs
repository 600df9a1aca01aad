//! Launch plumbing shared by every op family: the checked launch, the 1-D and per-item grids,
//! and the size and shape helpers.

use super::{cuda_err, CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::LaunchConfig;

/// Threads per block of the 1-D kernels (kernels/common.cuh uses the same).
pub(super) const BLOCK: u32 = 256;

pub(super) fn dim(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::input(format!("{what} = {v} is too large for the CUDA kernels")))
}

pub(super) fn grid1d(len: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((len as u32).div_ceil(BLOCK).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of BLOCK threads per batch item: the per-item reductions.
pub(super) fn per_item_cfg(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub(super) fn dims4(t: &CudaTensor) -> (usize, usize, usize, usize) {
    match *t.shape.as_slice() {
        [n, c, h, w] => (n, c, h, w),
        ref s => panic!("expected an NCHW tensor, got shape {s:?}"),
    }
}

impl CudaBackend {
    /// Launch a built kernel call.
    pub(super) fn run(&self, mut l: cudarc::driver::LaunchArgs, cfg: LaunchConfig) -> Result<()> {
        self.profiler.around(&self.stream, || {
            // SAFETY: every caller pushes the arguments of its kernel's ABI (kernels/README.md)
            // in order, with sizes taken from the tensors' shapes.
            unsafe { l.launch(cfg) }.map_err(cuda_err)?;
            Ok(())
        })
    }

    /// (items, values per item) of a batch tensor, both checked to fit the kernels' ints.
    pub(super) fn items(&self, x: &CudaTensor) -> Result<(usize, i32)> {
        let n = x.shape.first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::internal("a per-item op on an empty batch"));
        }
        dim(n, "batch")?;
        dim(x.len(), "tensor size")?;
        Ok((n, dim(x.len() / n, "slice size")?))
    }

    pub(super) fn same_len(a: &CudaTensor, b: &CudaTensor, op: &str) -> Result<()> {
        if a.len() != b.len() {
            return Err(Error::internal(format!(
                "{op}: operands of shapes {:?} and {:?}",
                a.shape, b.shape
            )));
        }
        Ok(())
    }
}
