//! `evaluate`: the command-line side of the quality table, the precision comparison, the
//! posterior spread and the sweeps (the computing lives in `crate::evaluate`).

use super::args::{steps, ModelArgs};
use super::files::{check_input, check_operator};
use super::limits::{Budget, Cost, Work};
use super::operator::{OperatorArgs, Task};
use crate::engine;
use crate::error::Result;
use crate::evaluate::{self, Spec};
use crate::precision::Precision;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::tensor::Tensor;
use crate::{bail, io};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 32)]
    pub count: usize,
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub steps: i64,
    /// The inverse problem: its operator and that operator's defaults (see --operator).
    #[arg(long, value_enum, default_value_t = Task::Deblur)]
    pub task: Task,
    #[command(flatten)]
    pub op: OperatorArgs,
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub noise_level: f64,
    #[arg(long, default_value_t = 0.15, allow_negative_numbers = true)]
    pub guidance: f64,
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    pub tau: f64,
    /// Published DiffPIR's λ and ζ, published DPS's ζ (defaults: the sweeps' best).
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub zeta: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pub dps_zeta: Option<f64>,
    /// Your own ground truths (a directory of PNG/NPY images, or one stack) instead of
    /// phantoms; they are blurred and noised as the flags say.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Posterior spread: this many slices, `--samples` draws each (0 slices: skip).
    #[arg(long, default_value_t = 8)]
    pub spread_count: usize,
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// Also run the parameter sweeps (on phantoms outside the table's set).
    #[arg(long)]
    pub sweep: bool,
    #[arg(long, default_value_t = 8)]
    pub sweep_count: usize,
    /// Also rerun the diffusion samplers at these precisions (e.g. tf32,bf16) and report
    /// each one's PSNR change from the table's precision, slice by slice.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub compare_precision: Vec<Precision>,
}

/// Print the table, then the optional sections the flags ask for.
pub(super) fn run(args: EvaluateArgs) -> Result<()> {
    let EvaluateArgs {
        model,
        count,
        steps: n,
        task,
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
    } = args;
    if count == 0 {
        bail!("--count must be at least 1");
    }
    if sweep && sweep_count == 0 {
        bail!("--sweep-count must be at least 1");
    }
    let op = op.for_task(task)?;
    if spread_count > 0 && samples < 2 {
        bail!("--samples must be at least 2 to measure a spread (or --spread-count 0)");
    }
    DiffPirParams { steps: 2, tau }.check()?;
    crate::samplers::check_range(
        "--noise-level",
        noise_level,
        0.0,
        crate::samplers::MAX_NOISE_LEVEL,
    )?;
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
    let size = 64 - 64 % engine.config().size_multiple();
    let dims = images
        .as_ref()
        .map_or((size, size), |t| (t.shape()[2], t.shape()[3]));
    let kernel = op.operator(dims)?;
    check_operator(&kernel)?;
    let table = images.as_ref().map_or(count, |t| t.shape()[0]);
    check_memory(
        &model.memory.budget(),
        &Cost::model(
            engine.config(),
            dims,
            kernel.measurement_dims(dims)?,
            Work::Gradient,
        ),
        [
            (table, "--count (or fewer --images)"),
            (
                // The spread draws from the table's first slices.
                spread_count.min(table).saturating_mul(samples),
                "--spread-count or --samples",
            ),
            (if sweep { sweep_count } else { 0 }, "--sweep-count"),
        ],
    )?;
    let spec = Spec {
        count: table,
        seed: evaluate::EVAL_SEED,
        size,
        noise_level,
        kernel,
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
        "evaluate: {what}, {} (‖A‖ = {:.4}), weights {}, {n} steps, noise {noise_level}, device {}",
        spec.kernel.describe(),
        spec.kernel.norm(),
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
        let res = evaluate::spread(engine.as_ref(), &spec, spread_count, samples, &mut say)?;
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
        println!("| sampler | parameter | value | PSNR (dB) | SSIM |\n|---|---|---|---|---|");
        for (name, param, v, p, s) in res {
            println!("| {name} | {param} | {v} | {p:.3} | {s:.4} |");
        }
    }
    Ok(())
}

/// Each part of the run (the table, the spread, the sweeps) runs all its slices in one batch,
/// every diffusion sampler in turn (DPS's tape the largest).
fn check_memory(budget: &Budget, cost: &Cost, parts: [(usize, &str); 3]) -> Result<()> {
    for (items, what) in parts {
        budget.check_items(
            &format!("evaluate with {items} slices in one batch"),
            items as u64,
            cost,
            &format!("lower {what}"),
        )?;
    }
    Ok(())
}

/// `--images`: ground truths, finite and within the inputs' bound.
fn read_truths(path: &Path) -> Result<Tensor> {
    let t = io::read_image_stack(path)?;
    check_input(&t, "--images").map_err(|e| e.context(path.display()))?;
    Ok(t)
}
