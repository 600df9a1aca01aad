//! `diffrecon bench`: wall-clock timings of the UNet forward, of whole samplers and of the CT
//! operator on any device, with no benchmark harness needed (what gpu-check runs on a lent
//! GPU).

use crate::backend::{Backend, CtGeometry};
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

/// The backend's per-kernel recording (`Backend::profile_kernels`): `true` starts, `false`
/// stops and reports.
type Profiler<'a> = &'a dyn Fn(bool) -> Result<Option<String>>;

/// Times `f`: median and minimum of `repeats` runs after one warm-up; then, when `profile`,
/// one more run with per-kernel recording on (not part of the timings).
fn time(
    profiler: Profiler<'_>,
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
        (true, Ok(_)) => profile_once(profiler, f),
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
fn profile_once(profiler: Profiler<'_>, f: &mut dyn FnMut() -> Result<Tensor>) -> Option<String> {
    // A backend without kernels reports None even when asked to stop: skip the extra run.
    if let Ok(None) = profiler(false) {
        return None;
    }
    let ran = profiler(true).and_then(|_| f());
    let report = profiler(false);
    match (ran, report) {
        (Ok(_), Ok(table)) => table,
        (Err(e), _) | (_, Err(e)) => Some(format!("profile failed: {e}\n")),
    }
}

/// Forward and the UNet's VJP (forward with tape and backward) at each batch size, then the
/// notebook's DiffPIR-style and DPS and the published DiffPIR and DPS with `steps` steps at each
/// batch.
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
    let profiler = |on| model.profile_kernels(on);
    let timed = |op: String, b: usize, f: &mut dyn FnMut() -> Result<Tensor>| {
        time(&profiler, profile, repeats, (op, b), f)
    };
    let mut out = Vec::new();
    for &b in batches {
        let x = normal_tensor(&[b, 1, size, size], 1);
        out.push(timed("forward".into(), b, &mut || model.eps(&x, &[200.0])));
    }
    for &b in batches {
        let x = normal_tensor(&[b, 1, size, size], 1);
        let r = normal_tensor(&[b, 1, size, size], 4);
        out.push(timed("vjp".into(), b, &mut || model.eps_vjp(&x, 200.0, &r)));
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

/// The CT operator's geometry in the timings: the CT problem's 64 × 64 images, 60 views over
/// 180°, the default detector count (91).
const CT_SIDE: usize = 64;
const CT_VIEWS: usize = 60;
/// The CT rows' batch sizes, fixed whatever --batches says.
const CT_BATCHES: [usize; 2] = [1, 64];

/// The CT operator's forward (projection) and adjoint (back-projection) on backend `be` at
/// batch 1 and 64. The inputs and the angle table are uploaded first, as the operator holds
/// them on the device inside a sampler; each timed call is the op and the download of its
/// result (with --profile, the kernel table shows the op's own GPU time).
pub fn ct_operator<B: Backend>(be: &B, repeats: usize, profile: bool) -> Vec<Timing> {
    let geo = CtGeometry::new(CT_SIDE, CT_SIDE, CT_VIEWS, None, 180.0).expect("valid geometry");
    let profiler = |on| be.profile_kernels(on);
    // One word, as the other rows' (scripts/gpu-check.sh reads the op as `\S+`).
    let row = |dir: &str| format!("ct_{dir}_{CT_VIEWS}v");
    let mut out = Vec::new();
    for b in CT_BATCHES {
        let inputs = || -> Result<_> {
            let flat = geo.angles().into_iter().flat_map(|(c, s)| [c, s]).collect();
            let angles = be.upload(&Tensor::new(vec![geo.views, 2], flat)?)?;
            let image = be.upload(&normal_tensor(&[b, 1, geo.height, geo.width], 4))?;
            let sino = be.upload(&normal_tensor(&[b, 1, geo.views, geo.detectors], 5))?;
            Ok((angles, image, sino))
        };
        let (angles, image, sino) = match inputs() {
            Ok(v) => v,
            Err(e) => {
                for dir in ["forward", "adjoint"] {
                    out.push(Timing {
                        op: row(dir),
                        batch: b,
                        result: Err(e.to_string()),
                        profile: None,
                    });
                }
                continue;
            }
        };
        out.push(time(
            &profiler,
            profile,
            repeats,
            (row("forward"), b),
            &mut || be.download(&be.ct_project(&image, &geo, &angles)?),
        ));
        out.push(time(
            &profiler,
            profile,
            repeats,
            (row("adjoint"), b),
            &mut || be.download(&be.ct_backproject(&sino, &geo, &angles)?),
        ));
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
            s += &format!("\n### profile: {} batch {}\n\n{p}", t.op, t.batch);
        }
    }
    s
}

/// One row of `bench --latency`: a fresh model load, the first reconstruction after it
/// (cold), then the warm runs of the same slice.
pub struct Latency {
    pub steps: usize,
    /// The model load alone, in milliseconds.
    pub load_ms: f64,
    /// From before the load to the first result: load + first reconstruction.
    pub cold_ms: f64,
    /// The warm reconstructions' times, sorted ascending (at least one).
    pub warm_ms: Vec<f64>,
}

/// The percentiles of the latency table, as whole percents (100 = the maximum).
pub const LATENCY_PERCENTILES: [usize; 4] = [50, 95, 99, 100];

impl Latency {
    /// Times `load`, then `reconstruct` once on the loaded model (the cold result), then
    /// `runs` (≥ 1) more reconstructions one at a time. The model is dropped at the end, so
    /// the next row's load is a fresh one. Each reconstruction returns its image on the host,
    /// so device work is included.
    pub fn measure(
        steps: usize,
        runs: usize,
        load: &mut dyn FnMut() -> Result<crate::engine::SharedModel>,
        reconstruct: &mut dyn FnMut(&dyn Model) -> Result<Tensor>,
    ) -> Result<Latency> {
        let start = Instant::now();
        let model = load()?;
        let load_ms = ms_since(start);
        reconstruct(model.as_ref())?;
        let cold_ms = ms_since(start);
        let mut warm_ms = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            reconstruct(model.as_ref())?;
            warm_ms.push(ms_since(start));
        }
        warm_ms.sort_by(f64::total_cmp);
        Ok(Latency {
            steps,
            load_ms,
            cold_ms,
            warm_ms,
        })
    }

    /// The warm runs' `p`-th percentile by nearest rank (see [`nearest_rank`]).
    pub fn percentile(&self, p: usize) -> f64 {
        nearest_rank(&self.warm_ms, p)
    }
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// The `p`-th percentile (1 ≤ p ≤ 100) of ascending `sorted` samples by nearest rank: the
/// ⌈p·n/100⌉-th smallest, always one of the samples (p = 100 is the maximum). Integer
/// arithmetic, so no rounding moves a rank.
pub fn nearest_rank(sorted: &[f64], p: usize) -> f64 {
    assert!(
        !sorted.is_empty() && (1..=100).contains(&p),
        "nearest_rank needs samples and 1 ≤ p ≤ 100"
    );
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank - 1]
}

/// The latency rows as a markdown table, in milliseconds.
pub fn latency_table(rows: &[Latency]) -> String {
    let mut s = String::from(
        "| steps | warm runs | load ms | cold ms | p50 ms | p95 ms | p99 ms | max ms |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} |",
            r.steps,
            r.warm_ms.len(),
            r.load_ms,
            r.cold_ms
        );
        for p in LATENCY_PERCENTILES {
            s += &format!(" {:.1} |", r.percentile(p));
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_ceil_rank_sample() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        // ⌈0.5·20⌉ = 10, ⌈0.95·20⌉ = 19, ⌈0.99·20⌉ = 20.
        assert_eq!(nearest_rank(&v, 50), 10.0);
        assert_eq!(nearest_rank(&v, 95), 19.0);
        assert_eq!(nearest_rank(&v, 99), 20.0);
        assert_eq!(nearest_rank(&v, 100), 20.0);
        assert_eq!(nearest_rank(&v, 1), 1.0);
        // One sample is every percentile; three samples: p50 is the 2nd, p95 the 3rd.
        assert_eq!(nearest_rank(&[7.0], 50), 7.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 50), 2.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 95), 3.0);
        // 200 samples: p99 is the 198th, below the maximum.
        let w: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(nearest_rank(&w, 99), 198.0);
        assert_eq!(nearest_rank(&w, 95), 190.0);
    }

    #[test]
    fn latency_runs_are_timed_one_by_one_after_the_cold_run() {
        let calls = std::cell::Cell::new(0);
        let mut load = || -> Result<crate::engine::SharedModel> {
            crate::engine::synthetic(
                &crate::unet::UNetConfig::notebook(),
                1,
                crate::engine::Device::Cpu,
                crate::precision::Precision::F32,
            )
        };
        let mut rec = |_: &dyn Model| -> Result<Tensor> {
            calls.set(calls.get() + 1);
            // Run i sleeps i ms: the warm samples must come out sorted and at least that long.
            std::thread::sleep(std::time::Duration::from_millis(calls.get()));
            Tensor::new(vec![1], vec![0.0])
        };
        let l = Latency::measure(2, 4, &mut load, &mut rec).unwrap();
        assert_eq!(calls.get(), 5);
        assert_eq!(l.warm_ms.len(), 4);
        assert!(l.warm_ms.windows(2).all(|w| w[0] <= w[1]));
        assert!(l.warm_ms[0] >= 2.0 && l.percentile(100) >= 5.0);
        assert!(l.cold_ms >= l.load_ms + 1.0);
        let table = latency_table(&[l]);
        assert!(table.starts_with("| steps | warm runs | load ms | cold ms | p50 ms |"));
        assert_eq!(table.lines().nth(2).unwrap().split('|').count(), 10);
    }
}
