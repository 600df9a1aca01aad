//! diffrecon: diffusion-prior reconstruction of degraded images.
pub mod error;
pub mod rng;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::Tensor;
pub mod backend;
pub mod unet;
pub mod operators;
pub mod schedule;
pub mod samplers;
pub mod engine;
pub mod progress;
