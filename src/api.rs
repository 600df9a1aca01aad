//! # The embedding API
//!
//! Everything a host program needs, on one page: load a model once, describe the forward
//! operator, pick a [`Sampler`] and its parameters, and [`reconstruct`] a batch of measurements.
//! The command line, the C ABI (`include/diffrecon.h`) and the Python package all go through
//! these functions, so for the same inputs, sampler, parameters and seed they give the same bits.
//!
//! * Images and measurements are [`Tensor`]s of shape (N, 1, H, W), float32, in model space
//!   (the prior was trained on images in [−1, 1]).
//! * An [`Operator`] maps an (H, W) image to its measurement: [`Operator::Blur`] ((H, W)),
//!   [`Operator::ct`] (a (views, detectors) sinogram), [`Operator::Inpaint`] ((H, W), zero where
//!   unobserved), [`Operator::downsample`] ((H/F, W/F)).
//! * Errors are [`Error::Input`] (the caller's to fix; the message says what) or
//!   [`Error::Internal`].
//!
//! ```no_run
//! use diffrecon::api::{self, Device, Kernel, Operator, Precision, Sampler, Tensor};
//!
//! # fn main() -> diffrecon::Result<()> {
//! let model = api::load(None, Device::Auto, Precision::F32)?; // the bundled prior
//! let op = Operator::Blur(Kernel::motion(9, 20.0)?);
//! let truth = Tensor::zeros(&[1, 1, 64, 64]);
//! let y = api::simulate(&truth, &op, 0.01, 0)?;
//! let mut sampler = Sampler::from_name("diffpir-pnp")?; // published DiffPIR, CLI defaults
//! sampler.set("steps", 20.0)?;
//! let r = api::reconstruct(model.as_ref(), &y, &op, &sampler, 0, 1)?;
//! println!("residual {:?}, CG {:?}", r.residual, r.cg);
//! # Ok(())
//! # }
//! ```
//!
//! ## Threads
//!
//! A loaded model ([`SharedModel`]) is `Send + Sync` and every method takes `&self`: on the CPU
//! one model may serve several threads at once (each call runs on the shared rayon pool). A CUDA
//! model runs all its calls on one stream and caches captured graphs, so calls on one CUDA
//! model should not overlap: serialize them, or load one model per thread. The C ABI and the
//! Python package serialize calls on one model with a lock.

use crate::engine;
use crate::rng::{normal_tensor, slice_noise};
use crate::samplers::check_param;
use crate::spread;
use std::path::Path;

pub use crate::engine::{solver, Device, Model, Solver};
pub use crate::error::{Error, Result};
pub use crate::operators::{Kernel, Mask, Operator};
pub use crate::precision::Precision;
pub use crate::samplers::cg::{CgReport, CgSettings};
pub use crate::samplers::diffpir::DiffPirParams;
pub use crate::samplers::diffpir_pnp::DiffPirPnpParams;
pub use crate::samplers::dps::DpsParams;
pub use crate::samplers::dps_paper::DpsPaperParams;
pub use crate::samplers::Progress;
pub use crate::schedule::Skip;
pub use crate::tensor::Tensor;

use crate::bail;

/// Default λ of the Tikhonov baseline: the best of `evaluate`'s λ grid on its 32 phantoms.
pub const DEFAULT_TIKHONOV_LAMBDA: f64 = 3e-3;
/// Default λ of the TV baseline (chosen the same way).
pub const DEFAULT_TV_LAMBDA: f64 = 3e-4;
/// The largest batch [`reconstruct`] builds from slices × samples (memory grows with it).
pub const MAX_BATCH: usize = 4096;

/// A loaded model that may be shared between threads (see the module's "Threads").
pub use crate::engine::SharedModel;

/// Load a weights file (`None`: the bundled prior, `weights/prior.safetensors`) onto `device`,
/// its GEMMs at `precision`.
///
/// ```no_run
/// # use diffrecon::api::{self, Device, Precision};
/// let model = api::load(None, Device::Cpu, Precision::F32)?;
/// println!("{}", model.device());
/// # Ok::<(), diffrecon::Error>(())
/// ```
pub fn load(weights: Option<&Path>, device: Device, precision: Precision) -> Result<SharedModel> {
    let path = match weights {
        Some(p) => p.to_path_buf(),
        None => match crate::default_weights() {
            Some(p) => p,
            None => bail!(
                "no bundled prior found (weights/{}); pass the path of a .safetensors file",
                crate::DEFAULT_WEIGHTS
            ),
        },
    };
    engine::load(&path, None, device, precision)
}

/// A simulated measurement y = A x + e of the images `x` (N, 1, H, W): relative Gaussian noise
/// ‖e‖/‖Ax‖ = `noise_level` per slice, drawn from `seed` (as `diffrecon simulate`).
pub fn simulate(x: &Tensor, op: &Operator, noise_level: f64, seed: u64) -> Result<Tensor> {
    x.check_finite("the image")?;
    crate::operators::simulate(x, op, noise_level, seed)
}

/// A reconstruction method with its parameters. [`Sampler::from_name`] gives the command
/// line's defaults; change them with [`Sampler::set`] or by editing the fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// The notebook's DPS (squared loss, fixed guidance). Uses the starting noise.
    Dps(DpsParams),
    /// The notebook's DiffPIR-style sampler (one gradient data step per step). Deterministic.
    Diffpir(DiffPirParams),
    /// Published DiffPIR: exact proximal data step by CG, noise re-injection ζ. The default.
    DiffpirPnp(DiffPirPnpParams),
    /// Published DPS: step ζ/‖y − A x̂0‖, ancestral (η) steps. Uses the starting noise.
    DpsPaper(DpsPaperParams),
    /// Classical baseline: argmin ‖Ax − y‖² + λ‖x‖² by conjugate gradients (no model needed).
    /// `None`: [`DEFAULT_TIKHONOV_LAMBDA`]·‖A‖² (the data term's scale; 1 for blur).
    Tikhonov { lambda: Option<f64> },
    /// Classical baseline: argmin ½‖Ax − y‖² + λ·TV(x) by Chambolle–Pock (no model needed).
    /// `None`: [`DEFAULT_TV_LAMBDA`]·‖A‖².
    Tv { lambda: Option<f64> },
    /// Filtered back-projection, for the CT operator only (no model needed).
    Fbp,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::DiffpirPnp(DiffPirPnpParams::default())
    }
}

impl Sampler {
    /// The names [`Sampler::from_name`] accepts (the command line's `--sampler` values).
    pub const NAMES: [&'static str; 7] = [
        "dps",
        "diffpir",
        "diffpir-pnp",
        "dps-paper",
        "tikhonov",
        "tv",
        "fbp",
    ];

    /// The sampler called `name`, with the command line's default parameters.
    ///
    /// ```
    /// use diffrecon::api::Sampler;
    /// let s = Sampler::from_name("dps-paper").unwrap();
    /// assert_eq!(s.name(), "dps-paper");
    /// assert!(Sampler::from_name("ddpm").unwrap_err().to_string().contains("unknown sampler"));
    /// ```
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "dps" => Sampler::Dps(DpsParams::default()),
            "diffpir" => Sampler::Diffpir(DiffPirParams::default()),
            "diffpir-pnp" => Sampler::DiffpirPnp(DiffPirPnpParams::default()),
            "dps-paper" => Sampler::DpsPaper(DpsPaperParams::default()),
            "tikhonov" => Sampler::Tikhonov { lambda: None },
            "tv" => Sampler::Tv { lambda: None },
            "fbp" => Sampler::Fbp,
            _ => bail!(
                "unknown sampler '{name}': use one of {}",
                Self::NAMES.join(", ")
            ),
        })
    }

    /// The name [`Sampler::from_name`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Sampler::Dps(_) => "dps",
            Sampler::Diffpir(_) => "diffpir",
            Sampler::DiffpirPnp(_) => "diffpir-pnp",
            Sampler::DpsPaper(_) => "dps-paper",
            Sampler::Tikhonov { .. } => "tikhonov",
            Sampler::Tv { .. } => "tv",
            Sampler::Fbp => "fbp",
        }
    }

    /// The parameter names [`Sampler::set`] accepts for this sampler.
    pub fn params(&self) -> &'static [&'static str] {
        match self {
            Sampler::Dps(_) => &["steps", "guidance", "sigma_y"],
            Sampler::Diffpir(_) => &["steps", "tau"],
            Sampler::DiffpirPnp(_) => &[
                "steps",
                "lambda",
                "zeta",
                "noise_level",
                "t_start",
                "cg_iters",
                "cg_tol",
                "skip",
            ],
            Sampler::DpsPaper(_) => &["steps", "zeta", "eta"],
            Sampler::Tikhonov { .. } | Sampler::Tv { .. } => &["lambda"],
            Sampler::Fbp => &[],
        }
    }

    /// Set one numeric parameter by its name (as the command line's flag, `_` or `-` between
    /// words): `steps`, `guidance`, `sigma_y`, `tau`, `lambda`, `zeta`, `eta`, `noise_level`,
    /// `t_start`, `cg_iters`, `cg_tol`, whichever this sampler has (see [`Sampler::params`]).
    /// Integer parameters must be whole numbers. The ranges are checked here or by
    /// [`Sampler::check`].
    ///
    /// ```
    /// use diffrecon::api::Sampler;
    /// let mut s = Sampler::from_name("diffpir-pnp").unwrap();
    /// s.set("steps", 10.0).unwrap();
    /// s.set("cg-iters", 5.0).unwrap();
    /// assert!(s.set("tau", 0.5).is_err()); // a parameter of the notebook's diffpir
    /// ```
    pub fn set(&mut self, param: &str, value: f64) -> Result<()> {
        let key = param.replace('-', "_");
        if !value.is_finite() {
            bail!("sampler parameter {key} must be a finite number, got {value}");
        }
        let int = |min: usize| -> Result<usize> {
            if value.fract() != 0.0 || value < min as f64 || value > u32::MAX as f64 {
                bail!("sampler parameter {key} must be a whole number ≥ {min}, got {value}");
            }
            Ok(value as usize)
        };
        let (name, allowed) = (self.name(), self.params());
        let unknown = || -> Result<()> {
            bail!(
                "sampler {name} has no parameter '{param}'; it takes: {}",
                allowed.join(", ")
            )
        };
        match (&mut *self, key.as_str()) {
            (Sampler::Dps(p), "steps") => p.steps = int(2)?,
            (Sampler::Dps(p), "guidance") => p.guidance = value,
            (Sampler::Dps(p), "sigma_y") => p.sigma_y = value,
            (Sampler::Diffpir(p), "steps") => p.steps = int(2)?,
            (Sampler::Diffpir(p), "tau") => p.tau = value,
            (Sampler::DiffpirPnp(p), "steps") => p.steps = int(2)?,
            (Sampler::DiffpirPnp(p), "lambda") => p.lambda = value,
            (Sampler::DiffpirPnp(p), "zeta") => p.zeta = value,
            (Sampler::DiffpirPnp(p), "noise_level") => p.noise_level = value,
            (Sampler::DiffpirPnp(p), "t_start") => p.t_start = int(1)?,
            (Sampler::DiffpirPnp(p), "cg_iters") => p.cg.max_iters = int(1)?,
            (Sampler::DiffpirPnp(p), "cg_tol") => p.cg.tol = value,
            (Sampler::DpsPaper(p), "steps") => p.steps = int(2)?,
            (Sampler::DpsPaper(p), "zeta") => p.zeta = value,
            (Sampler::DpsPaper(p), "eta") => p.eta = value,
            (Sampler::Tikhonov { lambda } | Sampler::Tv { lambda }, "lambda") => {
                *lambda = Some(value)
            }
            _ => return unknown(),
        }
        Ok(())
    }

    /// Set diffpir-pnp's timestep spacing: `"quad"` (the default) or `"uniform"`.
    pub fn set_skip(&mut self, skip: &str) -> Result<()> {
        let Sampler::DiffpirPnp(p) = self else {
            bail!("sampler {} has no parameter 'skip'", self.name());
        };
        p.skip = match skip {
            "quad" => Skip::Quad,
            "uniform" => Skip::Uniform,
            _ => bail!("unknown skip '{skip}': use quad or uniform"),
        };
        Ok(())
    }

    /// Whether it needs the prior (the baselines and FBP do not).
    pub fn needs_model(&self) -> bool {
        !matches!(
            self,
            Sampler::Tikhonov { .. } | Sampler::Tv { .. } | Sampler::Fbp
        )
    }

    /// Whether it draws noise (only these can give several samples per slice).
    pub fn is_stochastic(&self) -> bool {
        matches!(
            self,
            Sampler::Dps(_) | Sampler::DpsPaper(_) | Sampler::DiffpirPnp(_)
        )
    }

    /// Whether it starts from the noise x_T of [`starting_noise`].
    pub fn uses_starting_noise(&self) -> bool {
        matches!(self, Sampler::Dps(_) | Sampler::DpsPaper(_))
    }

    /// Checks every parameter's range (the samplers check again when they run).
    pub fn check(&self) -> Result<()> {
        let steps = |s: usize| -> Result<()> {
            if s < 2 {
                bail!("--steps must be at least 2, got {s}");
            }
            Ok(())
        };
        match self {
            Sampler::Dps(p) => {
                steps(p.steps)?;
                p.check()
            }
            Sampler::Diffpir(p) => {
                steps(p.steps)?;
                check_param("--tau", p.tau, false)
            }
            Sampler::DiffpirPnp(p) => {
                steps(p.steps)?;
                p.check()
            }
            Sampler::DpsPaper(p) => {
                steps(p.steps)?;
                p.check()
            }
            Sampler::Tikhonov { lambda } | Sampler::Tv { lambda } => match lambda {
                Some(l) => check_param("--lambda", *l, false),
                None => Ok(()),
            },
            Sampler::Fbp => Ok(()),
        }
    }
}

/// What [`reconstruct`] returns.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// (N, 1, H, W): the reconstruction, or the mean of the samples.
    pub image: Tensor,
    /// (N, 1, H, W) per-pixel standard deviation of the samples, when `samples > 1`.
    pub std: Option<Tensor>,
    /// ‖A x − y‖ / ‖y‖ for each slice.
    pub residual: Vec<f64>,
    /// How the proximal CG solves converged (diffpir-pnp only).
    pub cg: Option<CgReport>,
}

/// Reconstruct every slice of `y` (N, 1, rows, cols) through `op` with `sampler`. `seed` seeds
/// the random samplers (slice i of a published sampler uses seed + i); with `samples > 1` a
/// stochastic sampler draws that many samples per slice in one batch and returns their mean and
/// standard deviation. The result equals `diffrecon reconstruct` with the same arguments.
///
/// ```no_run
/// use diffrecon::api::{self, Device, Mask, Operator, Precision, Sampler, Tensor};
///
/// # fn main() -> diffrecon::Result<()> {
/// let model = api::load(None, Device::Cpu, Precision::F32)?;
/// let op = Operator::Inpaint(Mask::random(64, 64, 0.3, 0)?);
/// let y = api::simulate(&Tensor::zeros(&[2, 1, 64, 64]), &op, 0.01, 1)?;
/// let r = api::reconstruct(model.as_ref(), &y, &op, &Sampler::default(), 7, 4)?;
/// assert_eq!(r.image.shape(), &[2, 1, 64, 64]);
/// assert!(r.std.is_some());
/// # Ok(())
/// # }
/// ```
pub fn reconstruct(
    model: &dyn Model,
    y: &Tensor,
    op: &Operator,
    sampler: &Sampler,
    seed: u64,
    samples: usize,
) -> Result<Reconstruction> {
    sampler.check()?;
    let [n, 1, rows, cols] = *y.shape() else {
        bail!(
            "the measurement must be an (N, 1, rows, cols) stack, got shape {:?}",
            y.shape()
        );
    };
    if n == 0 {
        bail!("the measurement holds no slices");
    }
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    if samples > 1 && !sampler.is_stochastic() {
        bail!(
            "--samples needs a stochastic sampler (dps, dps-paper, diffpir-pnp); {} is deterministic",
            sampler.name()
        );
    }
    if n.checked_mul(samples).is_none_or(|b| b > MAX_BATCH) {
        bail!("{n} slices × {samples} samples in one batch; at most {MAX_BATCH}: use fewer samples or split the measurement");
    }
    let y_all = spread::tile(y, samples)?;
    // Image-shaped (CT and super-resolution measure another shape); n·samples ≤ MAX_BATCH.
    let (h, w) = op.image_dims((rows, cols))?;
    let x_t = sampler
        .uses_starting_noise()
        .then(|| starting_noise(sampler, &[n * samples, 1, h, w], seed, samples));
    let (x_all, cg) = sample(
        model,
        &y_all,
        op,
        sampler,
        x_t.as_ref(),
        seed,
        &mut |_, _| {},
    )?;
    let (image, std) = spread::mean_std(&x_all, samples)?;
    let residual = residual(&image, y, op)?;
    Ok(Reconstruction {
        image,
        std: (samples > 1).then_some(std),
        residual,
        cg,
    })
}

/// The step below [`reconstruct`]: run `sampler` once over the batch `y` as given (samples
/// already tiled), from the starting noise `x_t` (required by dps and dps-paper, ignored by
/// the others), reporting each step to `progress`. Also returns the CG report of diffpir-pnp.
pub fn sample(
    model: &dyn Model,
    y: &Tensor,
    op: &Operator,
    sampler: &Sampler,
    x_t: Option<&Tensor>,
    seed: u64,
    progress: Progress,
) -> Result<(Tensor, Option<CgReport>)> {
    let [n, ..] = *y.shape() else {
        bail!("the measurement must be an (N, 1, rows, cols) stack, got shape []");
    };
    let seeds = slice_seeds(seed, n);
    let x_t = || match x_t {
        Some(x) => Ok(x),
        None => Err(Error::input(format!(
            "{} needs its starting noise x_T (see api::starting_noise)",
            sampler.name()
        ))),
    };
    Ok(match sampler {
        Sampler::Dps(p) => (model.dps(y, op, x_t()?, p, progress)?, None),
        Sampler::Diffpir(p) => (model.diffpir(y, op, p, progress)?, None),
        Sampler::DiffpirPnp(p) => {
            let (x, cg) = model.diffpir_pnp(y, op, p, &seeds, progress)?;
            (x, Some(cg))
        }
        Sampler::DpsPaper(p) => (model.dps_paper(y, op, x_t()?, p, &seeds, progress)?, None),
        Sampler::Tikhonov { .. } | Sampler::Tv { .. } | Sampler::Fbp => {
            (baseline(model, y, op, sampler)?, None)
        }
    })
}

/// A method that needs no model (tikhonov, tv, fbp) on any [`Solver`], e.g.
/// `engine::solver(device)`.
pub fn baseline(
    solver: &dyn Solver,
    y: &Tensor,
    op: &Operator,
    sampler: &Sampler,
) -> Result<Tensor> {
    sampler.check()?;
    match sampler {
        // The defaults are in units of ‖A‖² (the data term's scale; 1 for blur).
        Sampler::Tikhonov { lambda } => {
            let unit = op.norm().powi(2);
            solver.tikhonov(y, op, lambda.unwrap_or(DEFAULT_TIKHONOV_LAMBDA * unit))
        }
        Sampler::Tv { lambda } => {
            let unit = op.norm().powi(2);
            solver.total_variation(y, op, lambda.unwrap_or(DEFAULT_TV_LAMBDA * unit))
        }
        Sampler::Fbp => match op {
            Operator::Ct(_) => solver.estimate(y, op),
            _ => bail!(
                "fbp reconstructs CT sinograms only; the operator is {}",
                op.describe()
            ),
        },
        s => bail!(
            "{} needs a model (it is not a classical baseline)",
            s.name()
        ),
    }
}

/// The starting noise x_T of the (N, 1, H, W) images `shape` (the batch with its samples
/// tiled): one stream per slice (seed + slice index) for the published samplers and for several
/// samples; the notebook's DPS keeps one stream over the batch.
pub fn starting_noise(sampler: &Sampler, shape: &[usize], seed: u64, samples: usize) -> Tensor {
    let n = shape.first().copied().unwrap_or(0);
    if matches!(sampler, Sampler::Dps(_)) && samples == 1 {
        normal_tensor(shape, seed)
    } else {
        slice_noise(shape, &slice_seeds(seed, n), 0)
    }
}

/// ‖A x − y‖ / ‖y‖ for each slice, on the CPU (for images from anywhere).
pub fn residual(x: &Tensor, y: &Tensor, op: &Operator) -> Result<Vec<f64>> {
    engine::residual_ratio(x, y, op)
}

/// One noise seed per slice: seed, seed + 1, … (wrapping).
pub fn slice_seeds(seed: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| seed.wrapping_add(i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_are_the_clis() {
        for name in Sampler::NAMES {
            let s = Sampler::from_name(name).unwrap();
            assert_eq!(s.name(), name);
            s.check().unwrap();
        }
        assert_eq!(Sampler::default().name(), "diffpir-pnp");
    }

    #[test]
    fn set_checks_names_and_integers() {
        let mut s = Sampler::from_name("dps").unwrap();
        s.set("sigma-y", 0.02).unwrap();
        assert_eq!(
            s,
            Sampler::Dps(DpsParams {
                sigma_y: 0.02,
                ..DpsParams::default()
            })
        );
        let e = s.set("zeta", 1.0).unwrap_err().to_string();
        assert!(
            e.contains("no parameter 'zeta'") && e.contains("guidance"),
            "{e}"
        );
        assert!(s
            .set("steps", 2.5)
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        assert!(s.set("steps", 1.0).is_err());
        assert!(s
            .set("guidance", f64::NAN)
            .unwrap_err()
            .to_string()
            .contains("finite"));
        let mut p = Sampler::default();
        p.set_skip("uniform").unwrap();
        assert!(p.set_skip("cubic").is_err());
        p.set("zeta", 2.0).unwrap();
        assert!(p.check().unwrap_err().to_string().contains("[0, 1]"));
    }

    #[test]
    fn fbp_refuses_operators_other_than_ct() {
        let op = Operator::Blur(Kernel::motion(9, 20.0).unwrap());
        let y = Tensor::zeros(&[1, 1, 8, 8]);
        let solver = engine::solver(Device::Cpu).unwrap();
        let e = baseline(solver.as_ref(), &y, &op, &Sampler::Fbp).unwrap_err();
        assert!(e.to_string().contains("CT sinograms only"), "{e}");
    }

    #[test]
    fn seeds_wrap() {
        assert_eq!(slice_seeds(u64::MAX, 2), vec![u64::MAX, 0]);
    }
}
