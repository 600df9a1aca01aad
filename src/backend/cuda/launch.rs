//! Launch plumbing shared by every op family: the checked launch, the 1-D and per-item grids,
//! and the checked conversions of sizes to the kernels' ints and the grid's block counts.

use super::checks::{check_same_len, nchw};
use super::{cuda_err, CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::LaunchConfig;

/// Threads per block of the 1-D kernels (kernels/common.cuh uses the same).
pub(super) const BLOCK: u32 = 256;

/// CUDA's grid limits: up to 2³¹ − 1 blocks along x, 65,535 along y and z.
pub(super) const GRID_X_MAX: usize = i32::MAX as usize;
pub(super) const GRID_YZ_MAX: usize = 65_535;

/// A size as a kernel's `int` argument (the kernels index with ints): an input error naming
/// the value when it does not fit.
pub(super) fn dim(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::input(format!("{what} = {v} is too large for the CUDA kernels")))
}

/// A block count along the grid's x axis.
pub(super) fn grid_x(blocks: usize, what: &str) -> Result<u32> {
    grid_axis(blocks, GRID_X_MAX, what)
}

/// A block count along the grid's y or z axis (a batch, heads, or tile rows): batches over
/// 65,535 must be chunked by the caller or are refused here.
pub(super) fn grid_yz(blocks: usize, what: &str) -> Result<u32> {
    grid_axis(blocks, GRID_YZ_MAX, what)
}

fn grid_axis(blocks: usize, max: usize, what: &str) -> Result<u32> {
    if blocks > max {
        return Err(Error::input(format!(
            "{what} = {blocks} exceeds the CUDA grid's limit of {max} blocks on that axis"
        )));
    }
    Ok(blocks as u32)
}

/// One thread per element over `len` elements: `len` must fit an int (the kernels' flat index).
pub(super) fn grid1d(len: usize) -> Result<LaunchConfig> {
    dim(len, "1-D launch length")?;
    Ok(LaunchConfig {
        grid_dim: (
            grid_x(len.div_ceil(BLOCK as usize).max(1), "1-D blocks")?,
            1,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// One block of BLOCK threads per batch item: the per-item reductions.
pub(super) fn per_item_cfg(n: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (grid_x(n, "batch items")?, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// (n, c, h, w) of an NCHW operand of `op`.
pub(super) fn dims4(t: &CudaTensor, op: &str) -> Result<(usize, usize, usize, usize)> {
    nchw(op, "operand", &t.shape)
}

impl CudaBackend {
    /// Launch a built kernel call.
    pub(super) fn run(&self, mut l: cudarc::driver::LaunchArgs, cfg: LaunchConfig) -> Result<()> {
        self.profiler.around(&self.stream, || {
            // SAFETY: every caller pushes the arguments of its kernel's ABI (kernels/README.md)
            // in order, with sizes taken from operand shapes it has checked (checks.rs) and
            // converted to ints and block counts by the checked helpers above.
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

    /// Both operands of `op` hold the same number of values, which fits an int; returns it.
    pub(super) fn same_len(a: &CudaTensor, b: &CudaTensor, op: &str) -> Result<usize> {
        let len = check_same_len(op, &a.shape, &b.shape)?;
        dim(len, "tensor size")?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_block_counts_are_checked() {
        assert_eq!(dim(i32::MAX as usize, "len"), Ok(i32::MAX));
        let e = dim(i32::MAX as usize + 1, "conv output size").unwrap_err();
        assert!(matches!(&e, Error::Input(m) if m.contains("conv output size = 2147483648")));
        assert_eq!(grid_yz(65_535, "batch"), Ok(65_535));
        let e = grid_yz(65_536, "attention batch").unwrap_err();
        assert!(matches!(&e, Error::Input(m) if m.contains("attention batch = 65536")));
        assert_eq!(grid_x(GRID_X_MAX, "blocks"), Ok(i32::MAX as u32));
        assert!(grid_x(GRID_X_MAX + 1, "blocks").is_err());
    }

    #[test]
    fn grid1d_covers_the_length_once() {
        for (len, blocks) in [
            (0, 1),
            (1, 1),
            (256, 1),
            (257, 2),
            (i32::MAX as usize, 8_388_608),
        ] {
            assert_eq!(grid1d(len).unwrap().grid_dim, (blocks, 1, 1), "len {len}");
        }
        assert!(grid1d(i32::MAX as usize + 1).is_err());
        assert_eq!(per_item_cfg(70_000).unwrap().grid_dim, (70_000, 1, 1));
    }
}
