//! The convolutions: forward with every kernel, the fused epilogues, the GroupNorm fold and the
//! VJP.

use super::{check, same_tensor_bits, stale_buffer, CONV_KERNELS, OP_BOUND};
use crate::common::{gpu, rand};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::cuda::ConvKernel;
use diffrecon::backend::{norm_then_conv, Backend, ConvAdd, NormArgs};
use diffrecon::precision::Precision;
use diffrecon::tensor::Tensor;

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
            let cw = cpu.conv_weight(wt.clone()).unwrap();
            let want = cpu.conv2d(&x, &cw, &b, stride, pad).unwrap();
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
                .conv2d_add_channel_bias(
                    &x,
                    &cpu.conv_weight(wt.clone()).unwrap(),
                    &b,
                    stride,
                    pad,
                    &v,
                )
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
                .conv2d_add_residual(
                    &x,
                    &cpu.conv_weight(wt.clone()).unwrap(),
                    &b,
                    stride,
                    pad,
                    &r,
                )
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
        let cw = cpu.conv_weight(wt.clone()).unwrap();
        let want = cpu.conv2d_vjp(&dy, &cw, &in_shape, stride, pad).unwrap();
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

/// Every implicit-GEMM tile sums each output's K terms in the same order from the same start, so
/// all tiles of a precision give the same bits, forward (each epilogue, split or not) and
/// backward: at f32 every tile; at TF32 and BF16 (the same WMMA calls on the same staged chunks)
/// the 32, 64 and 64×128 tiles. A 64-channel 64×64 layer at batch 8 is where the size rule changes tiles.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn conv_igemm_tiles_agree_bit_for_bit() {
    if gpu("conv_igemm_tiles_agree_bit_for_bit").is_none() {
        return;
    }
    let f32_tiles = [
        ConvKernel::Igemm32,
        ConvKernel::Igemm64,
        ConvKernel::Igemm64x128,
        ConvKernel::Igemm128,
        ConvKernel::Igemm,
    ];
    let tc_tiles = [
        ConvKernel::Igemm32,
        ConvKernel::Igemm64,
        ConvKernel::Igemm64x128,
        ConvKernel::Igemm,
    ];
    let runs = [
        (Precision::F32, &f32_tiles[..]),
        (Precision::Tf32, &tc_tiles[..]),
        (Precision::Bf16, &tc_tiles[..]),
    ];
    for (i, &(n, cin, h, w, cout, k, stride, pad)) in [
        (8, 64, 64, 64, 64, 3, 1, 1),
        (2, 20, 12, 12, 136, 3, 1, 1),
        (1, 130, 9, 9, 24, 3, 2, 1),
        (3, 70, 9, 8, 1, 1, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        let x = rand(&[n, cin, h, w], 40 + i as u64);
        let wt = rand(&[cout, cin, k, k], 50 + i as u64);
        let b = rand(&[cout], 60 + i as u64);
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        let r = rand(&[n, cout, ho, wo], 70 + i as u64);
        let dy = rand(&[n, cout, ho, wo], 80 + i as u64);
        for (p, tiles) in runs {
            let mut first: Option<Vec<Vec<u32>>> = None;
            for &kernel in tiles {
                let g = gpu("conv_igemm_tiles_agree_bit_for_bit")
                    .unwrap()
                    .with_conv_kernel(kernel)
                    .with_precision(p)
                    .unwrap();
                let (gx, gw, gb) = (
                    g.upload(&x).unwrap(),
                    g.upload(&wt).unwrap(),
                    g.upload(&b).unwrap(),
                );
                let (gr, gdy) = (g.upload(&r).unwrap(), g.upload(&dy).unwrap());
                let outs = [
                    g.conv2d(&gx, &gw, &gb, stride, pad).unwrap(),
                    g.conv2d_add_residual(&gx, &gw, &gb, stride, pad, &gr)
                        .unwrap(),
                    g.conv2d_vjp(&gdy, &gw, &[n, cin, h, w], stride, pad)
                        .unwrap(),
                ];
                let bits: Vec<Vec<u32>> = outs
                    .iter()
                    .map(|o| {
                        let t = g.download(o).unwrap();
                        t.data().iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                let tag = format!("{p} {kernel:?} {cin}->{cout} k{k} s{stride} {h}x{w} n{n}");
                match &first {
                    None => first = Some(bits),
                    Some(want) => {
                        for (what, (got, want)) in ["forward", "residual", "vjp"]
                            .iter()
                            .zip(bits.iter().zip(want))
                        {
                            assert!(got == want, "{tag}: {what} differs from Igemm32's bits");
                        }
                    }
                }
                println!("parity conv tiles {tag}: same bits as Igemm32");
            }
        }
    }
}

/// A GroupNorm folded into the conv that reads it (`norm_conv2d` with the fold on) gives the
/// bits of the norm kernel followed by the conv: each tile at each precision it has, with and
/// without SiLU, with each epilogue (the direct kernels compose the two ops, so the same bits
/// trivially). Also within OP_BOUND of the CPU's norm then conv, and the whole UNet forward
/// with every ResBlock's norms and the output head's folded equals the unfolded forward's bits.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn norm_conv2d_fold_gives_the_unfolded_bits() {
    let name = "norm_conv2d_fold_gives_the_unfolded_bits";
    if gpu(name).is_none() {
        return;
    }
    let cpu = CpuBackend::default();
    for (i, &(n, cin, h, w, cout, k, pad, groups)) in [
        (2, 8, 13, 11, 5, 3, 1, 4),
        (8, 64, 64, 64, 64, 3, 1, 32),
        (1, 130, 9, 9, 24, 3, 1, 2),
        (3, 20, 9, 8, 7, 1, 0, 5),
    ]
    .iter()
    .enumerate()
    {
        // Per-channel offsets and scales, so that the norm has something to undo.
        let x = rand(&[n, cin, h, w], 210 + i as u64);
        let x = Tensor::new(
            x.shape().to_vec(),
            x.data()
                .iter()
                .enumerate()
                .map(|(j, v)| 3.0 * v + ((j / (h * w)) % cin) as f32 - 2.0)
                .collect(),
        )
        .unwrap();
        let wt = rand(&[cout, cin, k, k], 220 + i as u64);
        let b = rand(&[cout], 230 + i as u64);
        let gamma = rand(&[cin], 240 + i as u64);
        let beta = rand(&[cin], 250 + i as u64);
        let (ho, wo) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
        let v = rand(&[n, cout], 260 + i as u64);
        let r = rand(&[n, cout, ho, wo], 270 + i as u64);
        for silu in [false, true] {
            let cw = cpu.conv_weight(wt.clone()).unwrap();
            let cpu_norm = NormArgs {
                gamma: &gamma,
                beta: &beta,
                groups,
                silu,
            };
            let want_cpu =
                norm_then_conv(&cpu, &x, &cpu_norm, &cw, &b, 1, pad, ConvAdd::Residual(&r))
                    .unwrap();
            for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
                for kernel in CONV_KERNELS.into_iter().filter(|k| k.supports(p)) {
                    let on = |fold: bool| {
                        let g = gpu(name)
                            .unwrap()
                            .with_conv_kernel(kernel)
                            .with_precision(p)
                            .unwrap()
                            .with_gn_fold(fold);
                        let up = |t: &Tensor| g.upload(t).unwrap();
                        let (gx, gw, gb, gv, gr) = (up(&x), up(&wt), up(&b), up(&v), up(&r));
                        let (gg, gbeta) = (up(&gamma), up(&beta));
                        let norm = NormArgs {
                            gamma: &gg,
                            beta: &gbeta,
                            groups,
                            silu,
                        };
                        let outs = [
                            g.norm_conv2d(&gx, &norm, &gw, &gb, 1, pad, ConvAdd::Nothing),
                            g.norm_conv2d(&gx, &norm, &gw, &gb, 1, pad, ConvAdd::Channel(&gv)),
                            g.norm_conv2d(&gx, &norm, &gw, &gb, 1, pad, ConvAdd::Residual(&gr)),
                        ];
                        outs.map(|o| g.download(&o.unwrap()).unwrap())
                    };
                    let (folded, composed) = (on(true), on(false));
                    let tag = format!(
                        "{p} {kernel:?} {cin}->{cout} k{k} {h}x{w} n{n} groups {groups} silu {silu}"
                    );
                    for (what, (got, want)) in ["plain", "channel add", "residual"]
                        .iter()
                        .zip(folded.iter().zip(&composed))
                    {
                        same_tensor_bits(&format!("norm_conv2d fold {tag} {what}"), got, want);
                    }
                    if p == Precision::F32 {
                        let e = crate::common::rel_l2(&folded[2], &want_cpu);
                        println!("parity norm_conv2d fold {tag}: vs CPU {e:.2e}");
                        assert!(e <= OP_BOUND, "{tag}: {e:.2e} from the CPU");
                    }
                }
            }
        }
    }
    // The whole forward, every norm → conv pair folded, at batch 1 and 8 (narrow tiles, split-K
    // and the size rule's choices).
    for batch in [1, 8] {
        let fwd = |fold: bool| {
            let g = gpu(name).unwrap().with_gn_fold(fold);
            let (e, _) = super::golden_engines(g);
            let m = e.net.cfg.size_multiple();
            let res = 32usize.div_ceil(m) * m;
            let x = rand(&[batch, e.net.cfg.in_ch, res, res], 300 + batch as u64);
            let t = vec![0.37f32; batch];
            let out = e.net.forward(&e.be, &e.be.upload(&x).unwrap(), &t).unwrap();
            e.be.download(&out).unwrap()
        };
        let (folded, composed) = (fwd(true), fwd(false));
        let tag = format!("UNet forward batch {batch}, GroupNorm folded");
        same_tensor_bits(&tag, &folded, &composed);
    }
}
