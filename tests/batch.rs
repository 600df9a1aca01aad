//! Slices of a batch are independent: slice i of a batched run matches a single-slice run with
//! the same inputs (DPS's loss is each slice's own mean), and the same seed gives bitwise the
//! same output. On the CPU, and on the GPU (the CUDA backend derives every kernel choice that
//! changes rounding from one image's shape, never from the batch): the GPU tests are
//! `#[ignore]`d, run with `--include-ignored` on a GPU.

use diffrecon::engine::{self, Device, Model};
use diffrecon::operators::{simulate, Kernel, Operator};
use diffrecon::rng::normal_tensor;
use diffrecon::samplers::diffpir::DiffPirParams;
use diffrecon::samplers::dps::DpsParams;
use diffrecon::tensor::Tensor;
use diffrecon::Precision;

mod common;

/// The small golden model on the CPU.
fn cpu_model() -> diffrecon::engine::SharedModel {
    engine::load(&common::small_weights(), None, Device::Cpu, Precision::F32).unwrap()
}

/// The small golden model on GPU 0 in f32 and on the tensor cores (TF32); none, after a SKIP
/// line, without a usable GPU. The TF32 check expects bit-identical slices too: each output's
/// MMA sequence over K is the same whatever the tile or batch (16×16 fragments, every UNet
/// level a multiple of 16 pixels); a difference would be amplified by later roundings
/// (tests/precision.rs).
fn gpu_models(test: &str) -> Vec<diffrecon::engine::SharedModel> {
    match diffrecon::backend::cuda::unavailable_reason(0) {
        None => [Precision::F32, Precision::Tf32]
            .map(|p| engine::load(&common::small_weights(), None, Device::Cuda(0), p).unwrap())
            .into(),
        Some(why) => {
            println!("SKIP {test}: no usable GPU ({why})");
            Vec::new()
        }
    }
}

fn slice(t: &Tensor, i: usize) -> Tensor {
    t.items(i..i + 1).unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn batched_slices_match_single_runs_and_runs_repeat_bitwise() {
    notebook_samplers_keep_slices_independent(cpu_model().as_ref());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn batched_slices_match_single_runs_on_the_gpu() {
    for m in gpu_models("batched_slices_match_single_runs_on_the_gpu") {
        notebook_samplers_keep_slices_independent(m.as_ref());
    }
}

fn notebook_samplers_keep_slices_independent(m: &dyn Model) {
    let k: Operator = Kernel::motion(9, 20.0).unwrap().into();
    let truth = diffrecon::phantom::phantoms(3, 7, 32);
    let y = simulate(&truth, &k, 0.01, 7).unwrap();
    let x_t = normal_tensor(y.shape(), 7);
    let dps = DpsParams {
        steps: 4,
        ..Default::default()
    };
    let pir = DiffPirParams { steps: 4, tau: 0.6 };
    let batch_dps = m.dps(&y, &k, &x_t, &dps, &mut |_, _| {}).unwrap();
    let batch_pir = m.diffpir(&y, &k, &pir, &mut |_, _| {}).unwrap();
    for i in 0..3 {
        let one_dps = m
            .dps(&slice(&y, i), &k, &slice(&x_t, i), &dps, &mut |_, _| {})
            .unwrap();
        let one_pir = m.diffpir(&slice(&y, i), &k, &pir, &mut |_, _| {}).unwrap();
        let (e_dps, e_pir) = (
            max_abs(&slice(&batch_dps, i), &one_dps),
            max_abs(&slice(&batch_pir, i), &one_pir),
        );
        println!(
            "{}: slice {i}: DPS max |batch - single| {e_dps:.1e}, DiffPIR-style {e_pir:.1e}",
            m.device()
        );
        assert!(e_dps <= 1e-6 && e_pir <= 1e-6);
    }
    assert_eq!(
        m.dps(&y, &k, &x_t, &dps, &mut |_, _| {}).unwrap(),
        batch_dps,
        "same inputs, different output"
    );
}

/// The published samplers keep per-slice scalars (CG steps, residual norms) and per-slice noise
/// streams, so the same holds for them; different seeds give different samples.
#[test]
fn published_samplers_keep_slices_independent() {
    published_samplers_slices(cpu_model().as_ref());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn published_samplers_keep_slices_independent_on_the_gpu() {
    for m in gpu_models("published_samplers_keep_slices_independent_on_the_gpu") {
        published_samplers_slices(m.as_ref());
    }
}

fn published_samplers_slices(m: &dyn Model) {
    use diffrecon::rng::slice_noise;
    use diffrecon::samplers::diffpir_pnp::DiffPirPnpParams;
    use diffrecon::samplers::dps_paper::DpsPaperParams;
    let k: Operator = Kernel::motion(9, 20.0).unwrap().into();
    let truth = diffrecon::phantom::phantoms(3, 8, 32);
    let y = simulate(&truth, &k, 0.01, 8).unwrap();
    let seeds = [11u64, 12, 13];
    let x_t = slice_noise(y.shape(), &seeds, 0);
    let pnp = DiffPirPnpParams {
        steps: 4,
        ..Default::default()
    };
    let dpsp = DpsPaperParams {
        steps: 4,
        ..Default::default()
    };
    let (batch_pnp, cg) = m.diffpir_pnp(&y, &k, &pnp, &seeds, &mut |_, _| {}).unwrap();
    assert_eq!(cg.solves, 4);
    assert!(cg.iters >= 1 && cg.rel_residual.is_finite());
    let batch_dpsp = m
        .dps_paper(&y, &k, &x_t, &dpsp, &seeds, &mut |_, _| {})
        .unwrap();
    for i in 0..3 {
        let yi = slice(&y, i);
        let (one_pnp, _) = m
            .diffpir_pnp(&yi, &k, &pnp, &seeds[i..=i], &mut |_, _| {})
            .unwrap();
        let one_dpsp = m
            .dps_paper(
                &yi,
                &k,
                &slice(&x_t, i),
                &dpsp,
                &seeds[i..=i],
                &mut |_, _| {},
            )
            .unwrap();
        let (e_pnp, e_dpsp) = (
            max_abs(&slice(&batch_pnp, i), &one_pnp),
            max_abs(&slice(&batch_dpsp, i), &one_dpsp),
        );
        println!(
            "{}: slice {i}: DiffPIR (published) {e_pnp:.1e}, DPS (published) {e_dpsp:.1e}",
            m.device()
        );
        assert!(e_pnp <= 1e-6 && e_dpsp <= 1e-6);
    }
    let (again, _) = m.diffpir_pnp(&y, &k, &pnp, &seeds, &mut |_, _| {}).unwrap();
    assert_eq!(again, batch_pnp, "same seeds, different output");
    let (other, _) = m
        .diffpir_pnp(&y, &k, &pnp, &[21, 22, 23], &mut |_, _| {})
        .unwrap();
    assert!(
        max_abs(&other, &batch_pnp) > 1e-4,
        "other seeds, same sample"
    );
}
