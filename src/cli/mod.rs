//! The command line: flag names are a contract (tests and users depend on them).
//!
//! Where things live: the subcommands here; the arguments several commands share in
//! `args`; each command's own flags and its code in one file per command family
//! (`reconstruct`, `evaluate`, `demo`, `bench`, the small ones in `misc`); the memory budget
//! and the size limits derived from it in `limits`; reading inputs and checking outputs in
//! `files`.

mod args;
mod bench;
mod demo;
mod evaluate;
mod files;
mod limits;
mod misc;
mod operator;
mod reconstruct;

pub use args::{ModelArgs, SamplerArgs, SamplerKind, SkipKind};
pub use bench::BenchArgs;
pub use demo::{DemoArgs, DEMO_PHANTOM_SEED};
pub use evaluate::EvaluateArgs;
pub use limits::MemoryArgs;
pub use misc::{ApplyArgs, DpsGradArgs, EpsArgs, PhantomsArgs, SampleArgs, SimulateArgs};
pub use operator::{OperatorArgs, OperatorKind};
pub use reconstruct::{ReconstructArgs, DEFAULT_TIKHONOV_LAMBDA, DEFAULT_TV_LAMBDA};

use crate::error::{Error, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "diffrecon",
    version,
    about = "Diffusion-prior reconstruction from degraded measurements: deblurring, sparse-view CT, inpainting, super-resolution"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Noise prediction eps(x, t) for a batch.
    Eps(EpsArgs),
    /// The DPS gradient dL/dx at state x and timestep t.
    DpsGrad(DpsGradArgs),
    /// Measure an image with a forward operator and add relative Gaussian noise: y = A x + e.
    Simulate(SimulateArgs),
    /// Apply a forward operator A (or its adjoint Aᵀ) alone, without noise.
    Apply(ApplyArgs),
    /// Reconstruct x from a measurement y (published DiffPIR by default; see --sampler).
    Reconstruct(ReconstructArgs),
    /// The notebook's experiment end to end on the built-in test phantom.
    Demo(DemoArgs),
    /// Unconditional DDIM (eta = 0) samples from the prior, as a grid PNG (and .npy beside it).
    Sample(SampleArgs),
    /// The quality table of a task (--task) on held-out phantoms: the observation baseline
    /// (FBP for CT), Tikhonov and TV (best λ), the four diffusion samplers; with --sweep also
    /// the parameter sweeps on separate phantoms.
    Evaluate(EvaluateArgs),
    /// Time the UNet forward and whole samplers on a device (synthetic weights of the
    /// notebook's config unless --weights is given).
    Bench(BenchArgs),
    /// Synthetic CT-like phantoms (8-bit quantised), for training and evaluation.
    Phantoms(PhantomsArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Eps(a) => misc::eps(a),
        Command::DpsGrad(a) => misc::dps_grad(a),
        Command::Simulate(a) => misc::simulate(a),
        Command::Apply(a) => misc::apply(a),
        Command::Reconstruct(a) => reconstruct::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Sample(a) => misc::sample(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Phantoms(a) => misc::phantoms(a),
    }
}

/// Exit code and message for an error at the top level.
pub fn report(e: &Error) -> i32 {
    eprintln!("error: {e}");
    e.exit_code()
}
