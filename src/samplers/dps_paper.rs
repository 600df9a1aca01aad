//! DPS as published (Chung et al., ICLR 2023, Algorithm 1 and the official code), beside the
//! notebook's version: an ancestral step (DDIM with η; η = 1 on consecutive timesteps is the
//! DDPM step) from the clamped x0 estimate, corrected by ζ·∇_x‖y − A x̂0‖ — the gradient of the
//! unsquared residual norm, i.e. a step ζ/‖y − A x̂0‖ on ½‖y − A x̂0‖² with ζ in units of 1/‖A‖
//! (one ζ means the same on every operator; ‖A‖ = 1 for blur). Each slice uses its own
//! norm and its own noise streams, so slices of a batch do not couple.

use super::{check_param, dps, Problem, Progress};
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::rng::slice_noise;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpsPaperParams {
    pub steps: usize,
    /// ζ: step size on the residual norm.
    pub zeta: f64,
    /// η: 1 = DDPM ancestral noise, 0 = deterministic DDIM.
    pub eta: f64,
}

impl Default for DpsPaperParams {
    /// Chosen by `evaluate --sweep` on phantoms outside the evaluation set (README).
    fn default() -> Self {
        DpsPaperParams {
            steps: 40,
            zeta: 3.0,
            eta: 1.0,
        }
    }
}

impl DpsPaperParams {
    pub fn check(&self) -> Result<()> {
        check_param("--zeta", self.zeta, false)?;
        check_param("--eta", self.eta, false)?;
        if self.eta > 1.0 {
            bail!("--eta must lie in [0, 1], got {}", self.eta);
        }
        Ok(())
    }
}

/// Run from the starting noise `x_t`; `seeds` gives each slice its own ancestral-noise stream.
pub fn run<B: Backend>(
    p: &Problem<B>,
    x_t: B::Buf,
    params: &DpsPaperParams,
    seeds: &[u64],
    progress: Progress,
) -> Result<B::Buf> {
    p.check()?;
    params.check()?;
    let be = p.be;
    let shape = p.check_init(&x_t)?;
    if seeds.len() != shape[0] {
        bail!("{} noise seeds for {} slices", seeds.len(), shape[0]);
    }
    let ts = p.schedule.timesteps(params.steps)?;
    // ζ in units of 1/‖A‖ (the residual norm's gradient scale; ‖A‖ = 1 for blur).
    let zeta = params.zeta / p.op.norm();
    let mut x = x_t;
    for (i, &t) in ts.iter().enumerate() {
        x = step(
            p,
            &x,
            (t, ts.get(i + 1).copied()),
            (zeta, params.eta),
            (seeds, i),
        )?;
        progress(i + 1, ts.len());
    }
    be.clamp(&mut x, -1.0, 1.0)?;
    Ok(x)
}

/// One step from t: the ancestral step to t_next (x̂0 itself at the last step), corrected by
/// −ζ/‖y − A x̂0‖ times the gradient of ½‖y − A x̂0‖², per slice. Everything after the uploads
/// of the embedding and of the step's noise is device work handed to `Backend::replay`, keyed by
/// the step's scalars (the residual norms stay on the device), so a CUDA backend replays one
/// graph per step from a sampler's second run with the same schedule on.
fn step<B: Backend>(
    p: &Problem<B>,
    x: &B::Buf,
    (t, t_next): (usize, Option<usize>),
    (zeta, eta): (f64, f64),
    (seeds, i): (&[u64], usize),
) -> Result<B::Buf> {
    let be = p.be;
    let emb = p.net.embedding(be, x, &[t as f32])?;
    let coeffs = t_next.map(|t_next| Ancestral::new(p, t, t_next, eta));
    let noise = match coeffs {
        Some(a) if a.sigma != 0.0 => {
            Some(be.upload(&slice_noise(be.shape(x), seeds, i as u64 + 1))?)
        }
        _ => None,
    };
    let mut inputs = vec![x, &emb, p.y];
    inputs.extend(noise.as_ref());
    inputs.extend(p.op.buffer());
    let key = step_key(p, t, coeffs, zeta, noise.is_some());
    be.replay(key, &inputs, &|inputs| {
        let &[x, emb, y, ref rest @ ..] = inputs else {
            unreachable!("replay passes x, the embedding, y, the noise and the operator's buffer")
        };
        let (z, op_buf) = match noise {
            Some(_) => (rest.first().copied(), &rest[1..]),
            None => (None, rest),
        };
        let q = p.rebound(y, op_buf);
        let g = dps::scaled_gradient_emb(&q, x, emb, t, 1.0)?;
        let r = q.residual(&g.x0)?;
        let prior = match coeffs {
            Some(a) => a.step(be, x, &g.x0, z)?,
            None => g.x0,
        };
        be.step_by_residual_norm(&prior, &g.grad, &r, zeta)
    })
}

/// What a step's captured work depends on besides its inputs' values: the network, the
/// operator and every scalar baked into its kernels' arguments.
fn step_key<B: Backend>(
    p: &Problem<B>,
    t: usize,
    coeffs: Option<Ancestral>,
    zeta: f64,
    noisy: bool,
) -> usize {
    let (sab, s1m) = p.schedule.coeffs(t);
    let mut values = vec![
        0xD95A9u64,
        t as u64,
        sab.to_bits() as u64,
        s1m.to_bits() as u64,
    ];
    if let Some(a) = coeffs {
        values.extend([a.t_next as u64, a.sigma.to_bits()]);
        values.extend([a.x_scale, a.x0_scale, a.mean_x0, a.mean_eps].map(|c| c.to_bits() as u64));
    }
    values.extend([zeta.to_bits(), noisy as u64]);
    values.extend(p.op.key_values());
    p.net.replay_key(&values)
}

/// The ancestral step's scalars from t to t_next: x_{t_next} = sqrt(ᾱ')·x0 + sqrt(1 − ᾱ' − σ²)·ε
/// + σ·z with ε = (x − sqrt(ᾱ)·x0)/sqrt(1 − ᾱ) and σ = η·sqrt((1 − ᾱ')/(1 − ᾱ))·sqrt(1 − ᾱ/ᾱ').
#[derive(Clone, Copy, Debug)]
struct Ancestral {
    t_next: usize,
    /// ε = x_scale·x + x0_scale·x0.
    x_scale: f32,
    x0_scale: f32,
    /// mean = mean_x0·x0 + mean_eps·ε.
    mean_x0: f32,
    mean_eps: f32,
    sigma: f64,
}

impl Ancestral {
    fn new<B: Backend>(p: &Problem<B>, t: usize, t_next: usize, eta: f64) -> Self {
        let (ab, ab_next) = (
            p.schedule.alpha_bars[t] as f64,
            p.schedule.alpha_bars[t_next] as f64,
        );
        let (sab, s1m) = p.schedule.coeffs(t);
        let sigma =
            eta * ((1.0 - ab_next) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_next).max(0.0).sqrt();
        Ancestral {
            t_next,
            x_scale: 1.0 / s1m,
            x0_scale: -sab / s1m,
            mean_x0: ab_next.sqrt() as f32,
            mean_eps: (1.0 - ab_next - sigma * sigma).max(0.0).sqrt() as f32,
            sigma,
        }
    }

    /// x_{t_next} from x, x0 and (when σ ≠ 0) the noise z: device work.
    fn step<B: Backend>(
        &self,
        be: &B,
        x: &B::Buf,
        x0: &B::Buf,
        z: Option<&B::Buf>,
    ) -> Result<B::Buf> {
        let eps = be.lincomb(x, self.x_scale, x0, self.x0_scale)?;
        let mean = be.lincomb(x0, self.mean_x0, &eps, self.mean_eps)?;
        match z {
            Some(z) if self.sigma != 0.0 => be.lincomb(&mean, 1.0, z, self.sigma as f32),
            _ => Ok(mean),
        }
    }
}
