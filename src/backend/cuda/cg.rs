//! The proximal CG solve of published DiffPIR with every per-slice scalar on the device
//! (kernels/cg.cu): the loop queues kernels only, μ comes in as a buffer and the statistics go
//! out as one, so the solve is device work a published DiffPIR step can capture as a graph. It
//! runs all `max_iters` iterations with converged slices frozen, which gives the generic loop's
//! iterates (src/samplers/cg.rs) without a host check per iteration.

use super::launch::{dim, grid1d, per_item_cfg};
use super::{CudaBackend, CudaTensor};
use crate::backend::{NormalOp, CG_STATS};
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The kernels of kernels/cg.cu (the vector work reuses blur.rs and elementwise.rs).
pub(super) const KERNELS: &[&str] = &["cg_coefs", "cg_init", "cg_alpha", "cg_beta", "cg_stats"];

/// Per-slice f64 state of the loop.
struct State {
    rr: CudaSlice<f64>,
    bb: CudaSlice<f64>,
    curv: CudaSlice<f64>,
    rr_new: CudaSlice<f64>,
    done: CudaSlice<f64>,
    iters: CudaSlice<f64>,
}

impl CudaBackend {
    /// Σ over each item of a·b (or a² when `b` is None) into `out` on the device.
    fn reduce_into(
        &self,
        a: &CudaTensor,
        b: Option<&CudaTensor>,
        out: &mut CudaSlice<f64>,
    ) -> Result<()> {
        let (n, per) = self.items(a)?;
        let cfg = per_item_cfg(n)?;
        match b {
            Some(b) => {
                Self::same_len(a, b, "dot_per_item")?;
                let mut l = self.stream.launch_builder(self.f("dot_per_item"));
                l.arg(a.dev()?).arg(b.dev()?).arg(out).arg(&per);
                self.run(l, cfg)
            }
            None => {
                let mut l = self.stream.launch_builder(self.f("sum_sq_per_item"));
                l.arg(a.dev()?).arg(out).arg(&per);
                self.run(l, cfg)
            }
        }
    }

    /// (AᵀA + μ_i I) v per slice, μ in `coef_mu` = [1 | μ].
    fn normal_op(
        &self,
        v: &CudaTensor,
        ata: NormalOp<'_, CudaTensor>,
        coef_mu: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.lincomb_per_item_dev(&ata(v)?, v, coef_mu)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn prox_cg_on_device(
        &self,
        ata: NormalOp<'_, CudaTensor>,
        aty: &CudaTensor,
        x0: &CudaTensor,
        mu: &CudaTensor,
        max_iters: usize,
        tol: f64,
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (n, _) = self.items(x0)?;
        Self::same_len(x0, aty, "prox_cg")?;
        if mu.shape != [n] {
            return Err(Error::internal(format!(
                "prox_cg: μ of shape {:?} for {n} slices",
                mu.shape
            )));
        }
        let ni = dim(n, "slices")?;
        let tol2 = tol * tol;
        let scalars = grid1d(n)?;
        // The lincomb_per_item coefficient arrays [1 … 1 | c], filled on the device: [1 | μ]
        // and [1 | 0] for x, r and the direction (cg_alpha and cg_beta write their c's).
        let coefs = || self.output(&[2 * n]);
        let (mut coef_mu, mut coef_x, mut coef_r, mut coef_dir) =
            (coefs()?, coefs()?, coefs()?, coefs()?);
        let mut l = self.stream.launch_builder(self.f("cg_coefs"));
        l.arg(mu.dev()?)
            .arg(coef_mu.dev_mut()?)
            .arg(coef_x.dev_mut()?)
            .arg(coef_r.dev_mut()?)
            .arg(coef_dir.dev_mut()?)
            .arg(&ni);
        self.run(l, scalars)?;
        let mut st = State {
            rr: self.scratch_f64(n)?,
            bb: self.scratch_f64(n)?,
            curv: self.scratch_f64(n)?,
            rr_new: self.scratch_f64(n)?,
            done: self.scratch_f64(n)?,
            iters: self.scratch_f64(n)?,
        };
        // b = Aᵀy + μ·x0; x = x0; r = b − (AᵀA + μ) x; d = r.
        let b = self.lincomb_per_item_dev(aty, x0, &coef_mu)?;
        self.reduce_into(&b, None, &mut st.bb)?;
        let mut x = x0.try_clone()?;
        let mut r = self.lincomb(&b, 1.0, &self.normal_op(&x, ata, &coef_mu)?, -1.0)?;
        self.reduce_into(&r, None, &mut st.rr)?;
        let mut dir = r.try_clone()?;
        let mut l = self.stream.launch_builder(self.f("cg_init"));
        l.arg(&st.rr)
            .arg(&st.bb)
            .arg(&mut st.done)
            .arg(&mut st.iters)
            .arg(&tol2)
            .arg(&ni);
        self.run(l, scalars)?;
        for _ in 0..max_iters {
            let a_dir = self.normal_op(&dir, ata, &coef_mu)?;
            self.reduce_into(&dir, Some(&a_dir), &mut st.curv)?;
            let mut l = self.stream.launch_builder(self.f("cg_alpha"));
            l.arg(&st.rr)
                .arg(&st.curv)
                .arg(&st.done)
                .arg(coef_x.dev_mut()?)
                .arg(coef_r.dev_mut()?)
                .arg(&ni);
            self.run(l, scalars)?;
            x = self.lincomb_per_item_dev(&x, &dir, &coef_x)?;
            r = self.lincomb_per_item_dev(&r, &a_dir, &coef_r)?;
            self.reduce_into(&r, None, &mut st.rr_new)?;
            let mut l = self.stream.launch_builder(self.f("cg_beta"));
            l.arg(&mut st.rr)
                .arg(&st.rr_new)
                .arg(&st.bb)
                .arg(&st.curv)
                .arg(&mut st.done)
                .arg(&mut st.iters)
                .arg(coef_dir.dev_mut()?)
                .arg(&tol2)
                .arg(&ni);
            self.run(l, scalars)?;
            dir = self.lincomb_per_item_dev(&r, &dir, &coef_dir)?;
        }
        let mut stats = self.output(&[n, CG_STATS])?;
        let mut l = self.stream.launch_builder(self.f("cg_stats"));
        l.arg(&st.iters)
            .arg(&st.rr)
            .arg(&st.bb)
            .arg(stats.dev_mut()?)
            .arg(&ni);
        self.run(l, scalars)?;
        for v in [st.rr, st.bb, st.curv, st.rr_new, st.done, st.iters] {
            self.active_pool().give_f64(v);
        }
        Ok((x, stats))
    }
}
