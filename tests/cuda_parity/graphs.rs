//! CUDA graph capture and replay against the eager forward.

use super::on;
use crate::common::{golden, gpu, rand};
use diffrecon::backend::cuda::CudaBackend;
use diffrecon::backend::Backend;
use diffrecon::engine::Engine;
use diffrecon::operators::Kernel;
use diffrecon::samplers::diffpir::{self, DiffPirParams};
use diffrecon::samplers::diffpir_pnp::{self, DiffPirPnpParams};
use diffrecon::samplers::dps::{self, DpsParams};
use diffrecon::samplers::dps_paper::{self, DpsPaperParams};
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;

/// The UNet forward through a CUDA graph (captured on the second call with a shape, replayed
/// after) gives the eager forward's bits for new inputs and timesteps on every replay, at
/// batch 1 and 3 and alternating between the two graphs; 4-step DiffPIR-style, DPS, published
/// DPS and published DiffPIR runs (one graph per step) match too, with exactly the expected
/// captures and replays.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn graph_replay_matches_the_eager_forward() {
    if gpu("graph_replay").is_none() {
        return;
    }
    let (cfg, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let backend = |graphs: bool| CudaBackend::new(0).unwrap().with_graphs(graphs);
    let eager = Engine::from_params(backend(false), cfg.clone(), &params).unwrap();
    let graphed = Engine::from_params(backend(true), cfg, &params).unwrap();
    let forward = |e: &Engine<CudaBackend>, x: &Tensor, t: f32| {
        let out = e
            .net
            .forward(&e.be, &e.be.upload(x).unwrap(), &[t])
            .unwrap();
        e.be.download(&out).unwrap()
    };
    for n in [1usize, 3] {
        // Calls 0..4: eager (first sight), capture, replay, replay.
        for step in 0..4u64 {
            let x = rand(&[n, 1, 32, 32], 900 + 10 * n as u64 + step);
            let t = 37.0 + 120.0 * step as f32;
            let (want, got) = (forward(&eager, &x, t), forward(&graphed, &x, t));
            assert!(got.data().iter().all(|v| v.is_finite()));
            assert_eq!(
                got.data(),
                want.data(),
                "graph n{n} call {step}: not the eager bits"
            );
            println!("parity graph forward n{n} call {step}: relative error 0.00e0");
        }
    }
    let stats = graphed.be.graph_stats();
    assert_eq!((stats.captures, stats.replays), (2, 4), "{stats:?}");
    // The two graphs share the graph pool (one's scratch can be the other's input or output
    // buffer): replays alternating between them must still give the eager bits.
    for call in 0..4u64 {
        let n = [1usize, 3][call as usize % 2];
        let x = rand(&[n, 1, 32, 32], 950 + call);
        let t = 5.0 + 90.0 * call as f32;
        let (want, got) = (forward(&eager, &x, t), forward(&graphed, &x, t));
        assert_eq!(got.data(), want.data(), "alternating replay {call} (n{n})");
    }
    println!("parity graph forward alternating n1/n3: relative error 0.00e0");
    assert_eq!(graphed.be.graph_stats().replays, 8);

    // DiffPIR-style: one graph per step (its scalars are kernel arguments), captured in the
    // second run with the same schedule and replayed in the third; 4 timesteps, 3 steps.
    let y = rand(&[2, 1, 32, 32], 980);
    let kt = Kernel::motion(9, 20.0).unwrap().to_tensor();
    let params = DiffPirParams { steps: 4, tau: 0.6 };
    let run = |e: &Engine<CudaBackend>| {
        let x = on(e, &y, &kt, |p| diffpir::run(p, &params, &mut |_, _| {}));
        (x, ())
    };
    let passes = [("eager", (0, 0)), ("capture", (3, 0)), ("replay", (0, 3))];
    check_passes("diffpir", &run(&eager), passes, || run(&graphed), &graphed);
    // A kernel of the same shape with another ‖A‖ bound (its step size is a kernel argument):
    // new keys, so no replay of the graphs above.
    let kt_half = Tensor::new(
        kt.shape().to_vec(),
        kt.data().iter().map(|v| 0.5 * v).collect(),
    )
    .unwrap();
    let run_half = |e: &Engine<CudaBackend>| {
        on(e, &y, &kt_half, |p| {
            diffpir::run(p, &params, &mut |_, _| {})
        })
    };
    let before = graphed.be.graph_stats();
    assert_eq!(
        run_half(&graphed).data(),
        run_half(&eager).data(),
        "diffpir, ‖A‖ halved"
    );
    assert_eq!(
        graphed.be.graph_stats().replays,
        before.replays,
        "a stale graph replayed"
    );
    println!("parity graph diffpir with another kernel norm: relative error 0.00e0");

    // DPS: one graph per step as well; its final forward (a shape the forwards above did not
    // use) is the UNet's own graph: (captures, replays) added by each run.
    let x_t = rand(&[2, 1, 32, 32], 981);
    let params = DpsParams {
        steps: 4,
        ..DpsParams::default()
    };
    let run = |e: &Engine<CudaBackend>| {
        let x = on(e, &y, &kt, |p| {
            dps::run(p, p.be.upload(&x_t)?, &params, &mut |_, _| {})
        });
        (x, ())
    };
    let passes = [("eager", (0, 0)), ("capture", (4, 0)), ("replay", (0, 4))];
    check_passes("dps", &run(&eager), passes, || run(&graphed), &graphed);

    // Published DPS: one graph per step too (its residual norms stay on the device), the noise
    // uploaded before each replay; 4 steps, the last without noise.
    let params = DpsPaperParams {
        steps: 4,
        ..DpsPaperParams::default()
    };
    let run = |e: &Engine<CudaBackend>| {
        let x = on(e, &y, &kt, |p| {
            dps_paper::run(p, p.be.upload(&x_t)?, &params, &[7, 8], &mut |_, _| {})
        });
        (x, ())
    };
    let passes = [("eager", (0, 0)), ("capture", (4, 0)), ("replay", (0, 4))];
    check_passes(
        "published dps",
        &run(&eager),
        passes,
        || run(&graphed),
        &graphed,
    );

    // Published DiffPIR: one graph per step with its CG solve inside (μ and the noise are
    // inputs, the statistics a second output read after the run); the reports agree too.
    let params = DiffPirPnpParams {
        steps: 4,
        ..DiffPirPnpParams::default()
    };
    let run = |e: &Engine<CudaBackend>| {
        let report = std::cell::Cell::new(None);
        let x = on(e, &y, &kt, |p| {
            let (x, r) = diffpir_pnp::run(p, &params, &[7, 8], &mut |_, _| {})?;
            report.set(Some(r));
            Ok(x)
        });
        (x, report.get())
    };
    let passes = [("eager", (0, 0)), ("capture", (4, 0)), ("replay", (0, 4))];
    check_passes(
        "published diffpir",
        &run(&eager),
        passes,
        || run(&graphed),
        &graphed,
    );
}

/// Runs `run` once per pass on the graphed engine: each run gives the eager run's bits and
/// side result (`want`: a CG report, or nothing) and adds the pass's (captures, replays) to the
/// backend's graph counts.
fn check_passes<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &(Tensor, T),
    passes: [(&str, (u64, u64)); 3],
    run: impl Fn() -> (Tensor, T),
    graphed: &Engine<CudaBackend>,
) {
    for (pass, added) in passes {
        let before = graphed.be.graph_stats();
        let (got, side) = run();
        assert_eq!(
            got.data(),
            want.0.data(),
            "4-step {what} with graphs ({pass} run)"
        );
        assert_eq!(side, want.1, "4-step {what} ({pass} run)");
        println!("parity graph {what} 4 steps ({pass} run): relative error 0.00e0");
        let after = graphed.be.graph_stats();
        let delta = (
            after.captures - before.captures,
            after.replays - before.replays,
        );
        assert_eq!(delta, added, "{what} {pass} run: (captures, replays) added");
    }
}
