//! `bench`: the command-line side of the timings (the measuring lives in `crate::bench`).

use super::args::steps;
use super::limits::{Cost, MemoryArgs, Work};
use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::CudaBackend;
use crate::bail;
use crate::engine::{self, Device};
use crate::error::Result;
use crate::precision::Precision;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Rows: the UNet forward and each sampler at every --batches size, then the CT operator's forward (projection) and adjoint (back-projection) at batch 1 and 64 (64×64 images, 60 views over 180°, 91 detector bins), whatever --batches and --size say."
)]
pub struct BenchArgs {
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long)]
    pub num_heads: Option<usize>,
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// The GEMMs' arithmetic: f32, tf32 or bf16 (see `reconstruct --help`).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub steps: i64,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// After timing each op, run it once more with per-kernel GPU time recorded (CUDA
    /// events) and print each op's kernel table after the timings.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// Time the model and the CT operator on a device and print the table (and kernel profiles).
pub(super) fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        weights,
        num_heads,
        device,
        precision,
        batches,
        steps: n,
        repeats,
        size,
        profile,
        memory,
    } = args;
    if batches.is_empty() || batches.contains(&0) {
        bail!("--batches needs positive batch sizes");
    }
    if repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if size == 0 {
        bail!("--size must be a positive image size");
    }
    let steps = steps(n)?;
    // Resolved once, so that the model and the CT operator run on the same device (and `auto`
    // says at most once why it falls back to the CPU).
    let ordinal = engine::resolve(device)?;
    let device = ordinal.map_or(Device::Cpu, Device::Cuda);
    let model = match weights {
        Some(w) => engine::load(&w, num_heads, device, precision)?,
        None => {
            let cfg = crate::unet::UNetConfig::notebook();
            engine::synthetic(&cfg, 1, device, precision)?
        }
    };
    check_model_args(model.config(), size, &batches, &memory)?;
    let mut timings = crate::bench::run(model.as_ref(), size, &batches, steps, repeats, profile);
    // The operator has no GEMMs: --precision does not apply to it.
    timings.extend(match ordinal {
        None => crate::bench::ct_operator(&CpuBackend::default(), repeats, profile),
        Some(i) => crate::bench::ct_operator(&CudaBackend::new(i)?, repeats, profile),
    });
    print!("{}", crate::bench::table(&model.device(), &timings));
    let profiles = crate::bench::profiles(&timings);
    if profile && profiles.is_empty() {
        eprintln!("--profile: {} runs no kernels to profile", model.device());
    }
    print!("{profiles}");
    Ok(())
}

/// The image size fits the model, and the largest batch (DPS's tape) fits the memory budget.
fn check_model_args(
    cfg: &crate::unet::UNetConfig,
    size: usize,
    batches: &[usize],
    memory: &MemoryArgs,
) -> Result<()> {
    let multiple = cfg.size_multiple();
    if !size.is_multiple_of(multiple) {
        bail!("--size must be a multiple of {multiple} for this model, got {size}");
    }
    let largest = batches.iter().copied().max().unwrap_or(1);
    let cost = Cost::model(cfg, (size, size), (size, size), Work::Gradient);
    memory.budget().check_items(
        &format!("bench at batch {largest} of {size}×{size}"),
        largest as u64,
        &cost,
        "use smaller --batches or --size",
    )
}
