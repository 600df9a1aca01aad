//! The small commands: `eps` and `dps-grad` (the model's raw outputs), `simulate` (blur and
//! noise), `phantoms` (synthetic ground truths) and `sample` (unconditional DDIM draws).

use super::args::{steps, ModelArgs};
use super::files::{check_operator, check_output, read_stack, write};
use super::limits::{Cost, MemoryArgs, Work};
use super::operator::OperatorArgs;
use crate::error::Result;
use crate::progress::ProgressBar;
use crate::rng::normal_tensor;
use crate::{bail, figure, io, operators, phantom};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EpsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input x_t: .npy of shape (H,W), (1,H,W) or (N,1,H,W).
    #[arg(long)]
    pub input: PathBuf,
    /// Timesteps: one per batch item, or one for all (comma-separated integers).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub t: Vec<f64>,
    #[arg(long)]
    pub out: PathBuf,
}

/// Noise prediction eps(x, t), written to --out.
pub(super) fn eps(args: EpsArgs) -> Result<()> {
    let EpsArgs {
        model,
        input,
        t,
        out,
    } = args;
    let x = read_stack(&input, "--input")?;
    if t.is_empty() {
        bail!("--t needs at least one timestep");
    }
    let engine = model.load()?.0;
    let (n, dims) = (x.shape()[0], image_dims(&x));
    let cost = Cost::model(engine.config(), dims, dims, Work::Forward);
    model.memory.budget().check_items(
        &format!("eps of {n} images of {}×{}", dims.0, dims.1),
        n as u64,
        &cost,
        "split the input",
    )?;
    let eps = engine.eps(&x, &t)?;
    check_output(&eps, "eps", Some("the weights or the input's scale"))?;
    write(&out, &eps)
}

#[derive(Args, Debug)]
pub struct DpsGradArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, allow_negative_numbers = true)]
    pub t: f64,
    #[arg(long)]
    pub measurement: PathBuf,
    #[command(flatten)]
    pub op: OperatorArgs,
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub sigma_y: f64,
    #[arg(long)]
    pub out: PathBuf,
}

/// The DPS gradient dL/dx, written to --out.
pub(super) fn dps_grad(args: DpsGradArgs) -> Result<()> {
    let DpsGradArgs {
        model,
        input,
        t,
        measurement,
        op,
        sigma_y,
        out,
    } = args;
    let x = read_stack(&input, "--input")?;
    let y = read_stack(&measurement, "--measurement")?;
    let kernel = op.operator(image_dims(&x))?;
    check_operator(&kernel)?;
    crate::samplers::check_range(
        "--sigma-y",
        sigma_y,
        crate::samplers::MIN_SIGMA_Y,
        crate::samplers::MAX_SCALE,
    )?;
    let engine = model.load()?.0;
    let (n, dims) = (x.shape()[0], image_dims(&x));
    let cost = Cost::model(engine.config(), dims, image_dims(&y), Work::Gradient);
    model.memory.budget().check_items(
        &format!("the DPS gradient of {n} images of {}×{}", dims.0, dims.1),
        n as u64,
        &cost,
        "split the input",
    )?;
    let g = engine.dps_grad(&x, t, &y, &kernel, sigma_y)?;
    let cause = format!("--sigma-y {sigma_y}, the inputs' scale or the weights");
    check_output(&g, "the DPS gradient", Some(&cause))?;
    write(&out, &g)
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Ground truth: .png (pixels in [0,1]) or .npy (model space [-1,1]).
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub op: OperatorArgs,
    /// ‖e‖ = noise_level · ‖A x‖ per slice.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub noise_level: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[arg(long)]
    pub out: PathBuf,
}

/// y = A x + e, written to --out: (N, 1, rows, cols) in the operator's measurement space.
pub(super) fn simulate(args: SimulateArgs) -> Result<()> {
    let SimulateArgs {
        image,
        op,
        noise_level,
        seed,
        memory,
        out,
    } = args;
    let x = read_stack(&image, "--image")?;
    crate::samplers::check_range(
        "--noise-level",
        noise_level,
        0.0,
        crate::samplers::MAX_NOISE_LEVEL,
    )?;
    let kernel = op.operator(image_dims(&x))?;
    check_operator(&kernel)?;
    check_operator_memory(&memory, "simulate", &x, &kernel)?;
    let y = operators::simulate(&x, &kernel, noise_level, seed)?;
    check_output(
        &y,
        "the measurement",
        Some("the image's scale with this operator"),
    )?;
    write(&out, &y)
}

/// The operator commands: input, A x (or Aᵀ y) and the noise, per slice.
fn check_operator_memory(
    memory: &MemoryArgs,
    what: &str,
    x: &crate::tensor::Tensor,
    op: &operators::Operator,
) -> Result<()> {
    let image = image_dims(x);
    let measurement = op.measurement_dims(image)?;
    let n = x.shape()[0];
    memory.budget().check_items(
        &format!(
            "{what} of {n} slices of {}×{} ({}×{} measurements)",
            image.0, image.1, measurement.0, measurement.1
        ),
        n as u64,
        &Cost::solver(image, measurement),
        "split the input",
    )
}

#[derive(Args, Debug)]
pub struct PhantomsArgs {
    #[arg(long)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// A .npy file (N,1,S,S) in model space, or a directory of PNGs.
    #[arg(long)]
    pub out: PathBuf,
}

/// Phantoms as one .npy stack, or as PNGs in a directory.
pub(super) fn phantoms(args: PhantomsArgs) -> Result<()> {
    let PhantomsArgs {
        count,
        seed,
        size,
        memory,
        out,
    } = args;
    if count == 0 {
        bail!("--count must be positive");
    }
    phantom::check_size(size)?;
    // The stack and its encoded file, both in memory at once.
    let per_slice = (size as u64).checked_mul(size as u64 * 4 * 2);
    memory.budget().check_items(
        &format!("{count} phantoms of {size}×{size}"),
        count as u64,
        &Cost::plain(per_slice),
        "use a smaller --count (several runs with other --seed values)",
    )?;
    let t = phantom::phantoms(count, seed, size);
    check_output(&t, "the phantoms", None)?;
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

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub steps: i64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long)]
    pub out: PathBuf,
}

/// The grid PNG: each sample drawn at twice its size, tiles 2 pixels apart (the figure
/// module's gap), at most 2^26 pixels (its canvas limit): checked before sampling.
const GRID_SCALE: usize = 2;
const GRID_GAP: u64 = 2;
const GRID_MAX_PIXELS: u64 = 1 << 26;

/// DDIM samples as a grid PNG and the .npy stack beside it.
pub(super) fn sample(args: SampleArgs) -> Result<()> {
    let SampleArgs {
        model,
        count,
        steps: n,
        seed,
        size,
        out,
    } = args;
    if count == 0 {
        bail!("--count must be positive");
    }
    let steps = steps(n)?;
    let (engine, _) = model.load()?;
    let cfg = engine.config();
    let multiple = cfg.size_multiple();
    if size == 0 || !size.is_multiple_of(multiple) {
        bail!("--size must be a positive multiple of {multiple} for this model, got {size}");
    }
    let what = format!("{count} DDIM samples of {size}×{size}");
    let budget = model.memory.budget();
    let cost = Cost::model(cfg, (size, size), (size, size), Work::Forward);
    budget.check_items(
        &what,
        count as u64,
        &cost,
        "use a smaller --count or --size",
    )?;
    let cols = (count as f64).sqrt().ceil() as usize;
    let rows = count.div_ceil(cols);
    let tile = (size as u64).saturating_mul(GRID_SCALE as u64) + GRID_GAP;
    let side = |k: usize| (k as u64).saturating_mul(tile).saturating_sub(GRID_GAP);
    if side(cols).saturating_mul(side(rows)) > GRID_MAX_PIXELS {
        bail!(
            "{what} make a grid of {}×{} pixels, more than the {GRID_MAX_PIXELS} a grid PNG may hold: use a smaller --count or --size",
            side(rows),
            side(cols)
        );
    }
    let x_t = normal_tensor(&[count, cfg.in_ch, size, size], seed);
    let mut bar = ProgressBar::new("DDIM");
    let x = engine.sample(&x_t, steps, &mut |d, t| bar.update(d, t))?;
    check_output(&x, "the samples", Some("the weights"))?;
    let slices: Vec<Vec<f32>> = x.data().chunks(size * size).map(|c| c.to_vec()).collect();
    figure::image_grid(&slices, size, size, cols, GRID_SCALE, &out)?;
    let npy = out.with_extension("npy");
    io::npy::write_npy(&npy, &x)?;
    println!("wrote {} and {}", out.display(), npy.display());
    Ok(())
}

/// (H, W) of an (N, 1, H, W) stack (read_stack's output).
pub(super) fn image_dims(x: &crate::tensor::Tensor) -> (usize, usize) {
    let s = x.shape();
    (s[2], s[3])
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub op: OperatorArgs,
    /// An image stack (or, with --adjoint, a measurement stack): .npy or .png.
    #[arg(long)]
    pub input: PathBuf,
    /// Apply Aᵀ instead of A.
    #[arg(long)]
    pub adjoint: bool,
    /// The image size H,W, where the operator cannot infer it from a measurement (--adjoint
    /// with --operator ct).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub size: Vec<i64>,
    #[arg(long, default_value = "auto")]
    pub device: crate::engine::Device,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[arg(long)]
    pub out: PathBuf,
}

/// A x or Aᵀ x, written to --out.
pub(super) fn apply(args: ApplyArgs) -> Result<()> {
    let x = read_stack(&args.input, "--input")?;
    let size = (!args.size.is_empty())
        .then(|| super::operator::parse_size(&args.size))
        .transpose()?;
    let image = if args.adjoint {
        if args.op.kind() == super::operator::OperatorKind::Ct && size.is_none() {
            bail!(
                "--adjoint with --operator ct needs --size H,W (the image the sinogram came from)"
            );
        }
        args.op.image_for(image_dims(&x), size, (0, 0))?
    } else {
        if let Some(s) = size {
            if s != image_dims(&x) {
                bail!(
                    "--size {}×{} differs from the input's {}×{}",
                    s.0,
                    s.1,
                    x.shape()[2],
                    x.shape()[3]
                );
            }
        }
        image_dims(&x)
    };
    let op = args.op.operator(image)?;
    check_operator(&op)?;
    // The image-side stack (the input, or the adjoint's output) sizes the buffers.
    let n = x.shape()[0];
    let measurement = op.measurement_dims(image)?;
    args.memory.budget().check_items(
        &format!("applying the operator to {n} slices"),
        n as u64,
        &Cost::solver(image, measurement),
        "split the input",
    )?;
    let out = crate::engine::solver(args.device)?.apply(&x, &op, args.adjoint)?;
    check_output(
        &out,
        "the result",
        Some("the input's scale with this operator"),
    )?;
    write(&args.out, &out)
}
