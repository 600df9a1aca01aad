//! UNet forward and VJP at the notebook's full config (synthetic weights), batch 1 and 8, and
//! one step of each sampler at batch 1, on the CPU backend. Compare with tools/torch_bench.py.

use criterion::{criterion_group, criterion_main, Criterion};
use diffrecon::backend::cpu::gemm::gemm_isa_name;
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::operators::{Kernel, Operator};
use diffrecon::rng::normal_tensor;
use diffrecon::samplers::{diffpir, dps, Problem};
use diffrecon::schedule::Schedule;
use diffrecon::unet::{weights, UNet, UNetConfig};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    println!(
        "gemm isa: {}, direct conv isa: {}",
        gemm_isa_name(),
        diffrecon::backend::cpu::conv::DirectConvIsa::detect()
            .map_or("none (im2col + gemm)", |i| i.name())
    );
    let be = CpuBackend::default();
    let cfg = UNetConfig::notebook();
    let net = UNet::new(&be, cfg.clone(), &weights::synthetic(&cfg, 1)).unwrap();
    let mut g = c.benchmark_group("unet_full_config");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    for n in [1usize, 8] {
        let x = normal_tensor(&[n, 1, 64, 64], 2);
        let r = normal_tensor(&[n, 1, 64, 64], 3);
        g.bench_function(format!("forward_b{n}"), |b| {
            b.iter(|| net.forward(&be, &x, &[200.0]).unwrap())
        });
        g.bench_function(format!("vjp_b{n}"), |b| {
            b.iter(|| {
                let (_, tape) = net.forward_with_tape(&be, &x, &[200.0]).unwrap();
                net.vjp(&be, &tape, &r).unwrap()
            })
        });
    }
    let schedule = Schedule::cosine(400);
    let y = normal_tensor(&[1, 1, 64, 64], 4);
    let op = Operator::Blur(Kernel::motion(9, 20.0).unwrap());
    let uploaded = op.upload(&be).unwrap();
    let p = Problem {
        be: &be,
        net: &net,
        schedule: &schedule,
        y: &y,
        op: uploaded.view(),
    };
    let x = normal_tensor(&[1, 1, 64, 64], 5);
    let params = dps::DpsParams::default();
    g.bench_function("dps_step_b1", |b| {
        b.iter(|| dps::step(&p, &x, 300, 290, &params).unwrap())
    });
    g.bench_function("diffpir_step_b1", |b| {
        b.iter(|| diffpir::step(&p, &x, 300, 290, 0.6).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
