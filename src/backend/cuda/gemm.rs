//! The strided batched SGEMM (kernels/gemm.cu; CPU twin: src/backend/cpu/gemm.rs) behind
//! attention, and the entry-point tables and tile choice it shares with the implicit-GEMM convs.

use super::launch::{dim, grid_x, grid_yz, BLOCK};
use super::CudaBackend;
use crate::error::{Error, Result};
use crate::precision::Precision;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// The kernels of kernels/gemm.cu.
pub(super) const KERNELS: &[&str] = &[
    "sgemm_strided",
    "sgemm_strided_32",
    "sgemm_strided_tf32",
    "sgemm_strided_32_tf32",
    "sgemm_strided_bf16",
    "sgemm_strided_32_bf16",
];

/// The GEMM-shaped kernels' entry points, [64×64 tiles, 32×32 tiles], per precision (f32, tf32,
/// bf16): all of a row take the same arguments.
pub(super) type EntryPoints = [[&'static str; 2]; 3];
pub(super) const SGEMM: EntryPoints = [
    ["sgemm_strided", "sgemm_strided_32"],
    ["sgemm_strided_tf32", "sgemm_strided_32_tf32"],
    ["sgemm_strided_bf16", "sgemm_strided_32_bf16"],
];

pub(super) fn entry_points(table: &EntryPoints, p: Precision) -> [&'static str; 2] {
    table[match p {
        Precision::F32 => 0,
        Precision::Tf32 => 1,
        Precision::Bf16 => 2,
    }]
}

/// The tile edge of the SGEMM and the implicit GEMM (both give the same bits either way): 64
/// while 64×64 tiles (`blocks_at_64` of them) still give two blocks per multiprocessor, else 32,
/// four times the blocks, for batch 1 at the low-resolution levels.
pub(super) fn tile_edge(blocks_at_64: usize, sms: usize) -> usize {
    if blocks_at_64 >= 2 * sms {
        64
    } else {
        32
    }
}

/// A GEMM batch of `outer` × `inner` matrices: matrix (zo, zi) of an operand starts at
/// zi·(its inner stride) + zo·(its outer stride), e.g. the heads of each of several images.
#[derive(Clone, Copy, Debug)]
pub(super) struct Batch {
    pub inner: usize,
    pub outer: usize,
}

impl Batch {
    /// `n` matrices at one stride (outer strides unused).
    pub(super) fn flat(n: usize) -> Self {
        Batch { inner: n, outer: 1 }
    }
    fn count(self) -> Option<usize> {
        self.inner.checked_mul(self.outer)
    }
}

impl CudaBackend {
    /// C = A·B (+ row_bias[i] on row i of every matrix) (+ residual, laid out as C) over a
    /// `batch` of matrices with strides, through sgemm_strided; C is only written. A is (view, row stride, column stride, [inner,
    /// outer] batch strides), B likewise; C is row-major with row stride `c_rs` and batch
    /// strides `c_bs`. Every view must hold every element the kernel touches (checked: the
    /// kernel has no bounds of its own beyond m, n, k).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: (&CudaView<'_, f32>, usize, usize, [usize; 2]),
        b: (&CudaView<'_, f32>, usize, usize, [usize; 2]),
        c: &mut CudaViewMut<'_, f32>,
        c_rs: usize,
        c_bs: [usize; 2],
        row_bias: Option<&CudaView<'_, f32>>,
        residual: Option<&CudaView<'_, f32>>,
        batch: Batch,
    ) -> Result<()> {
        if m == 0 || n == 0 || k == 0 || batch.inner == 0 || batch.outer == 0 {
            return Err(Error::internal(format!(
                "gemm: empty product ({m}×{k})·({k}×{n}) × {batch:?}"
            )));
        }
        let count = batch
            .count()
            .ok_or_else(|| Error::internal(format!("gemm: batch {batch:?} overflows")))?;
        // One past the last element a (rows × cols, strides rs, cs) matrix batch reaches.
        let span = |rows: usize, cols: usize, rs: usize, cs: usize, bs: [usize; 2]| {
            (batch.inner - 1)
                .checked_mul(bs[0])?
                .checked_add((batch.outer - 1).checked_mul(bs[1])?)?
                .checked_add((rows - 1).checked_mul(rs)?)?
                .checked_add((cols - 1).checked_mul(cs)?)?
                .checked_add(1)
        };
        for (what, need, have) in [
            ("A", span(m, k, a.1, a.2, a.3), a.0.len()),
            ("B", span(k, n, b.1, b.2, b.3), b.0.len()),
            ("C", span(m, n, c_rs, 1, c_bs), c.len()),
            (
                "the residual",
                span(m, n, c_rs, 1, c_bs),
                residual.map_or(usize::MAX, |r| r.len()),
            ),
        ] {
            if need.is_none_or(|need| need > have) {
                return Err(Error::internal(format!(
                    "gemm ({m}×{k})·({k}×{n}) × {batch:?}: operand {what} reaches {need:?} of {have} values"
                )));
            }
        }
        if let Some(bias) = row_bias.filter(|v| v.len() < m) {
            return Err(Error::internal(format!(
                "gemm: {} row-bias values for {m} rows",
                bias.len()
            )));
        }
        let (mi, ni, ki) = (dim(m, "m")?, dim(n, "n")?, dim(k, "k")?);
        // Offsets inside one matrix are ints in the kernel; batch offsets are 64-bit.
        for (rows, cols, rs, cs) in [(m, k, a.1, a.2), (k, n, b.1, b.2), (m, n, c_rs, 1)] {
            dim((rows - 1) * rs + (cols - 1) * cs, "GEMM offset")?;
        }
        let (a_rs, a_cs, b_rs, b_cs, c_rs) = (
            dim(a.1, "A row stride")?,
            dim(a.2, "A column stride")?,
            dim(b.1, "B row stride")?,
            dim(b.2, "B column stride")?,
            dim(c_rs, "C row stride")?,
        );
        // Batch offsets are 64-bit in the kernel.
        let batch_stride = |v: usize, what: &str| {
            i64::try_from(v).map_err(|_| Error::input(format!("{what} = {v} is too large")))
        };
        let (a_bs, b_bs, c_bs, a_os, b_os, c_os) = (
            batch_stride(a.3[0], "A batch stride")?,
            batch_stride(b.3[0], "B batch stride")?,
            batch_stride(c_bs[0], "C batch stride")?,
            batch_stride(a.3[1], "A outer batch stride")?,
            batch_stride(b.3[1], "B outer batch stride")?,
            batch_stride(c_bs[1], "C outer batch stride")?,
        );
        let inner = dim(batch.inner, "GEMM inner batch")?;
        let tile = self.gemm_tile.unwrap_or_else(|| {
            let blocks = m.div_ceil(64).saturating_mul(n.div_ceil(64));
            tile_edge(blocks.saturating_mul(count), self.sm_count)
        });
        let cfg = LaunchConfig {
            grid_dim: (
                grid_x(n.div_ceil(tile), "GEMM column tiles")?,
                grid_yz(m.div_ceil(tile), "GEMM row tiles")?,
                // Batches over 65,535 matrices are refused.
                grid_yz(count, "GEMM batch")?,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let [k64, k32] = entry_points(&SGEMM, self.precision);
        let kernel = if tile == 64 { k64 } else { k32 };
        let mut l = self.stream.launch_builder(self.f(kernel));
        l.arg(&mi)
            .arg(&ni)
            .arg(&ki)
            .arg(a.0)
            .arg(&a_rs)
            .arg(&a_cs)
            .arg(b.0)
            .arg(&b_rs)
            .arg(&b_cs);
        // A null pointer: no row bias, no residual.
        let null_ptr: u64 = 0;
        l.arg(c).arg(&c_rs);
        for addend in [row_bias, residual] {
            match addend {
                Some(v) => l.arg(v),
                None => l.arg(&null_ptr),
            };
        }
        l.arg(&a_bs)
            .arg(&b_bs)
            .arg(&c_bs)
            .arg(&inner)
            .arg(&a_os)
            .arg(&b_os)
            .arg(&c_os);
        self.run(l, cfg)?;
        Ok(())
    }
}
