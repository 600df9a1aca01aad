//! The inverse problem's blur K and its adjoint (kernels/blur.cu; CPU twin:
//! src/backend/cpu/blur.rs). blur_sub and blur_t_step, the fused data step's halves, are
//! launched by diffpir.rs.

use super::checks::blur_kernel;
use super::launch::{dim, dims4};
use super::planes::{span, PlaneGrid};
use super::{CudaBackend, CudaTensor};
use crate::error::Result;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use std::ops::Range;

/// The kernels of kernels/blur.cu.
pub(super) const KERNELS: &[&str] = &["blur", "blur_sub", "blur_t_step"];

/// One blur-family launch over the (h, w) planes of an NCHW tensor with a k×k kernel, its
/// sizes checked: the per-plane grid of `planes.rs` (16×16 blocks, planes along z in chunks of
/// at most 65,535; each plane is blurred on its own, so chunks change no bits).
pub(super) struct BlurLaunch {
    grid: PlaneGrid,
    plane_len: usize,
    pub(super) hi: i32,
    pub(super) wi: i32,
    pub(super) k: i32,
}

impl BlurLaunch {
    pub(super) fn new(op: &str, x: &CudaTensor, kernel: &CudaTensor) -> Result<Self> {
        let (n, c, h, w) = dims4(x, op)?;
        let k = blur_kernel(op, &kernel.shape)?;
        dim(x.len(), "tensor size")?;
        Ok(BlurLaunch {
            grid: PlaneGrid::new(n * c, h, w, "blur")?,
            plane_len: h * w,
            hi: dim(h, "h")?,
            wi: dim(w, "w")?,
            k: dim(k, "blur kernel size")?,
        })
    }

    /// Per chunk: its elements, its plane count (the kernels' `planes`) and its grid.
    pub(super) fn chunks(&self) -> impl Iterator<Item = (Range<usize>, i32, LaunchConfig)> + '_ {
        self.grid
            .chunks()
            .map(|(planes, p, cfg)| (span(&planes, self.plane_len), p, cfg))
    }
}

impl CudaBackend {
    pub(super) fn blur(
        &self,
        x: &CudaTensor,
        kernel: &CudaTensor,
        adjoint: bool,
    ) -> Result<CudaTensor> {
        let g = BlurLaunch::new("blur", x, kernel)?;
        let mut y = self.output(&x.shape)?;
        let adj = adjoint as i32;
        for (elems, p, cfg) in g.chunks() {
            let xs = x.dev()?.slice(elems.clone());
            let mut ys = y.dev_mut()?.slice_mut(elems);
            let mut l = self.stream.launch_builder(self.f("blur"));
            l.arg(&xs)
                .arg(kernel.dev()?)
                .arg(&mut ys)
                .arg(&p)
                .arg(&g.hi)
                .arg(&g.wi)
                .arg(&g.k)
                .arg(&adj);
            self.run(l, cfg)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(planes: usize, h: usize, w: usize) -> BlurLaunch {
        BlurLaunch {
            grid: PlaneGrid::new(planes, h, w, "blur").unwrap(),
            plane_len: h * w,
            hi: h as i32,
            wi: w as i32,
            k: 3,
        }
    }

    #[test]
    fn planes_past_the_z_limit_run_in_chunks() {
        let one: Vec<_> = launch(6, 64, 48).chunks().collect();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, 0..6 * 64 * 48);
        assert_eq!((one[0].1, one[0].2.grid_dim), (6, (3, 4, 6)));
        let many: Vec<_> = launch(2 * 65_535 + 7, 4, 4).chunks().collect();
        let planes: Vec<i32> = many.iter().map(|c| c.1).collect();
        assert_eq!(planes, [65_535, 65_535, 7]);
        assert_eq!(many[1].0, 65_535 * 16..2 * 65_535 * 16);
        assert_eq!(many[2].0.end, (2 * 65_535 + 7) * 16);
        assert!(many.iter().all(|c| c.2.grid_dim.2 as i32 == c.1));
    }
}
