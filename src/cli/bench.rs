//! `bench`: the command-line side of the timings (the measuring lives in `crate::bench`).

use super::args::{sampler_name, steps, ModelArgs, SamplerKind};
use super::demo::DEMO_PHANTOM_SEED;
use super::limits::{Cost, MemoryArgs, Work};
use super::operator::OperatorArgs;
use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::CudaBackend;
use crate::bench::Latency;
use crate::engine::{self, Device, Model};
use crate::error::Result;
use crate::operators::{self, Operator};
use crate::rng::normal_tensor;
use crate::samplers::diffpir::DiffPirParams;
use crate::samplers::diffpir_pnp::DiffPirPnpParams;
use crate::samplers::dps::DpsParams;
use crate::samplers::dps_paper::DpsPaperParams;
use crate::schedule::{Schedule, T_DEFAULT};
use crate::tensor::Tensor;
use crate::{bail, phantom};
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    mut_arg("weights", |a| a.help("Weights [default: synthetic weights of the notebook's config; with --latency the bundled prior]")),
    after_help = "Rows: the UNet forward and each sampler at every --batches size, then the CT operator's forward (projection) and adjoint (back-projection) at batch 1 and 64 (64×64 images, 60 views over 180°, 91 detector bins), whatever --batches and --size say.\n\nWith --latency N: one row per --steps value, each a fresh model load, a first (cold) reconstruction of one --size × --size slice, then N warm reconstructions of it; their p50, p95, p99 and max by nearest rank."
)]
pub struct BenchArgs {
    /// The model flags of `reconstruct` (--weights' default is bench's own, set above).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes [default: 1,8] (not with --latency, which times one slice).
    #[arg(long, value_delimiter = ',')]
    pub batches: Option<Vec<usize>>,
    /// Sampler steps; with --latency a list (10,20,40) gives one row per step count.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "40",
        allow_negative_numbers = true
    )]
    pub steps: Vec<i64>,
    /// Timed runs per op after one warm-up [default: 5] (not with --latency).
    #[arg(long)]
    pub repeats: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Time N reconstructions of one slice, one after another, and print p50, p95, p99, max
    /// and the cold time to the first result (load + first reconstruction) per --steps value.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub latency: Option<i64>,
    /// --latency: the sampler [default: diffpir-pnp, published DiffPIR], at its defaults.
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerKind>,
    /// After timing each op, run it once more with per-kernel GPU time recorded (CUDA
    /// events; on the CPU each backend op's wall time by layer shape) and print each op's
    /// table after the timings.
    #[arg(long)]
    pub profile: bool,
    #[command(
        flatten,
        next_help_heading = "Operator (with --latency; default motion blur)"
    )]
    pub op: OperatorArgs,
}

/// Time the model and the CT operator on a device and print the table (and kernel profiles);
/// with --latency, the latency table instead.
pub(super) fn run(args: BenchArgs) -> Result<()> {
    if let Some(n) = args.latency {
        return latency(args, n);
    }
    let BenchArgs {
        model:
            ModelArgs {
                weights,
                num_heads,
                device,
                precision,
                memory,
            },
        batches,
        steps: n,
        repeats,
        size,
        profile,
        latency: _,
        sampler,
        op,
    } = args;
    if sampler.is_some() {
        bail!("--sampler applies to --latency N only");
    }
    if operator_flags_given(&op) {
        bail!("the operator flags (--operator, --kernel-size, --angle, ...) apply to --latency N only; the bench's rows use the notebook's motion blur and the CT rows' fixed geometry");
    }
    let n = match n[..] {
        [n] => n,
        _ => bail!("--steps takes one value without --latency, got {n:?}"),
    };
    let batches = batches.unwrap_or_else(|| vec![1, 8]);
    let repeats = repeats.unwrap_or(5);
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

/// Whether any operator flag differs from its default (an explicit default is harmless: it
/// is what the bench's rows use anyway).
fn operator_flags_given(op: &OperatorArgs) -> bool {
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        op: OperatorArgs,
    }
    let defaults = Defaults::command()
        .try_get_matches_from(["defaults"])
        .and_then(|m| Defaults::from_arg_matches(&m));
    // OperatorArgs has no PartialEq; its Debug form names every field.
    defaults.map_or(true, |d| format!("{:?}", d.op) != format!("{op:?}"))
}

/// The most warm runs `--latency` takes (each is a whole reconstruction).
const MAX_LATENCY_RUNS: i64 = 10_000;

/// `bench --latency N`: per --steps value, a fresh model load, the cold first result, then
/// N warm reconstructions of one slice; the latency table on stdout.
fn latency(args: BenchArgs, n: i64) -> Result<()> {
    if !(1..=MAX_LATENCY_RUNS).contains(&n) {
        bail!("--latency takes the number of warm runs, 1 to {MAX_LATENCY_RUNS}, got {n}");
    }
    if args.batches.is_some() {
        bail!("--batches does not apply to --latency (it times one slice)");
    }
    if args.repeats.is_some() {
        bail!("--repeats does not apply to --latency (N is the number of runs)");
    }
    if args.profile {
        bail!("--profile does not apply to --latency");
    }
    let kind = args.sampler.unwrap_or(SamplerKind::DiffpirPnp);
    if matches!(
        kind,
        SamplerKind::Tikhonov | SamplerKind::Tv | SamplerKind::Fbp
    ) {
        bail!(
            "--latency times the diffusion samplers (dps, diffpir, diffpir-pnp, dps-paper); {} has no steps",
            sampler_name(kind)
        );
    }
    if args.steps.is_empty() {
        bail!("--steps needs at least one step count");
    }
    let schedule = Schedule::cosine(T_DEFAULT);
    let step_counts = args
        .steps
        .iter()
        .map(|&s| {
            let s = steps(s)?;
            schedule.timesteps(s)?;
            Ok(s)
        })
        .collect::<Result<Vec<usize>>>()?;
    phantom::check_size(args.size)?;
    let image = (args.size, args.size);
    let op = args.op.operator(image)?;
    let slice = Slice::new(&op, image)?;
    // Resolved once, so that every row's load runs on the same device.
    let model_args = ModelArgs {
        device: engine::resolve(args.model.device)?.map_or(Device::Cpu, Device::Cuda),
        ..args.model
    };
    let mut weights = PathBuf::new();
    let mut device_name = String::new();
    let mut rows = Vec::new();
    for &s in &step_counts {
        let mut load = || -> Result<crate::engine::SharedModel> {
            let (model, path) = model_args.load()?;
            (weights, device_name) = (path, model.device());
            Ok(model)
        };
        let mut reconstruct = |m: &dyn Model| slice.reconstruct(m, kind, s);
        let row = Latency::measure(s, n as usize, &mut load, &mut reconstruct)?;
        // The row as it lands, so a long run that is stopped early still told something.
        eprint!(
            "{}",
            crate::bench::latency_table(std::slice::from_ref(&row))
        );
        rows.push(row);
    }
    println!("device: {device_name}, precision {}", model_args.precision);
    println!(
        "latency of {} on one {}×{} slice ({}: {}), weights {}",
        sampler_name(kind),
        args.size,
        args.size,
        format!("{:?}", args.op.kind()).to_lowercase(),
        op.describe(),
        weights.display()
    );
    println!(
        "cold = from before a fresh model load to the first result (load + first reconstruction); p50..max over the {n} warm runs after it, one at a time (p50 = the warm median); percentiles by nearest rank: the ceil(p·N/100)-th smallest run"
    );
    println!();
    print!("{}", crate::bench::latency_table(&rows));
    Ok(())
}

/// The one slice `--latency` reconstructs: the demo's phantom measured through the operator
/// with 1 % noise (as `simulate` does), and fixed starting noise and seed.
struct Slice<'a> {
    op: &'a Operator,
    y: Tensor,
    x_t: Tensor,
}

impl<'a> Slice<'a> {
    fn new(op: &'a Operator, (h, w): (usize, usize)) -> Result<Self> {
        let truth = phantom::phantoms(1, DEMO_PHANTOM_SEED, h);
        Ok(Slice {
            op,
            y: operators::simulate(&truth, op, 0.01, 0)?,
            x_t: normal_tensor(&[1, 1, h, w], 0),
        })
    }

    /// One reconstruction with `kind` at its default parameters and `steps` steps.
    fn reconstruct(&self, model: &dyn Model, kind: SamplerKind, steps: usize) -> Result<Tensor> {
        let (y, op, x_t, seeds) = (&self.y, self.op, &self.x_t, &[0u64]);
        let quiet = &mut |_: usize, _: usize| {};
        match kind {
            SamplerKind::Dps => {
                let p = DpsParams {
                    steps,
                    ..Default::default()
                };
                model.dps(y, op, x_t, &p, quiet)
            }
            SamplerKind::Diffpir => {
                let p = DiffPirParams {
                    steps,
                    ..Default::default()
                };
                model.diffpir(y, op, &p, quiet)
            }
            SamplerKind::DiffpirPnp => {
                let p = DiffPirPnpParams {
                    steps,
                    ..Default::default()
                };
                model.diffpir_pnp(y, op, &p, seeds, quiet).map(|r| r.0)
            }
            SamplerKind::DpsPaper => {
                let p = DpsPaperParams {
                    steps,
                    ..Default::default()
                };
                model.dps_paper(y, op, x_t, &p, seeds, quiet)
            }
            SamplerKind::Tikhonov | SamplerKind::Tv | SamplerKind::Fbp => {
                bail!("{} is not a diffusion sampler", sampler_name(kind))
            }
        }
    }
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
