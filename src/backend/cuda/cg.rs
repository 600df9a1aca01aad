//! The proximal CG solve of published DiffPIR with every per-slice scalar on the device
//! (kernels/cg.cu): the loop queues kernels only and reads the host once, at the end, for the
//! statistics. It runs all `max_iters` iterations with converged slices frozen, which gives the
//! generic loop's iterates (src/samplers/cg.rs) without a host check per iteration.

use super::launch::{dim, grid1d, per_item_cfg};
use super::{cuda_err, CudaBackend, CudaTensor};
use crate::backend::{Backend, CgSlice, NormalOp};
use crate::error::Result;
use crate::tensor::Tensor;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The kernels of kernels/cg.cu (the vector work reuses blur.rs and elementwise.rs).
pub(super) const KERNELS: &[&str] = &["cg_init", "cg_alpha", "cg_beta"];

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
    /// A coefficient array [1 … 1 | c] for `lincomb_per_item_dev`, c uploaded once.
    fn ones_then(&self, c: &[f32]) -> Result<CudaTensor> {
        let n = c.len();
        let v: Vec<f32> = std::iter::repeat_n(1.0, n)
            .chain(c.iter().copied())
            .collect();
        self.upload(&Tensor::new(vec![2 * n], v)?)
    }

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
        mu: &[f32],
        max_iters: usize,
        tol: f64,
    ) -> Result<(CudaTensor, Vec<CgSlice>)> {
        let (n, _) = self.items(x0)?;
        Self::same_len(x0, aty, "prox_cg")?;
        if mu.len() != n {
            return Err(crate::error::Error::internal(format!(
                "prox_cg: {} μ values for {n} slices",
                mu.len()
            )));
        }
        let ni = dim(n, "slices")?;
        let tol2 = tol * tol;
        let scalars = grid1d(n)?;
        let coef_mu = self.ones_then(mu)?;
        let zeros = vec![0.0f32; n];
        let (mut coef_x, mut coef_r, mut coef_dir) = (
            self.ones_then(&zeros)?,
            self.ones_then(&zeros)?,
            self.ones_then(&zeros)?,
        );
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
        let read = |v: &CudaSlice<f64>| self.stream.clone_dtoh(v).map_err(cuda_err);
        let (rr, bb, iters) = (read(&st.rr)?, read(&st.bb)?, read(&st.iters)?);
        for v in [st.rr, st.bb, st.curv, st.rr_new, st.done, st.iters] {
            self.active_pool().give_f64(v);
        }
        let slices = (0..n)
            .map(|i| CgSlice {
                iters: iters[i] as usize,
                rr: rr[i],
                bb: bb[i],
            })
            .collect();
        Ok((x, slices))
    }
}
