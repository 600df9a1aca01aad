//! `diffrecon bench`: wall-clock timings of the UNet forward and of whole samplers on any
//! device, with no benchmark harness needed (what gpu-check runs on a lent GPU).

use crate::engine::Model;
use crate::error::Result;
use crate::operators::{Kernel, Operator};
use crate::rng::normal_tensor;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::tensor::Tensor;
use std::time::Instant;

pub struct Timing {
    pub op: String,
    pub batch: usize,
    /// Median and minimum in milliseconds, or the reason the op could not run here.
    pub result: std::result::Result<(f64, f64), String>,
    /// Per-kernel GPU time of one more (untimed) run, with --profile on a GPU.
    pub profile: Option<String>,
}

/// Times `f`: median and minimum of `repeats` runs after one warm-up; then, when `profile`,
/// one more run with per-kernel recording on (not part of the timings).
fn time(
    model: &dyn Model,
    profile: bool,
    repeats: usize,
    (op, batch): (String, usize),
    f: &mut dyn FnMut() -> Result<Tensor>,
) -> Timing {
    let mut run = || -> std::result::Result<(f64, f64), String> {
        f().map_err(|e| e.to_string())?;
        let mut ms: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let start = Instant::now();
                f().map(|_| start.elapsed().as_secs_f64() * 1e3)
                    .map_err(|e| e.to_string())
            })
            .collect::<std::result::Result<_, _>>()?;
        ms.sort_by(f64::total_cmp);
        Ok((ms[ms.len() / 2], ms[0]))
    };
    let result = run();
    let profile = match (profile, &result) {
        (true, Ok(_)) => profile_once(model, f),
        _ => None,
    };
    Timing {
        op,
        batch,
        result,
        profile,
    }
}

/// One more run of `f` with per-kernel recording on; None where the backend has no kernels.
/// Recording is switched off again whatever the run did.
fn profile_once(model: &dyn Model, f: &mut dyn FnMut() -> Result<Tensor>) -> Option<String> {
    // A backend without kernels reports None even when asked to stop: skip the extra run.
    if let Ok(None) = model.profile_kernels(false) {
        return None;
    }
    let ran = model.profile_kernels(true).and_then(|_| f());
    let report = model.profile_kernels(false);
    match (ran, report) {
        (Ok(_), Ok(table)) => table,
        (Err(e), _) | (_, Err(e)) => Some(format!("profile failed: {e}\n")),
    }
}

/// Forward at each batch size, then the notebook's DiffPIR-style and DPS and the published
/// DiffPIR and DPS with `steps` steps at each batch.
/// Every timed call ends with the result on the host, so device work is included. With
/// `profile`, each op runs once more with per-kernel GPU timing (see [`time`]).
pub fn run(
    model: &dyn Model,
    size: usize,
    batches: &[usize],
    steps: usize,
    repeats: usize,
    profile: bool,
) -> Vec<Timing> {
    let kernel = Operator::Blur(Kernel::motion(9, 20.0).expect("valid kernel"));
    let timed = |op: String, b: usize, f: &mut dyn FnMut() -> Result<Tensor>| {
        time(model, profile, repeats, (op, b), f)
    };
    let mut out = Vec::new();
    for &b in batches {
        let x = normal_tensor(&[b, 1, size, size], 1);
        out.push(timed("forward".into(), b, &mut || model.eps(&x, &[200.0])));
    }
    for &b in batches {
        let y = normal_tensor(&[b, 1, size, size], 2);
        let x_t = normal_tensor(&[b, 1, size, size], 3);
        let pir = DiffPirParams { steps, tau: 0.6 };
        out.push(timed(format!("diffpir_{steps}"), b, &mut || {
            model.diffpir(&y, &kernel, &pir, &mut |_, _| {})
        }));
        let dps = DpsParams {
            steps,
            ..Default::default()
        };
        out.push(timed(format!("dps_{steps}"), b, &mut || {
            model.dps(&y, &kernel, &x_t, &dps, &mut |_, _| {})
        }));
        let seeds: Vec<u64> = (0..b as u64).collect();
        let pnp = DiffPirPnpParams {
            steps,
            ..Default::default()
        };
        out.push(timed(format!("diffpir_pnp_{steps}"), b, &mut || {
            model
                .diffpir_pnp(&y, &kernel, &pnp, &seeds, &mut |_, _| {})
                .map(|r| r.0)
        }));
        let dpsp = DpsPaperParams {
            steps,
            ..Default::default()
        };
        out.push(timed(format!("dps_paper_{steps}"), b, &mut || {
            model.dps_paper(&y, &kernel, &x_t, &dpsp, &seeds, &mut |_, _| {})
        }));
    }
    out
}

/// A markdown table of the timings.
pub fn table(device: &str, timings: &[Timing]) -> String {
    let mut s =
        format!("device: {device}\n\n| op | batch | median ms | min ms |\n|---|---|---|---|\n");
    for t in timings {
        match &t.result {
            Ok((med, min)) => s += &format!("| {} | {} | {med:.3} | {min:.3} |\n", t.op, t.batch),
            Err(why) => s += &format!("| {} | {} | not run: {why} | |\n", t.op, t.batch),
        }
    }
    s
}

/// The per-kernel profiles of the timings that have one, one section per op and batch.
pub fn profiles(timings: &[Timing]) -> String {
    let mut s = String::new();
    for t in timings {
        if let Some(p) = &t.profile {
            s += &format!("\n### kernels: {} batch {}\n\n{p}", t.op, t.batch);
        }
    }
    s
}
