//! conv2d, its fused ResBlock epilogues, its GroupNorm fold and its input-VJP (kernels/conv.cu;
//! CPU twin: src/backend/cpu/conv.rs): the implicit GEMM with optional split-K, or the direct
//! kernels.

use super::checks::{check_len, conv_out, nchw, numel};
use super::gemm::{entry_points, tile_edge, EntryPoints};
use super::launch::{dim, dims4, grid1d, grid_x, grid_yz, BLOCK};
use super::{CudaBackend, CudaTensor};
use crate::backend::ConvAdd;
use crate::bail;
use crate::error::{Error, Result};
use crate::precision::Precision;
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// The kernels of kernels/conv.cu.
pub(super) const KERNELS: &[&str] = &[
    "conv2d_fwd",
    "conv2d_fwd_chan",
    "conv2d_fwd_res",
    "conv2d_bwd_data",
    "conv2d_igemm_64",
    "conv2d_igemm_32",
    "conv2d_bwd_igemm_64",
    "conv2d_bwd_igemm_32",
    "conv2d_igemm_64_tf32",
    "conv2d_igemm_32_tf32",
    "conv2d_bwd_igemm_64_tf32",
    "conv2d_bwd_igemm_32_tf32",
    "conv2d_igemm_64_bf16",
    "conv2d_igemm_32_bf16",
    "conv2d_bwd_igemm_64_bf16",
    "conv2d_bwd_igemm_32_bf16",
    "conv2d_igemm_64x128",
    "conv2d_igemm_128",
    "conv2d_igemm_64x128_tf32",
    "conv2d_bwd_igemm_64x128",
    "conv2d_bwd_igemm_128",
    "conv2d_bwd_igemm_64x128_tf32",
    "conv2d_splitk_reduce",
    "conv2d_igemm_64_gn",
    "conv2d_igemm_32_gn",
    "conv2d_igemm_64_tf32_gn",
    "conv2d_igemm_32_tf32_gn",
    "conv2d_igemm_64_bf16_gn",
    "conv2d_igemm_32_bf16_gn",
    "conv2d_igemm_64x128_gn",
    "conv2d_igemm_128_gn",
    "conv2d_igemm_64x128_tf32_gn",
    "conv2d_igemm_64x128_bf16",
    "conv2d_igemm_64x128_bf16_gn",
    "conv2d_bwd_igemm_64x128_bf16",
];

/// The direct kernels' limit (kernels/conv.cu writes nothing beyond it).
pub(super) const MAX_CONV_KERNEL: usize = 19;

/// One direction's implicit-GEMM entry points: the 64 and 32 tiles per precision, and the wide
/// cp.async tiles: 64×128 at every precision (f32, TF32, BF16), 128×128 at f32. All take the
/// same arguments.
pub(super) struct ConvEntryPoints {
    narrow: EntryPoints,
    wide_64x128: [&'static str; 3],
    wide_128: &'static str,
}

impl ConvEntryPoints {
    /// The entry point of `tile` at `p`, or None where that tile has no kernel at `p`.
    fn name(&self, tile: Tile, p: Precision) -> Option<&'static str> {
        match (tile, p) {
            (Tile::T64, _) => Some(entry_points(&self.narrow, p)[0]),
            (Tile::T32, _) => Some(entry_points(&self.narrow, p)[1]),
            (Tile::T64x128, Precision::F32) => Some(self.wide_64x128[0]),
            (Tile::T64x128, Precision::Tf32) => Some(self.wide_64x128[1]),
            (Tile::T64x128, Precision::Bf16) => Some(self.wide_64x128[2]),
            (Tile::T128, Precision::F32) => Some(self.wide_128),
            _ => None,
        }
    }
}

pub(super) const CONV_FWD: ConvEntryPoints = ConvEntryPoints {
    narrow: [
        ["conv2d_igemm_64", "conv2d_igemm_32"],
        ["conv2d_igemm_64_tf32", "conv2d_igemm_32_tf32"],
        ["conv2d_igemm_64_bf16", "conv2d_igemm_32_bf16"],
    ],
    wide_64x128: [
        "conv2d_igemm_64x128",
        "conv2d_igemm_64x128_tf32",
        "conv2d_igemm_64x128_bf16",
    ],
    wide_128: "conv2d_igemm_128",
};
/// The forward tiles that fold a GroupNorm (+SiLU) into their gather (`norm` read, NormFold).
pub(super) const CONV_FWD_GN: ConvEntryPoints = ConvEntryPoints {
    narrow: [
        ["conv2d_igemm_64_gn", "conv2d_igemm_32_gn"],
        ["conv2d_igemm_64_tf32_gn", "conv2d_igemm_32_tf32_gn"],
        ["conv2d_igemm_64_bf16_gn", "conv2d_igemm_32_bf16_gn"],
    ],
    wide_64x128: [
        "conv2d_igemm_64x128_gn",
        "conv2d_igemm_64x128_tf32_gn",
        "conv2d_igemm_64x128_bf16_gn",
    ],
    wide_128: "conv2d_igemm_128_gn",
};
pub(super) const CONV_BWD: ConvEntryPoints = ConvEntryPoints {
    narrow: [
        ["conv2d_bwd_igemm_64", "conv2d_bwd_igemm_32"],
        ["conv2d_bwd_igemm_64_tf32", "conv2d_bwd_igemm_32_tf32"],
        ["conv2d_bwd_igemm_64_bf16", "conv2d_bwd_igemm_32_bf16"],
    ],
    wide_64x128: [
        "conv2d_bwd_igemm_64x128",
        "conv2d_bwd_igemm_64x128_tf32",
        "conv2d_bwd_igemm_64x128_bf16",
    ],
    wide_128: "conv2d_bwd_igemm_128",
};

/// Which conv kernels run: the implicit GEMM (default) or the direct kernels it replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// conv2d_igemm_* / conv2d_bwd_igemm_*: tiled implicit GEMM, any k, the tile chosen by size.
    Igemm,
    /// The implicit GEMM with 32×32 tiles (kernel tests, benchmarks).
    Igemm32,
    /// The implicit GEMM with 64×64 tiles (kernel tests, benchmarks).
    Igemm64,
    /// The implicit GEMM with 64-row × 128-column cp.async tiles (every precision).
    Igemm64x128,
    /// The implicit GEMM with 128×128 cp.async tiles (f32 only; chosen only when forced).
    Igemm128,
    /// conv2d_fwd* / conv2d_bwd_data: one block per (64 pixels, 16 channels), k ≤ 19.
    Direct,
}

impl ConvKernel {
    /// Whether these kernels run at `p`: forcing one that does not is an error.
    pub fn supports(self, p: Precision) -> bool {
        match self {
            ConvKernel::Direct | ConvKernel::Igemm128 => p == Precision::F32,
            ConvKernel::Igemm
            | ConvKernel::Igemm32
            | ConvKernel::Igemm64
            | ConvKernel::Igemm64x128 => true,
        }
    }
}

/// DIFFRECON_CONV=igemm|igemm32|igemm64|igemm64x128|igemm128|direct chooses the conv kernels
/// (benchmarks, kernel regressions).
pub(super) fn conv_kernel_from_env() -> Result<ConvKernel> {
    match std::env::var("DIFFRECON_CONV").as_deref() {
        Err(_) | Ok("") | Ok("igemm") => Ok(ConvKernel::Igemm),
        Ok("igemm32") => Ok(ConvKernel::Igemm32),
        Ok("igemm64") => Ok(ConvKernel::Igemm64),
        Ok("igemm64x128") => Ok(ConvKernel::Igemm64x128),
        Ok("igemm128") => Ok(ConvKernel::Igemm128),
        Ok("direct") => Ok(ConvKernel::Direct),
        Ok(other) => Err(Error::input(format!(
            "DIFFRECON_CONV={other}: expected igemm, igemm32, igemm64, igemm64x128, igemm128 or direct"
        ))),
    }
}

/// DIFFRECON_GN_FOLD=1 folds each GroupNorm that feeds a conv into the conv's gather
/// (`Backend::norm_conv2d`; the same bits); 0 or unset runs the norm kernel, then the conv. Off
/// by default until a GPU run shows where it pays: it saves the normalised tensor's write and
/// read but repeats the norm (and SiLU) for each of a 3×3 conv's nine taps.
pub(super) fn gn_fold_from_env() -> Result<bool> {
    gn_fold_setting(std::env::var("DIFFRECON_GN_FOLD").ok().as_deref())
}

/// DIFFRECON_GN_FOLD's value (None: unset) as the fold's on/off; anything else is refused.
fn gn_fold_setting(value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(Error::input(format!(
            "DIFFRECON_GN_FOLD={other}: expected 1 (fold GroupNorm into the conv) or 0"
        ))),
    }
}

/// An implicit-GEMM block tile of C (rows × columns). Every tile gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tile {
    T32,
    T64,
    /// 4 × 8 outputs per thread (f32), cp.async double buffering; every precision.
    T64x128,
    /// f32 only: 8 × 8 outputs per thread, cp.async double buffering.
    T128,
}

impl Tile {
    pub(super) fn rows(self) -> usize {
        match self {
            Tile::T32 => 32,
            Tile::T64 | Tile::T64x128 => 64,
            Tile::T128 => 128,
        }
    }
    pub(super) fn cols(self) -> usize {
        match self {
            Tile::T32 => 32,
            Tile::T64 => 64,
            Tile::T64x128 | Tile::T128 => 128,
        }
    }
}

/// The implicit GEMM's tile for an M × N output (any precision), unless `kernel` forces one.
/// By size: 64×128 while its blocks still give two per multiprocessor (the occupancy its 100–126
/// registers allow), else the 64 or 32 tile as the SGEMM picks them. The
/// 128×128 tile (1 block per multiprocessor at 148–167 registers) runs only when forced until a GPU
/// run says where it pays.
pub(super) fn igemm_tile(kernel: ConvKernel, m: usize, n: usize, sms: usize) -> Tile {
    match kernel {
        ConvKernel::Igemm32 => Tile::T32,
        ConvKernel::Igemm64 => Tile::T64,
        ConvKernel::Igemm64x128 => Tile::T64x128,
        ConvKernel::Igemm128 => Tile::T128,
        _ if m.div_ceil(64) * n.div_ceil(128) >= 2 * sms => Tile::T64x128,
        _ if tile_edge(m.div_ceil(64) * n.div_ceil(64), sms) == 64 => Tile::T64,
        _ => Tile::T32,
    }
}

/// Split-K slices for an implicit-GEMM conv with `rows` × `pix` outputs per image and `kterms`
/// terms each: as many as it takes for two 32×32-tile blocks per multiprocessor from one image,
/// each slice at least 128 terms, at most 8. Derived from one image's shape, not the batch, so
/// a slice of a batch gets the bits it gets alone.
pub(super) fn igemm_k_split(rows: usize, pix: usize, kterms: usize, sms: usize) -> usize {
    let blocks = rows.div_ceil(32) * pix.div_ceil(32);
    if blocks >= 2 * sms {
        1
    } else {
        (2 * sms).div_ceil(blocks).min(kterms / 128).clamp(1, 8)
    }
}

/// Tiles of one split-K launch the persistent counters cover (4 bytes each): a larger grid
/// finishes with conv2d_splitk_reduce instead.
pub(super) const SPLIT_TILE_COUNTERS: usize = 1 << 16;

/// A GroupNorm folded into a conv's gather: group_norm_scale_shift's (n, cin, 2) scale and
/// shift of the conv's input, and whether SiLU follows the norm.
pub(super) type NormFold<'a> = Option<(&'a CudaTensor, bool)>;

impl CudaBackend {
    /// conv2d_fwd and its fused variants (kernels/conv.cu): y = conv(x) + bias, plus the
    /// epilogue's term; with `fold`, conv(GN(x)) by the implicit GEMM's _gn entry points.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
        epi: ConvAdd<'_, CudaTensor>,
        fold: NormFold<'_>,
    ) -> Result<CudaTensor> {
        let (ho, wo) = conv_out("conv2d", &x.shape, &w.shape, stride, pad)?;
        let (n, cin, h, wd) = dims4(x, "conv2d")?;
        let (cout, k) = (w.shape[0], w.shape[2]);
        check_len("conv2d", "bias", &b.shape, cout)?;
        if k > MAX_CONV_KERNEL && self.conv_kernel == ConvKernel::Direct {
            bail!("conv kernel size {k} exceeds the direct CUDA kernel's limit of {MAX_CONV_KERNEL}; use DIFFRECON_CONV=igemm or --device cpu");
        }
        let out_shape = [n, cout, ho, wo];
        if let Some((ss, _)) = fold {
            // The kernel reads ss by (image, channel) of x with no bounds of its own.
            if ss.shape != [n, cin, 2] {
                return Err(Error::internal(format!(
                    "conv2d: norm scale/shift {:?} for an input of {:?}",
                    ss.shape, x.shape
                )));
            }
            if self.conv_kernel == ConvKernel::Direct {
                return Err(Error::internal(
                    "the direct conv kernels fold no GroupNorm (norm_conv2d composes there)",
                ));
            }
        }
        // The epilogue's operand must match the output exactly: the kernel indexes it by the
        // output's (image, channel, pixel) without bounds of its own.
        let (direct_kernel, epi_code, extra) = match epi {
            ConvAdd::Nothing => ("conv2d_fwd", 0i32, None),
            ConvAdd::Channel(v) => {
                if numel(&v.shape) != Some(n * cout) {
                    return Err(Error::internal(format!(
                        "conv2d_add_channel_bias: {:?} values for an output of {out_shape:?}",
                        v.shape
                    )));
                }
                ("conv2d_fwd_chan", 1, Some(v))
            }
            ConvAdd::Residual(r) => {
                if r.shape != out_shape {
                    return Err(Error::internal(format!(
                        "conv2d_add_residual: residual {:?} for an output of {out_shape:?}",
                        r.shape
                    )));
                }
                ("conv2d_fwd_res", 2, Some(r))
            }
        };
        let args = [n, cin, h, wd, cout, k, stride, pad, ho, wo]
            .iter()
            .map(|&v| dim(v, "conv size"))
            .collect::<Result<Vec<i32>>>()?;
        dim(numel(&out_shape).unwrap_or(usize::MAX), "conv output size")?;
        dim(x.len(), "conv input size")?;
        dim(w.len(), "conv weight size")?;
        let mut y = self.output(&out_shape)?;
        match self.conv_kernel {
            ConvKernel::Igemm
            | ConvKernel::Igemm32
            | ConvKernel::Igemm64
            | ConvKernel::Igemm64x128
            | ConvKernel::Igemm128 => self.igemm(
                if fold.is_some() {
                    &CONV_FWD_GN
                } else {
                    &CONV_FWD
                },
                (x, w, Some(b), extra, epi_code, fold),
                &mut y,
                &args,
                (cout, ho * wo, cin * k * k),
            )?,
            ConvKernel::Direct => {
                self.f32_only_kernels_unused()?;
                let cfg = LaunchConfig {
                    grid_dim: (
                        grid_x((ho * wo).div_ceil(64), "conv pixel blocks")?,
                        grid_yz(cout.div_ceil(16), "conv channel blocks")?,
                        // Batches over 65,535 images are refused.
                        grid_yz(n, "direct conv batch")?,
                    ),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut l = self.stream.launch_builder(self.f(direct_kernel));
                l.arg(x.dev()?).arg(w.dev()?).arg(b.dev()?);
                if let Some(e) = extra {
                    l.arg(e.dev()?);
                }
                l.arg(y.dev_mut()?);
                for a in &args {
                    l.arg(a);
                }
                self.run(l, cfg)?;
            }
        }
        Ok(y)
    }

    /// One implicit-GEMM conv (kernels/conv.cu): `out` (n images × rows × pix) from `input`
    /// (x, or dy for the backward, which has no bias) and the weights; `args` = (n, cin, h, w,
    /// cout, k, stride, pad, ho, wo). With split-K the slices' partial sums go to a pooled
    /// workspace; the block that finishes a tile's slices last adds them to the bias and applies
    /// the epilogue (counted in `split_tiles_done`), or, past SPLIT_TILE_COUNTERS tiles,
    /// conv2d_splitk_reduce does.
    /// `kernels` names the direction's entry points (for the forward, `fold` is the norm the
    /// _gn entry points fold, which the plain ones ignore).
    #[allow(clippy::type_complexity)]
    pub(super) fn igemm(
        &self,
        kernels: &ConvEntryPoints,
        (input, w, bias, extra, epi, fold): (
            &CudaTensor,
            &CudaTensor,
            Option<&CudaTensor>,
            Option<&CudaTensor>,
            i32,
            NormFold<'_>,
        ),
        out: &mut CudaTensor,
        args: &[i32],
        (rows, pix, kterms): (usize, usize, usize),
    ) -> Result<()> {
        self.f32_only_kernels_unused()?;
        let total = out.len();
        let tile = igemm_tile(self.conv_kernel, rows, total / rows, self.sm_count);
        let name = kernels.name(tile, self.precision).ok_or_else(|| {
            Error::internal(format!(
                "no {tile:?} conv kernel at {}: f32_only_kernels_unused lets none through",
                self.precision
            ))
        })?;
        let k_split = igemm_k_split(rows, pix, kterms, self.sm_count);
        dim(k_split * total, "split-K workspace")?;
        let mut partial = match k_split {
            1 => None,
            _ => Some(self.output(&[k_split, total])?),
        };
        let cfg = LaunchConfig {
            grid_dim: (
                grid_x((total / rows).div_ceil(tile.cols()), "conv column tiles")?,
                grid_yz(rows.div_ceil(tile.rows()), "conv row tiles")?,
                grid_yz(k_split, "split-K slices")?,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let tiles = cfg.grid_dim.0 as usize * cfg.grid_dim.1 as usize;
        let finish_in_kernel = k_split > 1 && tiles <= SPLIT_TILE_COUNTERS;
        let ks = dim(k_split, "split-K slices")?;
        // A null pointer: no tile counters, no norm (below: the backward's bias and epilogue
        // operand).
        let null_ptr: u64 = 0;
        let norm_silu = fold.is_some_and(|(_, silu)| silu) as i32;
        let mut l = self.stream.launch_builder(self.f(name));
        l.arg(input.dev()?).arg(w.dev()?);
        if let Some(b) = bias {
            // Without an epilogue the kernel never reads `extra`: pass the bias.
            l.arg(b.dev()?)
                .arg(extra.map_or(b.dev(), |e| e.dev())?)
                .arg(&epi);
            match fold {
                Some((ss, _)) => l.arg(ss.dev()?),
                None => l.arg(&null_ptr),
            };
            l.arg(&norm_silu);
        }
        l.arg(out.dev_mut()?);
        for a in args {
            l.arg(a);
        }
        l.arg(&ks);
        // Unsplit, the kernel neither reads nor writes `partial`: pass the weights.
        match partial.as_mut() {
            Some(p) => l.arg(p.dev_mut()?),
            None => l.arg(w.dev()?),
        };
        if finish_in_kernel {
            l.arg(&self.split_tiles_done);
        } else {
            l.arg(&null_ptr);
        }
        self.run(l, cfg)?;
        let Some(partial) = partial.filter(|_| !finish_in_kernel) else {
            return Ok(());
        };
        let (ri, pi, ti) = (
            dim(rows, "rows")?,
            dim(pix, "pixels")?,
            dim(total, "outputs")?,
        );
        let mut l = self.stream.launch_builder(self.f("conv2d_splitk_reduce"));
        l.arg(partial.dev()?);
        match bias {
            Some(b) => l.arg(b.dev()?).arg(extra.map_or(b.dev(), |e| e.dev())?),
            None => l.arg(&null_ptr).arg(&null_ptr),
        };
        l.arg(&epi)
            .arg(out.dev_mut()?)
            .arg(&ks)
            .arg(&ri)
            .arg(&pi)
            .arg(&ti);
        self.run(l, grid1d(total)?)
    }

    pub(super) fn conv2d_vjp(
        &self,
        dy: &CudaTensor,
        w: &CudaTensor,
        in_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<CudaTensor> {
        let (ho, wo) = conv_out("conv2d_vjp", in_shape, &w.shape, stride, pad)?;
        let (n, cin, h, wd) = nchw("conv2d_vjp", "input", in_shape)?;
        let (cout, k) = (w.shape[0], w.shape[2]);
        if k > MAX_CONV_KERNEL && self.conv_kernel == ConvKernel::Direct {
            bail!("conv kernel size {k} exceeds the direct CUDA kernel's limit of {MAX_CONV_KERNEL}; use DIFFRECON_CONV=igemm or --device cpu");
        }
        // The kernel indexes dy by (image, co, oy, ox) with no bounds of its own.
        if dy.shape != [n, cout, ho, wo] {
            return Err(Error::internal(format!(
                "conv2d_vjp: dy {:?} for an output of {:?}",
                dy.shape,
                [n, cout, ho, wo]
            )));
        }
        dim(numel(in_shape).unwrap_or(usize::MAX), "conv input size")?;
        dim(dy.len(), "conv output size")?;
        dim(w.len(), "conv weight size")?;
        let args = [n, cin, h, wd, cout, k, stride, pad, ho, wo]
            .iter()
            .map(|&v| dim(v, "conv size"))
            .collect::<Result<Vec<i32>>>()?;
        let mut dx = self.output(in_shape)?;
        match self.conv_kernel {
            // C (cin × n·h·w) as an implicit GEMM.
            ConvKernel::Igemm
            | ConvKernel::Igemm32
            | ConvKernel::Igemm64
            | ConvKernel::Igemm64x128
            | ConvKernel::Igemm128 => self.igemm(
                &CONV_BWD,
                (dy, w, None, None, 0, None),
                &mut dx,
                &args,
                (cin, h * wd, cout * k * k),
            )?,
            // One thread per dx element: grid = (pixels / 256, cin, n).
            ConvKernel::Direct => {
                self.f32_only_kernels_unused()?;
                let cfg = LaunchConfig {
                    grid_dim: (
                        grid_x((h * wd).div_ceil(BLOCK as usize), "conv pixel blocks")?,
                        grid_yz(cin, "conv input channels")?,
                        // Batches over 65,535 images are refused.
                        grid_yz(n, "direct conv batch")?,
                    ),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut l = self.stream.launch_builder(self.f("conv2d_bwd_data"));
                l.arg(dy.dev()?).arg(w.dev()?).arg(dx.dev_mut()?);
                for a in &args {
                    l.arg(a);
                }
                self.run(l, cfg)?;
            }
        }
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200_SMS: usize = 132;

    #[test]
    fn wide_tiles_only_where_they_fill_the_gpu() {
        // The rule is the same at every precision (each has a 64×128 tile).
        let by_size = |m, n| igemm_tile(ConvKernel::Igemm, m, n, H200_SMS);
        // The notebook UNet's first level (64 channels, 64×64): batch 1 and 8 keep the narrow
        // tiles (64 and 256 blocks at 64×128, under 2 per SM); batch 64 takes 64×128 (2048).
        assert_eq!(by_size(64, 4096), Tile::T32);
        assert_eq!(by_size(64, 8 * 4096), Tile::T64);
        assert_eq!(by_size(64, 64 * 4096), Tile::T64x128);
        // 264 blocks of 64×128 is the threshold; one fewer is not.
        assert_eq!(by_size(64, 264 * 128), Tile::T64x128);
        assert_eq!(by_size(64, 263 * 128), Tile::T64);
        // 128×128 only when forced; forced tiles win at any size.
        for (kernel, tile) in [
            (ConvKernel::Igemm128, Tile::T128),
            (ConvKernel::Igemm64x128, Tile::T64x128),
            (ConvKernel::Igemm64, Tile::T64),
            (ConvKernel::Igemm32, Tile::T32),
        ] {
            assert_eq!(igemm_tile(kernel, 5, 7, H200_SMS), tile);
        }
    }

    #[test]
    fn gn_fold_is_off_unless_set_to_1_and_other_values_are_refused() {
        for (value, on) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("1"), true),
        ] {
            assert_eq!(gn_fold_setting(value).unwrap(), on, "{value:?}");
        }
        for bad in ["yes", "2", " 1", "true"] {
            let e = gn_fold_setting(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("DIFFRECON_GN_FOLD") && e.contains("expected 1"),
                "{e}"
            );
        }
    }

    #[test]
    fn every_tile_names_its_own_kernel() {
        let tiles = [Tile::T32, Tile::T64, Tile::T64x128, Tile::T128];
        let precisions = [Precision::F32, Precision::Tf32, Precision::Bf16];
        let names: Vec<&str> = tiles
            .iter()
            .flat_map(|&t| precisions.map(|p| (t, p)))
            .flat_map(|(t, p)| {
                [CONV_FWD, CONV_FWD_GN, CONV_BWD]
                    .iter()
                    .map(|e| e.name(t, p))
                    .collect::<Vec<_>>()
            })
            .flatten()
            .collect();
        assert_eq!(names.len(), 3 * (2 * 3 + 3 + 1));
        for (i, n) in names.iter().enumerate() {
            assert!(KERNELS.contains(n), "{n} is not registered");
            assert!(!names[..i].contains(n), "{n} named twice");
        }
        // The size rule and the forced kernels never ask for a tile a precision lacks.
        for p in precisions {
            for (m, n) in [(64, 4096), (64, 64 * 4096), (256, 64 * 256)] {
                let by_size = igemm_tile(ConvKernel::Igemm, m, n, H200_SMS);
                assert!(CONV_FWD.name(by_size, p).is_some(), "{by_size:?} at {p}");
            }
            for k in [ConvKernel::Igemm64x128, ConvKernel::Igemm128] {
                let t = igemm_tile(k, 64, 4096, H200_SMS);
                assert_eq!(CONV_FWD.name(t, p).is_some(), k.supports(p), "{k:?} at {p}");
                // The folding twins cover exactly the plain forward's tiles.
                assert_eq!(
                    CONV_FWD_GN.name(t, p).is_some(),
                    k.supports(p),
                    "{k:?} at {p}"
                );
            }
        }
        assert_eq!(
            CONV_FWD.name(Tile::T64, Precision::Tf32),
            Some("conv2d_igemm_64_tf32")
        );
        assert_eq!(CONV_FWD.name(Tile::T128, Precision::Tf32), None);
        assert_eq!(
            CONV_FWD_GN.name(Tile::T64x128, Precision::Tf32),
            Some("conv2d_igemm_64x128_tf32_gn")
        );
    }
}
