//! DiffPIR as published (Zhu et al., CVPR-W 2023), beside the notebook's simplified version:
//! each step denoises with the prior, solves the data subproblem exactly
//! `x̂0 = argmin ‖Ax − y‖²/(2σ_n²) + (ρ_t/2)‖x − x0‖²` with ρ_t = λ/σ̄_t², σ̄_t² = (1 − ᾱ_t)/ᾱ_t
//! (by conjugate gradients, see `cg`), then steps to t_next re-injecting a fraction ζ of fresh
//! noise. It starts from y (or the operator's image-shaped estimate from y) with the noise level
//! of the first timestep.

use super::cg::{self, CgReport, CgSettings};
use super::{check_param, check_range, Problem, Progress, MAX_NOISE_LEVEL};
use crate::backend::Backend;
use crate::bail;
use crate::error::{Error, Result};
use crate::operators::LinOp;
use crate::rng::slice_noise;
use crate::schedule::Skip;
use crate::tensor::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffPirPnpParams {
    pub steps: usize,
    /// λ: weight of the prior against the data (larger trusts the prior more).
    pub lambda: f64,
    /// ζ in [0, 1]: fraction of fresh noise in each step (0 = deterministic DDIM-like).
    pub zeta: f64,
    /// Relative measurement noise ‖e‖/‖Kx‖; σ_n of each slice is estimated as
    /// noise_level·‖y‖/√n.
    pub noise_level: f64,
    /// First timestep; the start is sqrt(ᾱ)·y + sqrt(1 − ᾱ)·z there.
    pub t_start: usize,
    pub skip: Skip,
    pub cg: CgSettings,
}

impl Default for DiffPirPnpParams {
    /// Chosen by `evaluate --sweep` on phantoms outside the evaluation set (README).
    fn default() -> Self {
        DiffPirPnpParams {
            steps: 40,
            lambda: 1.0,
            zeta: 1.0,
            noise_level: 0.01,
            t_start: 399,
            skip: Skip::Quad,
            cg: CgSettings {
                max_iters: 20,
                tol: 1e-4,
            },
        }
    }
}

impl DiffPirPnpParams {
    pub fn check(&self) -> Result<()> {
        check_param("--lambda", self.lambda, true)?;
        check_param("--zeta", self.zeta, false)?;
        if self.zeta > 1.0 {
            bail!("--zeta must lie in [0, 1], got {}", self.zeta);
        }
        check_range("--noise-level", self.noise_level, 0.0, MAX_NOISE_LEVEL)?;
        check_range("--cg-tol", self.cg.tol, f64::MIN_POSITIVE, 1.0)?;
        if self.cg.max_iters == 0 {
            bail!("--cg-iters must be at least 1");
        }
        Ok(())
    }
}

/// Run from y; `seeds` gives each slice its own noise streams (start and re-injection).
pub fn run<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirPnpParams,
    seeds: &[u64],
    progress: Progress,
) -> Result<(B::Buf, CgReport)> {
    p.check()?;
    params.check()?;
    let be = p.be;
    let shape = p.image_shape()?;
    if seeds.len() != shape[0] {
        bail!("{} noise seeds for {} slices", seeds.len(), shape[0]);
    }
    let ts = p
        .schedule
        .spaced_timesteps(params.t_start, params.steps, params.skip)?;
    let values: usize = be.shape(p.y)[1..].iter().product();
    let sigma_n2: Vec<f64> = be
        .sum_sq_per_item(p.y)?
        .iter()
        .map(|yy| params.noise_level.powi(2) * yy / values as f64)
        .collect();
    let noise = |stream: u64| be.upload(&slice_noise(&shape, seeds, stream));
    let (sab0, s1m0) = p.schedule.coeffs(ts[0]);
    let start = p.op.initial_estimate(be, p.y)?;
    let mut x = be.lincomb(&start, sab0, &noise(0)?, s1m0)?;
    // Aᵀy, the right-hand side's data term of every step's proximal solve.
    let aty = p.op.adjoint(be, p.y)?;
    let mut stats = Vec::with_capacity(ts.len());
    for (i, &t) in ts.iter().enumerate() {
        // μ = ρ_t·σ_n² = λ·σ_n²/σ̄_t² multiplies ‖x − x0‖² once ‖Ax − y‖² is unscaled.
        let ab = p.schedule.alpha_bars[t] as f64;
        let sigma_bar2 = (1.0 - ab) / ab;
        let mu: Vec<f32> = sigma_n2
            .iter()
            .map(|s2| (params.lambda * s2 / sigma_bar2) as f32)
            .collect();
        let mu = be.upload(&Tensor::new(vec![mu.len()], mu)?)?;
        let t_next = ts.get(i + 1).copied();
        let z = t_next.map(|_| noise(i as u64 + 1)).transpose()?;
        let (next, step_stats) =
            replayed_step(p, params, &x, (t, t_next), (&aty, &mu), z.as_ref())?;
        stats.push(step_stats);
        x = next;
        progress(i + 1, ts.len());
    }
    // The statistics are read once, after the last step (no host wait between steps).
    let mut report = CgReport::default();
    for s in &stats {
        report.merge(&CgReport::from_stats(&be.download(s)?)?);
    }
    Ok((x, report))
}

/// `step` after the embedding's upload, as device work handed to `Backend::replay_many` with
/// x, the embedding, Aᵀy, μ, the noise and the operator's buffer as inputs: a CUDA backend
/// replays one graph per step from a run's second pass with the same schedule on.
fn replayed_step<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirPnpParams,
    x: &B::Buf,
    (t, t_next): (usize, Option<usize>),
    (aty, mu): (&B::Buf, &B::Buf),
    z: Option<&B::Buf>,
) -> Result<(B::Buf, B::Buf)> {
    let emb = p.net.embedding(p.be, x, &[t as f32])?;
    let mut inputs = vec![x, &emb, aty, mu];
    inputs.extend(z);
    inputs.extend(p.op.buffer());
    let key = step_key(p, params, t, t_next);
    let out = p.be.replay_many(key, &inputs, &|inputs| {
        let &[x, emb, aty, mu, ref rest @ ..] = inputs else {
            unreachable!(
                "replay passes x, the embedding, Aᵀy, μ, the noise and the operator's buffer"
            )
        };
        let (z, op_buf) = match t_next {
            Some(_) => (rest.first().copied(), &rest[1..]),
            None => (None, rest),
        };
        let op = p.op.rebind(op_buf.first().copied());
        let (x, stats) = step(p, op, params, (x, emb), (aty, mu), (t, t_next), z)?;
        Ok(vec![x, stats])
    })?;
    let [next, stats]: [B::Buf; 2] = out
        .try_into()
        .map_err(|_| Error::internal("a published DiffPIR step's replay gave not two outputs"))?;
    Ok((next, stats))
}

/// One step from t: denoise, solve the data subproblem with operator `op` (device work on a
/// backend that runs CG itself), then step to t_next with fresh noise `z` (x̂0 itself at the
/// last step). Returns the next x and the solve's statistics.
fn step<B: Backend>(
    p: &Problem<B>,
    op: LinOp<B>,
    params: &DiffPirPnpParams,
    (x, emb): (&B::Buf, &B::Buf),
    (aty, mu): (&B::Buf, &B::Buf),
    (t, t_next): (usize, Option<usize>),
    z: Option<&B::Buf>,
) -> Result<(B::Buf, B::Buf)> {
    let be = p.be;
    let eps = p.net.forward_emb(be, x, emb)?;
    let (sab, s1m) = p.schedule.coeffs(t);
    let mut x0 = be.predict_x0(x, &eps, sab, s1m)?;
    be.clamp(&mut x0, -1.0, 1.0)?;
    let (mut x0_data, stats) = cg::prox_solve_on_device(be, op, aty, &x0, mu, &params.cg)?;
    be.clamp(&mut x0_data, -1.0, 1.0)?;
    let next = match (t_next, z) {
        (Some(t_next), Some(z)) => {
            // The noise direction implied by x and the data-consistent estimate.
            let eps_hat = be.lincomb(x, 1.0 / s1m, &x0_data, -sab / s1m)?;
            let mixed = be.lincomb(
                &eps_hat,
                (1.0 - params.zeta).sqrt() as f32,
                z,
                params.zeta.sqrt() as f32,
            )?;
            let (sab_n, s1m_n) = p.schedule.coeffs(t_next);
            be.lincomb(&x0_data, sab_n, &mixed, s1m_n)?
        }
        _ => x0_data,
    };
    Ok((next, stats))
}

/// What a step's captured work depends on besides its inputs' values (μ and the noise are
/// inputs): the network, the operator and every scalar baked into its kernels' arguments.
fn step_key<B: Backend>(
    p: &Problem<B>,
    params: &DiffPirPnpParams,
    t: usize,
    t_next: Option<usize>,
) -> usize {
    let coeffs = |t: usize| {
        let (sab, s1m) = p.schedule.coeffs(t);
        [sab.to_bits() as u64, s1m.to_bits() as u64]
    };
    let mut values = vec![0xD1FF9u64, t as u64];
    values.extend(coeffs(t));
    if let Some(t_next) = t_next {
        values.push(t_next as u64);
        values.extend(coeffs(t_next));
    }
    values.extend([
        params.zeta.to_bits(),
        params.cg.max_iters as u64,
        params.cg.tol.to_bits(),
    ]);
    values.extend(p.op.key_values());
    p.net.replay_key(&values)
}
