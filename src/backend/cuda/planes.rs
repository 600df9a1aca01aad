//! The launch shape of the per-plane kernels of blur.cu, ct.cu, downsample.cu, inpaint.cu and
//! tv.cu: one 16×16 block per tile of a plane's (rows, cols) grid of threads, planes along the
//! grid's z axis in chunks of at most 65,535 (each plane is computed on its own, so chunks
//! change no bits). Each op offsets its operands by the chunk's first plane.

use super::checks::numel;
use super::launch::{dim, grid_x, grid_yz, GRID_YZ_MAX};
use crate::error::{Error, Result};
use cudarc::driver::LaunchConfig;
use std::ops::Range;

#[derive(Debug)]
pub(super) struct PlaneGrid {
    planes: usize,
    tiles: (u32, u32),
}

impl PlaneGrid {
    /// `planes` planes of rows × cols threads. An empty grid (no planes, rows or columns)
    /// launches nothing: its output has no values to write.
    pub(super) fn new(planes: usize, rows: usize, cols: usize, what: &str) -> Result<Self> {
        let tiles = (
            grid_x(cols.div_ceil(16), &format!("{what} column tiles"))?,
            grid_yz(rows.div_ceil(16), &format!("{what} row tiles"))?,
        );
        let empty = rows == 0 || cols == 0;
        Ok(PlaneGrid {
            planes: if empty { 0 } else { planes },
            tiles,
        })
    }

    /// Per chunk: its planes, their count (the kernels' `planes`) and its grid.
    pub(super) fn chunks(&self) -> impl Iterator<Item = (Range<usize>, i32, LaunchConfig)> + '_ {
        (0..self.planes).step_by(GRID_YZ_MAX).map(move |p0| {
            // At most 65,535: fits the grid's z and an int.
            let planes = GRID_YZ_MAX.min(self.planes - p0);
            let cfg = LaunchConfig {
                grid_dim: (self.tiles.0, self.tiles.1, planes as u32),
                block_dim: (16, 16, 1),
                shared_mem_bytes: 0,
            };
            (p0..p0 + planes, planes as i32, cfg)
        })
    }
}

/// The values of `planes` in an operand of `per_plane` values a plane. The caller has checked
/// that the whole operand's length fits an int, so the products cannot overflow.
pub(super) fn span(planes: &Range<usize>, per_plane: usize) -> Range<usize> {
    planes.start * per_plane..planes.end * per_plane
}

/// The values of an operand of `shape`, checked to fit an int (the kernels' indices within a
/// chunk, and `span`'s products).
pub(super) fn int_len(shape: &[usize], what: &str) -> Result<usize> {
    let len = numel(shape)
        .ok_or_else(|| Error::input(format!("{what} of shape {shape:?} is too large")))?;
    dim(len, what)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_past_the_z_limit_run_in_chunks() {
        let one: Vec<_> = PlaneGrid::new(3, 20, 24, "t").unwrap().chunks().collect();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].0.clone(), one[0].1), (0..3, 3));
        assert_eq!(one[0].2.grid_dim, (2, 2, 3));
        let many: Vec<_> = PlaneGrid::new(65_544, 4, 4, "t")
            .unwrap()
            .chunks()
            .collect();
        let ranges: Vec<_> = many.iter().map(|c| (c.0.clone(), c.1)).collect();
        assert_eq!(ranges, [(0..65_535, 65_535), (65_535..65_544, 9)]);
        assert!(many.iter().all(|c| c.2.grid_dim == (1, 1, c.1 as u32)));
        assert_eq!(span(&many[1].0, 16), 65_535 * 16..65_544 * 16);
    }

    #[test]
    fn empty_planes_launch_nothing_and_tiles_are_checked() {
        for (planes, rows, cols) in [(0, 4, 4), (3, 0, 4), (3, 4, 0)] {
            let g = PlaneGrid::new(planes, rows, cols, "t").unwrap();
            assert_eq!(g.chunks().count(), 0, "{planes} × {rows} × {cols}");
        }
        assert!(PlaneGrid::new(1, 16 * 65_535, 1, "t").is_ok());
        let e = PlaneGrid::new(1, 16 * 65_535 + 1, 1, "ct_backproject").unwrap_err();
        assert!(
            e.to_string().contains("ct_backproject row tiles = 65536"),
            "{e}"
        );
        assert_eq!(int_len(&[3, 1, 24, 20], "x"), Ok(1440));
        assert!(int_len(&[1 << 16, 1 << 15], "sinogram").is_err());
        assert!(int_len(&[usize::MAX, 2], "sinogram").is_err());
    }
}
