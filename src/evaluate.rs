//! The quality table: the notebook's two samplers, the two published methods they simplify and
//! two classical baselines on held-out phantoms (or the user's images), the posterior spread's
//! calibration, and the parameter sweeps that set the defaults.

use crate::engine::Model;
use crate::error::Result;
use crate::metrics::{self, Quality};
use crate::operators::Operator;
use crate::phantom;
use crate::precision::Precision;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::schedule::Skip;
use crate::spread::{self, Calibration};
use crate::tensor::Tensor;
use std::time::Instant;

/// Phantom seeds: training uses 0, evaluation 1, parameter sweeps 2 (never the same slices).
pub const EVAL_SEED: u64 = 1;
pub const SWEEP_SEED: u64 = 2;

/// λ grids of the baselines (model space, values in [−1, 1]).
pub const TIKHONOV_LAMBDAS: [f64; 6] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2];
pub const TV_LAMBDAS: [f64; 6] = [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2];

pub struct Spec {
    pub count: usize,
    pub seed: u64,
    pub size: usize,
    pub noise_level: f64,
    /// The forward operator A.
    pub kernel: Operator,
    pub dps: DpsParams,
    pub diffpir: DiffPirParams,
    pub pnp: DiffPirPnpParams,
    pub dps_paper: DpsPaperParams,
    /// The user's ground truths instead of phantoms (`--images`).
    pub images: Option<Tensor>,
}

/// Ground truths and their measurements.
pub struct ProblemSet {
    pub truth: Tensor,
    pub y: Tensor,
    /// DPS's starting noise.
    pub x_t: Tensor,
    /// One noise seed per slice for the published samplers.
    pub seeds: Vec<u64>,
}

pub fn problem_set(spec: &Spec) -> Result<ProblemSet> {
    let truth = match &spec.images {
        Some(t) => t.clone(),
        None => phantom::phantoms(spec.count, spec.seed, spec.size),
    };
    let y = crate::operators::simulate(&truth, &spec.kernel, spec.noise_level, spec.seed)?;
    let x_t = crate::rng::normal_tensor(truth.shape(), spec.seed);
    let seeds = (0..y.shape()[0] as u64)
        .map(|i| spec.seed.wrapping_mul(1_000_003).wrapping_add(i))
        .collect();
    Ok(ProblemSet {
        truth,
        y,
        x_t,
        seeds,
    })
}

/// One method's per-slice results.
pub struct MethodResult {
    pub name: String,
    pub quality: Vec<Quality>,
    pub residual: Vec<f64>,
    pub seconds: f64,
    pub note: String,
}

impl MethodResult {
    pub fn mean_psnr(&self) -> f64 {
        mean_std(&self.quality.iter().map(|q| q.psnr).collect::<Vec<_>>()).0
    }
}

fn measure(
    engine: &dyn Model,
    set: &ProblemSet,
    kernel: &Operator,
    name: &str,
    note: String,
    x: &Tensor,
    seconds: f64,
) -> Result<MethodResult> {
    Ok(MethodResult {
        name: name.to_string(),
        quality: metrics::quality(x, &set.truth)?,
        residual: engine.residual_ratio(x, &set.y, kernel)?,
        seconds,
        note,
    })
}

fn timed(f: impl FnOnce() -> Result<Tensor>) -> Result<(Tensor, f64)> {
    let start = Instant::now();
    let x = f()?;
    Ok((x, start.elapsed().as_secs_f64()))
}

/// The best λ of a baseline by mean PSNR over the set, as a result row.
fn best_lambda(
    engine: &dyn Model,
    set: &ProblemSet,
    spec: &Spec,
    name: &str,
    lambdas: &[f64],
    solve: impl Fn(&Tensor, &Operator, f64) -> Result<Tensor>,
) -> Result<MethodResult> {
    let mut best: Option<MethodResult> = None;
    // The data term scales with ‖A‖², so the grid does too (blur: ‖A‖ = 1, the grid as is).
    let unit = spec.kernel.norm().powi(2);
    for &l in lambdas {
        let (x, secs) = timed(|| solve(&set.y, &spec.kernel, l * unit))?;
        let note = if unit == 1.0 {
            format!("best λ = {l:.0e} of {} swept", lambdas.len())
        } else {
            format!("best λ = {l:.0e}·‖A‖² of {} swept", lambdas.len())
        };
        let r = measure(engine, set, &spec.kernel, name, note, &x, secs)?;
        if best.as_ref().is_none_or(|b| r.mean_psnr() > b.mean_psnr()) {
            best = Some(r);
        }
    }
    Ok(best.expect("at least one λ"))
}

/// The task's observation baseline (the operator's estimate from y: FBP for CT), Tikhonov and
/// TV at their best λ, then the four diffusion samplers.
pub fn evaluate(
    engine: &dyn Model,
    spec: &Spec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<MethodResult>> {
    let set = problem_set(spec)?;
    let (estimate, secs) = timed(|| engine.estimate(&set.y, &spec.kernel))?;
    let mut rows = vec![measure(
        engine,
        &set,
        &spec.kernel,
        spec.kernel.estimate_name(),
        String::new(),
        &estimate,
        secs,
    )?];
    progress("Tikhonov (CG), λ sweep");
    rows.push(best_lambda(
        engine,
        &set,
        spec,
        "Tikhonov (CG)",
        &TIKHONOV_LAMBDAS,
        |y, op, l| engine.tikhonov(y, op, l),
    )?);
    progress("TV (primal-dual), λ sweep");
    rows.push(best_lambda(
        engine,
        &set,
        spec,
        "TV (primal-dual)",
        &TV_LAMBDAS,
        |y, op, l| engine.total_variation(y, op, l),
    )?);
    rows.extend(sampler_rows(engine, &set, spec, progress)?);
    Ok(rows)
}

/// The diffusion samplers' rows of `evaluate`: DPS, DiffPIR-style, published DiffPIR and
/// published DPS.
fn sampler_rows(
    engine: &dyn Model,
    set: &ProblemSet,
    spec: &Spec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<MethodResult>> {
    let mut rows = Vec::new();
    progress("DPS");
    let (x, secs) =
        timed(|| engine.dps(&set.y, &spec.kernel, &set.x_t, &spec.dps, &mut |_, _| {}))?;
    let note = format!(
        "guidance {}, sigma_y {}",
        spec.dps.guidance, spec.dps.sigma_y
    );
    rows.push(measure(engine, set, &spec.kernel, "DPS", note, &x, secs)?);
    progress("DiffPIR-style");
    let (x, secs) = timed(|| engine.diffpir(&set.y, &spec.kernel, &spec.diffpir, &mut |_, _| {}))?;
    rows.push(measure(
        engine,
        set,
        &spec.kernel,
        "DiffPIR-style",
        format!("tau {}", spec.diffpir.tau),
        &x,
        secs,
    )?);
    progress("DiffPIR (published)");
    let mut cg = Default::default();
    let (x, secs) = timed(|| {
        let (x, r) = run_pnp(engine, &set.y, spec, &spec.pnp, &set.seeds)?;
        cg = r;
        Ok(x)
    })?;
    let note = format!(
        "λ {}, ζ {}, CG ≤ {} its, worst rel. residual {:.1e}",
        spec.pnp.lambda, spec.pnp.zeta, cg.iters, cg.rel_residual
    );
    rows.push(measure(
        engine,
        set,
        &spec.kernel,
        "DiffPIR (published)",
        note,
        &x,
        secs,
    )?);
    progress("DPS (published)");
    let (x, secs) =
        timed(|| run_dps_paper(engine, &set.y, &set.x_t, spec, &spec.dps_paper, &set.seeds))?;
    let note = format!("ζ {}, η {}", spec.dps_paper.zeta, spec.dps_paper.eta);
    rows.push(measure(
        engine,
        set,
        &spec.kernel,
        "DPS (published)",
        note,
        &x,
        secs,
    )?);
    Ok(rows)
}

fn run_pnp(
    engine: &dyn Model,
    y: &Tensor,
    spec: &Spec,
    params: &DiffPirPnpParams,
    seeds: &[u64],
) -> Result<(Tensor, crate::samplers::cg::CgReport)> {
    engine.diffpir_pnp(y, &spec.kernel, params, seeds, &mut |_, _| {})
}

fn run_dps_paper(
    engine: &dyn Model,
    y: &Tensor,
    x_t: &Tensor,
    spec: &Spec,
    params: &DpsPaperParams,
    seeds: &[u64],
) -> Result<Tensor> {
    engine.dps_paper(y, &spec.kernel, x_t, params, seeds, &mut |_, _| {})
}

/// One sampler's posterior spread on the first `count` slices: `samples` draws each.
pub struct SpreadResult {
    pub name: String,
    pub count: usize,
    pub samples: usize,
    pub calibration: Calibration,
    /// Mean PSNR of the posterior mean, and of single samples.
    pub psnr_mean: f64,
    pub psnr_single: f64,
    pub seconds: f64,
}

/// Calibration of the two published samplers' spread (they draw fresh noise per sample).
pub fn spread(
    engine: &dyn Model,
    spec: &Spec,
    count: usize,
    samples: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<SpreadResult>> {
    let set = problem_set(spec)?;
    let n = count.min(set.y.shape()[0]);
    let (truth, y) = (set.truth.items(0..n)?, set.y.items(0..n)?);
    let y_all = spread::tile(&y, samples)?;
    let seeds: Vec<u64> = (0..(n * samples) as u64)
        .map(|i| spec.seed.wrapping_mul(7_919).wrapping_add(i))
        .collect();
    let x_t = crate::rng::slice_noise(y_all.shape(), &seeds, 0);
    let mut out = Vec::new();
    for name in ["DiffPIR (published)", "DPS (published)"] {
        progress(&format!("{name}: {samples} samples of {n} slices"));
        let (x_all, secs) = timed(|| match name {
            "DPS (published)" => run_dps_paper(engine, &y_all, &x_t, spec, &spec.dps_paper, &seeds),
            _ => run_pnp(engine, &y_all, spec, &spec.pnp, &seeds).map(|r| r.0),
        })?;
        let (mean, std) = spread::mean_std(&x_all, samples)?;
        let psnr = |x: &Tensor, t: &Tensor| -> Result<f64> {
            let q = metrics::quality(x, t)?;
            Ok(mean_std(&q.iter().map(|q| q.psnr).collect::<Vec<_>>()).0)
        };
        out.push(SpreadResult {
            name: name.to_string(),
            count: n,
            samples,
            calibration: spread::calibration(&mean, &std, &truth)?,
            psnr_mean: psnr(&mean, &truth)?,
            psnr_single: psnr(&x_all, &spread::tile(&truth, samples)?)?,
            seconds: secs,
        });
    }
    Ok(out)
}

pub fn format_spread(rows: &[SpreadResult]) -> String {
    let mut s = String::from("| sampler | slices × samples | PSNR of one sample | PSNR of the mean | corr(std, abs error) | abs error within ±2 std | mean std | mean abs error | time (s) |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let c = &r.calibration;
        s += &format!(
            "| {} | {} × {} | {:.3} | {:.3} | {:.3} | {:.1}% | {:.4} | {:.4} | {:.1} |\n",
            r.name,
            r.count,
            r.samples,
            r.psnr_single,
            r.psnr_mean,
            c.correlation,
            100.0 * c.coverage_2std,
            c.mean_std,
            c.mean_abs_error,
            r.seconds
        );
    }
    s
}

/// One sweep: a sampler's parameter and the values tried.
pub struct Sweep {
    pub sampler: &'static str,
    pub parameter: &'static str,
    pub values: Vec<f64>,
}

/// The sweeps `evaluate --sweep` runs (the notebook's two exercises, then the published
/// samplers' parameters), on phantoms outside the evaluation set.
pub fn default_sweeps() -> Vec<Sweep> {
    vec![
        Sweep {
            sampler: "DPS",
            parameter: "guidance",
            values: vec![0.05, 0.1, 0.15, 0.3, 0.6, 1.0],
        },
        Sweep {
            sampler: "DiffPIR-style",
            parameter: "tau",
            values: vec![0.4, 0.6, 1.0, 1.4, 1.8, 2.5],
        },
        Sweep {
            sampler: "DiffPIR (published)",
            parameter: "lambda",
            values: vec![0.3, 1.0, 3.0, 7.0, 20.0],
        },
        Sweep {
            sampler: "DiffPIR (published)",
            parameter: "zeta",
            values: vec![0.0, 0.3, 0.6, 0.8, 1.0],
        },
        Sweep {
            sampler: "DiffPIR (published)",
            parameter: "steps, uniform",
            values: vec![10.0, 20.0, 40.0, 100.0],
        },
        Sweep {
            sampler: "DiffPIR (published)",
            parameter: "steps, quad",
            values: vec![10.0, 20.0, 40.0, 100.0],
        },
        Sweep {
            sampler: "DPS (published)",
            parameter: "zeta",
            values: vec![0.3, 1.0, 2.0, 3.0, 5.0],
        },
    ]
}

/// One sweep point: (sampler, parameter, value, mean PSNR, mean SSIM).
pub type SweepPoint = (String, String, f64, f64, f64);

/// Mean PSNR and SSIM of each sampler over its parameter's values, every other parameter at
/// the spec's value.
pub fn sweeps(
    engine: &dyn Model,
    spec: &Spec,
    sweeps: &[Sweep],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<SweepPoint>> {
    let set = problem_set(spec)?;
    let mut out = Vec::new();
    for sw in sweeps {
        for &v in &sw.values {
            progress(&format!("{} {} {v}", sw.sampler, sw.parameter));
            let x = match (sw.sampler, sw.parameter) {
                ("DPS", "guidance") => engine.dps(
                    &set.y,
                    &spec.kernel,
                    &set.x_t,
                    &DpsParams {
                        guidance: v,
                        ..spec.dps
                    },
                    &mut |_, _| {},
                )?,
                ("DiffPIR-style", "tau") => engine.diffpir(
                    &set.y,
                    &spec.kernel,
                    &DiffPirParams {
                        tau: v,
                        ..spec.diffpir
                    },
                    &mut |_, _| {},
                )?,
                ("DiffPIR (published)", p) => {
                    let mut params = spec.pnp;
                    match p {
                        "lambda" => params.lambda = v,
                        "zeta" => params.zeta = v,
                        "steps, uniform" | "steps, quad" => {
                            params.steps = v as usize;
                            params.skip = if p == "steps, quad" {
                                Skip::Quad
                            } else {
                                Skip::Uniform
                            };
                        }
                        _ => crate::bail!("no sweep of {} {p}", sw.sampler),
                    }
                    run_pnp(engine, &set.y, spec, &params, &set.seeds)?.0
                }
                ("DPS (published)", _) => {
                    let params = DpsPaperParams {
                        zeta: v,
                        ..spec.dps_paper
                    };
                    run_dps_paper(engine, &set.y, &set.x_t, spec, &params, &set.seeds)?
                }
                (s, p) => crate::bail!("no sweep of {s} {p}"),
            };
            let q = metrics::quality(&x, &set.truth)?;
            out.push((
                sw.sampler.to_string(),
                sw.parameter.to_string(),
                v,
                mean_std(&q.iter().map(|q| q.psnr).collect::<Vec<_>>()).0,
                mean_std(&q.iter().map(|q| q.ssim).collect::<Vec<_>>()).0,
            ));
        }
    }
    Ok(out)
}

/// Mean and sample standard deviation (inf values, e.g. PSNR of a perfect slice, are skipped).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = f.iter().sum::<f64>() / f.len() as f64;
    let var = if f.len() > 1 {
        f.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (f.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// The one-line verdict under the table: the best diffusion sampler against the best
/// classical baseline, by mean PSNR.
pub fn verdict(rows: &[MethodResult]) -> String {
    // The observation itself is no method; FBP is CT's classical reconstruction.
    let observed = ["Observation", "Masked image", "Block replication"];
    let classical = ["FBP", "Tikhonov (CG)", "TV (primal-dual)"];
    let best = |diffusion: bool| {
        rows.iter()
            .filter(|r| !observed.contains(&r.name.as_str()))
            .filter(|r| classical.contains(&r.name.as_str()) != diffusion)
            .max_by(|a, b| a.mean_psnr().total_cmp(&b.mean_psnr()))
    };
    match (best(true), best(false)) {
        (Some(d), Some(c)) => format!(
            "best diffusion sampler: {} {:.3} dB; best classical: {} {:.3} dB; difference {:+.3} dB",
            d.name,
            d.mean_psnr(),
            c.name,
            c.mean_psnr(),
            d.mean_psnr() - c.mean_psnr()
        ),
        _ => String::new(),
    }
}

/// A markdown table of mean ± std per method.
/// One sampler's reconstructions at another precision against the same sampler in the
/// evaluation's table, slice by slice (paired: same measurements, same noise).
pub struct PrecisionEffect {
    pub sampler: String,
    pub precision: Precision,
    /// Mean PSNR over the slices at the table's precision, and at `precision`.
    pub psnr_base: f64,
    pub psnr: f64,
    /// Mean, standard deviation and largest magnitude of the per-slice PSNR change.
    pub delta_mean: f64,
    pub delta_std: f64,
    pub delta_max_abs: f64,
}

/// The diffusion samplers of `base` (the rows `evaluate` returned for `spec`) rerun on `engine`
/// (the same weights at `precision`), compared slice by slice.
pub fn precision_effect(
    base: &[MethodResult],
    engine: &dyn Model,
    precision: Precision,
    spec: &Spec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<PrecisionEffect>> {
    let set = problem_set(spec)?;
    let mut out = Vec::new();
    let mut say = |m: &str| progress(&format!("{m} at {precision}"));
    for row in sampler_rows(engine, &set, spec, &mut say)? {
        let Some(b) = base.iter().find(|b| b.name == row.name) else {
            continue;
        };
        let delta: Vec<f64> = row
            .quality
            .iter()
            .zip(&b.quality)
            .map(|(q, q0)| q.psnr - q0.psnr)
            .collect();
        let (delta_mean, delta_std) = mean_std(&delta);
        out.push(PrecisionEffect {
            sampler: row.name.clone(),
            precision,
            psnr_base: b.mean_psnr(),
            psnr: row.mean_psnr(),
            delta_mean,
            delta_std,
            delta_max_abs: delta.iter().fold(0.0, |m, d| m.max(d.abs())),
        });
    }
    Ok(out)
}

pub fn format_precision_effect(base: Precision, rows: &[PrecisionEffect]) -> String {
    let mut s = format!("| sampler | precision | PSNR at {base} (dB) | PSNR (dB) | mean ΔPSNR (dB) | std of Δ | largest abs(Δ) |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:+.3} | {:.3} | {:.3} |\n",
            r.sampler, r.precision, r.psnr_base, r.psnr, r.delta_mean, r.delta_std, r.delta_max_abs
        );
    }
    s
}

pub fn format_table(rows: &[MethodResult]) -> String {
    let mut s = String::from("| method | MSE | PSNR (dB) | SSIM | residual ‖Kx−y‖/‖y‖ | time (s) | notes |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let col =
            |f: &dyn Fn(&Quality) -> f64| mean_std(&r.quality.iter().map(f).collect::<Vec<_>>());
        let (mse, psnr, ssim) = (col(&|q| q.mse), col(&|q| q.psnr), col(&|q| q.ssim));
        let res = mean_std(&r.residual);
        s += &format!(
            "| {} | {:.6} ± {:.6} | {:.3} ± {:.3} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.2} | {} |\n",
            r.name, mse.0, mse.1, psnr.0, psnr.1, ssim.0, ssim.1, res.0, res.1, r.seconds, r.note
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, f64::INFINITY]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
    }
}
