//! diffrecon: diffusion-prior reconstruction of degraded images (DPS and a DiffPIR-style
//! plug-and-play sampler over the notebook's DDPM UNet), with a CPU reference backend.
//!
//! Layering (nothing imports upward): cli → engine → samplers → (unet, operators) → backend.

pub mod backend;
pub mod baselines;
pub mod bench;
pub mod cli;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod figure;
pub mod io;
pub mod metrics;
pub mod operators;
pub mod phantom;
pub mod precision;
pub mod progress;
pub mod rng;
pub mod samplers;
pub mod schedule;
pub mod spread;
pub mod tensor;
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
