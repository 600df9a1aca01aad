//! Every CUDA op against the CPU reference on fresh random inputs, odd shapes included, with
//! the GPU's outputs poisoned (NaN) before each kernel runs. The GPU tests are `#[ignore]`d, so
//! the harness counts them as ignored where no GPU is; `--include-ignored` runs them
//! (scripts/gpu-check.sh does), and without a usable GPU each then prints a SKIP line and checks
//! nothing. `kernels_do_not_spill` reads the ptxas report and needs no device.
//!
//! This file holds the shared checks and `kernels_do_not_spill` (kept at the top level: scripts/
//! gpu-prepare.sh runs it by its exact name); the parity tests are grouped by op family in the
//! modules below.

use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::cuda::{self, ConvKernel, CudaBackend};
use diffrecon::backend::Backend;
use diffrecon::engine::Engine;
use diffrecon::operators::{Kernel, Operator};
use diffrecon::samplers::Problem;
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;

#[path = "../common/mod.rs"]
mod common;
use common::{golden, rel_l2 as rel_err};

mod attention;
mod conv;
mod elementwise;
mod graphs;
mod groupnorm;
mod operators;
mod samplers;

const OP_BOUND: f64 = 1e-5;

/// Every conv kernel the backend can run: the implicit GEMM by size and at each tile, and the
/// direct kernels.
const CONV_KERNELS: [ConvKernel; 6] = [
    ConvKernel::Igemm,
    ConvKernel::Igemm32,
    ConvKernel::Igemm64,
    ConvKernel::Igemm64x128,
    ConvKernel::Igemm128,
    ConvKernel::Direct,
];

/// The device result has `want`'s shape and bits, every value written (outputs are poisoned).
pub(crate) fn same_bits(
    name: &str,
    g: &CudaBackend,
    got: &<CudaBackend as Backend>::Buf,
    want: &Tensor,
) {
    same_tensor_bits(name, &g.download(got).unwrap(), want);
}

/// `got` has `want`'s shape and bits, and no NaN (an unwritten, poisoned output).
pub(crate) fn same_tensor_bits(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert!(
        got.data().iter().all(|v| !v.is_nan()),
        "{name}: unwritten (NaN) outputs"
    );
    let differ = got
        .data()
        .iter()
        .zip(want.data())
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = differ {
        panic!(
            "{name}: value {i} of {} differs: {:e} on the GPU, {:e} expected",
            want.len(),
            got.data()[i],
            want.data()[i]
        );
    }
    println!("parity {name}: bit for bit ({} values)", want.len());
}

fn check(
    name: &str,
    g: &CudaBackend,
    got: &<CudaBackend as Backend>::Buf,
    want: &Tensor,
    bound: f64,
) {
    let got = g.download(got).unwrap();
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "{name}: unwritten (NaN) outputs"
    );
    let e = rel_err(&got, want);
    println!("parity {name}: relative error {e:.2e}");
    assert!(e <= bound, "{name}: relative error {e:.2e} > {bound:.0e}");
}

/// Return a buffer of `shape`'s length holding wrong (finite) values to the pool, so that the
/// next output of that length reuses it: the poisoning must cover reused buffers too.
fn stale_buffer(g: &CudaBackend, shape: &[usize]) {
    drop(g.upload(&Tensor::zeros(shape)).unwrap());
}

/// Both engines on the small golden weights.
fn golden_engines(g: CudaBackend) -> (Engine<CudaBackend>, Engine<CpuBackend>) {
    let (cfg, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let on_gpu = Engine::from_params(g, cfg.clone(), &params).unwrap();
    let on_cpu = Engine::from_params(CpuBackend::default(), cfg, &params).unwrap();
    (on_gpu, on_cpu)
}

/// Run `f` on engine `e`'s backend with y and the blur `kernel` uploaded; the result downloaded.
fn on<B: Backend>(
    e: &Engine<B>,
    y: &Tensor,
    kernel: &Tensor,
    f: impl FnOnce(&Problem<B>) -> diffrecon::error::Result<B::Buf>,
) -> Tensor {
    let op = Operator::Blur(Kernel::custom(kernel).unwrap());
    let (yb, kb) = (e.be.upload(y).unwrap(), op.upload(&e.be).unwrap());
    let p = Problem {
        be: &e.be,
        net: &e.net,
        schedule: &e.schedule,
        y: &yb,
        op: kb.view(),
    };
    let out = f(&p).unwrap();
    e.be.download(&out).unwrap()
}

fn check_close(name: &str, got: &Tensor, want: &Tensor, bound: f64) {
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "{name}: non-finite outputs"
    );
    let e = rel_err(got, want);
    println!("parity {name}: relative error {e:.2e}");
    assert!(e <= bound, "{name}: relative error {e:.2e} > {bound:.0e}");
}

/// The ptxas report (kept by build.rs) shows no spills to local memory in any kernel.
#[test]
fn kernels_do_not_spill() {
    let report = cuda::ptxas_report();
    if !cuda::kernels_embedded() {
        println!("SKIP kernels_do_not_spill: this build has no kernels (nvcc was not found)");
        return;
    }
    let spills: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("spill")
                && l.split_whitespace()
                    .any(|w| w.parse::<u64>().is_ok_and(|n| n > 0))
        })
        .collect();
    assert!(
        spills.is_empty(),
        "kernels spill to local memory:\n{}",
        spills.join("\n")
    );
    assert!(
        report.contains("Used"),
        "the ptxas report has no register lines:\n{report}"
    );
}
