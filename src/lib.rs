//! diffrecon: diffusion-prior reconstruction of degraded images (DPS and a DiffPIR-style
//! plug-and-play sampler over the notebook's DDPM UNet), with a CPU reference backend.
//!
//! Layering (nothing imports upward): cli → engine → samplers → (unet, operators) → backend.
//!
//! The documented surface is [`api`] (load a model, describe an operator, reconstruct); the C
//! ABI (`ffi`, `include/diffrecon.h`) and the Python package are built on it. The other modules
//! stay public for the command line, the tests and the benchmarks, but are hidden from the docs:
//! they may change without notice.

pub mod api;
#[doc(hidden)]
#[allow(rustdoc::all)] // internal, not rendered: its doc lints do not concern the API's docs
pub mod backend;
#[doc(hidden)]
pub mod baselines;
#[doc(hidden)]
#[allow(rustdoc::all)] // internal, not rendered: its doc lints do not concern the API's docs
pub mod bench;
#[doc(hidden)]
#[allow(rustdoc::all)] // internal, not rendered: its doc lints do not concern the API's docs
pub mod cli;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod evaluate;
#[doc(hidden)]
pub mod ffi;
#[doc(hidden)]
pub mod figure;
#[doc(hidden)]
pub mod io;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod operators;
#[doc(hidden)]
pub mod params;
#[doc(hidden)]
pub mod phantom;
#[doc(hidden)]
pub mod precision;
#[doc(hidden)]
pub mod progress;
#[doc(hidden)]
pub mod rng;
#[doc(hidden)]
pub mod samplers;
#[doc(hidden)]
pub mod schedule;
#[doc(hidden)]
pub mod spread;
#[doc(hidden)]
pub mod tensor;
#[doc(hidden)]
pub mod unet;

pub use error::{Error, Result};
pub use precision::Precision;
pub use tensor::Tensor;

/// File name of the bundled prior under `weights/`.
pub const DEFAULT_WEIGHTS: &str = "prior.safetensors";

/// The bundled prior, if this checkout has one: `weights/prior.safetensors` in the source tree,
/// or next to the executable.
pub fn default_weights() -> Option<std::path::PathBuf> {
    let in_tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("weights")
        .join(DEFAULT_WEIGHTS);
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(DEFAULT_WEIGHTS)));
    std::iter::once(in_tree)
        .chain(beside_exe)
        .find(|p| p.is_file())
}
