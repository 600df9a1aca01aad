//! The CUDA backend's safe methods refuse operands that do not fit together (the kernels have
//! no bounds of their own) with an error, never a panic or an out-of-bounds access, and work
//! past the grid's 65,535 limit on y and z: the blur family in chunks, the rest with a clear
//! error. The shape rules themselves are unit-tested without a GPU (src/backend/cuda/checks.rs,
//! launch.rs); these tests run them on the device. They are `#[ignore]`d (counted as ignored
//! where no GPU is; run with `--include-ignored` on a GPU); run without a usable GPU each prints
//! a SKIP line and checks nothing.

use diffrecon::backend::cpu::CpuBackend;
use diffrecon::backend::cuda::{self, CudaBackend, CudaTensor};
use diffrecon::backend::{AttnParams, Backend};
use diffrecon::error::Error;
use diffrecon::operators::Kernel;
use diffrecon::rng::Rng;
use diffrecon::tensor::Tensor;

fn gpu(test: &str) -> Option<CudaBackend> {
    match cuda::unavailable_reason(0) {
        Some(why) => {
            println!("SKIP {test}: no usable GPU ({why})");
            None
        }
        None => Some(CudaBackend::new(0).expect("CUDA backend").with_poison(true)),
    }
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(
        shape.to_vec(),
        Rng::new(seed).normal_vec(shape.iter().product()),
    )
    .unwrap()
}

/// The result is an error of `kind` ("input" or "internal") whose message names `needle`.
fn refused<T>(what: &str, r: diffrecon::error::Result<T>, kind: &str, needle: &str) {
    let e = match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e,
    };
    let (k, m) = match &e {
        Error::Input(m) => ("input", m),
        Error::Internal(m) => ("internal", m),
    };
    println!("refused {what}: {e}");
    assert_eq!(k, kind, "{what}: {e}");
    assert!(m.contains(needle), "{what}: {m:?} does not name {needle:?}");
}

#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn mismatched_operands_are_refused() {
    let Some(g) = gpu("mismatched_operands_are_refused") else {
        return;
    };
    let up = |shape: &[usize]| g.upload(&rand(shape, 1)).unwrap();
    let (a, short) = (up(&[2, 3, 5, 7]), up(&[1, 3, 5, 7]));
    let mut m = a.try_clone().unwrap();
    refused(
        "add_assign",
        g.add_assign(&mut m, &short),
        "internal",
        "add_assign",
    );
    refused(
        "lincomb",
        g.lincomb(&a, 1.0, &short, 1.0),
        "internal",
        "lincomb",
    );
    refused(
        "predict_x0",
        g.predict_x0(&a, &short, 0.5, 0.5),
        "internal",
        "predict_x0",
    );
    refused(
        "clamp_vjp",
        g.clamp_vjp(&short, -1.0, 1.0, &mut m),
        "internal",
        "clamp_vjp",
    );
    refused(
        "diffpir_prior",
        g.diffpir_prior(&a, &short, (0.4, 0.9), (0.5, 0.8)),
        "internal",
        "diffpir_prior",
    );
    refused(
        "add_channel_bias",
        g.add_channel_bias(&mut m, &up(&[2, 2])),
        "internal",
        "add_channel_bias",
    );
    refused(
        "concat n",
        g.concat_channels(&a, &short),
        "internal",
        "concat_channels",
    );
    refused(
        "concat h",
        g.concat_channels(&a, &up(&[2, 1, 6, 7])),
        "internal",
        "concat_channels",
    );
    refused(
        "split",
        g.split_channels(&a, 4),
        "internal",
        "split_channels",
    );
    refused("upsample2x_vjp", g.upsample2x_vjp(&a), "internal", "odd");
    refused(
        "not NCHW",
        g.upsample2x(&up(&[3, 4])),
        "internal",
        "(n, c, h, w)",
    );
    let (x, w, b) = (up(&[3, 8]), up(&[16, 8]), up(&[16]));
    refused(
        "linear w",
        g.linear(&x, &up(&[16, 7]), &b, false),
        "internal",
        "linear",
    );
    refused(
        "linear b",
        g.linear(&x, &w, &up(&[15]), false),
        "internal",
        "linear",
    );
    refused(
        "linear x",
        g.linear(&a, &w, &b, false),
        "internal",
        "linear",
    );
    // Blur kernels: (k, k), k odd; data_step's y indexed as xp.
    let img = up(&[2, 1, 9, 9]);
    let k5 = g
        .upload(&Kernel::gaussian(5, 1.0).unwrap().to_tensor())
        .unwrap();
    refused(
        "blur even k",
        g.blur(&img, &up(&[4, 4]), false),
        "internal",
        "k odd",
    );
    refused(
        "blur flat k",
        g.blur(&img, &up(&[25]), true),
        "internal",
        "(k, k)",
    );
    refused(
        "data_step y",
        g.data_step(&img, &up(&[1, 1, 9, 9]), &k5, 0.5),
        "internal",
        "data_step",
    );
    refused(
        "data_step k",
        g.data_step(&img, &img, &up(&[3, 5]), 0.5),
        "internal",
        "data_step",
    );
    let ata = |v: &CudaTensor| g.blur(&g.blur(v, &k5, false)?, &k5, true);
    refused(
        "prox_cg aty",
        g.prox_cg(&ata, &up(&[1, 1, 9, 9]), &img, &up(&[2]), 3, 1e-6),
        "internal",
        "prox_cg",
    );
    refused(
        "prox_cg mu",
        g.prox_cg(&ata, &img, &img, &up(&[1]), 3, 1e-6),
        "internal",
        "prox_cg",
    );
    refused(
        "lincomb_per_item",
        g.lincomb_per_item(&img, &[1.0, 1.0], &up(&[2, 1, 9, 8]), &[1.0, 1.0]),
        "internal",
        "lincomb_per_item",
    );
    // GroupNorm's γ and β, one per channel.
    let (x, c8) = (up(&[2, 8, 4, 4]), up(&[8]));
    let c7 = up(&[7]);
    refused(
        "gn β",
        g.group_norm(&x, &c8, &c7, 4, true),
        "internal",
        "β [7]",
    );
    refused(
        "gn γ",
        g.group_norm(&x, &c7, &c8, 4, false),
        "internal",
        "γ [7]",
    );
    refused(
        "gn groups",
        g.group_norm(&x, &c8, &c8, 3, false),
        "internal",
        "3 groups",
    );
    refused(
        "gn_vjp β",
        g.group_norm_vjp(&x, &c8, &c7, 4, true, &x),
        "internal",
        "β [7]",
    );
    // Convolutions: weights against the input, the bias against cout.
    let (cx, cw) = (up(&[1, 3, 8, 8]), up(&[5, 3, 3, 3]));
    refused(
        "conv b",
        g.conv2d(&cx, &cw, &up(&[4]), 1, 1),
        "internal",
        "bias",
    );
    refused(
        "conv cin",
        g.conv2d(&cx, &up(&[5, 2, 3, 3]), &up(&[5]), 1, 1),
        "internal",
        "weight",
    );
    refused(
        "conv stride",
        g.conv2d(&cx, &cw, &up(&[5]), 0, 1),
        "internal",
        "stride 0",
    );
    refused(
        "conv_vjp dy",
        g.conv2d_vjp(&up(&[1, 5, 7, 8]), &cw, &[1, 3, 8, 8], 1, 1),
        "internal",
        "dy",
    );
    // Attention's parameters for c = 8 channels.
    let y = up(&[1, 8, 4, 4]);
    let params = |in_w: &[usize], in_b: &[usize], out_w: &[usize], out_b: &[usize]| AttnParams {
        in_w: up(in_w),
        in_b: up(in_b),
        out_w: up(out_w),
        out_b: up(out_b),
    };
    let good = params(&[24, 8], &[24], &[8, 8], &[8]);
    assert!(g.attention(&y, &good, 2).is_ok());
    for (what, p) in [
        ("in_w [16, 8]", params(&[16, 8], &[24], &[8, 8], &[8])),
        ("in_b [8]", params(&[24, 8], &[8], &[8, 8], &[8])),
        ("out_w [8, 4]", params(&[24, 8], &[24], &[8, 4], &[8])),
        ("out_b [1]", params(&[24, 8], &[24], &[8, 8], &[1])),
    ] {
        refused(what, g.attention(&y, &p, 2), "internal", what);
        refused(what, g.attention_vjp(&y, &p, 2, &y), "internal", what);
    }
    refused("heads", g.attention(&y, &good, 3), "internal", "3 heads");
    assert!(g.attention_residual(&y, &good, 2, &y).is_ok());
    refused(
        "attention residual",
        g.attention_residual(&y, &good, 2, &up(&[1, 8, 4, 3])),
        "internal",
        "residual",
    );
    // Refusals launch nothing: the stream is still usable.
    let s = g.lincomb(&a, 1.0, &a, 1.0).unwrap();
    assert_eq!(g.download(&s).unwrap().shape(), &[2, 3, 5, 7]);
    g.synchronize().unwrap();
}

/// The blur family runs planes past the grid's z limit in chunks: the planes of the second
/// chunk get the bits they get in a batch of their own, and the whole agrees with the CPU.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn blur_runs_past_the_grid_z_limit_in_chunks() {
    let Some(g) = gpu("blur_runs_past_the_grid_z_limit_in_chunks") else {
        return;
    };
    let cpu = CpuBackend::default();
    let planes = 65_535 + 9;
    let (h, w) = (6, 5);
    let x = rand(&[planes, 1, h, w], 2);
    let y = rand(&[planes, 1, h, w], 3);
    let kt = Kernel::gaussian(3, 1.0).unwrap().to_tensor();
    let (gx, gy, gk) = (
        g.upload(&x).unwrap(),
        g.upload(&y).unwrap(),
        g.upload(&kt).unwrap(),
    );
    let tail = |t: &Tensor| {
        let per = h * w;
        let from = (planes - 9) * per;
        Tensor::new(vec![9, 1, h, w], t.data()[from..].to_vec()).unwrap()
    };
    let down = |t: &CudaTensor| g.download(t).unwrap();
    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for adjoint in [false, true] {
        let all = down(&g.blur(&gx, &gk, adjoint).unwrap());
        let alone = down(&g.blur(&g.upload(&tail(&x)).unwrap(), &gk, adjoint).unwrap());
        assert_eq!(bits(&tail(&all)), bits(&alone), "blur adjoint {adjoint}");
        let e = all.rel_l2(&cpu.blur(&x, &kt, adjoint).unwrap()).unwrap();
        println!("chunked blur adjoint {adjoint}: relative error {e:.2e} vs the CPU");
        assert!(e <= 1e-6, "chunked blur: {e:.2e}");
    }
    let all = down(&g.data_step(&gx, &gy, &gk, 0.6).unwrap());
    let (tx, ty) = (g.upload(&tail(&x)).unwrap(), g.upload(&tail(&y)).unwrap());
    let alone = down(&g.data_step(&tx, &ty, &gk, 0.6).unwrap());
    assert_eq!(bits(&tail(&all)), bits(&alone), "data_step");
    let e = all
        .rel_l2(&cpu.data_step(&x, &y, &kt, 0.6).unwrap())
        .unwrap();
    println!("chunked data_step: relative error {e:.2e} vs the CPU");
    assert!(e <= 1e-6, "chunked data_step: {e:.2e}");
}

/// The ops whose batch is a grid y or z axis refuse batches over 65,535 with an input error
/// that names the axis.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn batches_past_the_grid_limit_are_refused_by_name() {
    let Some(g) = gpu("batches_past_the_grid_limit_are_refused_by_name") else {
        return;
    };
    let n = 65_536;
    let x = g.upload(&rand(&[n, 1, 1, 1], 4)).unwrap();
    let one = g.upload(&Tensor::new(vec![1], vec![1.0]).unwrap()).unwrap();
    refused(
        "group_norm",
        g.group_norm(&x, &one, &one, 1, false),
        "input",
        "GroupNorm batch = 65536",
    );
    let p = AttnParams {
        in_w: g.upload(&rand(&[3, 1], 5)).unwrap(),
        in_b: g.upload(&rand(&[3], 6)).unwrap(),
        out_w: one.try_clone().unwrap(),
        out_b: one.try_clone().unwrap(),
    };
    refused(
        "attention",
        g.attention(&x, &p, 1),
        "input",
        "batch = 65536",
    );
    // Just under the limit runs.
    let x = g.upload(&rand(&[65_535, 1, 1, 1], 7)).unwrap();
    assert!(g.group_norm(&x, &one, &one, 1, false).is_ok());
}

/// `try_clone` and `Clone` copy into a fresh buffer; the copy is independent of the original.
#[test]
#[ignore = "needs a CUDA device (run with --include-ignored on a GPU)"]
fn clones_are_device_copies() {
    let Some(g) = gpu("clones_are_device_copies") else {
        return;
    };
    let t = rand(&[2, 1, 4, 4], 8);
    let a = g.upload(&t).unwrap();
    let (mut b, c) = (a.try_clone().unwrap(), a.clone());
    g.clamp(&mut b, 0.0, 0.0).unwrap();
    assert_eq!(g.download(&a).unwrap().data(), t.data());
    assert_eq!(g.download(&c).unwrap().data(), t.data());
    assert!(g.download(&b).unwrap().data().iter().all(|v| *v == 0.0));
}
