//! The command line: flag names are a contract (tests and users depend on them).

use crate::engine::{self, Device, Model};
use crate::error::{Error, Result};
use crate::evaluate::{self, Spec};
use crate::metrics::{self, Quality};
use crate::operators::{self, Kernel, Operator};
use crate::precision::Precision;
use crate::progress::ProgressBar;
use crate::rng::{normal_tensor, slice_noise};
use crate::samplers::cg::CgSettings;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::schedule::Skip;
use crate::tensor::Tensor;
use crate::{bail, figure, io, phantom, spread};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "diffrecon",
    version,
    about = "Diffusion-prior reconstruction of blurred, noisy images (DPS and DiffPIR-style)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Noise prediction eps(x, t) for a batch.
    Eps {
        #[command(flatten)]
        model: ModelArgs,
        /// Input x_t: .npy of shape (H,W), (1,H,W) or (N,1,H,W).
        #[arg(long)]
        input: PathBuf,
        /// Timesteps: one per batch item, or one for all (comma-separated integers).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        t: Vec<f64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The DPS gradient dL/dx at state x and timestep t.
    DpsGrad {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        input: PathBuf,
        #[arg(long, allow_negative_numbers = true)]
        t: f64,
        #[arg(long)]
        measurement: PathBuf,
        #[command(flatten)]
        op: OperatorArgs,
        #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
        sigma_y: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Blur an image and add relative Gaussian noise: y = K x + e.
    Simulate {
        /// Ground truth: .png (pixels in [0,1]) or .npy (model space [-1,1]).
        #[arg(long)]
        image: PathBuf,
        #[command(flatten)]
        op: OperatorArgs,
        /// ‖e‖ = noise_level · ‖K x‖ per slice.
        #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
        noise_level: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Reconstruct x from a measurement y (published DiffPIR by default; see --sampler).
    Reconstruct {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        measurement: PathBuf,
        #[command(flatten)]
        op: OperatorArgs,
        #[command(flatten)]
        sampler: SamplerArgs,
        /// Starting noise x_T for dps and dps-paper (same shape as y); the others ignore it.
        #[arg(long, conflicts_with = "seed")]
        init: Option<PathBuf>,
        /// Seed of the random samplers (slice i of a published sampler uses seed + i).
        #[arg(long)]
        seed: Option<u64>,
        /// Ground truth, to print MSE, PSNR and SSIM.
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// The notebook's experiment end to end on the built-in test phantom.
    Demo {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value = "demo-out")]
        out_dir: PathBuf,
        /// Seed of the measurement noise and of DPS's starting noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
        steps: i64,
    },
    /// Unconditional DDIM (eta = 0) samples from the prior, as a grid PNG (and .npy beside it).
    Sample {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 16)]
        count: usize,
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        steps: i64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// The quality table on held-out phantoms: observation, Tikhonov and TV (best λ), DPS,
    /// DiffPIR-style; with --sweep also the guidance and tau sweeps on separate phantoms.
    Evaluate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 32)]
        count: usize,
        #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
        steps: i64,
        #[command(flatten)]
        op: OperatorArgs,
        #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
        noise_level: f64,
        #[arg(long, default_value_t = 0.15, allow_negative_numbers = true)]
        guidance: f64,
        #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
        tau: f64,
        /// Published DiffPIR's λ and ζ, published DPS's ζ (defaults: the sweeps' best).
        #[arg(long, allow_negative_numbers = true)]
        lambda: Option<f64>,
        #[arg(long, allow_negative_numbers = true)]
        zeta: Option<f64>,
        #[arg(long, allow_negative_numbers = true)]
        dps_zeta: Option<f64>,
        /// Your own ground truths (a directory of PNG/NPY images, or one stack) instead of
        /// phantoms; they are blurred and noised as the flags say.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Posterior spread: this many slices, `--samples` draws each (0 slices: skip).
        #[arg(long, default_value_t = 8)]
        spread_count: usize,
        #[arg(long, default_value_t = 4)]
        samples: usize,
        /// Also run the parameter sweeps (on phantoms outside the table's set).
        #[arg(long)]
        sweep: bool,
        #[arg(long, default_value_t = 8)]
        sweep_count: usize,
        /// Also rerun the diffusion samplers at these precisions (e.g. tf32,bf16) and report
        /// each one's PSNR change from the table's precision, slice by slice.
        #[arg(long, value_enum, value_delimiter = ',')]
        compare_precision: Vec<Precision>,
    },
    /// Time the UNet forward and whole samplers on a device (synthetic weights of the
    /// notebook's config unless --weights is given).
    Bench {
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long)]
        num_heads: Option<usize>,
        #[arg(long, default_value = "auto")]
        device: Device,
        /// The GEMMs' arithmetic: f32, tf32 or bf16 (see `reconstruct --help`).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
        steps: i64,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// After timing each op, run it once more with per-kernel GPU time recorded (CUDA
        /// events) and print each op's kernel table after the timings.
        #[arg(long)]
        profile: bool,
    },
    /// Synthetic CT-like phantoms (8-bit quantised), for training and evaluation.
    Phantoms {
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// A .npy file (N,1,S,S) in model space, or a directory of PNGs.
        #[arg(long)]
        out: PathBuf,
    },
}

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
}

impl ModelArgs {
    fn load(&self) -> Result<(Box<dyn Model>, PathBuf)> {
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
pub enum OperatorKind {
    Motion,
    Gaussian,
    Custom,
}

#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    #[arg(long, value_enum, default_value_t = OperatorKind::Motion)]
    pub operator: OperatorKind,
    #[arg(long, default_value_t = 9, allow_negative_numbers = true)]
    pub kernel_size: i64,
    /// Motion direction in degrees.
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    pub angle: f64,
    /// Gaussian variance (pixels²).
    #[arg(long, allow_negative_numbers = true)]
    pub variance: Option<f64>,
    /// A (k, k) .npy kernel for --operator custom, used as given.
    #[arg(long)]
    pub kernel_file: Option<PathBuf>,
}

impl OperatorArgs {
    pub fn kernel(&self) -> Result<Operator> {
        self.blur_kernel().map(Operator::Blur)
    }

    fn blur_kernel(&self) -> Result<Kernel> {
        let size = || -> Result<usize> {
            if self.kernel_size <= 0 {
                bail!(
                    "--kernel-size must be a positive odd number, got {}",
                    self.kernel_size
                );
            }
            Ok(self.kernel_size as usize)
        };
        match self.operator {
            OperatorKind::Motion => Kernel::motion(size()?, self.angle),
            OperatorKind::Gaussian => match self.variance {
                Some(v) => Kernel::gaussian(size()?, v),
                None => bail!("--operator gaussian needs --variance V"),
            },
            OperatorKind::Custom => match &self.kernel_file {
                Some(p) => {
                    Kernel::custom(&io::npy::read_npy(p)?).map_err(|e| e.context(p.display()))
                }
                None => bail!("--operator custom needs --kernel-file K.npy"),
            },
        }
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
    /// Classical baseline: argmin ‖Kx − y‖² + λ‖x‖² by conjugate gradients.
    Tikhonov,
    /// Classical baseline: argmin ½‖Kx − y‖² + λ·TV(x) by a primal-dual solver.
    Tv,
}

#[derive(Args, Debug, Clone)]
pub struct SamplerArgs {
    /// Default: published DiffPIR, the best sampler of `evaluate`'s table (README).
    #[arg(long, value_enum, default_value_t = SamplerKind::DiffpirPnp)]
    pub sampler: SamplerKind,
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub steps: i64,
    /// DPS guidance scale.
    #[arg(long, default_value_t = 0.15, allow_negative_numbers = true)]
    pub guidance: f64,
    /// DPS measurement noise level in the likelihood.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub sigma_y: f64,
    /// DiffPIR-style data step size.
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    pub tau: f64,
    /// tikhonov / tv: regularisation weight; diffpir-pnp: prior weight λ (defaults: the best
    /// on phantoms outside the evaluation set).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// diffpir-pnp: fraction of fresh noise per step; dps-paper: step size on ‖y − K x̂0‖.
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
    fn diffpir_pnp(&self) -> Result<DiffPirPnpParams> {
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
            steps: steps(self.steps)?,
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

    fn dps_paper(&self) -> Result<DpsPaperParams> {
        let p = DpsPaperParams {
            steps: steps(self.steps)?,
            zeta: self.zeta.unwrap_or(DpsPaperParams::default().zeta),
            eta: self.eta,
        };
        p.check()?;
        Ok(p)
    }

    fn samples(&self) -> Result<usize> {
        match self.samples {
            1 => Ok(1),
            m if m < 1 => bail!("--samples must be at least 1, got {m}"),
            m => match self.sampler {
                SamplerKind::Diffpir | SamplerKind::Tikhonov | SamplerKind::Tv => bail!(
                    "--samples needs a stochastic sampler (dps, dps-paper, diffpir-pnp); {} is deterministic",
                    sampler_name(self.sampler)
                ),
                _ => Ok(m as usize),
            },
        }
    }
}

fn steps(v: i64) -> Result<usize> {
    if v < 2 {
        bail!("--steps must be at least 2, got {v}");
    }
    Ok(v as usize)
}

/// Read an image stack as (N,1,H,W), rejecting NaN/Inf.
fn read_stack(path: &Path, what: &str) -> Result<Tensor> {
    let t = io::read_image(path)?
        .into_image_batch(what)
        .map_err(|e| e.context(path.display()))?;
    t.check_finite(what)
        .map_err(|e| e.context(path.display()))?;
    Ok(t)
}

fn write(path: &Path, t: &Tensor) -> Result<()> {
    for p in io::write_image(path, t)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eps {
            model,
            input,
            t,
            out,
        } => {
            let x = read_stack(&input, "--input")?;
            if t.is_empty() {
                bail!("--t needs at least one timestep");
            }
            let eps = model.load()?.0.eps(&x, &t)?;
            write(&out, &eps)
        }
        Command::DpsGrad {
            model,
            input,
            t,
            measurement,
            op,
            sigma_y,
            out,
        } => {
            let kernel = op.kernel()?;
            let x = read_stack(&input, "--input")?;
            let y = read_stack(&measurement, "--measurement")?;
            let g = model.load()?.0.dps_grad(&x, t, &y, &kernel, sigma_y)?;
            write(&out, &g)
        }
        Command::Simulate {
            image,
            op,
            noise_level,
            seed,
            out,
        } => {
            let kernel = op.kernel()?;
            let x = read_stack(&image, "--image")?;
            let y = operators::simulate(&x, &kernel, noise_level, seed)?;
            write(&out, &y)
        }
        Command::Reconstruct {
            model,
            measurement,
            op,
            sampler,
            init,
            seed,
            truth,
            out,
        } => reconstruct(
            &model,
            &measurement,
            &op,
            &sampler,
            init.as_deref(),
            seed.unwrap_or(0),
            truth.as_deref(),
            &out,
        ),
        Command::Demo {
            model,
            out_dir,
            seed,
            steps: n,
        } => demo(&model, &out_dir, seed, steps(n)?),
        Command::Bench {
            weights,
            num_heads,
            device,
            precision,
            batches,
            steps: n,
            repeats,
            size,
            profile,
        } => {
            if batches.is_empty() || batches.contains(&0) {
                bail!("--batches needs positive batch sizes");
            }
            let model = match weights {
                Some(w) => engine::load(&w, num_heads, device, precision)?,
                None => {
                    let cfg = crate::unet::UNetConfig::notebook();
                    engine::synthetic(&cfg, 1, device, precision)?
                }
            };
            let timings =
                crate::bench::run(model.as_ref(), size, &batches, steps(n)?, repeats, profile);
            print!("{}", crate::bench::table(&model.device(), &timings));
            let profiles = crate::bench::profiles(&timings);
            if profile && profiles.is_empty() {
                eprintln!("--profile: {} runs no kernels to profile", model.device());
            }
            print!("{profiles}");
            Ok(())
        }
        Command::Phantoms {
            count,
            seed,
            size,
            out,
        } => {
            if count == 0 {
                bail!("--count must be positive");
            }
            phantom::check_size(size)?;
            let t = phantom::phantoms(count, seed, size);
            if out.extension().is_some() {
                return write(&out, &t);
            }
            std::fs::create_dir_all(&out).map_err(|e| crate::error::io_error(&out, e))?;
            for (i, slice) in t.data().chunks(size * size).enumerate() {
                let p01: Vec<f32> = slice.iter().map(|v| (v + 1.0) / 2.0).collect();
                io::png::write_png_gray(
                    &out.join(format!("phantom_{i:05}.png")),
                    &p01,
                    size,
                    size,
                    8,
                )?;
            }
            println!("wrote {count} PNGs to {}", out.display());
            Ok(())
        }
        Command::Sample {
            model,
            count,
            steps: n,
            seed,
            size,
            out,
        } => {
            if count == 0 {
                bail!("--count must be positive");
            }
            let (engine, _) = model.load()?;
            let x_t = normal_tensor(&[count, engine.config().in_ch, size, size], seed);
            let mut bar = ProgressBar::new("DDIM");
            let x = engine.sample(&x_t, steps(n)?, &mut |d, t| bar.update(d, t))?;
            let slices: Vec<Vec<f32>> = x.data().chunks(size * size).map(|c| c.to_vec()).collect();
            let cols = (count as f64).sqrt().ceil() as usize;
            figure::image_grid(&slices, size, size, cols, 2, &out)?;
            let npy = out.with_extension("npy");
            io::npy::write_npy(&npy, &x)?;
            println!("wrote {} and {}", out.display(), npy.display());
            Ok(())
        }
        Command::Evaluate {
            model,
            count,
            steps: n,
            op,
            noise_level,
            guidance,
            tau,
            lambda,
            zeta,
            dps_zeta,
            images,
            spread_count,
            samples,
            sweep,
            sweep_count,
            compare_precision,
        } => {
            if count == 0 {
                bail!("--count must be positive");
            }
            if spread_count > 0 && samples < 2 {
                bail!("--samples must be at least 2 to measure a spread (or --spread-count 0)");
            }
            crate::samplers::check_param("--tau", tau, false)?;
            crate::samplers::check_param("--noise-level", noise_level, false)?;
            let (engine, path) = model.load()?;
            let images = images.map(|p| read_truths(&p)).transpose()?;
            if let Some(t) = &images {
                let m = engine.config().size_multiple();
                let (h, w) = (t.shape()[2], t.shape()[3]);
                if !h.is_multiple_of(m) || !w.is_multiple_of(m) {
                    bail!("--images: the images are {h}×{w}; this model needs height and width that are multiples of {m} (crop or pad them)");
                }
            }
            let steps = steps(n)?;
            let spec = Spec {
                count: images.as_ref().map_or(count, |t| t.shape()[0]),
                seed: evaluate::EVAL_SEED,
                size: 64 - 64 % engine.config().size_multiple(),
                noise_level,
                kernel: op.kernel()?,
                dps: DpsParams {
                    steps,
                    guidance,
                    sigma_y: 0.01,
                },
                diffpir: DiffPirParams { steps, tau },
                pnp: DiffPirPnpParams {
                    steps,
                    lambda: lambda.unwrap_or(DiffPirPnpParams::default().lambda),
                    zeta: zeta.unwrap_or(DiffPirPnpParams::default().zeta),
                    noise_level,
                    ..Default::default()
                },
                dps_paper: DpsPaperParams {
                    steps,
                    zeta: dps_zeta.unwrap_or(DpsPaperParams::default().zeta),
                    ..Default::default()
                },
                images,
            };
            spec.dps.check()?;
            spec.pnp.check()?;
            spec.dps_paper.check()?;
            let what = match &spec.images {
                Some(t) => format!("{} images", t.shape()[0]),
                None => format!("{count} held-out phantoms (seed {})", spec.seed),
            };
            println!(
                "evaluate: {what}, weights {}, {n} steps, noise {noise_level}, device {}",
                path.display(),
                engine.device()
            );
            let mut say = |m: &str| eprintln!("running {m} ...");
            let rows = evaluate::evaluate(engine.as_ref(), &spec, &mut say)?;
            println!("{}", evaluate::format_table(&rows));
            println!("{}\n", evaluate::verdict(&rows));
            if !compare_precision.is_empty() {
                let mut effects = Vec::new();
                for &p in &compare_precision {
                    let other = engine::load(&path, model.num_heads, model.device, p)?;
                    let e = evaluate::precision_effect(&rows, other.as_ref(), p, &spec, &mut say)?;
                    effects.extend(e);
                }
                println!("the diffusion samplers at other precisions (same slices, paired):");
                println!(
                    "{}",
                    evaluate::format_precision_effect(model.precision, &effects)
                );
            }
            if spread_count > 0 {
                let res =
                    evaluate::spread(engine.as_ref(), &spec, spread_count, samples, &mut say)?;
                println!("posterior spread (same measurements):");
                println!("{}", evaluate::format_spread(&res));
            }
            if sweep {
                let sweep_spec = Spec {
                    count: sweep_count,
                    seed: evaluate::SWEEP_SEED,
                    images: None,
                    ..spec
                };
                let res = evaluate::sweeps(
                    engine.as_ref(),
                    &sweep_spec,
                    &evaluate::default_sweeps(),
                    &mut say,
                )?;
                println!(
                    "sweeps on {sweep_count} other phantoms (seed {}):",
                    sweep_spec.seed
                );
                println!(
                    "| sampler | parameter | value | PSNR (dB) | SSIM |\n|---|---|---|---|---|"
                );
                for (name, param, v, p, s) in res {
                    println!("| {name} | {param} | {v} | {p:.3} | {s:.4} |");
                }
            }
            Ok(())
        }
    }
}

/// `--images`: ground truths, finite.
fn read_truths(path: &Path) -> Result<Tensor> {
    let t = io::read_image_stack(path)?;
    t.check_finite("--images")
        .map_err(|e| e.context(path.display()))?;
    Ok(t)
}

#[allow(clippy::too_many_arguments)]
fn reconstruct(
    model: &ModelArgs,
    measurement: &Path,
    op: &OperatorArgs,
    sampler: &SamplerArgs,
    init: Option<&Path>,
    seed: u64,
    truth: Option<&Path>,
    out: &Path,
) -> Result<()> {
    let kernel = op.kernel()?;
    let y = read_stack(measurement, "--measurement")?;
    let truth = truth.map(|p| read_stack(p, "--truth")).transpose()?;
    let m = sampler.samples()?;
    if y.shape()[0] * m > MAX_BATCH {
        bail!(
            "{} slices × {m} samples = {} images in one batch; at most {MAX_BATCH}: use fewer --samples or split the measurement",
            y.shape()[0],
            y.shape()[0] * m
        );
    }
    if m > 1 && init.is_some() {
        bail!("--samples draws its own starting noise per sample; drop --init (or use --seed)");
    }
    let y_all = spread::tile(&y, m)?;
    let x_t = match init {
        Some(p) => read_stack(p, "--init")?,
        None => starting_noise(sampler.sampler, &y_all, seed, m),
    };
    let start = Instant::now();
    let (x_all, device) = match sampler.sampler {
        SamplerKind::Tikhonov | SamplerKind::Tv => {
            let solver = engine::solver(model.device)?;
            (
                run_baseline(solver.as_ref(), sampler, &y, &kernel)?,
                solver.device(),
            )
        }
        _ => {
            let (engine, _) = model.load()?;
            if sampler.sampler == SamplerKind::Dps && model.precision != Precision::F32 {
                eprintln!("note: the notebook's DPS is sensitive to the GEMMs' rounding: at --precision {} its reconstructions move by about ±1 dB PSNR per slice (over 32 phantoms the mean change stayed within its standard error; BENCHMARKS.md); use --precision f32 where slice-level reproducibility matters", model.precision);
            }
            (
                run_sampler(engine.as_ref(), sampler, &y_all, &kernel, &x_t, seed)?,
                engine.device(),
            )
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let (x, std) = spread::mean_std(&x_all, m)?;
    for (i, r) in engine::residual_ratio(&x, &y, &kernel)?.iter().enumerate() {
        println!("slice {i}: data-consistency residual ||Kx - y|| / ||y|| = {r:.6}");
    }
    if let Some(truth) = truth {
        for (i, q) in metrics::quality(&x, &truth)?.iter().enumerate() {
            println!(
                "slice {i}: MSE {:.6} | PSNR {:.3} dB | SSIM {:.4}",
                q.mse, q.psnr, q.ssim
            );
        }
        if m > 1 {
            let c = spread::calibration(&x, &std, &truth)?;
            println!(
                "spread of {m} samples: corr(std, |error|) {:.3} | error within ±2 std {:.1}% | mean std {:.4}",
                c.correlation,
                100.0 * c.coverage_2std,
                c.mean_std
            );
        }
    }
    let what = if m > 1 {
        format!("mean of {m} samples per slice, ")
    } else {
        String::new()
    };
    println!(
        "{} on {device}: {what}{secs:.2} s",
        sampler_name(sampler.sampler)
    );
    write(out, &x)?;
    if m > 1 {
        write_std(out, &std)?;
    }
    Ok(())
}

/// The largest batch `reconstruct` builds from slices × samples (memory grows with it).
const MAX_BATCH: usize = 4096;

/// Starting noise: one stream per slice (seed + slice index) for the published samplers and
/// for several samples; the notebook's DPS keeps one stream over the batch.
fn starting_noise(kind: SamplerKind, y: &Tensor, seed: u64, samples: usize) -> Tensor {
    if kind == SamplerKind::Dps && samples == 1 {
        normal_tensor(y.shape(), seed)
    } else {
        slice_noise(y.shape(), &slice_seeds(seed, y.shape()[0]), 0)
    }
}

fn slice_seeds(seed: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| seed.wrapping_add(i)).collect()
}

/// The per-pixel std beside `out`: OUT_std.npy (raw, model-space units) and OUT_std.png
/// (scaled so that the largest std is white).
fn write_std(out: &Path, std: &Tensor) -> Result<()> {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let base = out.with_file_name(format!("{stem}_std"));
    write(&base.with_extension("npy"), std)?;
    let (scaled, max) = scaled_to_max(std)?;
    write(&base.with_extension("png"), &scaled)?;
    println!("(the std PNG is scaled: white = {max:.4} in model units)");
    Ok(())
}

fn sampler_name(s: SamplerKind) -> &'static str {
    match s {
        SamplerKind::Dps => "DPS",
        SamplerKind::Diffpir => "DiffPIR-style",
        SamplerKind::DiffpirPnp => "DiffPIR (published)",
        SamplerKind::DpsPaper => "DPS (published)",
        SamplerKind::Tikhonov => "Tikhonov",
        SamplerKind::Tv => "TV",
    }
}

/// Default λ of the baselines: the best of `evaluate`'s λ grid on its 32 phantoms (README).
pub const DEFAULT_TIKHONOV_LAMBDA: f64 = 3e-3;
pub const DEFAULT_TV_LAMBDA: f64 = 3e-4;

fn run_sampler(
    engine: &dyn Model,
    args: &SamplerArgs,
    y: &Tensor,
    kernel: &Operator,
    x_t: &Tensor,
    seed: u64,
) -> Result<Tensor> {
    let seeds = slice_seeds(seed, y.shape()[0]);
    let steps = steps(args.steps)?;
    let mut bar = ProgressBar::new(sampler_name(args.sampler));
    let mut progress = |d: usize, t: usize| bar.update(d, t);
    match args.sampler {
        SamplerKind::Dps => {
            let p = DpsParams {
                steps,
                guidance: args.guidance,
                sigma_y: args.sigma_y,
            };
            engine.dps(y, kernel, x_t, &p, &mut progress)
        }
        SamplerKind::Diffpir => engine.diffpir(
            y,
            kernel,
            &DiffPirParams {
                steps,
                tau: args.tau,
            },
            &mut progress,
        ),
        SamplerKind::DiffpirPnp => {
            let (x, cg) =
                engine.diffpir_pnp(y, kernel, &args.diffpir_pnp()?, &seeds, &mut progress)?;
            eprintln!(
                "CG: {} proximal solves, at most {} iterations each, worst relative residual {:.2e}",
                cg.solves, cg.iters, cg.rel_residual
            );
            Ok(x)
        }
        SamplerKind::DpsPaper => {
            engine.dps_paper(y, kernel, x_t, &args.dps_paper()?, &seeds, &mut progress)
        }
        SamplerKind::Tikhonov | SamplerKind::Tv => run_baseline(engine, args, y, kernel),
    }
}

fn run_baseline(
    solver: &dyn engine::Solver,
    args: &SamplerArgs,
    y: &Tensor,
    op: &Operator,
) -> Result<Tensor> {
    match args.sampler {
        SamplerKind::Tikhonov => {
            solver.tikhonov(y, op, args.lambda.unwrap_or(DEFAULT_TIKHONOV_LAMBDA))
        }
        _ => solver.total_variation(y, op, args.lambda.unwrap_or(DEFAULT_TV_LAMBDA)),
    }
}

/// The seed of the built-in demo phantom (outside any training range the engine uses).
pub const DEMO_PHANTOM_SEED: u64 = 1_000_003;

fn demo(model: &ModelArgs, out_dir: &Path, seed: u64, n_steps: usize) -> Result<()> {
    let (engine, weights) = model.load()?;
    std::fs::create_dir_all(out_dir).map_err(|e| crate::error::io_error(out_dir, e))?;
    let size = 64 - 64 % engine.config().size_multiple();
    let truth = phantom::phantoms(1, DEMO_PHANTOM_SEED, size);
    let kernel = Operator::Blur(Kernel::motion(9, 20.0)?);
    let y = operators::simulate(&truth, &kernel, 0.01, seed)?;
    println!(
        "diffrecon demo: motion blur k=9, angle 20, noise 0.01, {n_steps} steps, weights {}, device {}",
        weights.display(),
        engine.device()
    );
    // DPS runs 4 samples in one batch: sample 0 starts from the same noise as a single run
    // (slices are independent), the others give the posterior mean and spread.
    let x_t = dps_starts(&y, seed, DEMO_DPS_SAMPLES)?;
    let start = Instant::now();
    let mut bar = ProgressBar::new("DPS");
    let dps = DpsParams {
        steps: n_steps,
        ..Default::default()
    };
    let y_all = spread::tile(&y, DEMO_DPS_SAMPLES)?;
    let dps_all = engine.dps(&y_all, &kernel, &x_t, &dps, &mut |d, t| bar.update(d, t))?;
    let t_dps = start.elapsed().as_secs_f64();
    let x_dps = dps_all.items(0..1)?;
    let (dps_mean, dps_std) = spread::mean_std(&dps_all, DEMO_DPS_SAMPLES)?;
    let start = Instant::now();
    let mut bar = ProgressBar::new("DiffPIR-style");
    let pir = DiffPirParams {
        steps: n_steps,
        ..Default::default()
    };
    let x_pir = engine.diffpir(&y, &kernel, &pir, &mut |d, t| bar.update(d, t))?;
    let t_pir = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut bar = ProgressBar::new("DiffPIR (published)");
    let pnp = DiffPirPnpParams {
        steps: n_steps,
        ..Default::default()
    };
    let (x_pnp, _) =
        engine.diffpir_pnp(&y, &kernel, &pnp, &[seed], &mut |d, t| bar.update(d, t))?;
    let t_pnp = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut bar = ProgressBar::new("DPS (published)");
    let dpsp = DpsPaperParams {
        steps: n_steps,
        ..Default::default()
    };
    let x_dpsp = engine.dps_paper(
        &y,
        &kernel,
        &x_t.items(0..1)?,
        &dpsp,
        &[seed],
        &mut |d, t| bar.update(d, t),
    )?;
    let t_dpsp = start.elapsed().as_secs_f64();
    let tv = engine.total_variation(&y, &kernel, DEFAULT_TV_LAMBDA)?;
    let rows: Vec<(&str, &Tensor, Option<f64>)> = vec![
        ("Observation", &y, None),
        ("DPS", &x_dps, Some(t_dps)),
        ("DiffPIR-style", &x_pir, Some(t_pir)),
        ("TV (best lambda)", &tv, None),
        ("DiffPIR (paper)", &x_pnp, Some(t_pnp)),
        ("DPS (paper)", &x_dpsp, Some(t_dpsp)),
        ("DPS mean of 4", &dps_mean, None),
    ];
    let mut panels = vec![panel(&truth, "Ground truth", vec![])];
    for (name, img, secs) in &rows {
        let q: Quality = metrics::quality(img, &truth)?[0];
        let res = engine.residual_ratio(img, &y, &kernel)?[0];
        let time = secs.map(|s| format!(" | {s:.2} s")).unwrap_or_default();
        println!(
            "{name:>16} | MSE: {:.6} | PSNR: {:.3} dB | SSIM: {:.4} | residual {res:.4}{time}",
            q.mse, q.psnr, q.ssim
        );
        panels.push(panel(
            img,
            name,
            vec![
                format!("PSNR {:.2} dB", q.psnr),
                format!("SSIM {:.3}", q.ssim),
            ],
        ));
    }
    let c = spread::calibration(&dps_mean, &dps_std, &truth)?;
    println!(
        "DPS spread over {DEMO_DPS_SAMPLES} samples: corr(std, |error|) {:.3}, error within ±2 std {:.1}%",
        c.correlation,
        100.0 * c.coverage_2std
    );
    let (std_image, max_std) = scaled_to_max(&dps_std)?;
    panels.push(panel(
        &std_image,
        "DPS std",
        vec![format!("white = {max_std:.3}")],
    ));
    for (file, t) in [
        ("truth.png", &truth),
        ("observation.png", &y),
        ("dps.png", &x_dps),
        ("diffpir.png", &x_pir),
        ("diffpir_pnp.png", &x_pnp),
        ("dps_paper.png", &x_dpsp),
        ("dps_mean.png", &dps_mean),
        ("dps_std.npy", &dps_std),
    ] {
        io::write_image(&out_dir.join(file), t)?;
    }
    let fig = out_dir.join("comparison.png");
    figure::comparison_figure(&panels, 4, &fig)?;
    println!("wrote images and {}", fig.display());
    Ok(())
}

/// Posterior samples the demo draws with DPS.
const DEMO_DPS_SAMPLES: usize = 4;

/// DPS starting noise for `m` samples of the single slice y: sample 0 is the single run's.
fn dps_starts(y: &Tensor, seed: u64, m: usize) -> Result<Tensor> {
    let mut data = normal_tensor(y.shape(), seed).into_data();
    let mut shape = y.shape().to_vec();
    shape[0] = m - 1;
    let seeds: Vec<u64> = (1..m as u64).map(|i| seed.wrapping_add(i)).collect();
    data.extend_from_slice(slice_noise(&shape, &seeds, 0).data());
    shape[0] = m;
    Tensor::new(shape, data)
}

/// Map [0, max] to model space [−1, 1] for display; also returns max.
fn scaled_to_max(t: &Tensor) -> Result<(Tensor, f32)> {
    let max = t.data().iter().fold(0.0f32, |a, &b| a.max(b));
    let data = t
        .data()
        .iter()
        .map(|v| if max > 0.0 { 2.0 * v / max - 1.0 } else { -1.0 })
        .collect();
    Ok((Tensor::new(t.shape().to_vec(), data)?, max))
}

fn panel(t: &Tensor, title: &str, caption: Vec<String>) -> figure::Panel {
    let (h, w) = (t.shape()[2], t.shape()[3]);
    figure::Panel {
        image: t.data()[..h * w].to_vec(),
        h,
        w,
        title: title.to_string(),
        caption,
    }
}

/// Exit code and message for an error at the top level.
pub fn report(e: &Error) -> i32 {
    eprintln!("error: {e}");
    e.exit_code()
}
