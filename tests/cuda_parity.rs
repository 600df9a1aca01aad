//! Every CUDA op against the CPU reference on fresh random inputs, odd shapes included, with
//! the GPU's outputs poisoned (NaN) before each kernel runs. The GPU tests are `#[ignore]`d, so
//! the harness counts them as ignored where no GPU is; `--include-ignored` runs them
//! (scripts/gpu-check.sh does), and without a usable GPU each then prints a SKIP line and checks
//! nothing. `kernels_do_not_spill` reads the ptxas report and needs no device.

use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::cuda::{self, AttentionCore, ConvKernel, CudaBackend};
use diffrecon::backend::{AttnParams, Backend, CtGeometry};
use diffrecon::engine::{Engine, Model};
use diffrecon::operators::{Kernel, Operator};
use diffrecon::rng::Rng;
use diffrecon::samplers::diffpir::{self, DiffPirParams};
use diffrecon::samplers::diffpir_pnp::{self, DiffPirPnpParams};
use diffrecon::samplers::dps::{self, DpsParams};
use diffrecon::samplers::dps_paper::{self, DpsPaperParams};
use diffrecon::samplers::Problem;
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;

mod common;
use common::{golden, gpu, rand, rand_scaled, rel_l2 as rel_err};

const OP_BOUND: f64 = 1e-5;

/// Every conv kernel the backend can run: the implicit GEMM by size and at both tiles, and the
/// direct kernels.
const CONV_KERNELS: [ConvKernel; 4] = [
    ConvKernel::Igemm,
    ConvKernel::Igemm32,
    ConvKernel::Igemm64,
    ConvKernel::Direct,
];

fn check(
    name: &str,
    g: &CudaBackend,
    got: &<CudaBackend as Backend>::Buf,
    want: &Tensor,
    bound: f64,
) {
    let got = g.download(got).unwrap();
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "{name}: unwritten (NaN) outputs"
    );
    let e = rel_err(&got, want);
    println!("parity {name}: relative error {e:.2e}");
    assert!(e <= bound, "{name}: relative error {e:.2e} > {bound:.0e}");
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn conv2d_forward() {
    if gpu("conv2d_forward").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    for (i, &(n, cin, h, w, cout, k, stride, pad)) in [
        (1, 3, 13, 11, 5, 3, 1, 1),
        (2, 17, 16, 16, 33, 3, 2, 1),
        (2, 8, 9, 7, 20, 1, 1, 0),
        (1, 64, 64, 64, 64, 3, 1, 1),
        (3, 70, 9, 8, 1, 3, 1, 1),
        (1, 4, 11, 9, 3, 5, 1, 2),
    ]
    .iter()
    .enumerate()
    {
        for kernel in CONV_KERNELS {
            let g = gpu("conv2d_forward").unwrap().with_conv_kernel(kernel);
            let x = rand(&[n, cin, h, w], 10 + i as u64);
            let wt = rand(&[cout, cin, k, k], 20 + i as u64);
            let b = rand(&[cout], 30 + i as u64);
            let want = cpu.conv2d(&x, &wt, &b, stride, pad).unwrap();
            let got = g
                .conv2d(
                    &g.upload(&x).unwrap(),
                    &g.upload(&wt).unwrap(),
                    &g.upload(&b).unwrap(),
                    stride,
                    pad,
                )
                .unwrap();
            check(
                &format!("conv2d {kernel:?} {cin}->{cout} k{k} s{stride} {h}x{w} n{n}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

/// Return a buffer of `shape`'s length holding wrong (finite) values to the pool, so that the
/// next output of that length reuses it: the poisoning must cover reused buffers too.
fn stale_buffer(g: &CudaBackend, shape: &[usize]) {
    drop(g.upload(&Tensor::zeros(shape)).unwrap());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn conv2d_fused_epilogues() {
    if gpu("conv2d_fused_epilogues").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    for (i, &(n, cin, h, w, cout, k, stride, pad)) in [
        (1, 3, 13, 11, 5, 3, 1, 1),
        (2, 17, 9, 7, 33, 3, 1, 1),
        (2, 8, 9, 7, 20, 1, 1, 0),
        (3, 5, 11, 13, 7, 3, 2, 1),
        (1, 64, 32, 32, 64, 3, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let x = rand(&[n, cin, h, w], 110 + i as u64);
        let wt = rand(&[cout, cin, k, k], 120 + i as u64);
        let b = rand(&[cout], 130 + i as u64);
        let v = rand(&[n, cout], 140 + i as u64);
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let out_shape = [n, cout, ho, wo];
        let r = rand(&out_shape, 150 + i as u64);
        for kernel in CONV_KERNELS {
            let g = gpu("conv2d_fused_epilogues")
                .unwrap()
                .with_conv_kernel(kernel);
            let (gx, gw, gb) = (
                g.upload(&x).unwrap(),
                g.upload(&wt).unwrap(),
                g.upload(&b).unwrap(),
            );
            let (gv, gr) = (g.upload(&v).unwrap(), g.upload(&r).unwrap());
            let tag = format!("{kernel:?} {cin}->{cout} k{k} s{stride} {h}x{w} n{n}");

            let want = cpu
                .conv2d_add_channel_bias(&x, &wt, &b, stride, pad, &v)
                .unwrap();
            stale_buffer(&g, &out_shape);
            let before = g.alloc_stats();
            let got = g
                .conv2d_add_channel_bias(&gx, &gw, &gb, stride, pad, &gv)
                .unwrap();
            assert!(
                g.alloc_stats().reused > before.reused,
                "the output did not come from the pool"
            );
            check(
                &format!("conv2d_add_channel_bias {tag}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );

            let want = cpu
                .conv2d_add_residual(&x, &wt, &b, stride, pad, &r)
                .unwrap();
            stale_buffer(&g, &out_shape);
            let got = g
                .conv2d_add_residual(&gx, &gw, &gb, stride, pad, &gr)
                .unwrap();
            check(
                &format!("conv2d_add_residual {tag}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
    // A residual of the wrong shape is refused, not read out of bounds.
    let g = gpu("conv2d_fused_epilogues").unwrap();
    let x = g.upload(&rand(&[1, 2, 5, 5], 1)).unwrap();
    let wt = g.upload(&rand(&[3, 2, 3, 3], 2)).unwrap();
    let b = g.upload(&rand(&[3], 3)).unwrap();
    let r = g.upload(&rand(&[1, 3, 4, 5], 4)).unwrap();
    assert!(g.conv2d_add_residual(&x, &wt, &b, 1, 1, &r).is_err());
    assert!(g.conv2d_add_channel_bias(&x, &wt, &b, 1, 1, &r).is_err());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn group_norm_with_and_without_silu() {
    let Some(g) = gpu("group_norm") else { return };
    let cpu = CpuBackend::default();
    for (i, &(n, c, h, w, groups)) in [(2, 12, 5, 7, 6), (1, 64, 64, 64, 32), (1, 36, 3, 3, 18)]
        .iter()
        .enumerate()
    {
        let x = rand(&[n, c, h, w], 40 + i as u64);
        let (gam, bet) = (rand(&[c], 50), rand(&[c], 51));
        for silu in [false, true] {
            let want = cpu.group_norm(&x, &gam, &bet, groups, silu).unwrap();
            let got = g
                .group_norm(
                    &g.upload(&x).unwrap(),
                    &g.upload(&gam).unwrap(),
                    &g.upload(&bet).unwrap(),
                    groups,
                    silu,
                )
                .unwrap();
            check(
                &format!("group_norm c{c} g{groups} silu {silu}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn attention_forward() {
    if gpu("attention").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    // Both paths of the attention core at every size (c288 heads 2: head width 144, past the
    // fused kernel's 128, runs the GEMM path either way), and both SGEMM tiles (the projections
    // and the GEMM path's products).
    let paths = [None, Some(AttentionCore::Fused), Some(AttentionCore::Gemm)];
    for (i, &(n, c, h, w, heads)) in [
        (2, 8, 7, 9, 2),
        (1, 128, 32, 32, 4),
        (1, 256, 16, 16, 4),
        (1, 128, 5, 13, 2),
        (3, 64, 8, 8, 4),
        (1, 288, 4, 5, 2),
    ]
    .iter()
    .enumerate()
    {
        let y = rand(&[n, c, h, w], 60 + i as u64);
        let s = 1.0 / (c as f32).sqrt();
        let scaled = |shape: &[usize], seed| {
            let t = rand(shape, seed);
            Tensor::new(t.shape().to_vec(), t.data().iter().map(|v| v * s).collect()).unwrap()
        };
        let p = AttnParams {
            in_w: scaled(&[3 * c, c], 70),
            in_b: scaled(&[3 * c], 71),
            out_w: scaled(&[c, c], 72),
            out_b: scaled(&[c], 73),
        };
        let want = cpu.attention(&y, &p, heads).unwrap();
        for (path, tile) in paths
            .into_iter()
            .flat_map(|p| [None, Some(32), Some(64)].map(|t| (p, t)))
        {
            let gp = gpu("attention")
                .unwrap()
                .with_attention_core(path)
                .with_gemm_tile(tile);
            let pg = AttnParams {
                in_w: gp.upload(&p.in_w).unwrap(),
                in_b: gp.upload(&p.in_b).unwrap(),
                out_w: gp.upload(&p.out_w).unwrap(),
                out_b: gp.upload(&p.out_b).unwrap(),
            };
            let got = gp.attention(&gp.upload(&y).unwrap(), &pg, heads).unwrap();
            check(
                &format!(
                    "attention {path:?} gemm tile {tile:?} n{n} c{c} heads{heads} tokens{}",
                    h * w
                ),
                &gp,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn conv2d_vjp_backward_data() {
    if gpu("conv2d_vjp").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    // (n, cin, h, w, cout, k, stride, pad): k 1 and 3, stride 1 and 2, odd H/W, even H/W with
    // stride 2, a k = 5 case, and stride-2 shapes whose last input rows no output reads.
    for (i, &(n, cin, h, w, cout, k, stride, pad)) in [
        (2, 5, 13, 11, 7, 3, 1, 1),
        (1, 17, 15, 9, 33, 3, 2, 1),
        (3, 6, 10, 12, 5, 3, 2, 1),
        (2, 8, 9, 7, 20, 1, 1, 0),
        (1, 9, 11, 7, 4, 1, 2, 0),
        (1, 4, 11, 9, 3, 5, 1, 2),
        (2, 3, 12, 9, 5, 3, 2, 0),
        (1, 64, 32, 32, 64, 3, 1, 1),
        (2, 70, 8, 8, 40, 3, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let dy = rand(&[n, cout, ho, wo], 300 + i as u64);
        let wt = rand(&[cout, cin, k, k], 310 + i as u64);
        let in_shape = [n, cin, h, w];
        let want = cpu.conv2d_vjp(&dy, &wt, &in_shape, stride, pad).unwrap();
        for kernel in CONV_KERNELS {
            let g = gpu("conv2d_vjp").unwrap().with_conv_kernel(kernel);
            let (gdy, gw) = (g.upload(&dy).unwrap(), g.upload(&wt).unwrap());
            stale_buffer(&g, &in_shape);
            let got = g.conv2d_vjp(&gdy, &gw, &in_shape, stride, pad).unwrap();
            check(
                &format!("conv2d_vjp {kernel:?} {cin}->{cout} k{k} s{stride} p{pad} {h}x{w} n{n}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
    // A dy that does not match the input shape is refused, not read out of bounds.
    let g = gpu("conv2d_vjp").unwrap();
    let dy = g.upload(&rand(&[1, 3, 4, 5], 1)).unwrap();
    let wt = g.upload(&rand(&[3, 2, 3, 3], 2)).unwrap();
    assert!(g.conv2d_vjp(&dy, &wt, &[1, 2, 5, 5], 1, 1).is_err());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn group_norm_vjp_with_and_without_silu() {
    let Some(g) = gpu("group_norm_vjp") else {
        return;
    };
    let cpu = CpuBackend::default();
    // (n, c, h, w, groups): 3, 3, 1, 3 and 2 channels per group (odd counts), odd planes.
    for (i, &(n, c, h, w, groups)) in [
        (2, 15, 5, 7, 5),
        (1, 21, 9, 11, 7),
        (3, 9, 3, 3, 9),
        (1, 36, 13, 5, 12),
        (1, 64, 32, 32, 32),
    ]
    .iter()
    .enumerate()
    {
        let x = rand(&[n, c, h, w], 400 + i as u64);
        let dy = rand(&[n, c, h, w], 410 + i as u64);
        let (gam, bet) = (rand(&[c], 420 + i as u64), rand(&[c], 430 + i as u64));
        let (gx, gg, gb, gdy) = (
            g.upload(&x).unwrap(),
            g.upload(&gam).unwrap(),
            g.upload(&bet).unwrap(),
            g.upload(&dy).unwrap(),
        );
        for silu in [false, true] {
            let want = cpu
                .group_norm_vjp(&x, &gam, &bet, groups, silu, &dy)
                .unwrap();
            stale_buffer(&g, x.shape());
            let got = g.group_norm_vjp(&gx, &gg, &gb, groups, silu, &gdy).unwrap();
            check(
                &format!("group_norm_vjp c{c} g{groups} {h}x{w} n{n} silu {silu}"),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn attention_vjp_input() {
    if gpu("attention_vjp").is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    // (n, c, h, w, heads): 2 and 4 heads; 16, 64, 65 (odd) and 1024 tokens.
    for (i, &(n, c, h, w, heads)) in [
        (2, 8, 4, 4, 2),
        (1, 16, 4, 4, 4),
        (2, 12, 8, 8, 2),
        (1, 32, 8, 8, 4),
        (2, 8, 5, 13, 4),
        (1, 64, 32, 32, 4),
    ]
    .iter()
    .enumerate()
    {
        let y = rand(&[n, c, h, w], 500 + i as u64);
        let dout = rand(&[n, c, h, w], 510 + i as u64);
        let s = 1.0 / (c as f32).sqrt();
        let p = AttnParams {
            in_w: rand_scaled(&[3 * c, c], 520 + i as u64, s),
            in_b: rand_scaled(&[3 * c], 530 + i as u64, s),
            out_w: rand_scaled(&[c, c], 540 + i as u64, s),
            out_b: rand_scaled(&[c], 550 + i as u64, s),
        };
        let want = cpu.attention_vjp(&y, &p, heads, &dout).unwrap();
        for tile in [None, Some(32), Some(64)] {
            let g = gpu("attention_vjp").unwrap().with_gemm_tile(tile);
            let pg = AttnParams {
                in_w: g.upload(&p.in_w).unwrap(),
                in_b: g.upload(&p.in_b).unwrap(),
                out_w: g.upload(&p.out_w).unwrap(),
                out_b: g.upload(&p.out_b).unwrap(),
            };
            let (gy, gd) = (g.upload(&y).unwrap(), g.upload(&dout).unwrap());
            stale_buffer(&g, y.shape());
            let got = g.attention_vjp(&gy, &pg, heads, &gd).unwrap();
            check(
                &format!(
                    "attention_vjp gemm tile {tile:?} c{c} heads{heads} tokens{} n{n}",
                    h * w
                ),
                &g,
                &got,
                &want,
                OP_BOUND,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn small_ops() {
    let Some(g) = gpu("small_ops") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let (a, b) = (rand(&[2, 3, 5, 7], 1), rand(&[2, 3, 5, 7], 2));
    check(
        "lincomb",
        &g,
        &g.lincomb(&up(&a), 0.7, &up(&b), -1.3).unwrap(),
        &cpu.lincomb(&a, 0.7, &b, -1.3).unwrap(),
        1e-7,
    );
    check(
        "predict_x0",
        &g,
        &g.predict_x0(&up(&a), &up(&b), 0.3, 0.95).unwrap(),
        &cpu.predict_x0(&a, &b, 0.3, 0.95).unwrap(),
        1e-7,
    );
    let (mut ca, mut ga) = (a.clone(), up(&a));
    cpu.clamp(&mut ca, -0.5, 0.5).unwrap();
    g.clamp(&mut ga, -0.5, 0.5).unwrap();
    check("clamp", &g, &ga, &ca, 0.0);
    let (mut cd, mut gd) = (b.clone(), up(&b));
    cpu.clamp_vjp(&a, -0.5, 0.5, &mut cd).unwrap();
    g.clamp_vjp(&up(&a), -0.5, 0.5, &mut gd).unwrap();
    check("clamp_vjp", &g, &gd, &cd, 0.0);
    let (mut cs, mut gs) = (a.clone(), up(&a));
    cpu.add_assign(&mut cs, &b).unwrap();
    g.add_assign(&mut gs, &up(&b)).unwrap();
    check("add_assign", &g, &gs, &cs, 0.0);
    let v = rand(&[2, 3], 3);
    let (mut cb, mut gb) = (a.clone(), up(&a));
    cpu.add_channel_bias(&mut cb, &v).unwrap();
    g.add_channel_bias(&mut gb, &up(&v)).unwrap();
    check("add_channel_bias", &g, &gb, &cb, 0.0);
    check(
        "upsample2x",
        &g,
        &g.upsample2x(&up(&a)).unwrap(),
        &cpu.upsample2x(&a).unwrap(),
        0.0,
    );
    let dy = rand(&[2, 3, 10, 14], 4);
    check(
        "upsample2x_vjp",
        &g,
        &g.upsample2x_vjp(&up(&dy)).unwrap(),
        &cpu.upsample2x_vjp(&dy).unwrap(),
        0.0,
    );
    let c = rand(&[2, 4, 5, 7], 5);
    let cat = cpu.concat_channels(&a, &c).unwrap();
    check(
        "concat_channels",
        &g,
        &g.concat_channels(&up(&a), &up(&c)).unwrap(),
        &cat,
        0.0,
    );
    let (sa, sb) = g.split_channels(&up(&cat), 3).unwrap();
    check("split_channels a", &g, &sa, &a, 0.0);
    check("split_channels b", &g, &sb, &c, 0.0);
    // fin below, at and above a warp's 32 lanes (the kernel strides k by 32).
    for (n, fin, fout) in [(3, 17, 9), (2, 32, 5), (3, 261, 70)] {
        let (x, w, bias) = (rand(&[n, fin], 6), rand(&[fout, fin], 7), rand(&[fout], 8));
        for silu in [false, true] {
            let want = cpu.linear(&x, &w, &bias, silu).unwrap();
            check(
                &format!("linear {n}x{fin}->{fout} silu {silu}"),
                &g,
                &g.linear(&up(&x), &up(&w), &up(&bias), silu).unwrap(),
                &want,
                OP_BOUND,
            );
        }
    }
    let got = g.sum_sq_per_item(&up(&a)).unwrap();
    let want = cpu.sum_sq_per_item(&a).unwrap();
    for (p, q) in got.iter().zip(&want) {
        assert!((p - q).abs() <= 1e-6 * q.abs(), "sum_sq {p} vs {q}");
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn per_item_dot_and_lincomb() {
    let Some(g) = gpu("per_item_dot_and_lincomb") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    for (i, shape) in [
        vec![3, 2, 17, 13],
        vec![1, 1, 5, 3],
        vec![2, 1, 300, 301],
        vec![5, 7],
    ]
    .iter()
    .enumerate()
    {
        let (a, b) = (rand(shape, 200 + i as u64), rand(shape, 210 + i as u64));
        let n = shape[0];
        // CpuBackend::default() uses the trait's default (through the host) for both ops.
        let want = cpu.dot_per_item(&a, &b).unwrap();
        let got = g.dot_per_item(&up(&a), &up(&b)).unwrap();
        assert_eq!(got.len(), n);
        let (na, nb) = (
            cpu.sum_sq_per_item(&a).unwrap(),
            cpu.sum_sq_per_item(&b).unwrap(),
        );
        for j in 0..n {
            // Products of floats are exact in double: only the summation order differs.
            let scale = (na[j] * nb[j]).sqrt();
            let e = (got[j] - want[j]).abs() / scale;
            println!("parity dot_per_item {shape:?} item {j}: error {e:.2e} of ‖a‖‖b‖");
            assert!(
                e <= 1e-10,
                "dot_per_item {shape:?} item {j}: {} vs {}",
                got[j],
                want[j]
            );
        }
        let ca: Vec<f32> = (0..n).map(|j| 0.7 - 0.3 * j as f32).collect();
        let cb: Vec<f32> = (0..n).map(|j| -1.3 + 0.45 * j as f32).collect();
        let want = cpu.lincomb_per_item(&a, &ca, &b, &cb).unwrap();
        let (ga, gb) = (up(&a), up(&b));
        stale_buffer(&g, shape);
        let before = g.alloc_stats();
        let got = g.lincomb_per_item(&ga, &ca, &gb, &cb).unwrap();
        assert!(
            g.alloc_stats().reused > before.reused,
            "the output did not come from the pool"
        );
        assert_eq!(g.download(&got).unwrap().shape(), shape.as_slice());
        check(&format!("lincomb_per_item {shape:?}"), &g, &got, &want, 0.0);
    }
    let a = up(&rand(&[2, 3], 1));
    assert!(g.lincomb_per_item(&a, &[1.0], &a, &[1.0, 2.0]).is_err());
    assert!(g.dot_per_item(&a, &up(&rand(&[2, 4], 2))).is_err());
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn blur_and_fused_diffpir_steps() {
    let Some(g) = gpu("blur") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let x = rand(&[2, 1, 37, 29], 9);
    let y = rand(&[2, 1, 37, 29], 10);
    let eps = rand(&[2, 1, 37, 29], 11);
    for k in [
        Kernel::motion(9, 20.0).unwrap(),
        Kernel::motion(5, -35.0).unwrap(),
        Kernel::gaussian(7, 2.0).unwrap(),
    ] {
        let kt = k.to_tensor();
        for adjoint in [false, true] {
            let want = cpu.blur(&x, &kt, adjoint).unwrap();
            check(
                &format!("blur k{} adjoint {adjoint}", k.size),
                &g,
                &g.blur(&up(&x), &up(&kt), adjoint).unwrap(),
                &want,
                OP_BOUND,
            );
        }
        let want = cpu.data_step(&x, &y, &kt, 0.6).unwrap();
        check(
            &format!("data_step k{}", k.size),
            &g,
            &g.data_step(&up(&x), &up(&y), &up(&kt), 0.6).unwrap(),
            &want,
            OP_BOUND,
        );
    }
    let want = cpu
        .diffpir_prior(&x, &eps, (0.4, 0.9165), (0.5, 0.866))
        .unwrap();
    check(
        "diffpir_prior",
        &g,
        &g.diffpir_prior(&up(&x), &up(&eps), (0.4, 0.9165), (0.5, 0.866))
            .unwrap(),
        &want,
        1e-7,
    );
}

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

/// Both engines on the small golden weights.
fn golden_engines(g: CudaBackend) -> (Engine<CudaBackend>, Engine<CpuBackend>) {
    let (cfg, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let on_gpu = Engine::from_params(g, cfg.clone(), &params).unwrap();
    let on_cpu = Engine::from_params(CpuBackend::default(), cfg, &params).unwrap();
    (on_gpu, on_cpu)
}

/// Run `f` on engine `e`'s backend with y and the blur `kernel` uploaded; the result downloaded.
fn on<B: Backend>(
    e: &Engine<B>,
    y: &Tensor,
    kernel: &Tensor,
    f: impl FnOnce(&Problem<B>) -> diffrecon::error::Result<B::Buf>,
) -> Tensor {
    let op = Operator::Blur(Kernel::custom(kernel).unwrap());
    let (yb, kb) = (e.be.upload(y).unwrap(), op.upload(&e.be).unwrap());
    let p = Problem {
        be: &e.be,
        net: &e.net,
        schedule: &e.schedule,
        y: &yb,
        op: kb.view(),
    };
    let out = f(&p).unwrap();
    e.be.download(&out).unwrap()
}

fn check_close(name: &str, got: &Tensor, want: &Tensor, bound: f64) {
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "{name}: non-finite outputs"
    );
    let e = rel_err(got, want);
    println!("parity {name}: relative error {e:.2e}");
    assert!(e <= bound, "{name}: relative error {e:.2e} > {bound:.0e}");
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

/// The ptxas report (kept by build.rs) shows no spills to local memory in any kernel.
#[test]
fn kernels_do_not_spill() {
    let report = cuda::ptxas_report();
    if !cuda::kernels_embedded() {
        println!("SKIP kernels_do_not_spill: this build has no kernels (nvcc was not found)");
        return;
    }
    let spills: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("spill")
                && l.split_whitespace()
                    .any(|w| w.parse::<u64>().is_ok_and(|n| n > 0))
        })
        .collect();
    assert!(
        spills.is_empty(),
        "kernels spill to local memory:\n{}",
        spills.join("\n")
    );
    assert!(
        report.contains("Used"),
        "the ptxas report has no register lines:\n{report}"
    );
}

/// The UNet forward through a CUDA graph (captured on the second call with a shape, replayed
/// after) gives the eager forward's bits for new inputs and timesteps on every replay, at
/// batch 1 and 3 and alternating between the two graphs; a 4-step DiffPIR-style run (forward
/// replays inside a sampler) and DPS (one graph per step) match too, with exactly the expected
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

    let y = rand(&[2, 1, 32, 32], 980);
    let kt = Kernel::motion(9, 20.0).unwrap().to_tensor();
    let params = DiffPirParams { steps: 4, tau: 0.6 };
    let run =
        |e: &Engine<CudaBackend>| on(e, &y, &kt, |p| diffpir::run(p, &params, &mut |_, _| {}));
    let before = graphed.be.graph_stats();
    let (want, got) = (run(&eager), run(&graphed));
    assert_eq!(got.data(), want.data(), "4-step DiffPIR-style with graphs");
    println!("parity graph diffpir 4 steps: relative error 0.00e0");
    // Three forwards at a new shape: eager, capture, replay.
    let after = graphed.be.graph_stats();
    assert_eq!(
        (
            after.captures - before.captures,
            after.replays - before.replays
        ),
        (1, 1),
        "DiffPIR-style: (captures, replays) added"
    );

    // DPS: one graph per step (its scalars are kernel arguments), captured in the second run
    // with the same schedule and replayed in the third.
    let x_t = rand(&[2, 1, 32, 32], 981);
    let params = DpsParams {
        steps: 4,
        ..DpsParams::default()
    };
    let run = |e: &Engine<CudaBackend>| {
        on(e, &y, &kt, |p| {
            dps::run(p, p.be.upload(&x_t)?, &params, &mut |_, _| {})
        })
    };
    let want = run(&eager);
    // 3 DPS steps and a final forward (whose graph the DiffPIR run above captured at this
    // shape): (captures, replays) added by each run.
    for (pass, added) in [("eager", (0, 1)), ("capture", (3, 1)), ("replay", (0, 4))] {
        let before = graphed.be.graph_stats();
        let got = run(&graphed);
        assert_eq!(
            got.data(),
            want.data(),
            "4-step DPS with graphs ({pass} run)"
        );
        println!("parity graph dps 4 steps ({pass} run): relative error 0.00e0");
        let after = graphed.be.graph_stats();
        let delta = (
            after.captures - before.captures,
            after.replays - before.replays,
        );
        assert_eq!(delta, added, "{pass} run: (captures, replays) added");
    }
}

// --- The operators' ops: CT, downsample, inpaint, the TV baseline's updates -----------------
//
// Their kernels repeat the CPU's arithmetic operation for operation (the _rn intrinsics, f64
// sums over the same terms in the same order), and the CPU emulation of the kernels
// (tests/kernel_emulation.rs with tests/emu/ops.cpp) reproduced the CPU functions bit for bit.
// So here they are compared by bits, not by a tolerance.

/// The device result has `want`'s shape and bits, every value written (outputs are poisoned).
fn same_bits(name: &str, g: &CudaBackend, got: &<CudaBackend as Backend>::Buf, want: &Tensor) {
    let got = g.download(got).unwrap();
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert!(
        got.data().iter().all(|v| !v.is_nan()),
        "{name}: unwritten (NaN) outputs"
    );
    let differ = got
        .data()
        .iter()
        .zip(want.data())
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = differ {
        panic!(
            "{name}: value {i} of {} differs: {:e} on the GPU, {:e} on the CPU",
            want.len(),
            got.data()[i],
            want.data()[i]
        );
    }
    println!("parity {name}: bit for bit ({} values)", want.len());
}

/// ⟨a, b⟩ over all values, in f64.
fn dot(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.data(), b.data());
    a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
}

/// |⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / max(|⟨Ax, y⟩|, |⟨x, Aᵀy⟩|), with Ax and Aᵀy computed on the GPU.
fn dot_gap(x: &Tensor, ax: &Tensor, y: &Tensor, aty: &Tensor) -> f64 {
    let (lhs, rhs) = (dot(ax, y), dot(x, aty));
    (lhs - rhs).abs() / lhs.abs().max(rhs.abs())
}

/// The (V, 2) angle table the CT operator uploads.
fn angle_table(geo: &CtGeometry) -> Tensor {
    let flat = geo.angles().into_iter().flat_map(|(c, s)| [c, s]).collect();
    Tensor::new(vec![geo.views, 2], flat).unwrap()
}

/// A 0/1 mask of (h, w) keeping about 40% of the pixels.
fn mask(h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let m = (0..h * w)
        .map(|_| (rng.uniform() < 0.4) as u8 as f32)
        .collect();
    Tensor::new(vec![h, w], m).unwrap()
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn ct_ops_match_the_cpu_bit_for_bit_and_are_adjoint() {
    let Some(g) = gpu("ct_ops") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let cases = [
        (24, 20, 1, 180.0, 3),
        (24, 20, 7, 180.0, 3),
        (24, 20, 1, 120.0, 3),
        (24, 20, 7, 120.0, 3),
        (64, 64, 60, 180.0, 2), // the CT problem's geometry: 45° and 135°, where branches meet
    ];
    for (i, &(h, w, views, arc, n)) in cases.iter().enumerate() {
        let geo = CtGeometry::new(h, w, views, None, arc).unwrap();
        let name = format!("{h}x{w} {views} views arc {arc} batch {n}");
        let (angles, ga) = (angle_table(&geo), up(&angle_table(&geo)));
        let x = rand(&[n, 1, h, w], 1100 + i as u64);
        let y = rand(&[n, 1, views, geo.detectors], 1200 + i as u64);
        let ax = g.ct_project(&up(&x), &geo, &ga).unwrap();
        let aty = g.ct_backproject(&up(&y), &geo, &ga).unwrap();
        let want_ax = cpu.ct_project(&x, &geo, &angles).unwrap();
        same_bits(&format!("ct_project {name}"), &g, &ax, &want_ax);
        let want_aty = cpu.ct_backproject(&y, &geo, &angles).unwrap();
        same_bits(&format!("ct_backproject {name}"), &g, &aty, &want_aty);
        let ry = g.ct_ramp_filter(&up(&y)).unwrap();
        let want_ry = cpu.ct_ramp_filter(&y).unwrap();
        same_bits(&format!("ct_ramp_filter {name}"), &g, &ry, &want_ry);
        let (ax, aty) = (g.download(&ax).unwrap(), g.download(&aty).unwrap());
        let gap = dot_gap(&x, &ax, &y, &aty);
        println!("parity ct dot test {name}: relative gap {gap:.2e}");
        // The CPU's dot test measures ≤ 6.7e-7 on these geometries (the f32 rounding of the
        // two outputs); the GPU's outputs are its bits.
        assert!(gap <= 1e-5, "ct dot test {name}: gap {gap:.2e}");
    }
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn downsample_and_inpaint_match_the_cpu_bit_for_bit_and_are_adjoint() {
    let Some(g) = gpu("downsample_inpaint") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    for (i, &(n, c, h, w, f)) in [(3, 1, 21, 15, 3), (2, 2, 64, 64, 4), (3, 1, 5, 7, 1)]
        .iter()
        .enumerate()
    {
        let name = format!("{h}x{w} F {f} batch {n}x{c}");
        let x = rand(&[n, c, h, w], 1300 + i as u64);
        let y = rand(&[n, c, h / f, w / f], 1400 + i as u64);
        let ax = g.downsample(&up(&x), f).unwrap();
        same_bits(
            &format!("downsample {name}"),
            &g,
            &ax,
            &cpu.downsample(&x, f).unwrap(),
        );
        let aty = g.downsample_adjoint(&up(&y), f).unwrap();
        same_bits(
            &format!("downsample_adjoint {name}"),
            &g,
            &aty,
            &cpu.downsample_adjoint(&y, f).unwrap(),
        );
        let (ax, aty) = (g.download(&ax).unwrap(), g.download(&aty).unwrap());
        let gap = dot_gap(&x, &ax, &y, &aty);
        println!("parity downsample dot test {name}: relative gap {gap:.2e}");
        // The CPU's dot test bounds this by 1e-6 (one rounding of each output).
        assert!(gap <= 1e-5, "downsample dot test {name}: gap {gap:.2e}");
    }
    let (n, h, w) = (3, 23, 19);
    let m = mask(h, w, 1500);
    let (x, y) = (rand(&[n, 1, h, w], 1501), rand(&[n, 1, h, w], 1502));
    let mx = g.inpaint_mask(&up(&x), &up(&m)).unwrap();
    let want = cpu.inpaint_mask(&x, &m).unwrap();
    same_bits("inpaint_mask 23x19 batch 3", &g, &mx, &want);
    let my = g.inpaint_mask(&up(&y), &up(&m)).unwrap();
    let (mx, my) = (g.download(&mx).unwrap(), g.download(&my).unwrap());
    let gap = dot_gap(&x, &mx, &y, &my);
    println!("parity inpaint dot test 23x19 batch 3: relative gap {gap:.2e}");
    // The same products in the same order on both sides: the CPU's test finds them equal.
    assert!(gap <= 1e-5, "inpaint dot test: gap {gap:.2e}");
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn tv_updates_match_the_cpu_bit_for_bit() {
    let Some(g) = gpu("tv_updates") else { return };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let shape = [3, 1, 23, 19];
    // lam such that the projection scales some pairs and leaves others.
    let (step, lam) = (0.35f32, 0.5f32);
    let xbar = rand(&shape, 1600);
    let (mut px, mut py) = (
        rand_scaled(&shape, 1601, 0.05),
        rand_scaled(&shape, 1602, 0.05),
    );
    let (mut gpx, mut gpy) = (up(&px), up(&py));
    g.tv_dual_update(&mut gpx, &mut gpy, &up(&xbar), step, lam)
        .unwrap();
    cpu.tv_dual_update(&mut px, &mut py, &xbar, step, lam)
        .unwrap();
    same_bits("tv_dual_update px 23x19 batch 3", &g, &gpx, &px);
    same_bits("tv_dual_update py 23x19 batch 3", &g, &gpy, &py);
    // x partly outside [−1, 1] after the step, so the clamp acts.
    let (mut x, mut xb) = (rand_scaled(&shape, 1603, 0.9), rand(&shape, 1604));
    let atq = rand(&shape, 1605);
    let (mut gx, mut gxb) = (up(&x), up(&xb));
    g.tv_primal_update(&mut gx, &mut gxb, &up(&atq), &gpx, &gpy, step)
        .unwrap();
    cpu.tv_primal_update(&mut x, &mut xb, &atq, &px, &py, step)
        .unwrap();
    assert!(
        x.data().iter().any(|v| v.abs() == 1.0),
        "the clamp never acted"
    );
    same_bits("tv_primal_update x 23x19 batch 3", &g, &gx, &x);
    same_bits("tv_primal_update xbar 23x19 batch 3", &g, &gxb, &xb);
}

/// 65,544 planes: more than the grid's z limit of 65,535, so two launches per op (the second
/// with 9 planes), each offset to its planes; the channels count as planes.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn operator_batches_past_the_grid_limit_run_in_chunks() {
    let Some(g) = gpu("operator_chunks") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    let x = rand(&[21_848, 3, 4, 4], 1700);
    let y = rand(&[21_848, 3, 2, 2], 1701);
    let name = "65,544 planes 4x4";
    let want = cpu.downsample(&x, 2).unwrap();
    same_bits(
        &format!("downsample {name}"),
        &g,
        &g.downsample(&up(&x), 2).unwrap(),
        &want,
    );
    let want = cpu.downsample_adjoint(&y, 2).unwrap();
    same_bits(
        &format!("downsample_adjoint {name}"),
        &g,
        &g.downsample_adjoint(&up(&y), 2).unwrap(),
        &want,
    );
    let m = mask(4, 4, 1702);
    let want = cpu.inpaint_mask(&x, &m).unwrap();
    same_bits(
        &format!("inpaint_mask {name}"),
        &g,
        &g.inpaint_mask(&up(&x), &up(&m)).unwrap(),
        &want,
    );
    let geo = CtGeometry::new(4, 4, 3, None, 180.0).unwrap();
    let (angles, ga) = (angle_table(&geo), up(&angle_table(&geo)));
    let stack = rand(&[65_544, 1, 4, 4], 1703);
    let want = cpu.ct_project(&stack, &geo, &angles).unwrap();
    same_bits(
        &format!("ct_project {name}"),
        &g,
        &g.ct_project(&up(&stack), &geo, &ga).unwrap(),
        &want,
    );
}

/// Operands of the wrong shape are errors (the kernels have no bounds of their own).
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn operator_ops_refuse_mismatched_operands() {
    let Some(g) = gpu("operator_checks") else {
        return;
    };
    let up = |t: &Tensor| g.upload(t).unwrap();
    let geo = CtGeometry::new(24, 20, 7, None, 180.0).unwrap();
    let x = up(&rand(&[2, 1, 24, 20], 1));
    let short = up(&rand(&[6, 2], 2));
    assert!(g.ct_project(&x, &geo, &short).is_err());
    assert!(g.ct_backproject(&x, &geo, &up(&angle_table(&geo))).is_err());
    assert!(g.downsample(&x, 7).is_err());
    assert!(g.downsample(&x, 0).is_err());
    assert!(g.inpaint_mask(&x, &up(&mask(20, 24, 3))).is_err());
    let (mut px, mut py) = (up(&rand(&[2, 1, 24, 20], 4)), up(&rand(&[2, 1, 20, 24], 5)));
    assert!(g.tv_dual_update(&mut px, &mut py, &x, 0.1, 0.1).is_err());
}
