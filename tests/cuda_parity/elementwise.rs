//! The small ops: elementwise, the per-item dot and linear combination, blur and the fused
//! DiffPIR steps.

use super::{check, same_bits, stale_buffer, OP_BOUND};
use crate::common::{gpu, rand};
use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::Backend;
use diffrecon::operators::Kernel;
use diffrecon::tensor::Tensor;

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
    // linear_split: the device linear's bits on the stacked weight, column group by column
    // group, with 40 groups (two launches: 32 and 8) of widths 1 to 40.
    let widths: Vec<usize> = (1..=40).collect();
    let fout: usize = widths.iter().sum();
    let (x, w, bias) = (rand(&[3, 37], 9), rand(&[fout, 37], 10), rand(&[fout], 11));
    let whole = g
        .download(&g.linear(&up(&x), &up(&w), &up(&bias), true).unwrap())
        .unwrap();
    let parts = g
        .linear_split(&up(&x), &up(&w), &up(&bias), true, &widths)
        .unwrap();
    let mut first = 0;
    for (part, &c) in parts.iter().zip(&widths) {
        let want: Vec<f32> = whole
            .data()
            .chunks(fout)
            .flat_map(|row| &row[first..first + c])
            .copied()
            .collect();
        let want = Tensor::new(vec![3, c], want).unwrap();
        same_bits(
            &format!("linear_split group of width {c} vs linear"),
            &g,
            part,
            &want,
        );
        first += c;
    }
    assert!(g
        .linear_split(&up(&x), &up(&w), &up(&bias), true, &[fout - 1])
        .is_err());
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

/// The published DPS update with its coefficients computed on the device: the same bits as the
/// trait's host composition on the same GPU (sum_sq_per_item downloaded, residual_norm_step,
/// lincomb_per_item), a zero residual's slice gets step 0, and the CPU agrees to rounding.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn step_by_residual_norm_on_the_device() {
    let Some(g) = gpu("step_by_residual_norm_on_the_device") else {
        return;
    };
    let cpu = CpuBackend::default();
    let up = |t: &Tensor| g.upload(t).unwrap();
    for (i, shape) in [vec![3, 1, 32, 32], vec![1, 1, 5, 3], vec![2, 1, 300, 301]]
        .iter()
        .enumerate()
    {
        let (a, b) = (rand(shape, 300 + i as u64), rand(shape, 310 + i as u64));
        let mut r = rand(shape, 320 + i as u64);
        if shape[0] == 3 {
            let per = r.len() / 3;
            r.data_mut()[per..2 * per].fill(0.0); // slice 1: a zero residual
        }
        let (ga, gb, gr) = (up(&a), up(&b), up(&r));
        let zeta = 0.37;
        let got = g.step_by_residual_norm(&ga, &gb, &gr, zeta).unwrap();
        let steps: Vec<f32> = g
            .sum_sq_per_item(&gr)
            .unwrap()
            .iter()
            .map(|s| diffrecon::backend::residual_norm_step(*s, zeta))
            .collect();
        let host = g
            .lincomb_per_item(&ga, &vec![1.0; steps.len()], &gb, &steps)
            .unwrap();
        let (got_t, host_t) = (g.download(&got).unwrap(), g.download(&host).unwrap());
        assert!(
            got_t
                .data()
                .iter()
                .zip(host_t.data())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "step_by_residual_norm {shape:?}: not the host composition's bits"
        );
        if shape[0] == 3 {
            let per = a.len() / 3;
            assert_eq!(&got_t.data()[per..2 * per], &a.data()[per..2 * per]);
        }
        let want = cpu.step_by_residual_norm(&a, &b, &r, zeta).unwrap();
        check(
            &format!("step_by_residual_norm {shape:?}"),
            &g,
            &got,
            &want,
            1e-7,
        );
    }
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
