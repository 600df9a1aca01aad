//! The arguments several commands share: which model (ModelArgs),
//! which sampler and its settings (SamplerArgs), and their checks.

use super::limits::MemoryArgs;
use crate::bail;
use crate::engine::{self, Device};
use crate::error::Result;
use crate::precision::Precision;
use crate::samplers::cg::CgSettings;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::schedule::Skip;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Which weights to load and where to run them.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Weights (default: the bundled prior).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long)]
    pub num_heads: Option<usize>,
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// The GEMMs' arithmetic (convolutions, attention): f32 (exact), or TF32 / BF16 operands
    /// on the GPU's tensor cores (f32 accumulation). On the CPU, TF32 / BF16 round the same
    /// operands (an emulation of the GPU path, slower than f32).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

impl ModelArgs {
    pub(super) fn load(&self) -> Result<(crate::engine::SharedModel, PathBuf)> {
        let path = self.weights.clone().or_else(crate::default_weights);
        let Some(path) = path else {
            bail!(
                "no bundled prior found (weights/{}); pass --weights W.safetensors",
                crate::DEFAULT_WEIGHTS
            );
        };
        Ok((
            engine::load(&path, self.num_heads, self.device, self.precision)?,
            path,
        ))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    /// The notebook's DPS (squared loss, fixed guidance).
    Dps,
    /// The notebook's DiffPIR-style sampler (one gradient data step, starts from y).
    Diffpir,
    /// Published DiffPIR: exact proximal data step by CG, noise re-injection ζ.
    DiffpirPnp,
    /// Published DPS: step ζ/‖y − K x̂0‖, ancestral (η) steps.
    DpsPaper,
    /// Classical baseline: argmin ‖Ax − y‖² + λ‖x‖² by conjugate gradients.
    Tikhonov,
    /// Classical baseline: argmin ½‖Ax − y‖² + λ·TV(x) by a primal-dual solver.
    Tv,
    /// Classical CT baseline (--operator ct only): filtered back-projection, Ram-Lak filter.
    Fbp,
}

#[derive(Args, Debug, Clone)]
pub struct SamplerArgs {
    /// Default: published DiffPIR, the best sampler of `evaluate`'s table (README).
    #[arg(long, value_enum, default_value_t = SamplerKind::DiffpirPnp)]
    pub sampler: SamplerKind,
    /// Diffusion steps [default: 40]; the classical baselines (tikhonov, tv, fbp) take none.
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<i64>,
    /// DPS guidance scale.
    #[arg(long, default_value_t = 0.15, allow_negative_numbers = true)]
    pub guidance: f64,
    /// DPS measurement noise level in the likelihood.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub sigma_y: f64,
    /// DiffPIR-style data step size.
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    pub tau: f64,
    /// tikhonov / tv: regularisation weight (default: the deblurring table's best, times ‖A‖²
    /// for other operators); diffpir-pnp: prior weight λ (default: the sweeps' best).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// diffpir-pnp: fraction of fresh noise per step; dps-paper: step size on ‖y − A x̂0‖.
    #[arg(long, allow_negative_numbers = true)]
    pub zeta: Option<f64>,
    /// dps-paper: ancestral noise (1 = DDPM, 0 = DDIM).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// diffpir-pnp: first timestep (default T − 1); it starts from y noised to that level.
    #[arg(long, allow_negative_numbers = true)]
    pub t_start: Option<i64>,
    /// diffpir-pnp: timestep spacing (default quad, dense near t = 0: the sweeps' best).
    #[arg(long, value_enum)]
    pub skip: Option<SkipKind>,
    /// diffpir-pnp: relative measurement noise ‖e‖/‖Kx‖ (σ_n is estimated from it and y).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub noise_level: f64,
    /// diffpir-pnp: CG iteration limit and relative tolerance of each proximal solve.
    #[arg(long, allow_negative_numbers = true)]
    pub cg_iters: Option<i64>,
    #[arg(long, allow_negative_numbers = true)]
    pub cg_tol: Option<f64>,
    /// Draw N independent samples per slice in one batched run and write their mean (--out)
    /// and per-pixel standard deviation (OUT_std.npy, OUT_std.png).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub samples: i64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipKind {
    Uniform,
    Quad,
}

impl SamplerArgs {
    pub(super) fn diffpir_pnp(&self) -> Result<DiffPirPnpParams> {
        let d = DiffPirPnpParams::default();
        let t_start = match self.t_start {
            None => d.t_start,
            Some(v) if v >= 1 => v as usize,
            Some(v) => bail!("--t-start must be a positive timestep, got {v}"),
        };
        let max_iters = match self.cg_iters {
            None => d.cg.max_iters,
            Some(v) if v >= 1 => v as usize,
            Some(v) => bail!("--cg-iters must be at least 1, got {v}"),
        };
        let p = DiffPirPnpParams {
            steps: self.steps()?,
            lambda: self.lambda.unwrap_or(d.lambda),
            zeta: self.zeta.unwrap_or(d.zeta),
            noise_level: self.noise_level,
            t_start,
            skip: match self.skip {
                None => d.skip,
                Some(SkipKind::Uniform) => Skip::Uniform,
                Some(SkipKind::Quad) => Skip::Quad,
            },
            cg: CgSettings {
                max_iters,
                tol: self.cg_tol.unwrap_or(d.cg.tol),
            },
        };
        p.check()?;
        Ok(p)
    }

    pub(super) fn dps_paper(&self) -> Result<DpsPaperParams> {
        let p = DpsPaperParams {
            steps: self.steps()?,
            zeta: self.zeta.unwrap_or(DpsPaperParams::default().zeta),
            eta: self.eta,
        };
        p.check()?;
        Ok(p)
    }

    /// `--steps` of a diffusion sampler (40 unless given), checked.
    pub(super) fn steps(&self) -> Result<usize> {
        steps(self.steps.unwrap_or(DEFAULT_STEPS))
    }

    /// The classical baselines iterate to their own tolerance: a given `--steps` is checked
    /// (so that `--steps -1` is never accepted) and then said to be ignored.
    pub(super) fn baseline_steps_note(&self) -> Result<()> {
        if let Some(v) = self.steps {
            steps(v)?;
            eprintln!(
                "note: --sampler {} ignores --steps (it iterates to its own tolerance)",
                format!("{:?}", self.sampler).to_lowercase()
            );
        }
        Ok(())
    }

    pub(super) fn samples(&self) -> Result<usize> {
        match self.samples {
            1 => Ok(1),
            m if m < 1 => bail!("--samples must be at least 1, got {m}"),
            m => match self.sampler {
                SamplerKind::Diffpir
                | SamplerKind::Tikhonov
                | SamplerKind::Tv
                | SamplerKind::Fbp => bail!(
                    "--samples needs a stochastic sampler (dps, dps-paper, diffpir-pnp); {} is deterministic",
                    sampler_name(self.sampler)
                ),
                _ => Ok(m as usize),
            },
        }
    }
}

/// The diffusion samplers' `--steps` when none is given.
pub(super) const DEFAULT_STEPS: i64 = 40;

/// `--steps`: at least 2.
pub(super) fn steps(v: i64) -> Result<usize> {
    if v < 2 {
        bail!("--steps must be at least 2, got {v}");
    }
    Ok(v as usize)
}

/// The sampler's name in printed lines.
pub(super) fn sampler_name(s: SamplerKind) -> &'static str {
    match s {
        SamplerKind::Dps => "DPS",
        SamplerKind::Diffpir => "DiffPIR-style",
        SamplerKind::DiffpirPnp => "DiffPIR (published)",
        SamplerKind::DpsPaper => "DPS (published)",
        SamplerKind::Tikhonov => "Tikhonov",
        SamplerKind::Tv => "TV",
        SamplerKind::Fbp => "FBP",
    }
}
