//! `demo`: the notebook's experiment end to end on the built-in phantom, every sampler and
//! the TV baseline, printed and drawn as one comparison figure.

use super::args::{steps, ModelArgs};
use super::files::{check_output, scaled_to_max};
use super::limits::{Cost, Work};
use super::reconstruct::DEFAULT_TV_LAMBDA;
use crate::error::Result;
use crate::metrics::{self, Quality};
use crate::operators::{self, Kernel, Operator};
use crate::progress::ProgressBar;
use crate::rng::{normal_tensor, slice_noise};
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::tensor::Tensor;
use crate::{bail, figure, io, phantom, spread};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value = "demo-out")]
    pub out_dir: PathBuf,
    /// Seed of the measurement noise and of DPS's starting noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub steps: i64,
}

pub(super) fn run(args: DemoArgs) -> Result<()> {
    demo(&args.model, &args.out_dir, args.seed, steps(args.steps)?)
}

/// The seed of the built-in demo phantom (outside any training range the engine uses).
pub const DEMO_PHANTOM_SEED: u64 = 1_000_003;

fn demo(model: &ModelArgs, out_dir: &Path, seed: u64, n_steps: usize) -> Result<()> {
    let (engine, weights) = model.load()?;
    let size = 64 - 64 % engine.config().size_multiple();
    if size == 0 {
        bail!(
            "the demo's 64×64 phantom does not fit this model (images must be multiples of {})",
            engine.config().size_multiple()
        );
    }
    let cost = Cost::model(engine.config(), (size, size), (size, size), Work::Gradient);
    model.memory.budget().check_items(
        &format!("the demo's {DEMO_DPS_SAMPLES} DPS samples of {size}×{size}"),
        DEMO_DPS_SAMPLES as u64,
        &cost,
        "use smaller weights",
    )?;
    std::fs::create_dir_all(out_dir).map_err(|e| crate::error::io_error(out_dir, e))?;
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
        // With the bundled prior and fixed parameters nothing the caller gave can overflow.
        let cause = model.weights.is_some().then_some("the weights (--weights)");
        check_output(t, file, cause)?;
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
