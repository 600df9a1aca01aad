//! Multi-head self-attention and its input-VJP (kernels/attention.cu; CPU twin:
//! src/backend/cpu/attention.rs): the projections as SGEMMs, the core by the fused kernel or
//! by GEMMs and softmax row kernels.

use super::checks::check_attention;
use super::gemm::Batch;
use super::launch::{dim, dims4, grid_x, grid_yz, BLOCK};
use super::{CudaBackend, CudaTensor};
use crate::backend::AttnParams;
use crate::error::{Error, Result};
use crate::precision::{Precision, FUSED_ATTENTION_SCORES};
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// The kernels of kernels/attention.cu.
pub(super) const KERNELS: &[&str] = &[
    "attention_fwd",
    "attn_softmax_rows",
    "attn_softmax_vjp_rows",
];

/// The fused kernel's limit (kernels/attention.cu writes nothing beyond it).
pub(super) const MAX_HEAD_DIM: usize = 128;

/// How the attention core runs: the fused kernel, or GEMMs + a softmax row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionCore {
    Fused,
    Gemm,
}

/// The fused kernel runs one thread per query, so for one image it leaves most of the GPU idle
/// (H200, 256 to 1024 tokens: 64 threads × 16–64 blocks, 0.1–0.2 ms); the GEMM path spreads each
/// image's t² scores over many blocks. The choice is made from one image's shape, never the
/// batch, so that a slice of a batch gets the bits it gets alone: the fused kernel where one
/// image gives it four blocks per multiprocessor (f32 only: the fused kernel has no tensor-core
/// path), or where the GEMM path's score buffer (heads·t² floats) would pass 256 MB (at any
/// precision: that core then runs in f32). Head widths over 128 always take the GEMM path.
pub(super) fn attention_core_path(
    forced: Option<AttentionCore>,
    (d, t, heads): (usize, usize, usize),
    sms: usize,
    precision: Precision,
) -> AttentionCore {
    let fused_blocks = t.div_ceil(64) * heads;
    let scores = heads.saturating_mul(t).saturating_mul(t);
    let fused_fills_gpu = fused_blocks >= 4 * sms && precision == Precision::F32;
    match forced {
        _ if d > MAX_HEAD_DIM => AttentionCore::Gemm,
        Some(path) => path,
        None if fused_fills_gpu || scores > FUSED_ATTENTION_SCORES => AttentionCore::Fused,
        None => AttentionCore::Gemm,
    }
}

/// DIFFRECON_ATTENTION=fused|gemm forces the attention core's path (benchmarks, kernel tests).
pub(super) fn attention_core_from_env() -> Result<Option<AttentionCore>> {
    match std::env::var("DIFFRECON_ATTENTION").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(None),
        Ok("fused") => Ok(Some(AttentionCore::Fused)),
        Ok("gemm") => Ok(Some(AttentionCore::Gemm)),
        Ok(other) => Err(Error::input(format!(
            "DIFFRECON_ATTENTION={other}: expected fused, gemm or auto"
        ))),
    }
}

/// The shapes of in_w, in_b, out_w, out_b.
fn param_shapes(p: &AttnParams<CudaTensor>) -> [&[usize]; 4] {
    [&p.in_w.shape, &p.in_b.shape, &p.out_w.shape, &p.out_b.shape]
}

/// The qkv buffer (n·3c·t) and one image's scores (heads·t²) must fit the kernels' ints.
fn check_attention_sizes(n: usize, c: usize, t: usize, heads: usize) -> Result<()> {
    let qkv = [n, 3, c, t]
        .iter()
        .try_fold(1usize, |a, &v| a.checked_mul(v));
    let scores = [heads, t, t]
        .iter()
        .try_fold(1usize, |a, &v| a.checked_mul(v));
    dim(qkv.unwrap_or(usize::MAX), "attention size")?;
    dim(scores.unwrap_or(usize::MAX), "attention scores size")?;
    Ok(())
}

/// The score buffers of the GEMM path (P, and dS for the VJP) hold this many floats at most
/// (64 MB each): images go through the core in groups of as many as fit, at least one, so a
/// launch covers (image, head) pairs instead of one image's heads.
const GROUP_SCORES: usize = 1 << 24;

/// Images per group of the GEMM path for `n` images of heads·t² scores each, or `forced`'s
/// count (at most n).
fn images_per_group(n: usize, heads: usize, t: usize, forced: Option<usize>) -> usize {
    let per_image = heads.saturating_mul(t).saturating_mul(t).max(1);
    forced
        .unwrap_or(GROUP_SCORES / per_image)
        .clamp(1, n.max(1))
}

/// DIFFRECON_ATTENTION_GROUP=N forces N images per group of the attention GEMM path (1: the
/// per-image loop of before; benchmarks). Unset, empty or "auto": by the score budget.
pub(super) fn attention_group_from_env() -> Result<Option<usize>> {
    match std::env::var("DIFFRECON_ATTENTION_GROUP").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(None),
        Ok(v) => match v.parse::<usize>() {
            Ok(g) if g >= 1 => Ok(Some(g)),
            _ => Err(Error::input(format!(
                "DIFFRECON_ATTENTION_GROUP={v}: expected a whole number of images ≥ 1 or auto"
            ))),
        },
    }
}

/// A view of the qkv, ctx or gradient rows of a group of images, with the stride between images:
/// the heads' d × t blocks lie d·t apart inside an image (row stride t).
type Rows<'a, 'b> = (&'a CudaView<'b, f32>, usize);

impl CudaBackend {
    /// Per image, batched over n: out (m × t) = W·x (+ bias[i] on row i) (+ residual, shaped as
    /// out), or Wᵀ·x when `transposed`, for a projection's weight W (m × k, or k × m transposed)
    /// and x (k × t per image). Transposed, A(i, e) = W[e][i].
    fn per_image_weight(
        &self,
        (m, t, k, n): (usize, usize, usize, usize),
        (w, transposed): (&CudaTensor, bool),
        x: &CudaTensor,
        out: &mut CudaTensor,
        (bias, residual): (Option<&CudaTensor>, Option<&CudaTensor>),
    ) -> Result<()> {
        let (row_stride, col_stride) = if transposed { (1, m) } else { (k, 1) };
        let (bias, residual) = (view_of(bias)?, view_of(residual)?);
        self.gemm(
            (m, t, k),
            (&w.dev()?.as_view(), row_stride, col_stride, [0, 0]),
            (&x.dev()?.as_view(), t, 1, [k * t, 0]),
            &mut out.dev_mut()?.as_view_mut(),
            t,
            [m * t, 0],
            bias.as_ref(),
            residual.as_ref(),
            Batch::flat(n),
        )
    }

    /// Per (image, head) of a group of g images: out (t × t) = aᵀ·b for the heads' d × t blocks
    /// of a and b; out holds g × heads × t × t. A(i, e) = a[e][i].
    fn per_head_gram(
        &self,
        (d, t, heads, g): (usize, usize, usize, usize),
        (a, a_img): Rows<'_, '_>,
        (b, b_img): Rows<'_, '_>,
        out: &mut CudaTensor,
    ) -> Result<()> {
        let (dt, tt) = (d * t, t * t);
        self.gemm(
            (t, t, d),
            (a, 1, t, [dt, a_img]),
            (b, t, 1, [dt, b_img]),
            &mut out.dev_mut()?.as_view_mut(),
            t,
            [tt, heads * tt],
            None,
            None,
            Batch {
                inner: heads,
                outer: g,
            },
        )
    }

    /// Per (image, head) of a group of g images: out (d × t) = a·M, or a·Mᵀ when `transposed`,
    /// for the heads' d × t blocks of a and M (g × heads × t × t). Transposed, B(j, i) = M[i][j].
    fn per_head_times(
        &self,
        (d, t, heads, g): (usize, usize, usize, usize),
        (a, a_img): Rows<'_, '_>,
        (m, transposed): (&CudaTensor, bool),
        (out, out_img): (&mut CudaViewMut<'_, f32>, usize),
    ) -> Result<()> {
        let (dt, tt) = (d * t, t * t);
        let (row_stride, col_stride) = if transposed { (1, t) } else { (t, 1) };
        self.gemm(
            (d, t, t),
            (a, t, 1, [dt, a_img]),
            (
                &m.dev()?.as_view(),
                row_stride,
                col_stride,
                [tt, heads * tt],
            ),
            out,
            t,
            [dt, out_img],
            None,
            None,
            Batch {
                inner: heads,
                outer: g,
            },
        )
    }

    /// P = softmax(scale·qᵀk) of images first..first + g into `probs` (g × heads × t × t at
    /// least), batched over (image, head): the scores of the GEMM forward and of the VJP's
    /// recomputation. Returns the group's q, k and v rows (d × t per head, row stride t, head
    /// stride d·t, image stride 3·c·t).
    pub(super) fn attention_probs<'a>(
        &self,
        qkv: &'a CudaTensor,
        (first, g): (usize, usize),
        (c, t, heads): (usize, usize, usize),
        probs: &mut CudaTensor,
    ) -> Result<[CudaView<'a, f32>; 3]> {
        let d = c / heads;
        let ct = c * t;
        let (ti, scale) = (dim(t, "tokens")?, 1.0 / (d as f32).sqrt());
        let qkv_g = qkv.dev()?.slice(first * 3 * ct..(first + g) * 3 * ct);
        let [q, k, v] = [0, 1, 2].map(|part| qkv_g.slice(part * ct..));
        // S (t × t) = qᵀ·k.
        self.per_head_gram((d, t, heads, g), (&q, 3 * ct), (&k, 3 * ct), probs)?;
        let mut l = self.stream.launch_builder(self.f("attn_softmax_rows"));
        l.arg(probs.dev_mut()?).arg(&ti).arg(&scale);
        self.attn_rows(l, g * heads * t)?;
        Ok([q, k, v])
    }

    /// ctx (n, c, t) of the attention core by the fused online-softmax kernel: one thread per
    /// query, 64 queries per block.
    pub(super) fn attention_core_fused(
        &self,
        qkv: &CudaTensor,
        n: usize,
        c: usize,
        t: usize,
        heads: usize,
    ) -> Result<CudaTensor> {
        let (ci, ti, hi) = (dim(c, "channels")?, dim(t, "tokens")?, dim(heads, "heads")?);
        // Batches over 65,535 images (grid z) are refused.
        let cfg = LaunchConfig {
            grid_dim: (
                grid_x(t.div_ceil(64), "query blocks")?,
                grid_yz(heads, "attention heads")?,
                grid_yz(n, "fused attention batch")?,
            ),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut ctx = self.output(&[n, c, t])?;
        let mut l = self.stream.launch_builder(self.f("attention_fwd"));
        l.arg(qkv.dev()?)
            .arg(ctx.dev_mut()?)
            .arg(&ci)
            .arg(&ti)
            .arg(&hi);
        self.run(l, cfg)?;
        Ok(ctx)
    }

    /// ctx (n, c, t) of the attention core through GEMMs, in groups of images, batched over
    /// (image, head):
    /// S = qᵀk (t × t per head), P = softmax(scale·S) by rows, ctx = v·Pᵀ (the first half of
    /// attention_vjp's recomputation). Any head width.
    pub(super) fn attention_core_gemm(
        &self,
        qkv: &CudaTensor,
        n: usize,
        c: usize,
        t: usize,
        heads: usize,
    ) -> Result<CudaTensor> {
        let d = c / heads;
        check_attention_sizes(n, c, t, heads)?;
        let mut ctx = self.output(&[n, c, t])?;
        let group = images_per_group(n, heads, t, self.attention_group);
        let mut probs = self.output(&[group, heads, t, t])?;
        let ct = c * t;
        for first in (0..n).step_by(group) {
            let g = group.min(n - first);
            let [_, _, v] = self.attention_probs(qkv, (first, g), (c, t, heads), &mut probs)?;
            // ctx (d × t) = v (d × t)·Pᵀ.
            let mut ctx_g = ctx.dev_mut()?.slice_mut(first * ct..(first + g) * ct);
            self.per_head_times(
                (d, t, heads, g),
                (&v, 3 * ct),
                (&probs, true),
                (&mut ctx_g, ct),
            )?;
        }
        Ok(ctx)
    }

    /// qkv (n, 3c, t) = in_w · y + in_b: the q, k, v rows of every image, channel-major.
    pub(super) fn project_in(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(y, "attention")?;
        let t = h * w;
        let mut qkv = self.output(&[n, 3 * c, t])?;
        self.per_image_weight(
            (3 * c, t, c, n),
            (&p.in_w, false),
            y,
            &mut qkv,
            (Some(&p.in_b), None),
        )?;
        Ok(qkv)
    }

    /// One row kernel of attention.cu over `rows` rows of t values (grid = rows, block = 256).
    pub(super) fn attn_rows(&self, l: cudarc::driver::LaunchArgs, rows: usize) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (grid_x(rows, "attention rows")?, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        self.run(l, cfg)
    }

    /// Multi-head self-attention of y, plus `residual` (y's shape) when given: added in the
    /// out-projection's store, the bits of an add_assign after it.
    pub(super) fn attention(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
        residual: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = check_attention("attention", &y.shape, param_shapes(p), heads)?;
        if let Some(r) = residual.filter(|r| r.shape != y.shape) {
            return Err(Error::internal(format!(
                "attention: residual {:?} for tokens {:?}",
                r.shape, y.shape
            )));
        }
        let t = h * w;
        check_attention_sizes(n, c, t, heads)?;
        self.f32_only_kernels_unused()?;
        let qkv = self.project_in(y, p)?;
        let ctx = match attention_core_path(
            self.attention_core,
            (c / heads, t, heads),
            self.sm_count,
            self.precision,
        ) {
            AttentionCore::Fused => self.attention_core_fused(&qkv, n, c, t, heads)?,
            AttentionCore::Gemm => self.attention_core_gemm(&qkv, n, c, t, heads)?,
        };
        // out (n, c, t) = out_w · ctx + out_b (+ residual).
        let mut out = self.output(&y.shape)?;
        self.per_image_weight(
            (c, t, c, n),
            (&p.out_w, false),
            &ctx,
            &mut out,
            (Some(&p.out_b), residual),
        )?;
        Ok(out)
    }

    /// The CPU's attention_vjp (attention.rs) as GEMMs and two row kernels: qkv is recomputed,
    /// dctx = out_wᵀ·dout, then per image, batched over heads (z = head), with
    /// S = qᵀk (t × t per head, row = query):
    ///   P = softmax(scale·S);  dP = dctxᵀ·v;  dS = scale·P ⊙ (dP − rowsum(dP ⊙ P));
    ///   dv = dctx·P;  dq = k·dSᵀ;  dk = q·dS;
    /// and dy = in_wᵀ·dqkv. Images go through in groups (`images_per_group`), each GEMM over
    /// the group's (image, head) pairs; P and dS (group × heads × t² each) are reused from group
    /// to group.
    pub(super) fn attention_vjp(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
        dout: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = check_attention("attention_vjp", &y.shape, param_shapes(p), heads)?;
        let t = h * w;
        if dout.shape != y.shape {
            return Err(Error::internal(format!(
                "attention_vjp: dout {:?} for y {:?}",
                dout.shape, y.shape
            )));
        }
        let d = c / heads;
        check_attention_sizes(n, c, t, heads)?;
        let (ti, scale) = (dim(t, "tokens")?, 1.0 / (d as f32).sqrt());
        let qkv = self.project_in(y, p)?;
        // dctx (n, c, t) = out_wᵀ · dout.
        let mut dctx = self.output(&[n, c, t])?;
        self.per_image_weight(
            (c, t, c, n),
            (&p.out_w, true),
            dout,
            &mut dctx,
            (None, None),
        )?;
        let mut dqkv = self.output(&[n, 3 * c, t])?;
        let group = images_per_group(n, heads, t, self.attention_group);
        let mut probs = self.output(&[group, heads, t, t])?;
        let mut ds = self.output(&[group, heads, t, t])?;
        let ct = c * t;
        for first in (0..n).step_by(group) {
            // Head h of image first + j: q rows at qkv[(first + j)·3ct + h·dt ..], k at + ct, v
            // at + 2ct (d × t each, row stride t), dctx rows at dctx[(first + j)·ct + h·dt ..].
            let g = group.min(n - first);
            let dims = (d, t, heads, g);
            let [q, k, v] = self.attention_probs(&qkv, (first, g), (c, t, heads), &mut probs)?;
            let dctx_g = dctx.dev()?.slice(first * ct..(first + g) * ct);
            // dP (t × t) = dctxᵀ·v, into ds, finished in place.
            self.per_head_gram(dims, (&dctx_g, ct), (&v, 3 * ct), &mut ds)?;
            let mut l = self.stream.launch_builder(self.f("attn_softmax_vjp_rows"));
            l.arg(probs.dev()?).arg(ds.dev_mut()?).arg(&ti).arg(&scale);
            self.attn_rows(l, g * heads * t)?;
            let mut dqkv_g = dqkv
                .dev_mut()?
                .slice_mut(first * 3 * ct..(first + g) * 3 * ct);
            // dv = dctx·P, dq = k·dSᵀ, dk = q·dS (d × t each).
            let row = 3 * ct;
            self.per_head_times(
                dims,
                (&dctx_g, ct),
                (&probs, false),
                (&mut dqkv_g.slice_mut(2 * ct..), row),
            )?;
            self.per_head_times(
                dims,
                (&k, row),
                (&ds, true),
                (&mut dqkv_g.slice_mut(0..), row),
            )?;
            self.per_head_times(
                dims,
                (&q, row),
                (&ds, false),
                (&mut dqkv_g.slice_mut(ct..), row),
            )?;
        }
        // dy (n, c, t) = in_wᵀ · dqkv, over the 3c rows of qkv.
        let mut dy = self.output(&y.shape)?;
        self.per_image_weight(
            (c, t, 3 * c, n),
            (&p.in_w, true),
            &dqkv,
            &mut dy,
            (None, None),
        )?;
        Ok(dy)
    }
}

/// A tensor's device view, if there is a tensor.
fn view_of(t: Option<&CudaTensor>) -> Result<Option<CudaView<'_, f32>>> {
    t.map(|t| t.dev().map(|d| d.as_view())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_go_through_the_core_in_groups_that_fit_the_score_buffer() {
        // The notebook UNet's attention levels, 4 heads: 32×32 (4 Mi scores per image) and
        // 16×16 (256 Ki).
        assert_eq!(images_per_group(64, 4, 1024, None), 4);
        assert_eq!(images_per_group(64, 4, 256, None), 64);
        assert_eq!(images_per_group(3, 4, 256, None), 3);
        assert_eq!(images_per_group(1, 4, 1024, None), 1);
        // One image over the budget still goes alone; sizes that overflow do not panic.
        assert_eq!(images_per_group(8, 16, 4096, None), 1);
        assert_eq!(images_per_group(8, usize::MAX, usize::MAX, None), 1);
        for (n, heads, t) in [(64, 4, 1024), (64, 4, 256), (5, 2, 100)] {
            let g = images_per_group(n, heads, t, None);
            assert!(g * heads * t * t <= GROUP_SCORES && g <= n);
        }
        // Forced: that many, at most the batch.
        assert_eq!(images_per_group(64, 4, 1024, Some(1)), 1);
        assert_eq!(images_per_group(3, 4, 1024, Some(16)), 3);
    }
}
