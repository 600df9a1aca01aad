//! The quality table: both samplers and two classical baselines on held-out phantoms, and the
//! parameter sweeps the notebook proposes as exercises.

use crate::baselines;
use crate::engine::Model;
use crate::error::Result;
use crate::metrics::{self, Quality};
use crate::operators::Kernel;
use crate::phantom;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::dps::DpsParams;
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
    pub kernel: Kernel,
    pub dps: DpsParams,
    pub diffpir: DiffPirParams,
}

/// Ground truths and their measurements.
pub struct ProblemSet {
    pub truth: Tensor,
    pub y: Tensor,
    /// DPS's starting noise.
    pub x_t: Tensor,
}

pub fn problem_set(spec: &Spec) -> Result<ProblemSet> {
    let truth = phantom::phantoms(spec.count, spec.seed, spec.size);
    let y = crate::operators::simulate(&truth, &spec.kernel, spec.noise_level, spec.seed)?;
    let x_t = crate::rng::normal_tensor(y.shape(), spec.seed);
    Ok(ProblemSet { truth, y, x_t })
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
    kernel: &Kernel,
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
    solve: impl Fn(&Tensor, &Kernel, f64) -> Result<Tensor>,
) -> Result<MethodResult> {
    let mut best: Option<MethodResult> = None;
    for &l in lambdas {
        let (x, secs) = timed(|| solve(&set.y, &spec.kernel, l))?;
        let r = measure(
            engine,
            set,
            &spec.kernel,
            name,
            format!("best λ = {l:.0e} of {} swept", lambdas.len()),
            &x,
            secs,
        )?;
        if best.as_ref().is_none_or(|b| r.mean_psnr() > b.mean_psnr()) {
            best = Some(r);
        }
    }
    Ok(best.expect("at least one λ"))
}

/// Observation, Tikhonov and TV at their best λ, DPS and DiffPIR-style.
pub fn evaluate(
    engine: &dyn Model,
    spec: &Spec,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<MethodResult>> {
    let set = problem_set(spec)?;
    let mut rows = vec![measure(
        engine,
        &set,
        &spec.kernel,
        "Observation",
        String::new(),
        &set.y,
        0.0,
    )?];
    progress("Tikhonov (CG), λ sweep");
    rows.push(best_lambda(
        engine,
        &set,
        spec,
        "Tikhonov (CG)",
        &TIKHONOV_LAMBDAS,
        baselines::tikhonov,
    )?);
    progress("TV (primal-dual), λ sweep");
    rows.push(best_lambda(
        engine,
        &set,
        spec,
        "TV (primal-dual)",
        &TV_LAMBDAS,
        baselines::total_variation,
    )?);
    progress("DPS");
    let (x, secs) =
        timed(|| engine.dps(&set.y, &spec.kernel, &set.x_t, &spec.dps, &mut |_, _| {}))?;
    let note = format!(
        "guidance {}, sigma_y {}",
        spec.dps.guidance, spec.dps.sigma_y
    );
    rows.push(measure(engine, &set, &spec.kernel, "DPS", note, &x, secs)?);
    progress("DiffPIR-style");
    let (x, secs) = timed(|| engine.diffpir(&set.y, &spec.kernel, &spec.diffpir, &mut |_, _| {}))?;
    rows.push(measure(
        engine,
        &set,
        &spec.kernel,
        "DiffPIR-style",
        format!("tau {}", spec.diffpir.tau),
        &x,
        secs,
    )?);
    Ok(rows)
}

/// Mean PSNR and SSIM of DPS over guidance values, and of DiffPIR-style over tau values.
pub fn sweeps(
    engine: &dyn Model,
    spec: &Spec,
    guidances: &[f64],
    taus: &[f64],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(String, f64, f64, f64)>> {
    let set = problem_set(spec)?;
    let mut out = Vec::new();
    let summary = |x: &Tensor| -> Result<(f64, f64)> {
        let q = metrics::quality(x, &set.truth)?;
        Ok((
            mean_std(&q.iter().map(|q| q.psnr).collect::<Vec<_>>()).0,
            mean_std(&q.iter().map(|q| q.ssim).collect::<Vec<_>>()).0,
        ))
    };
    for &g in guidances {
        progress(&format!("DPS guidance {g}"));
        let x = engine.dps(
            &set.y,
            &spec.kernel,
            &set.x_t,
            &DpsParams {
                guidance: g,
                ..spec.dps
            },
            &mut |_, _| {},
        )?;
        let (p, s) = summary(&x)?;
        out.push(("DPS guidance".to_string(), g, p, s));
    }
    for &t in taus {
        progress(&format!("DiffPIR-style tau {t}"));
        let x = engine.diffpir(
            &set.y,
            &spec.kernel,
            &DiffPirParams {
                tau: t,
                ..spec.diffpir
            },
            &mut |_, _| {},
        )?;
        let (p, s) = summary(&x)?;
        out.push(("DiffPIR-style tau".to_string(), t, p, s));
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

/// A markdown table of mean ± std per method.
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
