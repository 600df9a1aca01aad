//! The public entry point: a loaded model on a backend chosen at run time, and the computations
//! the CLI offers. `Model` is object safe, so the front ends hold a `SharedModel` whatever the device.

use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::{self, CudaBackend};
use crate::backend::Backend;
use crate::bail;
use crate::error::Result;
use crate::operators::{LinOp, Operator};
use crate::precision::Precision;
use crate::samplers::cg::CgReport;
use crate::samplers::{ddim, diffpir, diffpir_pnp, dps, dps_paper, Problem, Progress};
use crate::schedule::{Schedule, T_DEFAULT};
use crate::tensor::Tensor;
use crate::unet::weights::{self, Params};
use crate::unet::{UNet, UNetConfig};
use std::path::Path;
use std::str::FromStr;

/// `--device auto|cpu|cuda[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Device::Cuda(n)),
                _ => Err(format!(
                    "unknown device '{s}': use auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

/// What runs without a model: the classical baselines and the operator itself, on a backend.
pub trait Solver {
    /// The backend, in words.
    fn device(&self) -> String;
    /// Tikhonov: argmin ‖Ax − y‖² + λ‖x‖² by CG.
    fn tikhonov(&self, y: &Tensor, op: &Operator, lambda: f64) -> Result<Tensor>;
    /// Total variation: argmin ½‖Ax − y‖² + λ·TV(x) by Chambolle–Pock.
    fn total_variation(&self, y: &Tensor, op: &Operator, lambda: f64) -> Result<Tensor>;
    /// The operator's image-shaped estimate from y: the task's observation baseline (FBP for
    /// CT, the masked image for inpainting, block replication for super-resolution, y for blur).
    fn estimate(&self, y: &Tensor, op: &Operator) -> Result<Tensor>;
    /// A x, or Aᵀ x with `adjoint`.
    fn apply(&self, x: &Tensor, op: &Operator, adjoint: bool) -> Result<Tensor>;
}

/// The baselines on the chosen device (no weights needed).
pub fn solver(device: Device) -> Result<Box<dyn Solver>> {
    Ok(match resolve(device)? {
        None => Box::new(Backed(CpuBackend::default())),
        Some(ordinal) => Box::new(Backed(CudaBackend::new(ordinal)?)),
    })
}

/// A backend alone, as a `Solver`.
struct Backed<B>(B);

/// Whatever holds a backend answers the baselines on it (`Backed` alone, `Engine` beside a UNet).
trait OnBackend {
    type B: Backend;
    fn backend(&self) -> &Self::B;
}

impl<B: Backend> OnBackend for Backed<B> {
    type B = B;
    fn backend(&self) -> &B {
        &self.0
    }
}

impl<T: OnBackend> Solver for T {
    fn device(&self) -> String {
        self.backend().name()
    }
    fn tikhonov(&self, y: &Tensor, op: &Operator, lambda: f64) -> Result<Tensor> {
        let be = self.backend();
        with_operator(be, y, op, |y, op| {
            crate::baselines::tikhonov(be, op, y, lambda)
        })
    }
    fn total_variation(&self, y: &Tensor, op: &Operator, lambda: f64) -> Result<Tensor> {
        let be = self.backend();
        with_operator(be, y, op, |y, op| {
            crate::baselines::total_variation(be, op, y, lambda)
        })
    }
    fn estimate(&self, y: &Tensor, op: &Operator) -> Result<Tensor> {
        let be = self.backend();
        with_operator(be, y, op, |y, op| op.initial_estimate(be, y))
    }
    fn apply(&self, x: &Tensor, op: &Operator, adjoint: bool) -> Result<Tensor> {
        apply_on(self.backend(), x, op, adjoint)
    }
}

/// A x (x checked against the operator's image shape) or Aᵀ x (x a measurement).
fn apply_on<B: Backend>(be: &B, x: &Tensor, op: &Operator, adjoint: bool) -> Result<Tensor> {
    x.check_finite("the input")?;
    let up = op.upload(be)?;
    let lin = up.view();
    let out = if adjoint {
        lin.image_shape(x.shape())?;
        lin.adjoint(be, &be.upload(x)?)?
    } else {
        let [_, 1, h, w] = *x.shape() else {
            bail!(
                "the input must be an (N, 1, H, W) stack, got shape {:?}",
                x.shape()
            );
        };
        lin.check_image((h, w))?;
        lin.apply(be, &be.upload(x)?)?
    };
    be.download(&out)
}

/// Uploads y (checked finite and against the operator) and the operator, runs `f`, downloads.
fn with_operator<B: Backend>(
    be: &B,
    y: &Tensor,
    op: &Operator,
    f: impl FnOnce(&B::Buf, LinOp<B>) -> Result<B::Buf>,
) -> Result<Tensor> {
    y.check_finite("the measurement")?;
    let up = op.upload(be)?;
    up.view()
        .image_shape(y.shape())
        .map_err(|e| e.context("measurement"))?;
    let out = f(&be.upload(y)?, up.view())?;
    be.download(&out)
}

/// A loaded model as the front ends hold it: both backends' engines are `Send + Sync`, so the
/// C ABI and Python can keep one behind a lock and call it from any thread.
pub type SharedModel = Box<dyn Model + Send + Sync>;

/// What a loaded model can do, on whichever backend it lives.
pub trait Model: Solver {
    fn config(&self) -> &UNetConfig;
    /// Noise prediction for a batch; one timestep per item or one for all.
    fn eps(&self, x: &Tensor, t: &[f64]) -> Result<Tensor>;
    /// The UNet's vector-Jacobian product rᵀ ∂eps(x, t)/∂x: a forward with tape, then the
    /// backward (what PyTorch's `autograd.grad(eps, x, r)` computes).
    fn eps_vjp(&self, x: &Tensor, t: f64, r: &Tensor) -> Result<Tensor>;
    /// The DPS gradient dL/dx at state x and timestep t.
    fn dps_grad(
        &self,
        x: &Tensor,
        t: f64,
        y: &Tensor,
        op: &Operator,
        sigma_y: f64,
    ) -> Result<Tensor>;
    fn dps(
        &self,
        y: &Tensor,
        op: &Operator,
        x_t: &Tensor,
        params: &dps::DpsParams,
        progress: Progress,
    ) -> Result<Tensor>;
    fn diffpir(
        &self,
        y: &Tensor,
        op: &Operator,
        params: &diffpir::DiffPirParams,
        progress: Progress,
    ) -> Result<Tensor>;
    /// Published DiffPIR; `seeds` holds one noise seed per slice. Also says how CG converged.
    fn diffpir_pnp(
        &self,
        y: &Tensor,
        op: &Operator,
        params: &diffpir_pnp::DiffPirPnpParams,
        seeds: &[u64],
        progress: Progress,
    ) -> Result<(Tensor, CgReport)>;
    /// Published DPS from the starting noise x_T; `seeds` holds one noise seed per slice.
    fn dps_paper(
        &self,
        y: &Tensor,
        op: &Operator,
        x_t: &Tensor,
        params: &dps_paper::DpsPaperParams,
        seeds: &[u64],
        progress: Progress,
    ) -> Result<Tensor>;
    /// Unconditional DDIM (η = 0) samples from the starting noise x_T.
    fn sample(&self, x_t: &Tensor, steps: usize, progress: Progress) -> Result<Tensor>;
    /// ‖A x − y‖ / ‖y‖ per slice.
    fn residual_ratio(&self, x: &Tensor, y: &Tensor, op: &Operator) -> Result<Vec<f64>>;
    /// Per-kernel GPU time (see Backend::profile_kernels): `true` starts, `false` reports.
    fn profile_kernels(&self, on: bool) -> Result<Option<String>>;
}

/// Load and validate a weights file onto the chosen device, its GEMMs at `precision`.
pub fn load(
    path: &Path,
    heads: Option<usize>,
    device: Device,
    precision: Precision,
) -> Result<SharedModel> {
    let (cfg, params) = weights::load(path, heads)?;
    from_params(cfg, &params, device, precision)
}

/// A model with deterministic synthetic weights (benchmarks, tests).
pub fn synthetic(
    cfg: &UNetConfig,
    seed: u64,
    device: Device,
    precision: Precision,
) -> Result<SharedModel> {
    let params = weights::synthetic(cfg, seed);
    from_params(cfg.clone(), &params, device, precision)
}

fn from_params(
    cfg: UNetConfig,
    params: &Params,
    device: Device,
    precision: Precision,
) -> Result<SharedModel> {
    Ok(match resolve(device)? {
        None => Box::new(Engine::from_params(
            CpuBackend::with_precision(precision),
            cfg,
            params,
        )?),
        Some(ordinal) => Box::new(Engine::from_params(
            CudaBackend::new(ordinal)?.with_precision(precision)?,
            cfg,
            params,
        )?),
    })
}

/// The CUDA ordinal to use, or None for the CPU. `auto` prefers a working GPU and says in one
/// line why it falls back; an explicit `cuda` that cannot run is an error.
pub fn resolve(device: Device) -> Result<Option<usize>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Cuda(i) => match cuda::unavailable_reason(i) {
            None => Ok(Some(i)),
            Some(why) => bail!("--device cuda:{i} cannot run: {why}; use --device cpu"),
        },
        Device::Auto => match cuda::unavailable_reason(0) {
            None => Ok(Some(0)),
            Some(why) => {
                eprintln!("note: running on the CPU ({why})");
                Ok(None)
            }
        },
    }
}

/// A model's parameters on a backend, with the diffusion schedule.
pub struct Engine<B: Backend> {
    pub be: B,
    pub net: UNet<B>,
    pub schedule: Schedule,
}

impl<B: Backend> Engine<B> {
    pub fn from_params(be: B, cfg: UNetConfig, params: &Params) -> Result<Self> {
        let net = UNet::new(&be, cfg, params)?;
        Ok(Engine {
            be,
            net,
            schedule: Schedule::cosine(T_DEFAULT),
        })
    }

    fn check_timestep(&self, t: f64) -> Result<usize> {
        let max = self.schedule.len() - 1;
        if !(t.is_finite() && t >= 0.0 && t.fract() == 0.0 && t <= max as f64) {
            bail!("timestep {t} is not an integer in 0..={max}");
        }
        Ok(t as usize)
    }

    /// Runs `f` on the problem of measurement `y` and operator `op` on this engine's backend
    /// (both uploaded, the measurement checked first).
    pub fn with_problem<R>(
        &self,
        y: &Tensor,
        op: &Operator,
        f: impl FnOnce(&Problem<B>) -> Result<R>,
    ) -> Result<R> {
        y.check_finite("the measurement")?;
        let (yb, ob) = (self.be.upload(y)?, op.upload(&self.be)?);
        let p = Problem {
            be: &self.be,
            net: &self.net,
            schedule: &self.schedule,
            y: &yb,
            op: ob.view(),
        };
        p.check().map_err(|e| e.context("measurement"))?;
        f(&p)
    }
}

impl<B: Backend> OnBackend for Engine<B> {
    type B = B;
    fn backend(&self) -> &B {
        &self.be
    }
}

impl<B: Backend> Model for Engine<B> {
    fn profile_kernels(&self, on: bool) -> Result<Option<String>> {
        self.be.profile_kernels(on)
    }

    fn config(&self) -> &UNetConfig {
        &self.net.cfg
    }

    fn eps(&self, x: &Tensor, t: &[f64]) -> Result<Tensor> {
        x.check_finite("the input")?;
        let ts = t
            .iter()
            .map(|&v| self.check_timestep(v).map(|t| t as f32))
            .collect::<Result<Vec<_>>>()?;
        let out = self.net.forward(&self.be, &self.be.upload(x)?, &ts)?;
        self.be.download(&out)
    }

    fn eps_vjp(&self, x: &Tensor, t: f64, r: &Tensor) -> Result<Tensor> {
        x.check_finite("the input")?;
        r.check_finite("the cotangent")?;
        if r.shape() != x.shape() {
            bail!(
                "cotangent shape {:?} does not match the input's {:?}",
                r.shape(),
                x.shape()
            );
        }
        let t = self.check_timestep(t)? as f32;
        let (_, tape) = self
            .net
            .forward_with_tape(&self.be, &self.be.upload(x)?, &[t])?;
        let g = self.net.vjp(&self.be, &tape, &self.be.upload(r)?)?;
        self.be.download(&g)
    }

    fn dps_grad(
        &self,
        x: &Tensor,
        t: f64,
        y: &Tensor,
        op: &Operator,
        sigma_y: f64,
    ) -> Result<Tensor> {
        x.check_finite("the input")?;
        crate::samplers::check_param("--sigma-y", sigma_y, true)?;
        let t = self.check_timestep(t)?;
        self.with_problem(y, op, |p| {
            let image = p.image_shape()?;
            if x.shape() != image.as_slice() {
                bail!(
                    "input shape {:?} does not fit the measurement's images {image:?}",
                    x.shape()
                );
            }
            let g = dps::gradient(p, &self.be.upload(x)?, t, sigma_y)?;
            self.be.download(&g.grad)
        })
    }

    fn dps(
        &self,
        y: &Tensor,
        op: &Operator,
        x_t: &Tensor,
        params: &dps::DpsParams,
        progress: Progress,
    ) -> Result<Tensor> {
        x_t.check_finite("the starting noise (--init)")?;
        self.with_problem(y, op, |p| {
            let out = dps::run(p, self.be.upload(x_t)?, params, progress)?;
            self.be.download(&out)
        })
    }

    fn diffpir(
        &self,
        y: &Tensor,
        op: &Operator,
        params: &diffpir::DiffPirParams,
        progress: Progress,
    ) -> Result<Tensor> {
        self.with_problem(y, op, |p| {
            let out = diffpir::run(p, params, progress)?;
            self.be.download(&out)
        })
    }

    fn diffpir_pnp(
        &self,
        y: &Tensor,
        op: &Operator,
        params: &diffpir_pnp::DiffPirPnpParams,
        seeds: &[u64],
        progress: Progress,
    ) -> Result<(Tensor, CgReport)> {
        self.with_problem(y, op, |p| {
            let (out, report) = diffpir_pnp::run(p, params, seeds, progress)?;
            Ok((self.be.download(&out)?, report))
        })
    }

    fn dps_paper(
        &self,
        y: &Tensor,
        op: &Operator,
        x_t: &Tensor,
        params: &dps_paper::DpsPaperParams,
        seeds: &[u64],
        progress: Progress,
    ) -> Result<Tensor> {
        x_t.check_finite("the starting noise (--init)")?;
        self.with_problem(y, op, |p| {
            let out = dps_paper::run(p, self.be.upload(x_t)?, params, seeds, progress)?;
            self.be.download(&out)
        })
    }

    fn sample(&self, x_t: &Tensor, steps: usize, progress: Progress) -> Result<Tensor> {
        x_t.check_finite("the starting noise")?;
        let out = ddim::sample(
            &self.be,
            &self.net,
            &self.schedule,
            self.be.upload(x_t)?,
            steps,
            progress,
        )?;
        self.be.download(&out)
    }

    fn residual_ratio(&self, x: &Tensor, y: &Tensor, op: &Operator) -> Result<Vec<f64>> {
        self.with_problem(y, op, |p| {
            let image = p.image_shape()?;
            if x.shape() != image.as_slice() {
                bail!(
                    "reconstruction shape {:?} does not fit the measurement's images {image:?}",
                    x.shape()
                );
            }
            p.residual_ratio(&self.be.upload(x)?)
        })
    }
}

/// ‖A x − y‖ / ‖y‖ per slice on the CPU, for results that did not come from a model.
pub fn residual_ratio(x: &Tensor, y: &Tensor, op: &Operator) -> Result<Vec<f64>> {
    let ax = op.apply(x)?;
    if ax.shape() != y.shape() {
        bail!(
            "the reconstruction's measurement shape {:?} and the measurement's {:?} differ",
            ax.shape(),
            y.shape()
        );
    }
    let be = CpuBackend::default();
    let diff = be.lincomb(&ax, 1.0, y, -1.0)?;
    Ok(crate::samplers::norm_ratios(
        &be.sum_sq_per_item(&diff)?,
        &be.sum_sq_per_item(y)?,
    ))
}
