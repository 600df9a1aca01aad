//! Golden tests: the engine against the PyTorch reference (tools/reference.py) on the files in
//! tests/golden (made by tools/make_golden.py). Errors are relative L2 unless stated; each test
//! prints its measured error so `cargo test -- --nocapture` gives the numbers for the notes.
//! Each bound is about 10× the error measured on its own case (x86-64 CPU backend), rounded up
//! to one significant figure, so a real regression fails rather than hiding under a round number.

use diffrecon::backend::cpu::CpuBackend;
use diffrecon::engine::{Engine, Model};
use diffrecon::io::npy::read_npy;
use diffrecon::metrics;
use diffrecon::operators::{Kernel, Operator};
use diffrecon::samplers::cg::CgSettings;
use diffrecon::samplers::diffpir::DiffPirParams;
use diffrecon::samplers::diffpir_pnp::DiffPirPnpParams;
use diffrecon::samplers::dps::DpsParams;
use diffrecon::samplers::dps_paper::DpsPaperParams;
use diffrecon::schedule::{Schedule, Skip};
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;
use diffrecon::unet::UNetConfig;
use serde_json::Value;

mod common;
use common::{golden_dir as dir, rel_l2};
// Bounds that are not a single case's relative L2 error: each about 10× the largest error
// measured over its cases (printed by `cargo test --release --test golden -- --nocapture`).
/// Relative difference of the CG's largest relative residual from the reference's (1.7e-6).
const CG_RESIDUAL_BOUND: f64 = 2e-5;
/// Largest absolute difference of a Gaussian kernel's taps (3.0e-8).
const GAUSSIAN_BOUND: f32 = 3e-7;
/// Metrics: relative MSE difference (4.4e-8), absolute SSIM (5.0e-6) and PSNR differences
/// (1.9e-7 dB).
const MSE_BOUND: f64 = 5e-7;
const SSIM_BOUND: f64 = 6e-5;
const PSNR_BOUND: f64 = 2e-6;

fn npy(case: &str, file: &str) -> Tensor {
    read_npy(&dir().join(case).join(file)).unwrap()
}

fn meta(case: &str) -> Value {
    let path = dir().join(case).join("meta.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn json(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(file)).unwrap()).unwrap()
}

fn engine(weights_file: &str) -> diffrecon::engine::SharedModel {
    let path = dir().join(weights_file);
    diffrecon::engine::load(
        &path,
        None,
        diffrecon::engine::Device::Cpu,
        Default::default(),
    )
    .unwrap()
}

fn check(case: &str, got: &Tensor, want: &Tensor, bound: f64) {
    let e = rel_l2(got, want);
    println!("golden {case}: relative L2 error {e:.3e} (bound {bound:.0e})");
    assert!(
        e <= bound,
        "{case}: relative error {e:.3e} exceeds {bound:.0e}"
    );
}

/// The bit patterns of f32 values, for comparisons that are exact (−0.0 ≠ 0.0, NaN = NaN).
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A golden JSON list, asserted non-empty so that no test passes by checking nothing.
fn non_empty<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"));
    assert!(!list.is_empty(), "{what} is empty");
    list
}

/// A JSON array of numbers as f32 values.
fn f32_list(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn op_of(op: &Value) -> Operator {
    Operator::Blur(kernel_of(op))
}

fn kernel_of(op: &Value) -> Kernel {
    let k = op["k"].as_u64().unwrap() as usize;
    match op["type"].as_str().unwrap() {
        "motion" => Kernel::motion(k, op["angle"].as_f64().unwrap()).unwrap(),
        "gaussian" => Kernel::gaussian(k, op["variance"].as_f64().unwrap()).unwrap(),
        other => panic!("unknown operator {other}"),
    }
}

fn times(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
        x => vec![x.as_f64().unwrap()],
    }
}

fn eps_case(case: &str, bound: f64) {
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let got = e.eps(&npy(case, "x.npy"), &times(&m["t"])).unwrap();
    check(case, &got, &npy(case, "eps.npy"), bound);
}

#[test]
fn eps_small_config() {
    eps_case("eps_small", 3e-5);
}

#[test]
fn eps_odd_config_non_square_odd_time_dim() {
    eps_case("eps_odd", 2e-5);
}

#[test]
fn eps_full_notebook_config_with_synthetic_weights() {
    let m = meta("eps_full");
    let cfg = UNetConfig::notebook();
    let params = weights::synthetic(&cfg, m["synthetic_seed"].as_u64().unwrap());
    // The generator agrees with the reference's, value for value.
    let check_vals = &json("manifest.json")["synthetic_check"];
    for name in ["init.weight", "out_norm.weight"] {
        let want = f32_list(&check_vals[format!("{name}[:3]")]);
        assert_eq!(want.len(), 3, "{name}");
        assert_eq!(bits(&params[name].data()[..3]), bits(&want), "{name}");
    }
    let e = Engine::from_params(CpuBackend::default(), cfg, &params).unwrap();
    let got = e.eps(&npy("eps_full", "x.npy"), &times(&m["t"])).unwrap();
    check("eps_full", &got, &npy("eps_full", "eps.npy"), 4e-5);
}

fn dps_grad_case(case: &str, bound: f64) {
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let k = op_of(&m["operator"]);
    let got = e
        .dps_grad(
            &npy(case, "x.npy"),
            m["t"].as_f64().unwrap(),
            &npy(case, "y.npy"),
            &k,
            m["sigma_y"].as_f64().unwrap(),
        )
        .unwrap();
    check(case, &got, &npy(case, "grad.npy"), bound);
}

#[test]
fn dps_gradient_batch_1() {
    dps_grad_case("dps_grad_small", 2e-5);
}

#[test]
fn dps_gradient_batch_2_per_slice_loss() {
    dps_grad_case("dps_grad_small_b2", 3e-5);
}

#[test]
fn dps_four_step_trajectory() {
    let case = "dps_traj_small";
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let p = DpsParams {
        steps: m["steps"].as_u64().unwrap() as usize,
        guidance: m["guidance"].as_f64().unwrap(),
        sigma_y: m["sigma_y"].as_f64().unwrap(),
    };
    let got = e
        .dps(
            &npy(case, "y.npy"),
            &op_of(&m["operator"]),
            &npy(case, "x_T.npy"),
            &p,
            &mut |_, _| {},
        )
        .unwrap();
    check(case, &got, &npy(case, "out.npy"), 8e-5);
}

#[test]
fn diffpir_four_step_trajectory() {
    let case = "diffpir_traj_small";
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let p = DiffPirParams {
        steps: m["steps"].as_u64().unwrap() as usize,
        tau: m["tau"].as_f64().unwrap(),
    };
    let got = e
        .diffpir(
            &npy(case, "y.npy"),
            &op_of(&m["operator"]),
            &p,
            &mut |_, _| {},
        )
        .unwrap();
    check(case, &got, &npy(case, "out.npy"), 1e-4);
}

fn u64_list(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn usize_list(v: &Value) -> Vec<usize> {
    u64_list(v).into_iter().map(|x| x as usize).collect()
}

/// The published samplers draw their noise with `rng::slice_noise`; the reference gets the same
/// values from the Python port tools/rng.py. Checked value for value, seeds and streams that
/// wrap mod 2^64 included.
#[test]
fn slice_noise_matches_the_python_port() {
    let g = json("rng/slice_noise.json");
    let cases = non_empty(&g["cases"], "slice_noise cases");
    for case in cases {
        let shape = usize_list(&case["shape"]);
        let seeds = u64_list(&case["seeds"]);
        let stream = case["stream"].as_u64().unwrap();
        let got = diffrecon::rng::slice_noise(&shape, &seeds, stream);
        assert_eq!(got.shape(), &shape[..]);
        non_empty(&case["values"], "slice_noise values");
        let want = f32_list(&case["values"]);
        assert_eq!(
            bits(got.data()),
            bits(&want),
            "slice_noise({shape:?}, {seeds:?}, {stream})"
        );
    }
    println!("golden slice_noise: {} cases bit for bit", cases.len());
}

fn diffpir_pnp_case(case: &str, bound: f64) {
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let skip = match m["skip"].as_str().unwrap() {
        "uniform" => Skip::Uniform,
        "quad" => Skip::Quad,
        other => panic!("unknown skip {other}"),
    };
    let p = DiffPirPnpParams {
        steps: m["steps"].as_u64().unwrap() as usize,
        lambda: m["lambda"].as_f64().unwrap(),
        zeta: m["zeta"].as_f64().unwrap(),
        noise_level: m["noise_level"].as_f64().unwrap(),
        t_start: m["t_start"].as_u64().unwrap() as usize,
        skip,
        cg: CgSettings {
            max_iters: m["cg"]["max_iters"].as_u64().unwrap() as usize,
            tol: m["cg"]["tol"].as_f64().unwrap(),
        },
    };
    assert_eq!(
        Schedule::cosine(400)
            .spaced_timesteps(p.t_start, p.steps, p.skip)
            .unwrap(),
        usize_list(&m["timesteps"]),
        "{case}: timesteps"
    );
    let (got, report) = e
        .diffpir_pnp(
            &npy(case, "y.npy"),
            &op_of(&m["operator"]),
            &p,
            &u64_list(&m["seeds"]),
            &mut |_, _| {},
        )
        .unwrap();
    let want_iters = m["report"]["cg_iters_max"].as_u64().unwrap() as usize;
    let want_res = m["report"]["cg_rel_residual_max"].as_f64().unwrap();
    println!(
        "golden {case}: CG {} solves, max {} iterations (reference {want_iters}), \
         max relative residual {:.4e} (reference {want_res:.4e})",
        report.solves, report.iters, report.rel_residual
    );
    assert_eq!(report.solves, p.steps, "{case}: one CG solve per step");
    assert_eq!(report.iters, want_iters, "{case}: CG iterations");
    let res_err = (report.rel_residual - want_res).abs() / want_res;
    println!("golden {case}: CG residual relative difference {res_err:.3e}");
    assert!(
        res_err <= CG_RESIDUAL_BOUND,
        "{case}: CG residual {} vs {want_res}",
        report.rel_residual
    );
    check(case, &got, &npy(case, "out.npy"), bound);
}

#[test]
fn diffpir_pnp_four_steps_without_reinjected_noise() {
    diffpir_pnp_case("diffpir_pnp_small", 5e-5);
}

#[test]
fn diffpir_pnp_four_quad_steps_with_noise() {
    diffpir_pnp_case("diffpir_pnp_noise_small", 5e-5);
}

fn dps_paper_case(case: &str, bound: f64) {
    let m = meta(case);
    let e = engine(m["weights"].as_str().unwrap());
    let p = DpsPaperParams {
        steps: m["steps"].as_u64().unwrap() as usize,
        zeta: m["zeta"].as_f64().unwrap(),
        eta: m["eta"].as_f64().unwrap(),
    };
    let got = e
        .dps_paper(
            &npy(case, "y.npy"),
            &op_of(&m["operator"]),
            &npy(case, "x_T.npy"),
            &p,
            &u64_list(&m["seeds"]),
            &mut |_, _| {},
        )
        .unwrap();
    check(case, &got, &npy(case, "out.npy"), bound);
}

#[test]
fn dps_paper_four_steps_deterministic() {
    dps_paper_case("dps_paper_small", 3e-6);
}

#[test]
fn dps_paper_four_steps_ancestral_noise() {
    dps_paper_case("dps_paper_noise_small", 9e-6);
}

#[test]
fn schedule_and_timesteps() {
    let s = Schedule::cosine(400);
    let want = read_npy(&dir().join("schedule/alpha_bars.npy")).unwrap();
    let got = Tensor::new(vec![400], s.alpha_bars.clone()).unwrap();
    check("alpha_bars", &got, &want, 6e-7);
    let lists = json("schedule/timesteps.json");
    let lists = lists["lists"].as_object().unwrap();
    assert!(!lists.is_empty(), "no timestep lists");
    for (steps, list) in lists {
        let want: Vec<usize> = non_empty(list, "timesteps")
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            s.timesteps(steps.parse().unwrap()).unwrap(),
            want,
            "timesteps for S = {steps}"
        );
    }
}

#[test]
fn motion_kernels_exact_and_gaussian_kernels_close() {
    let k = json("kernels.json");
    for case in non_empty(&k["motion"], "motion kernels") {
        let (size, angle) = (
            case["k"].as_u64().unwrap() as usize,
            case["angle"].as_f64().unwrap(),
        );
        let want = f32_list(&case["kernel"]);
        assert_eq!(want.len(), size * size, "motion k={size}");
        assert_eq!(
            bits(&Kernel::motion(size, angle).unwrap().data),
            bits(&want),
            "motion k={size} angle={angle}"
        );
    }
    for case in non_empty(&k["gaussian"], "gaussian kernels") {
        let (size, var) = (
            case["k"].as_u64().unwrap() as usize,
            case["variance"].as_f64().unwrap(),
        );
        let want = f32_list(&case["kernel"]);
        assert_eq!(want.len(), size * size, "gaussian k={size}");
        let got = Kernel::gaussian(size, var).unwrap().data;
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("golden gaussian k={size} var={var}: max abs error {err:.3e}");
        assert!(
            err <= GAUSSIAN_BOUND,
            "gaussian k={size} var={var}: max error {err}"
        );
    }
}

#[test]
fn blur_and_adjoint_match_conv2d() {
    let m = meta("blur");
    let be = CpuBackend::default();
    use diffrecon::backend::Backend;
    let (x, y) = (npy("blur", "x.npy"), npy("blur", "y.npy"));
    let km = kernel_of(&m["operator"]).to_tensor();
    let kg = kernel_of(&m["gaussian"]).to_tensor();
    check(
        "blur K(x)",
        &be.blur(&x, &km, false).unwrap(),
        &npy("blur", "Kx.npy"),
        7e-7,
    );
    check(
        "blur K^T(y)",
        &be.blur(&y, &km, true).unwrap(),
        &npy("blur", "KTy.npy"),
        7e-7,
    );
    check(
        "blur gaussian",
        &be.blur(&x, &kg, false).unwrap(),
        &npy("blur", "Kx_gauss.npy"),
        2e-6,
    );
}

#[test]
fn metrics_match_the_notebook_functions() {
    let m = json("metrics/metrics.json");
    for pair in non_empty(&m["pairs"], "metric pairs") {
        let a = npy("metrics", pair["a"].as_str().unwrap());
        let b = npy("metrics", pair["b"].as_str().unwrap());
        let q = metrics::quality(&a, &b).unwrap()[0];
        let (mse, ssim) = (
            pair["mse"].as_f64().unwrap(),
            pair["ssim"].as_f64().unwrap(),
        );
        let mse_err = (q.mse - mse).abs() / mse.max(1e-12);
        let ssim_err = (q.ssim - ssim).abs();
        println!(
            "golden metrics {}: mse {:.3e} vs {mse:.3e} (relative difference {mse_err:.3e}), \
             ssim {:.6} vs {ssim:.6} (difference {ssim_err:.3e})",
            pair["a"], q.mse, q.ssim
        );
        assert!(mse_err <= MSE_BOUND, "mse {} vs {mse}", q.mse);
        assert!(ssim_err <= SSIM_BOUND, "ssim {} vs {ssim}", q.ssim);
        match pair["psnr"].as_f64() {
            Some(p) => {
                let psnr_err = (q.psnr - p).abs();
                println!(
                    "golden metrics {}: psnr difference {psnr_err:.3e} dB",
                    pair["a"]
                );
                assert!(psnr_err <= PSNR_BOUND, "psnr {} vs {p}", q.psnr);
            }
            None => assert!(q.psnr.is_infinite()),
        }
    }
}
