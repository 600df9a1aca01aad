//! The op set every backend implements, each op with its input-VJP where the UNet needs one.
//! The UNet, its VJP and the samplers are written once over this trait.

pub mod cpu;
pub mod cuda;
pub mod geometry;
pub mod profile;
pub use geometry::CtGeometry;

/// The reference backend, for host work whose result must not depend on the device a run uses:
/// simulated measurements (`operators::simulate`, `Operator::apply`/`adjoint`) and CT's ‖A‖ are
/// the same bits whether the samplers then run on the CPU or a GPU. Every other computation below
/// the engine takes its backend as a `B: Backend` parameter.
pub fn reference() -> cpu::CpuBackend {
    cpu::CpuBackend::default()
}

use crate::error::Result;
use crate::tensor::Tensor;

/// Columns of the statistics buffer `Backend::prox_cg` returns, per slice: iterations taken,
/// final ‖r‖², ‖b‖² (f64 on the device, rounded to f32 in the buffer).
pub const CG_STATS: usize = 3;

/// Attention parameters as backend buffers.
pub struct AttnParams<B> {
    pub in_w: B,
    pub in_b: B,
    pub out_w: B,
    pub out_b: B,
}

/// A GroupNorm (affine, eps 1e-5) and whether SiLU follows it, as `Backend::group_norm` takes
/// them.
pub struct NormArgs<'a, B> {
    pub gamma: &'a B,
    pub beta: &'a B,
    pub groups: usize,
    pub silu: bool,
}

/// What a conv adds to conv(x) + bias as it stores its output: nothing, v[image, channel]
/// ((n, cout): a ResBlock's time-embedding add) or a tensor of the output's shape (its residual).
pub enum ConvAdd<'a, B> {
    Nothing,
    Channel(&'a B),
    Residual(&'a B),
}

/// conv2d(group_norm(x)) + `add`, as two ops: `Backend::norm_conv2d`'s default, and what a
/// backend that can fold the norm into its conv falls back to.
#[allow(clippy::too_many_arguments)]
pub fn norm_then_conv<B: Backend + ?Sized>(
    be: &B,
    x: &B::Buf,
    norm: &NormArgs<'_, B::Buf>,
    w: &B::ConvWeight,
    b: &B::Buf,
    stride: usize,
    pad: usize,
    add: ConvAdd<'_, B::Buf>,
) -> Result<B::Buf> {
    let a = be.group_norm(x, norm.gamma, norm.beta, norm.groups, norm.silu)?;
    match add {
        ConvAdd::Nothing => be.conv2d(&a, w, b, stride, pad),
        ConvAdd::Channel(v) => be.conv2d_add_channel_bias(&a, w, b, stride, pad, v),
        ConvAdd::Residual(r) => be.conv2d_add_residual(&a, w, b, stride, pad, r),
    }
}

/// Tensors are NCHW f32 at the interface. Ops allocate their outputs; shapes are validated by
/// the callers (the UNet and samplers check their inputs once at the top).
/// Device work over buffers, as `Backend::replay` takes it.
pub type DeviceWork<'a, B> = &'a dyn Fn(&[&B]) -> Result<B>;

/// Device work with several outputs, as `Backend::replay_many` takes it.
pub type DeviceWorkMany<'a, B> = &'a dyn Fn(&[&B]) -> Result<Vec<B>>;

/// AᵀA of a forward operator, as device work over backend buffers (the CG's normal operator).
pub type NormalOp<'a, B> = &'a dyn Fn(&B) -> Result<B>;

/// The published DPS step size of one slice from its residual's f64 sum of squares:
/// −ζ/sqrt(sum_sq) rounded to f32, 0 for a zero residual. kernels/elementwise.cu's
/// `residual_norm_coef` computes the same in the same order.
pub fn residual_norm_step(sum_sq: f64, zeta: f64) -> f32 {
    let norm = sum_sq.sqrt();
    if norm > 0.0 {
        (-zeta / norm) as f32
    } else {
        0.0
    }
}

pub trait Backend: Sync {
    type Buf: Clone + Send + Sync;
    /// A convolution's weights (cout, cin, k, k) as this backend's kernels take them: made once
    /// per model by `conv_weight`, so a backend can keep them in its kernels' layout.
    type ConvWeight: Send + Sync;

    fn name(&self) -> String;
    /// Per-kernel GPU time (per-op wall time on the CPU): `true` starts recording, `false`
    /// stops it and returns the report (a markdown table). Backends without either return None.
    fn profile_kernels(&self, _on: bool) -> Result<Option<String>> {
        Ok(None)
    }
    /// Runs `f(inputs)`. `f` must do device work only (no uploads, downloads or host reads of
    /// device data) and ask for outputs of the same shapes whenever the inputs have the same
    /// shapes, so that the CUDA backend can capture it as a CUDA graph (once per `key` and input
    /// shapes) and replay it with new input values. `f` must not call `replay` itself (a replay
    /// inside a capture cannot launch its graph). The default runs `f` directly.
    fn replay(
        &self,
        key: usize,
        inputs: &[&Self::Buf],
        f: DeviceWork<'_, Self::Buf>,
    ) -> Result<Self::Buf> {
        let mut out = self.replay_many(key, inputs, &|inputs| Ok(vec![f(inputs)?]))?;
        match (out.pop(), out.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(crate::error::Error::internal("replay: not one output")),
        }
    }
    /// `replay` for work with several outputs (a published DiffPIR step: the next x and its CG
    /// statistics), returned in `f`'s order. A backend that captures here must also answer
    /// `prox_cg` (the generic CG loop reads scalars on the host). The default runs `f` directly.
    fn replay_many(
        &self,
        _key: usize,
        inputs: &[&Self::Buf],
        f: DeviceWorkMany<'_, Self::Buf>,
    ) -> Result<Vec<Self::Buf>> {
        f(inputs)
    }
    fn upload(&self, t: &Tensor) -> Result<Self::Buf>;
    fn download(&self, b: &Self::Buf) -> Result<Tensor>;
    fn shape<'a>(&self, b: &'a Self::Buf) -> &'a [usize];

    // --- UNet ops -------------------------------------------------------------------------
    /// An uploaded (cout, cin, k, k) weight for `conv2d` and `conv2d_vjp`.
    fn conv_weight(&self, w: Self::Buf) -> Result<Self::ConvWeight>;
    /// conv2d with bias, square kernel (weight (cout, cin, k, k)).
    fn conv2d(
        &self,
        x: &Self::Buf,
        w: &Self::ConvWeight,
        b: &Self::Buf,
        stride: usize,
        pad: usize,
    ) -> Result<Self::Buf>;
    /// dL/dx of conv2d for an input of shape `in_shape`.
    fn conv2d_vjp(
        &self,
        dy: &Self::Buf,
        w: &Self::ConvWeight,
        in_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<Self::Buf>;
    /// GroupNorm (affine, eps 1e-5) with optional fused SiLU.
    fn group_norm(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        groups: usize,
        silu: bool,
    ) -> Result<Self::Buf>;
    fn group_norm_vjp(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        groups: usize,
        silu: bool,
        dy: &Self::Buf,
    ) -> Result<Self::Buf>;
    /// conv2d(group_norm(x)) + `add`: a norm (and SiLU) feeding a conv, as every ResBlock conv
    /// and the output head read their input. The default runs the norm, then the conv; the CUDA
    /// backend can fold the norm into the conv's gather (DIFFRECON_GN_FOLD=1), the same bits
    /// without writing the normalised tensor.
    #[allow(clippy::too_many_arguments)]
    fn norm_conv2d(
        &self,
        x: &Self::Buf,
        norm: &NormArgs<'_, Self::Buf>,
        w: &Self::ConvWeight,
        b: &Self::Buf,
        stride: usize,
        pad: usize,
        add: ConvAdd<'_, Self::Buf>,
    ) -> Result<Self::Buf> {
        norm_then_conv(self, x, norm, w, b, stride, pad, add)
    }
    /// Multi-head self-attention over the h·w tokens (no residual).
    fn attention(
        &self,
        y: &Self::Buf,
        p: &AttnParams<Self::Buf>,
        heads: usize,
    ) -> Result<Self::Buf>;
    /// `attention(y) + residual` (residual shaped as y: the attention block's skip connection).
    /// The default adds with `add_assign`; the CUDA backend adds in the out-projection's store
    /// (the same bits, one launch fewer).
    fn attention_residual(
        &self,
        y: &Self::Buf,
        p: &AttnParams<Self::Buf>,
        heads: usize,
        residual: &Self::Buf,
    ) -> Result<Self::Buf> {
        let mut out = self.attention(y, p, heads)?;
        self.add_assign(&mut out, residual)?;
        Ok(out)
    }
    fn attention_vjp(
        &self,
        y: &Self::Buf,
        p: &AttnParams<Self::Buf>,
        heads: usize,
        dout: &Self::Buf,
    ) -> Result<Self::Buf>;
    /// (n, fin) → (n, fout): x·wᵀ + b, SiLU applied to x first when `silu_input`.
    fn linear(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        silu_input: bool,
    ) -> Result<Self::Buf>;
    /// `linear` on a stacked weight with its fout outputs split by columns into consecutive
    /// (n, width) buffers (`widths` sums to fout): every ResBlock's time projection at once, in
    /// one launch on the GPU. Each value has `linear`'s bits on the stacked weight.
    fn linear_split(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        silu_input: bool,
        widths: &[usize],
    ) -> Result<Vec<Self::Buf>>;
    /// h[n, c] += v[n, c] over all pixels (the time-embedding add; its VJP is the identity).
    fn add_channel_bias(&self, h: &mut Self::Buf, v: &Self::Buf) -> Result<()>;
    fn add_assign(&self, a: &mut Self::Buf, b: &Self::Buf) -> Result<()>;
    fn upsample2x(&self, x: &Self::Buf) -> Result<Self::Buf>;
    fn upsample2x_vjp(&self, dy: &Self::Buf) -> Result<Self::Buf>;
    fn concat_channels(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// Split along channels after the first `ca` channels.
    fn split_channels(&self, x: &Self::Buf, ca: usize) -> Result<(Self::Buf, Self::Buf)>;
    /// conv2d, then h[n, c] += v[n, c] over all pixels (v is (n, cout)): a ResBlock's conv1
    /// with the time-embedding add fused into the conv's epilogue. Its VJP is conv2d_vjp (the
    /// add's VJP is the identity). The default composes `conv2d` and `add_channel_bias`.
    fn conv2d_add_channel_bias(
        &self,
        x: &Self::Buf,
        w: &Self::ConvWeight,
        b: &Self::Buf,
        stride: usize,
        pad: usize,
        v: &Self::Buf,
    ) -> Result<Self::Buf> {
        let mut h = self.conv2d(x, w, b, stride, pad)?;
        self.add_channel_bias(&mut h, v)?;
        Ok(h)
    }
    /// conv2d + residual (of the output's shape): a ResBlock's conv2 with the residual add
    /// fused into the conv's epilogue. The default composes `conv2d` and `add_assign`.
    fn conv2d_add_residual(
        &self,
        x: &Self::Buf,
        w: &Self::ConvWeight,
        b: &Self::Buf,
        stride: usize,
        pad: usize,
        residual: &Self::Buf,
    ) -> Result<Self::Buf> {
        let mut out = self.conv2d(x, w, b, stride, pad)?;
        self.add_assign(&mut out, residual)?;
        Ok(out)
    }

    // --- operator and sampler ops ----------------------------------------------------------
    /// Blur every slice with a k×k kernel (a (k, k) buffer); `adjoint` applies Kᵀ.
    fn blur(&self, x: &Self::Buf, kernel: &Self::Buf, adjoint: bool) -> Result<Self::Buf>;
    /// Parallel-beam projection (Joseph's method, OPERATORS.md) of every (N, 1, H, W) slice to
    /// an (N, 1, V, D) sinogram; `angles` is the (V, 2) buffer of `CtGeometry::angles`.
    fn ct_project(&self, x: &Self::Buf, g: &CtGeometry, angles: &Self::Buf) -> Result<Self::Buf>;
    /// The exact adjoint of `ct_project`: (N, 1, V, D) → (N, 1, H, W).
    fn ct_backproject(
        &self,
        s: &Self::Buf,
        g: &CtGeometry,
        angles: &Self::Buf,
    ) -> Result<Self::Buf>;
    /// Each sinogram row convolved with the Ram-Lak kernel (FBP's filter), same shape.
    fn ct_ramp_filter(&self, s: &Self::Buf) -> Result<Self::Buf>;
    /// The mean of each f × f block of every slice: (N, 1, H, W) → (N, 1, H/f, W/f).
    fn downsample(&self, x: &Self::Buf, f: usize) -> Result<Self::Buf>;
    /// The exact adjoint of `downsample`: each value copied into its block, divided by f².
    fn downsample_adjoint(&self, y: &Self::Buf, f: usize) -> Result<Self::Buf>;
    /// x ⊙ m for every slice, m (H, W) (inpainting's operator; its own adjoint).
    fn inpaint_mask(&self, x: &Self::Buf, m: &Self::Buf) -> Result<Self::Buf>;
    /// TV dual step for every slice: p ← proj_{|p| ≤ λ}(p + step·∇x̄) (cpu/tv.rs).
    fn tv_dual_update(
        &self,
        px: &mut Self::Buf,
        py: &mut Self::Buf,
        xbar: &Self::Buf,
        step: f32,
        lam: f32,
    ) -> Result<()>;
    /// TV primal step for every slice: x_new = clamp(x − step·(atq + ∇ᵀp)), x̄ = 2x_new − x.
    fn tv_primal_update(
        &self,
        x: &mut Self::Buf,
        xbar: &mut Self::Buf,
        atq: &Self::Buf,
        px: &Self::Buf,
        py: &Self::Buf,
        step: f32,
    ) -> Result<()>;
    /// ca·a + cb·b.
    fn lincomb(&self, a: &Self::Buf, ca: f32, b: &Self::Buf, cb: f32) -> Result<Self::Buf>;
    /// (x − s1m·eps) / sab, unclamped.
    fn predict_x0(&self, x: &Self::Buf, eps: &Self::Buf, sab: f32, s1m: f32) -> Result<Self::Buf>;
    fn clamp(&self, x: &mut Self::Buf, lo: f32, hi: f32) -> Result<()>;
    /// Zero `d` where `reference` lies outside [lo, hi] (the clamp's VJP).
    fn clamp_vjp(&self, reference: &Self::Buf, lo: f32, hi: f32, d: &mut Self::Buf) -> Result<()>;
    /// Σ x² over each batch item.
    fn sum_sq_per_item(&self, x: &Self::Buf) -> Result<Vec<f64>>;

    // --- per-slice arithmetic (CG and the published samplers keep one scalar per slice) -----
    /// Σ a·b over each batch item (f64 accumulation). The default goes through the host; the CPU
    /// and CUDA backends override it.
    fn dot_per_item(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Vec<f64>> {
        let (a, b) = (self.download(a)?, self.download(b)?);
        let per = a.len() / a.shape()[0].max(1);
        Ok(a.data()
            .chunks(per.max(1))
            .zip(b.data().chunks(per.max(1)))
            .map(|(p, q)| p.iter().zip(q).map(|(u, v)| *u as f64 * *v as f64).sum())
            .collect())
    }

    /// The proximal CG solve of published DiffPIR (`samplers::cg`): (AᵀA + μ_i I) x = Aᵀy + μ_i x0
    /// per slice, μ an [N] buffer, given `ata` (device work only) and Aᵀy, run by the backend
    /// itself with every scalar kept where the vectors live, so the solve can run under
    /// `replay_many`: `None` (the default) means "use the generic loop". A backend that answers
    /// must produce the generic loop's iterates (running all `max_iters` with converged slices
    /// frozen is the same) and an [N, CG_STATS] statistics buffer.
    #[allow(clippy::too_many_arguments)]
    fn prox_cg(
        &self,
        _ata: NormalOp<'_, Self::Buf>,
        _aty: &Self::Buf,
        _x0: &Self::Buf,
        _mu: &Self::Buf,
        _max_iters: usize,
        _tol: f64,
    ) -> Result<Option<(Self::Buf, Self::Buf)>> {
        Ok(None)
    }

    /// The published DPS update, per batch item i: a + c_i·b with c_i = −ζ/‖r_i‖ rounded to f32
    /// (0 where ‖r_i‖ = 0), ‖r_i‖ = sqrt of the item's f64 sum of squares (`sum_sq_per_item`).
    /// The default composes `sum_sq_per_item` and `lincomb_per_item` through the host; the CUDA
    /// backend computes the c_i on the device (the same bits), so a step can run under `replay`.
    fn step_by_residual_norm(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        r: &Self::Buf,
        zeta: f64,
    ) -> Result<Self::Buf> {
        let steps: Vec<f32> = self
            .sum_sq_per_item(r)?
            .iter()
            .map(|s| residual_norm_step(*s, zeta))
            .collect();
        self.lincomb_per_item(a, &vec![1.0; steps.len()], b, &steps)
    }

    /// ca[i]·a + cb[i]·b for each batch item i. The default goes through the host; the CPU and
    /// CUDA backends override it.
    fn lincomb_per_item(
        &self,
        a: &Self::Buf,
        ca: &[f32],
        b: &Self::Buf,
        cb: &[f32],
    ) -> Result<Self::Buf> {
        let (a, b) = (self.download(a)?, self.download(b)?);
        let per = a.len() / a.shape()[0].max(1);
        let out: Vec<f32> = a
            .data()
            .chunks(per.max(1))
            .zip(b.data().chunks(per.max(1)))
            .enumerate()
            .flat_map(|(i, (p, q))| p.iter().zip(q).map(move |(u, v)| ca[i] * u + cb[i] * v))
            .collect();
        self.upload(&Tensor::new(a.shape().to_vec(), out)?)
    }

    // --- fused sampler steps (a backend may override with one kernel) ----------------------
    /// DiffPIR-style prior step: xp = sab'·clamp(x0_hat) + s1m'·eps, with `cur` = (sab, s1m)
    /// at t and `next` at t_next.
    fn diffpir_prior(
        &self,
        x: &Self::Buf,
        eps: &Self::Buf,
        cur: (f32, f32),
        next: (f32, f32),
    ) -> Result<Self::Buf> {
        let mut x0 = self.predict_x0(x, eps, cur.0, cur.1)?;
        self.clamp(&mut x0, -1.0, 1.0)?;
        self.lincomb(&x0, next.0, eps, next.1)
    }

    /// One gradient step on ½‖Kx − y‖²: clamp(xp − tau·Kᵀ(K xp − y), −1, 1).
    fn data_step(
        &self,
        xp: &Self::Buf,
        y: &Self::Buf,
        kernel: &Self::Buf,
        tau: f32,
    ) -> Result<Self::Buf> {
        let kx = self.blur(xp, kernel, false)?;
        let residual = self.lincomb(&kx, 1.0, y, -1.0)?;
        let correction = self.blur(&residual, kernel, true)?;
        let mut x = self.lincomb(xp, 1.0, &correction, -tau)?;
        self.clamp(&mut x, -1.0, 1.0)?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn the_residual_norm_step_is_minus_zeta_over_the_norm_and_zero_without_a_residual() {
        assert_eq!(residual_norm_step(4.0, 3.0), -1.5);
        assert_eq!(residual_norm_step(0.0, 3.0), 0.0);
        assert_eq!(residual_norm_step(f64::NAN, 3.0), 0.0);
        // Rounded to f32 once, from the f64 quotient.
        assert_eq!(residual_norm_step(3.0, 1.0), (-1.0 / 3f64.sqrt()) as f32);
    }

    #[test]
    fn step_by_residual_norm_scales_each_slice_by_its_own_norm() {
        let be = CpuBackend::default();
        let a = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::new(vec![2, 2], vec![1.0, 1.0, 1.0, 1.0]).unwrap();
        // Slice 0: ‖(3, 4)‖ = 5; slice 1: no residual.
        let r = Tensor::new(vec![2, 2], vec![3.0, 4.0, 0.0, 0.0]).unwrap();
        let x = be.step_by_residual_norm(&a, &b, &r, 2.0).unwrap();
        assert_eq!(x.data(), &[1.0 - 0.4, 2.0 - 0.4, 3.0, 4.0]);
    }
}
