//! Set-up the integration tests share: where the golden data and the weights are, GPU 0 when
//! one is usable, seeded random tensors and the relative error. A one-file test crate declares
//! `mod common;`; a directory crate (tests/cli/, tests/cuda_parity/, tests/fuzz/) declares
//! `#[path = "../common/mod.rs"] mod common;`.

// Every test crate compiles this module and uses only a part of it.
#![allow(dead_code)]

use diffrecon::backend::cuda::{self, CudaBackend};
use diffrecon::rng::Rng;
use diffrecon::tensor::Tensor;
use std::path::PathBuf;

/// tests/golden: the Python reference's cases and the small random weights.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A file under tests/golden.
pub fn golden(p: &str) -> PathBuf {
    golden_dir().join(p)
}

/// The small golden weights (random, a reduced config).
pub fn small_weights() -> PathBuf {
    golden("small.safetensors")
}

/// The bundled trained prior of this source tree.
pub fn prior_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("weights")
        .join(diffrecon::DEFAULT_WEIGHTS)
}

/// GPU 0, its outputs poisoned (NaN) before each kernel runs; or None after a visible
/// `SKIP {test}` line when no GPU is usable (a skipped test checks nothing: not a pass).
pub fn gpu(test: &str) -> Option<CudaBackend> {
    match cuda::unavailable_reason(0) {
        Some(why) => {
            println!("SKIP {test}: no usable GPU ({why})");
            None
        }
        None => Some(CudaBackend::new(0).expect("CUDA backend").with_poison(true)),
    }
}

/// Standard normal values from `seed`.
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(
        shape.to_vec(),
        Rng::new(seed).normal_vec(shape.iter().product()),
    )
    .unwrap()
}

/// `rand` scaled by s.
pub fn rand_scaled(shape: &[usize], seed: u64, s: f32) -> Tensor {
    let t = rand(shape, seed);
    Tensor::new(t.shape().to_vec(), t.data().iter().map(|v| v * s).collect()).unwrap()
}

/// ‖got − want‖ / ‖want‖.
pub fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    got.rel_l2(want).unwrap()
}
