//! The UNet and the samplers on the golden weights, the device's prox CG, and a second DiffPIR
//! step that allocates nothing.

use super::{check_close, golden_engines, on};
use crate::common::{golden, gpu, rand, rel_l2 as rel_err};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::Backend;
use diffrecon::engine::{Engine, Model};
use diffrecon::operators::{Kernel, Operator};
use diffrecon::samplers::diffpir::{self, DiffPirParams};
use diffrecon::samplers::diffpir_pnp::{self, DiffPirPnpParams};
use diffrecon::samplers::dps::{self, DpsParams};
use diffrecon::samplers::dps_paper::{self, DpsPaperParams};
use diffrecon::samplers::Problem;
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn unet_eps_and_four_step_diffpir_match_the_cpu() {
    let Some(g) = gpu("unet_eps_and_diffpir") else {
        return;
    };
    let (cfg, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let on_gpu = Engine::from_params(g, cfg.clone(), &params).unwrap();
    let on_cpu = Engine::from_params(CpuBackend::default(), cfg, &params).unwrap();
    let x = rand(&[2, 1, 32, 32], 12);
    let e = rel_err(
        &on_gpu.eps(&x, &[37.0, 311.0]).unwrap(),
        &on_cpu.eps(&x, &[37.0, 311.0]).unwrap(),
    );
    println!("parity unet eps: relative error {e:.2e}");
    assert!(e <= 1e-4);
    let y = rand(&[2, 1, 32, 32], 13);
    let k = Kernel::motion(9, 20.0).unwrap();
    let p = DiffPirParams { steps: 4, tau: 0.6 };
    let e = rel_err(
        &on_gpu
            .diffpir(&y, &k.clone().into(), &p, &mut |_, _| {})
            .unwrap(),
        &on_cpu.diffpir(&y, &k.into(), &p, &mut |_, _| {}).unwrap(),
    );
    println!("parity diffpir 4 steps: relative error {e:.2e}");
    assert!(e <= 1e-4);
}

/// Buffers are planned once per (batch, size): the second DiffPIR-style step reuses every
/// buffer of the first and makes no device allocation. The two steps also match the CPU.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn second_diffpir_step_allocates_nothing() {
    let Some(g) = gpu("second_diffpir_step_allocates_nothing") else {
        return;
    };
    let (cfg, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let on_gpu = Engine::from_params(g, cfg.clone(), &params).unwrap();
    let on_cpu = Engine::from_params(CpuBackend::default(), cfg, &params).unwrap();
    let y = rand(&[2, 1, 32, 32], 14);
    let op = Operator::Blur(Kernel::motion(9, 20.0).unwrap());
    let ts = on_gpu.schedule.timesteps(4).unwrap();

    let be = &on_gpu.be;
    let (yb, kb) = (be.upload(&y).unwrap(), op.upload(be).unwrap());
    let p = Problem {
        be,
        net: &on_gpu.net,
        schedule: &on_gpu.schedule,
        y: &yb,
        op: kb.view(),
    };
    let mut x = yb.clone();
    let at_start = be.alloc_stats();
    x = diffpir::step(&p, &x, ts[0], ts[1], 0.6).unwrap();
    be.synchronize().unwrap();
    let after_first = be.alloc_stats();
    x = diffpir::step(&p, &x, ts[1], ts[2], 0.6).unwrap();
    be.synchronize().unwrap();
    let after_second = be.alloc_stats();
    println!(
        "allocations: first step {} fresh / {} reused, second step {} fresh / {} reused; {} buffers pooled",
        after_first.allocated - at_start.allocated,
        after_first.reused - at_start.reused,
        after_second.allocated - after_first.allocated,
        after_second.reused - after_first.reused,
        be.pooled_buffers()
    );
    assert!(after_first.allocated > at_start.allocated);
    assert_eq!(
        after_second.allocated, after_first.allocated,
        "the second step made new device allocations"
    );
    assert!(after_second.reused > after_first.reused);

    let cpu = &on_cpu.be;
    let kc = op.upload(cpu).unwrap();
    let pc = Problem {
        be: cpu,
        net: &on_cpu.net,
        schedule: &on_cpu.schedule,
        y: &y,
        op: kc.view(),
    };
    let mut xc = y.clone();
    xc = diffpir::step(&pc, &xc, ts[0], ts[1], 0.6).unwrap();
    xc = diffpir::step(&pc, &xc, ts[1], ts[2], 0.6).unwrap();
    let e = rel_err(&be.download(&x).unwrap(), &xc);
    println!("parity diffpir 2 steps (pooled buffers): relative error {e:.2e}");
    assert!(e <= 1e-4);
}

/// The UNet's VJP (every op of the backward pass) and the DPS gradient at batch 2 (t < T = 400).
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn unet_vjp_and_dps_gradient_match_the_cpu() {
    let Some(g) = gpu("unet_vjp_and_dps_gradient") else {
        return;
    };
    let (on_gpu, on_cpu) = golden_engines(g);
    let x = rand(&[2, 1, 32, 32], 600);
    let y = rand(&[2, 1, 32, 32], 601);
    let r = rand(&[2, 1, 32, 32], 602);
    let kt = Kernel::motion(9, 20.0).unwrap().to_tensor();
    for t in [37usize, 311] {
        let vjp = |e_x: &Tensor| {
            let (gx, gr) = (
                on_gpu.be.upload(e_x).unwrap(),
                on_gpu.be.upload(&r).unwrap(),
            );
            let (_, tape) = on_gpu
                .net
                .forward_with_tape(&on_gpu.be, &gx, &[t as f32])
                .unwrap();
            on_gpu
                .be
                .download(&on_gpu.net.vjp(&on_gpu.be, &tape, &gr).unwrap())
                .unwrap()
        };
        let (_, tape) = on_cpu
            .net
            .forward_with_tape(&on_cpu.be, &x, &[t as f32])
            .unwrap();
        let want = on_cpu.net.vjp(&on_cpu.be, &tape, &r).unwrap();
        check_close(&format!("unet vjp t {t}"), &vjp(&x), &want, 1e-4);

        let got = on(&on_gpu, &y, &kt, |p| {
            dps::gradient(p, &p.be.upload(&x)?, t, 0.05).map(|d| d.grad)
        });
        let want = on(&on_cpu, &y, &kt, |p| {
            dps::gradient(p, &p.be.upload(&x)?, t, 0.05).map(|d| d.grad)
        });
        check_close(&format!("dps gradient t {t} batch 2"), &got, &want, 1e-4);
    }
}

/// The notebook's DPS, published DiffPIR (CG through the per-item ops) and published DPS,
/// 4 steps each at batch 2, on the GPU against the CPU.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn four_step_dps_diffpir_pnp_and_dps_paper_match_the_cpu() {
    let Some(g) = gpu("four_step_samplers") else {
        return;
    };
    let (on_gpu, on_cpu) = golden_engines(g);
    let y = rand(&[2, 1, 32, 32], 700);
    let x_t = rand(&[2, 1, 32, 32], 701);
    let kt = Kernel::motion(9, 20.0).unwrap().to_tensor();
    let seeds = [7u64, 8];

    let params = DpsParams {
        steps: 4,
        ..DpsParams::default()
    };
    let got = on(&on_gpu, &y, &kt, |p| {
        dps::run(p, p.be.upload(&x_t)?, &params, &mut |_, _| {})
    });
    let want = on(&on_cpu, &y, &kt, |p| {
        dps::run(p, p.be.upload(&x_t)?, &params, &mut |_, _| {})
    });
    check_close("dps 4 steps", &got, &want, 1e-4);

    let params = DiffPirPnpParams {
        steps: 4,
        ..DiffPirPnpParams::default()
    };
    let got = on(&on_gpu, &y, &kt, |p| {
        diffpir_pnp::run(p, &params, &seeds, &mut |_, _| {}).map(|(x, _)| x)
    });
    let want = on(&on_cpu, &y, &kt, |p| {
        diffpir_pnp::run(p, &params, &seeds, &mut |_, _| {}).map(|(x, _)| x)
    });
    check_close("diffpir (published) 4 steps", &got, &want, 1e-4);

    let params = DpsPaperParams {
        steps: 4,
        ..DpsPaperParams::default()
    };
    let got = on(&on_gpu, &y, &kt, |p| {
        dps_paper::run(p, p.be.upload(&x_t)?, &params, &seeds, &mut |_, _| {})
    });
    let want = on(&on_cpu, &y, &kt, |p| {
        dps_paper::run(p, p.be.upload(&x_t)?, &params, &seeds, &mut |_, _| {})
    });
    check_close("dps (published) 4 steps", &got, &want, 1e-4);
}

/// The proximal CG solve with its scalars on the device against the CPU's generic loop:
/// three slices with different μ, one of them (y = 0, x0 = 0) converged before the first
/// iteration, so freezing is exercised; iterations per slice must agree exactly.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn prox_cg_on_the_device_matches_the_generic_loop() {
    use diffrecon::samplers::cg::CgSettings;
    let Some(g) = gpu("prox_cg") else {
        return;
    };
    let (on_gpu, on_cpu) = golden_engines(g);
    let mut y = rand(&[3, 1, 33, 31], 800);
    let mut x0 = rand(&[3, 1, 33, 31], 801);
    let per = 33 * 31;
    y.data_mut()[2 * per..].iter_mut().for_each(|v| *v = 0.0);
    x0.data_mut()[2 * per..].iter_mut().for_each(|v| *v = 0.0);
    let kt = Kernel::motion(7, 35.0).unwrap().to_tensor();
    let mu = [1e-3f32, 0.3, 0.05];
    for cg in [
        CgSettings {
            max_iters: 3,
            tol: 1e-4,
        },
        CgSettings {
            max_iters: 60,
            tol: 1e-3,
        },
    ] {
        let (got, r_gpu) = solve_prox(&on_gpu, &y, &kt, &x0, &mu, &cg);
        let (want, r_cpu) = solve_prox(&on_cpu, &y, &kt, &x0, &mu, &cg);
        let reports = [r_gpu, r_cpu];
        check_close(&format!("prox cg {cg:?}"), &got, &want, 1e-4);
        println!("prox cg reports (gpu, cpu): {reports:?}");
        assert_eq!(reports[0].iters, reports[1].iters, "CG iterations differ");
        let (a, b) = (reports[0].rel_residual, reports[1].rel_residual);
        assert!(
            (a - b).abs() <= 1e-3 * b.max(1e-12),
            "CG residual {a} vs {b}"
        );
    }
}

fn solve_prox<B: Backend>(
    e: &Engine<B>,
    y: &Tensor,
    kt: &Tensor,
    x0: &Tensor,
    mu: &[f32],
    cg: &diffrecon::samplers::cg::CgSettings,
) -> (Tensor, diffrecon::samplers::cg::CgReport) {
    let mut report = None;
    let x = on(e, y, kt, |p| {
        let (x, r) =
            diffrecon::samplers::cg::prox_solve(p.be, p.op, p.y, &p.be.upload(x0)?, mu, cg)?;
        report = Some(r);
        Ok(x)
    });
    (x, report.expect("solved"))
}
