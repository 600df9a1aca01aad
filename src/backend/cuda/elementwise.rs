//! The small memory-bound ops (kernels/elementwise.cu; CPU twin: src/backend/cpu/elementwise.rs):
//! channel bias, residual add, nearest upsampling, channel concat/split, the time path's linear
//! layers, the sampler arithmetic and the per-item reductions.

use super::checks::{check_len, check_split, concat_dims, linear_dims, upsample_vjp_dims};
use super::launch::{dim, dims4, grid1d, per_item_cfg};
use super::{cuda_err, CudaBackend, CudaTensor};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use cudarc::driver::{CudaSlice, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg};

/// Splits one `linear_split` launch writes at most (kernels/elementwise.cu's kMaxSplits).
const MAX_SPLITS: usize = 32;

/// kernels/elementwise.cu's SplitOutputs, passed by value: the output buffers' device pointers
/// and the first column of each (start[count] ends the last).
#[repr(C)]
#[derive(Clone, Copy)]
struct SplitOutputs {
    out: [u64; MAX_SPLITS],
    start: [i32; MAX_SPLITS + 1],
    count: i32,
}

// SAFETY: plain integers in the kernel's own layout (#[repr(C)], pointers as 64-bit words).
unsafe impl DeviceRepr for SplitOutputs {}

/// The kernels of kernels/elementwise.cu.
pub(super) const KERNELS: &[&str] = &[
    "add_channel_bias",
    "add_assign",
    "lincomb",
    "predict_x0",
    "clamp_inplace",
    "clamp_vjp",
    "upsample2x",
    "upsample2x_vjp",
    "concat_channels",
    "split_channels",
    "linear",
    "linear_split",
    "sum_sq_per_item",
    "residual_norm_coef",
    "dot_per_item",
    "lincomb_per_item",
];

impl CudaBackend {
    /// Run a per-item reduction kernel (grid = n, block = 256) that writes `out[item]` and
    /// download the n values; the scratch goes back to the pool.
    pub(super) fn per_item_reduce(
        &self,
        n: usize,
        launch: impl FnOnce(&mut CudaSlice<f64>, LaunchConfig) -> Result<()>,
    ) -> Result<Vec<f64>> {
        let mut out = self.scratch_f64(n)?;
        let cfg = per_item_cfg(n)?;
        let result =
            launch(&mut out, cfg).and_then(|()| self.stream.clone_dtoh(&out).map_err(cuda_err));
        self.active_pool().give_f64(out);
        result
    }

    /// ca[i]·a + cb[i]·b with the coefficients already on the device: `coef` = [ca | cb], 2n
    /// values (the CG loop writes them there without the host).
    pub(super) fn lincomb_per_item_dev(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        coef: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, per) = self.items(a)?;
        Self::same_len(a, b, "lincomb_per_item")?;
        if coef.len() != 2 * n {
            return Err(Error::internal(format!(
                "lincomb_per_item: {} coefficients for {n} items",
                coef.len()
            )));
        }
        // Fits an int: checked by items().
        let len = a.len();
        let ni = dim(n, "batch")?;
        let mut out = self.output(&a.shape)?;
        let mut l = self.stream.launch_builder(self.f("lincomb_per_item"));
        l.arg(a.dev()?)
            .arg(b.dev()?)
            .arg(coef.dev()?)
            .arg(out.dev_mut()?)
            .arg(&ni)
            .arg(&per);
        self.run(l, grid1d(len)?)?;
        debug_assert_eq!(len, n * per as usize);
        Ok(out)
    }

    /// `linear` on a stacked weight, its outputs split by columns into (n, width) buffers, in
    /// one launch per MAX_SPLITS widths: `linear`'s bits (tests/emu/linear.cpp).
    pub(super) fn linear_split(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        silu_input: bool,
        widths: &[usize],
    ) -> Result<Vec<CudaTensor>> {
        let (n, fin, fout) = linear_dims(&x.shape, &w.shape, &b.shape)?;
        dim(fin * fout, "linear weight size")?;
        let total = widths.iter().try_fold(0usize, |a, &c| a.checked_add(c));
        if widths.contains(&0) || total != Some(fout) {
            return Err(Error::internal(format!(
                "linear_split: widths {widths:?} for {fout} outputs"
            )));
        }
        dim(
            n.checked_mul(fout)
                .and_then(|v| v.checked_mul(32))
                .unwrap_or(usize::MAX),
            "linear_split threads",
        )?;
        let mut outs = widths
            .iter()
            .map(|&c| self.output(&[n, c]))
            .collect::<Result<Vec<_>>>()?;
        let (ni, fi, s) = (
            dim(n, "batch")?,
            dim(fin, "input features")?,
            silu_input as i32,
        );
        let mut first = 0usize;
        for (group, chunk) in outs.chunks_mut(MAX_SPLITS).zip(widths.chunks(MAX_SPLITS)) {
            let mut table = SplitOutputs {
                out: [0; MAX_SPLITS],
                start: [0; MAX_SPLITS + 1],
                count: chunk.len() as i32,
            };
            table.start[0] = first as i32;
            for (j, (out, &c)) in group.iter_mut().zip(chunk).enumerate() {
                table.out[j] = out.dev_mut()?.device_ptr_mut(&self.stream).0;
                first += c;
                table.start[j + 1] = first as i32;
            }
            let cols = (table.start[chunk.len()] - table.start[0]) as usize;
            let mut l = self.stream.launch_builder(self.f("linear_split"));
            l.arg(x.dev()?)
                .arg(w.dev()?)
                .arg(b.dev()?)
                .arg(&table)
                .arg(&ni)
                .arg(&fi)
                .arg(&s);
            // One warp per output.
            self.run(l, grid1d(n * cols * 32)?)?;
        }
        Ok(outs)
    }

    pub(super) fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        silu_input: bool,
    ) -> Result<CudaTensor> {
        let (n, fin, fout) = linear_dims(&x.shape, &w.shape, &b.shape)?;
        dim(fin * fout, "linear weight size")?;
        let threads = n.checked_mul(fout).and_then(|v| v.checked_mul(32));
        let threads = threads.ok_or_else(|| Error::input("linear: too many outputs"))?;
        let mut out = self.output(&[n, fout])?;
        let (ni, fi, fo, s) = (
            dim(n, "batch")?,
            dim(fin, "input features")?,
            dim(fout, "output features")?,
            silu_input as i32,
        );
        let mut l = self.stream.launch_builder(self.f("linear"));
        l.arg(x.dev()?)
            .arg(w.dev()?)
            .arg(b.dev()?)
            .arg(out.dev_mut()?)
            .arg(&ni)
            .arg(&fi)
            .arg(&fo)
            .arg(&s);
        // One warp per output.
        self.run(l, grid1d(threads)?)?;
        Ok(out)
    }

    pub(super) fn add_channel_bias(&self, h: &mut CudaTensor, v: &CudaTensor) -> Result<()> {
        let (n, c, hh, ww) = dims4(h, "add_channel_bias")?;
        check_len("add_channel_bias", "v", &v.shape, n * c)?;
        let len = h.len();
        let (nc, hw) = (dim(n * c, "planes")?, dim(hh * ww, "plane size")?);
        let cfg = grid1d(len)?;
        let mut l = self.stream.launch_builder(self.f("add_channel_bias"));
        l.arg(h.dev_mut()?).arg(v.dev()?).arg(&nc).arg(&hw);
        self.run(l, cfg)
    }

    pub(super) fn add_assign(&self, a: &mut CudaTensor, b: &CudaTensor) -> Result<()> {
        let len = Self::same_len(a, b, "add_assign")?;
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut l = self.stream.launch_builder(self.f("add_assign"));
        l.arg(a.dev_mut()?).arg(b.dev()?).arg(&li);
        self.run(l, cfg)
    }

    pub(super) fn upsample2x(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x, "upsample2x")?;
        let len = x.len().saturating_mul(4);
        let cfg = grid1d(len)?;
        let mut y = self.output(&[n, c, 2 * h, 2 * w])?;
        let (p, hi, wi) = (dim(n * c, "planes")?, dim(h, "h")?, dim(w, "w")?);
        let mut l = self.stream.launch_builder(self.f("upsample2x"));
        l.arg(x.dev()?).arg(y.dev_mut()?).arg(&p).arg(&hi).arg(&wi);
        self.run(l, cfg)?;
        Ok(y)
    }

    pub(super) fn upsample2x_vjp(&self, dy: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, h, w) = upsample_vjp_dims(&dy.shape)?;
        // The kernel indexes dy up to planes·4hw: dy's size, which must fit an int.
        dim(dy.len(), "tensor size")?;
        let cfg = grid1d(n * c * h * w)?;
        let mut dx = self.output(&[n, c, h, w])?;
        let (p, hi, wi) = (dim(n * c, "planes")?, dim(h, "h")?, dim(w, "w")?);
        let mut l = self.stream.launch_builder(self.f("upsample2x_vjp"));
        l.arg(dy.dev()?)
            .arg(dx.dev_mut()?)
            .arg(&p)
            .arg(&hi)
            .arg(&wi);
        self.run(l, cfg)?;
        Ok(dx)
    }

    pub(super) fn concat_channels(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        let (n, ca, cb, h, w) = concat_dims(&a.shape, &b.shape)?;
        let len = a.len().saturating_add(b.len());
        let cfg = grid1d(len)?;
        let mut out = self.output(&[n, ca + cb, h, w])?;
        let (ni, la, lb) = (
            dim(n, "batch")?,
            dim(ca * h * w, "image size")?,
            dim(cb * h * w, "image size")?,
        );
        let mut l = self.stream.launch_builder(self.f("concat_channels"));
        l.arg(a.dev()?)
            .arg(b.dev()?)
            .arg(out.dev_mut()?)
            .arg(&ni)
            .arg(&la)
            .arg(&lb);
        self.run(l, cfg)?;
        Ok(out)
    }

    pub(super) fn split_channels(
        &self,
        x: &CudaTensor,
        ca: usize,
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (n, c, h, w) = check_split(&x.shape, ca)?;
        let cfg = grid1d(x.len())?;
        let mut a = self.output(&[n, ca, h, w])?;
        let mut b = self.output(&[n, c - ca, h, w])?;
        let (ni, la, lb) = (
            dim(n, "batch")?,
            dim(ca * h * w, "image size")?,
            dim((c - ca) * h * w, "image size")?,
        );
        let mut l = self.stream.launch_builder(self.f("split_channels"));
        l.arg(x.dev()?)
            .arg(a.dev_mut()?)
            .arg(b.dev_mut()?)
            .arg(&ni)
            .arg(&la)
            .arg(&lb);
        self.run(l, cfg)?;
        Ok((a, b))
    }

    pub(super) fn lincomb(
        &self,
        a: &CudaTensor,
        ca: f32,
        b: &CudaTensor,
        cb: f32,
    ) -> Result<CudaTensor> {
        let len = Self::same_len(a, b, "lincomb")?;
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut out = self.output(&a.shape)?;
        let mut l = self.stream.launch_builder(self.f("lincomb"));
        l.arg(a.dev()?)
            .arg(&ca)
            .arg(b.dev()?)
            .arg(&cb)
            .arg(out.dev_mut()?)
            .arg(&li);
        self.run(l, cfg)?;
        Ok(out)
    }

    pub(super) fn predict_x0(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        sab: f32,
        s1m: f32,
    ) -> Result<CudaTensor> {
        let len = Self::same_len(x, eps, "predict_x0")?;
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut out = self.output(&x.shape)?;
        let mut l = self.stream.launch_builder(self.f("predict_x0"));
        l.arg(x.dev()?)
            .arg(eps.dev()?)
            .arg(&sab)
            .arg(&s1m)
            .arg(out.dev_mut()?)
            .arg(&li);
        self.run(l, cfg)?;
        Ok(out)
    }

    pub(super) fn clamp(&self, x: &mut CudaTensor, lo: f32, hi: f32) -> Result<()> {
        let len = x.len();
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut l = self.stream.launch_builder(self.f("clamp_inplace"));
        l.arg(x.dev_mut()?).arg(&lo).arg(&hi).arg(&li);
        self.run(l, cfg)
    }

    pub(super) fn clamp_vjp(
        &self,
        reference: &CudaTensor,
        lo: f32,
        hi: f32,
        d: &mut CudaTensor,
    ) -> Result<()> {
        let len = Self::same_len(reference, d, "clamp_vjp")?;
        let (li, cfg) = (dim(len, "tensor size")?, grid1d(len)?);
        let mut l = self.stream.launch_builder(self.f("clamp_vjp"));
        l.arg(reference.dev()?)
            .arg(&lo)
            .arg(&hi)
            .arg(d.dev_mut()?)
            .arg(&li);
        self.run(l, cfg)
    }

    pub(super) fn sum_sq_per_item(&self, x: &CudaTensor) -> Result<Vec<f64>> {
        let (n, per) = self.items(x)?;
        self.per_item_reduce(n, |out, cfg| {
            let mut l = self.stream.launch_builder(self.f("sum_sq_per_item"));
            l.arg(x.dev()?).arg(out).arg(&per);
            self.run(l, cfg)
        })
    }

    /// Backend::step_by_residual_norm without the host: the coefficients [1 | −ζ/‖r_i‖] by
    /// residual_norm_coef into a pooled buffer, then lincomb_per_item.
    pub(super) fn step_by_residual_norm(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        r: &CudaTensor,
        zeta: f64,
    ) -> Result<CudaTensor> {
        let (n, per) = self.items(r)?;
        if self.items(a)?.0 != n {
            return Err(Error::internal(format!(
                "step_by_residual_norm: residual {:?} for a batch {:?}",
                r.shape, a.shape
            )));
        }
        let mut coef = self.output(&[2 * n])?;
        let mut l = self.stream.launch_builder(self.f("residual_norm_coef"));
        l.arg(r.dev()?).arg(coef.dev_mut()?).arg(&per).arg(&zeta);
        self.run(l, per_item_cfg(n)?)?;
        self.lincomb_per_item_dev(a, b, &coef)
    }

    pub(super) fn dot_per_item(&self, a: &CudaTensor, b: &CudaTensor) -> Result<Vec<f64>> {
        let (n, per) = self.items(a)?;
        Self::same_len(a, b, "dot_per_item")?;
        self.per_item_reduce(n, |out, cfg| {
            let mut l = self.stream.launch_builder(self.f("dot_per_item"));
            l.arg(a.dev()?).arg(b.dev()?).arg(out).arg(&per);
            self.run(l, cfg)
        })
    }

    pub(super) fn lincomb_per_item(
        &self,
        a: &CudaTensor,
        ca: &[f32],
        b: &CudaTensor,
        cb: &[f32],
    ) -> Result<CudaTensor> {
        let (n, _) = self.items(a)?;
        Self::same_len(a, b, "lincomb_per_item")?;
        if ca.len() < n || cb.len() < n {
            return Err(Error::internal(format!(
                "lincomb_per_item: {} and {} coefficients for {n} items",
                ca.len(),
                cb.len()
            )));
        }
        // The coefficients as one small device array: ca[0..n] then cb[0..n].
        let coef: Vec<f32> = ca[..n].iter().chain(&cb[..n]).copied().collect();
        let coef = self.upload(&Tensor::new(vec![2 * n], coef)?)?;
        self.lincomb_per_item_dev(a, b, &coef)
    }
}
