//! `diffrecon bench`: wall-clock timings of the UNet forward and of whole samplers on any
//! device, with no benchmark harness needed (what gpu-check runs on a lent GPU).

use crate::engine::Model;
use crate::error::Result;
use crate::operators::Kernel;
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
}

/// Median and minimum of `repeats` runs after one warm-up.
fn time(
    repeats: usize,
    mut f: impl FnMut() -> Result<Tensor>,
) -> std::result::Result<(f64, f64), String> {
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
}

/// Forward at each batch size, then the notebook's DiffPIR-style and DPS and the published
/// DiffPIR and DPS with `steps` steps at each batch.
/// Every timed call ends with the result on the host, so device work is included.
pub fn run(
    model: &dyn Model,
    size: usize,
    batches: &[usize],
    steps: usize,
    repeats: usize,
) -> Vec<Timing> {
    let kernel = Kernel::motion(9, 20.0).expect("valid kernel");
    let mut out = Vec::new();
    for &b in batches {
        let x = normal_tensor(&[b, 1, size, size], 1);
        out.push(Timing {
            op: "forward".into(),
            batch: b,
            result: time(repeats, || model.eps(&x, &[200.0])),
        });
    }
    for &b in batches {
        let y = normal_tensor(&[b, 1, size, size], 2);
        let x_t = normal_tensor(&[b, 1, size, size], 3);
        let pir = DiffPirParams { steps, tau: 0.6 };
        let op = format!("diffpir_{steps}");
        out.push(Timing {
            op,
            batch: b,
            result: time(repeats, || model.diffpir(&y, &kernel, &pir, &mut |_, _| {})),
        });
        let dps = DpsParams {
            steps,
            ..Default::default()
        };
        let op = format!("dps_{steps}");
        out.push(Timing {
            op,
            batch: b,
            result: time(repeats, || {
                model.dps(&y, &kernel, &x_t, &dps, &mut |_, _| {})
            }),
        });
        let seeds: Vec<u64> = (0..b as u64).collect();
        let pnp = DiffPirPnpParams {
            steps,
            ..Default::default()
        };
        out.push(Timing {
            op: format!("diffpir_pnp_{steps}"),
            batch: b,
            result: time(repeats, || {
                model
                    .diffpir_pnp(&y, &kernel, &pnp, &seeds, &mut |_, _| {})
                    .map(|r| r.0)
            }),
        });
        let dpsp = DpsPaperParams {
            steps,
            ..Default::default()
        };
        out.push(Timing {
            op: format!("dps_paper_{steps}"),
            batch: b,
            result: time(repeats, || {
                model.dps_paper(&y, &kernel, &x_t, &dpsp, &seeds, &mut |_, _| {})
            }),
        });
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
