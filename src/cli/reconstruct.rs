//! `reconstruct`: one sampler (or classical baseline) on a measurement, optionally several
//! posterior samples per slice with their per-pixel spread.

use super::args::{sampler_name, ModelArgs, SamplerArgs, SamplerKind};
use super::files::{check_operator, check_output, read_stack, scaled_to_max, write};
use super::limits::{Cost, Work};
use super::operator::{parse_size, OperatorArgs, MODEL_SIZE};
use crate::engine::{self, Model};
use crate::error::Result;
use crate::metrics;
use crate::operators::Operator;
use crate::precision::Precision;
use crate::progress::ProgressBar;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::dps::DpsParams;
use crate::tensor::Tensor;
use crate::{api, bail, spread};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub measurement: PathBuf,
    #[command(flatten)]
    pub op: OperatorArgs,
    /// The image size H,W where the measurement does not give it (CT) [default: the bundled
    /// prior's 64×64].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub size: Vec<i64>,
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// Starting noise x_T for dps and dps-paper (the images' shape); the others ignore it.
    #[arg(long, conflicts_with = "seed")]
    pub init: Option<PathBuf>,
    /// Seed of the random samplers (slice i of a published sampler uses seed + i).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Ground truth, to print MSE, PSNR and SSIM.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

/// Reconstruct, print the per-slice residuals (and quality against --truth), write --out.
pub(super) fn run(args: ReconstructArgs) -> Result<()> {
    let ReconstructArgs {
        model,
        measurement,
        op,
        size,
        sampler,
        init,
        seed,
        truth,
        out,
    } = &args;
    let (init, seed, truth) = (init.as_deref(), seed.unwrap_or(0), truth.as_deref());
    let y = read_stack(measurement, "--measurement")?;
    let size = (!size.is_empty()).then(|| parse_size(size)).transpose()?;
    let (n, rows, cols) = (y.shape()[0], y.shape()[2], y.shape()[3]);
    let (h, w) = op.image_for((rows, cols), size, MODEL_SIZE)?;
    let kernel = op.operator((h, w))?;
    check_operator(&kernel)?;
    kernel
        .image_dims((rows, cols))
        .map_err(|e| e.context(measurement.display()))?;
    let truth = truth.map(|p| read_stack(p, "--truth")).transpose()?;
    if let Some(t) = &truth {
        if t.shape() != [n, 1, h, w] {
            bail!(
                "--truth has shape {:?} but the reconstruction will be {:?}",
                t.shape(),
                [n, 1, h, w]
            );
        }
    }
    let m = sampler.samples()?;
    if m > 1 && init.is_some() {
        bail!("--samples draws its own starting noise per sample; drop --init (or use --seed)");
    }
    if sampler.sampler == SamplerKind::Fbp && !matches!(kernel, Operator::Ct(_)) {
        bail!("--sampler fbp needs --operator ct");
    }
    check_sampler_params(sampler)?;
    let budget = model.memory.budget();
    // An overflowing count becomes usize::MAX, which no budget admits.
    let images = n.saturating_mul(m);
    let what = format!(
        "reconstructing {n} slices × {m} samples of {h}×{w} with {}",
        sampler_name(sampler.sampler)
    );
    let fix = "use fewer --samples or split the measurement";
    let start = Instant::now();
    let (x_all, device) = match sampler.sampler {
        SamplerKind::Tikhonov | SamplerKind::Tv | SamplerKind::Fbp => {
            let cost = Cost::solver((h, w), (rows, cols));
            budget.check_items(&what, n as u64, &cost, fix)?;
            let solver = engine::solver(model.device)?;
            (
                run_baseline(solver.as_ref(), sampler, &y, &kernel)?,
                solver.device(),
            )
        }
        _ => {
            let (engine, _) = model.load()?;
            let work = match sampler.sampler {
                SamplerKind::Dps | SamplerKind::DpsPaper => Work::Gradient,
                _ => Work::Forward,
            };
            let cost = Cost::model(engine.config(), (h, w), (rows, cols), work);
            budget.check_items(&what, images as u64, &cost, fix)?;
            let y_all = spread::tile(&y, m)?;
            let x_t = match init {
                Some(p) => read_stack(p, "--init")?,
                None => starting_noise(sampler.sampler, &[images, 1, h, w], seed, m),
            };
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
    check_output(&x_all, "the reconstruction", Some(&likely_cause(sampler)))?;
    let (x, std) = spread::mean_std(&x_all, m)?;
    let residuals = engine::residual_ratio(&x, &y, &kernel)?;
    for (i, (r, zero)) in residuals.iter().zip(zero_slices(&y)).enumerate() {
        if zero {
            println!(
                "slice {i}: data-consistency residual ||Ax - y|| = {r:.6} (absolute: y is zero)"
            );
        } else {
            println!("slice {i}: data-consistency residual ||Ax - y|| / ||y|| = {r:.6}");
        }
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
        check_output(&std, "the samples' std", Some(&likely_cause(sampler)))?;
        write_std(out, &std)?;
    }
    Ok(())
}

/// Every parameter of the chosen sampler, checked before anything is allocated.
fn check_sampler_params(args: &SamplerArgs) -> Result<()> {
    match args.sampler {
        SamplerKind::Dps => dps_params(args)?.check(),
        SamplerKind::Diffpir => diffpir_params(args)?.check(),
        SamplerKind::DiffpirPnp => args.diffpir_pnp().map(|_| ()),
        SamplerKind::DpsPaper => args.dps_paper().map(|_| ()),
        SamplerKind::Tikhonov | SamplerKind::Tv | SamplerKind::Fbp => {
            if let Some(l) = args.lambda {
                crate::samplers::check_param("--lambda", l, true)?;
            }
            args.baseline_steps_note()
        }
    }
}

/// What the caller gave that can push this sampler past f32's range (for the output check).
fn likely_cause(args: &SamplerArgs) -> String {
    let scale = "the measurement's scale";
    match args.sampler {
        SamplerKind::Dps => format!(
            "--guidance {} with --sigma-y {} (DPS steps by guidance/σ_y²), {scale} or the weights",
            args.guidance, args.sigma_y
        ),
        SamplerKind::Diffpir => format!("--tau {}, {scale} or the weights", args.tau),
        SamplerKind::DiffpirPnp => {
            format!(
                "--lambda, --noise-level {}, {scale} or the weights",
                args.noise_level
            )
        }
        SamplerKind::DpsPaper => format!("--zeta, {scale} or the weights"),
        SamplerKind::Tikhonov | SamplerKind::Tv => format!("--lambda or {scale}"),
        SamplerKind::Fbp => scale.to_string(),
    }
}

/// For each slice of y, whether it is all zero (its residual is then absolute).
fn zero_slices(y: &Tensor) -> Vec<bool> {
    let per = y.len() / y.shape()[0].max(1);
    y.data()
        .chunks(per.max(1))
        .map(|s| s.iter().all(|&v| v == 0.0))
        .collect()
}

fn dps_params(args: &SamplerArgs) -> Result<DpsParams> {
    Ok(DpsParams {
        steps: args.steps()?,
        guidance: args.guidance,
        sigma_y: args.sigma_y,
    })
}

fn diffpir_params(args: &SamplerArgs) -> Result<DiffPirParams> {
    Ok(DiffPirParams {
        steps: args.steps()?,
        tau: args.tau,
    })
}

/// Starting noise, as the embedding API draws it (`api::starting_noise`).
fn starting_noise(kind: SamplerKind, shape: &[usize], seed: u64, samples: usize) -> Tensor {
    let sampler = match kind {
        SamplerKind::Dps => api::Sampler::Dps(Default::default()),
        _ => api::Sampler::default(),
    };
    api::starting_noise(&sampler, shape, seed, samples)
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

/// Default λ of the baselines: the best of `evaluate`'s λ grid on its 32 phantoms (README).
pub use crate::api::{DEFAULT_TIKHONOV_LAMBDA, DEFAULT_TV_LAMBDA};

/// The flags' sampler as the embedding API's (its parameters checked).
fn api_sampler(args: &SamplerArgs) -> Result<api::Sampler> {
    let s = match args.sampler {
        SamplerKind::Dps => api::Sampler::Dps(DpsParams {
            steps: args.steps()?,
            guidance: args.guidance,
            sigma_y: args.sigma_y,
        }),
        SamplerKind::Diffpir => api::Sampler::Diffpir(DiffPirParams {
            steps: args.steps()?,
            tau: args.tau,
        }),
        SamplerKind::DiffpirPnp => api::Sampler::DiffpirPnp(args.diffpir_pnp()?),
        SamplerKind::DpsPaper => api::Sampler::DpsPaper(args.dps_paper()?),
        SamplerKind::Tikhonov => api::Sampler::Tikhonov {
            lambda: args.lambda,
        },
        SamplerKind::Tv => api::Sampler::Tv {
            lambda: args.lambda,
        },
        SamplerKind::Fbp => api::Sampler::Fbp,
    };
    Ok(s)
}

/// One run of the sampler over the (tiled) batch, through the embedding API.
fn run_sampler(
    engine: &dyn Model,
    args: &SamplerArgs,
    y: &Tensor,
    kernel: &Operator,
    x_t: &Tensor,
    seed: u64,
) -> Result<Tensor> {
    let sampler = api_sampler(args)?;
    let mut bar = ProgressBar::new(sampler_name(args.sampler));
    let mut progress = |d: usize, t: usize| bar.update(d, t);
    let (x, cg) = api::sample(engine, y, kernel, &sampler, Some(x_t), seed, &mut progress)?;
    if let Some(cg) = cg {
        eprintln!(
            "CG: {} proximal solves, at most {} iterations each, worst relative residual {:.2e}",
            cg.solves, cg.iters, cg.rel_residual
        );
    }
    Ok(x)
}

fn run_baseline(
    solver: &dyn engine::Solver,
    args: &SamplerArgs,
    y: &Tensor,
    op: &Operator,
) -> Result<Tensor> {
    api::baseline(solver, y, op, &api_sampler(args)?)
}
