//! Bad weight files, measurements and parameters: exit code 2 and a message naming the fault.

use super::{fails_with, image, reconstruct_args, s, small, tmp, write};
use crate::common::golden;
use diffrecon::tensor::Tensor;
use diffrecon::unet::weights;

#[test]
fn weight_file_errors() {
    let y = image("y_w.npy", 32, 32, 0.0);
    let out = tmp("x_w.npy");
    fails_with(
        &reconstruct_args(
            s(&tmp("missing.safetensors")),
            s(&y),
            s(&out),
            &["--sampler", "diffpir"],
        ),
        "missing.safetensors",
    );

    let bytes = std::fs::read(golden("small.safetensors")).unwrap();
    let trunc = tmp("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &reconstruct_args(s(&trunc), s(&y), s(&out), &["--sampler", "diffpir"]),
        "truncated",
    );

    let (_, mut params) = weights::load(&golden("small.safetensors"), None).unwrap();
    params.remove("mid_block2.conv2.bias");
    let missing = tmp("missing_tensor.safetensors");
    weights::save(&missing, &params, Default::default()).unwrap();
    fails_with(
        &reconstruct_args(s(&missing), s(&y), s(&out), &["--sampler", "diffpir"]),
        "mid_block2.conv2.bias",
    );

    // A float64 tensor among float32 ones (float16 and bfloat16 load, widened to float32).
    let f64_file = tmp("f64.safetensors");
    let double: Vec<u8> = vec![0u8; 8 * 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![16], &double).unwrap();
    let (_, params) = weights::load(&golden("small.safetensors"), None).unwrap();
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "init.bias")
        .map(|(k, t)| {
            (
                k.clone(),
                t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape().to_vec(),
            )
        })
        .collect();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(k, b, sh)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, sh.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    views.push(("init.bias".into(), view));
    std::fs::write(&f64_file, safetensors::serialize(views, &None).unwrap()).unwrap();
    fails_with(
        &reconstruct_args(s(&f64_file), s(&y), s(&out), &["--sampler", "diffpir"]),
        "must be float32, float16 or bfloat16",
    );

    // Heads that do not divide the attention width.
    fails_with(
        &reconstruct_args(
            &small(),
            s(&y),
            s(&out),
            &["--sampler", "diffpir", "--num-heads", "3"],
        ),
        "num_heads 3",
    );
}

#[test]
fn measurement_errors() {
    let w = small();
    let out = tmp("x_m.npy");
    let odd = image("odd.npy", 30, 30, 0.0);
    fails_with(
        &reconstruct_args(&w, s(&odd), s(&out), &["--sampler", "diffpir"]),
        "multiples of 4",
    );
    let two_ch = write("two_ch.npy", &Tensor::zeros(&[1, 2, 32, 32]));
    fails_with(
        &reconstruct_args(&w, s(&two_ch), s(&out), &["--sampler", "diffpir"]),
        "one channel",
    );
    let mut nan = Tensor::zeros(&[1, 1, 32, 32]);
    nan.data_mut()[7] = f32::NAN;
    let nan = write("nan.npy", &nan);
    fails_with(
        &reconstruct_args(&w, s(&nan), s(&out), &["--sampler", "diffpir"]),
        "non-finite",
    );
    let y = image("y_m.npy", 32, 32, 0.1);
    let mut inf = Tensor::zeros(&[1, 1, 32, 32]);
    inf.data_mut()[0] = f32::INFINITY;
    let inf = write("inf.npy", &inf);
    fails_with(
        &reconstruct_args(&w, s(&y), s(&out), &["--sampler", "dps", "--init", s(&inf)]),
        "non-finite",
    );
    let wrong_init = image("wrong_init.npy", 16, 16, 0.0);
    fails_with(
        &reconstruct_args(
            &w,
            s(&y),
            s(&out),
            &["--sampler", "dps", "--init", s(&wrong_init)],
        ),
        "--init has shape",
    );
    let bytes = std::fs::read(&y).unwrap();
    let trunc = tmp("trunc.npy");
    std::fs::write(&trunc, &bytes[..bytes.len() - 10]).unwrap();
    fails_with(
        &reconstruct_args(&w, s(&trunc), s(&out), &["--sampler", "diffpir"]),
        "trunc.npy",
    );
    fails_with(
        &reconstruct_args(&w, s(&tmp("nope.npy")), s(&out), &["--sampler", "diffpir"]),
        "nope.npy",
    );
    let txt = tmp("y.txt");
    std::fs::write(&txt, "1 2 3").unwrap();
    fails_with(
        &reconstruct_args(&w, s(&txt), s(&out), &["--sampler", "diffpir"]),
        "y.txt",
    );
}

#[test]
fn parameter_errors() {
    let w = small();
    let y = image("y_p.npy", 32, 32, 0.1);
    let out = tmp("x_p.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--sampler", "diffpir", "--kernel-size", "8"], "odd"),
        (vec!["--sampler", "diffpir", "--kernel-size", "0"], "odd"),
        (vec!["--sampler", "diffpir", "--kernel-size", "-3"], "odd"),
        (vec!["--sampler", "diffpir", "--steps", "1"], "--steps"),
        (vec!["--sampler", "diffpir", "--steps", "401"], "--steps"),
        (vec!["--sampler", "dps", "--guidance", "-0.1"], "--guidance"),
        (vec!["--sampler", "diffpir", "--tau", "-1"], "--tau"),
        (vec!["--sampler", "dps", "--sigma-y", "-0.01"], "--sigma-y"),
        (vec!["--sampler", "dps", "--sigma-y", "0"], "--sigma-y"),
        (vec!["--sampler", "diffpir", "--operator", "radon"], "radon"),
        (
            vec!["--sampler", "diffpir", "--operator", "gaussian"],
            "--variance",
        ),
        (
            vec![
                "--sampler",
                "diffpir",
                "--operator",
                "gaussian",
                "--variance",
                "-2",
            ],
            "--variance",
        ),
        (
            vec!["--sampler", "diffpir", "--operator", "custom"],
            "--kernel-file",
        ),
        (vec!["--sampler", "magic"], "magic"),
        (
            vec!["--sampler", "diffpir-pnp", "--lambda", "0"],
            "--lambda",
        ),
        (vec!["--sampler", "diffpir-pnp", "--zeta", "1.5"], "--zeta"),
        (vec!["--sampler", "diffpir-pnp", "--zeta", "nan"], "--zeta"),
        (
            vec!["--sampler", "diffpir-pnp", "--cg-iters", "0"],
            "--cg-iters",
        ),
        (
            vec!["--sampler", "diffpir-pnp", "--cg-tol", "-1"],
            "--cg-tol",
        ),
        (
            vec!["--sampler", "diffpir-pnp", "--t-start", "400"],
            "--t-start",
        ),
        (
            vec![
                "--sampler",
                "diffpir-pnp",
                "--t-start",
                "10",
                "--steps",
                "12",
            ],
            "--steps",
        ),
        (
            vec!["--sampler", "diffpir-pnp", "--noise-level", "-1"],
            "--noise-level",
        ),
        (vec!["--sampler", "dps-paper", "--zeta", "-1"], "--zeta"),
        (vec!["--sampler", "dps-paper", "--eta", "2"], "--eta"),
        (
            vec!["--sampler", "dps-paper", "--samples", "0"],
            "--samples",
        ),
        (vec!["--sampler", "diffpir", "--samples", "3"], "stochastic"),
        (
            vec![
                "--sampler",
                "dps-paper",
                "--samples",
                "100000",
                "--max-memory",
                "8G",
            ],
            "at most",
        ),
        (vec!["--sampler", "diffpir", "--device", "tpu"], "tpu"),
    ];
    if diffrecon::backend::cuda::unavailable_reason(0).is_some() {
        fails_with(
            &reconstruct_args(
                &w,
                s(&y),
                s(&out),
                &["--sampler", "diffpir", "--device", "cuda"],
            ),
            "CUDA",
        );
    } else {
        println!("a usable GPU: the --device cuda refusal is not checked here");
    }
    for (extra, needle) in cases {
        fails_with(&reconstruct_args(&w, s(&y), s(&out), &extra), needle);
    }
    let even = write(
        "even_kernel.npy",
        &Tensor::new(vec![2, 2], vec![0.25; 4]).unwrap(),
    );
    fails_with(
        &reconstruct_args(
            &w,
            s(&y),
            s(&out),
            &[
                "--sampler",
                "diffpir",
                "--operator",
                "custom",
                "--kernel-file",
                s(&even),
            ],
        ),
        "odd",
    );
    let img = image("img.npy", 32, 32, 0.2);
    fails_with(
        &[
            "simulate",
            "--image",
            s(&img),
            "--noise-level",
            "-0.5",
            "--out",
            s(&tmp("ys.npy")),
        ],
        "--noise-level",
    );
    let x = golden("eps_small/x.npy");
    fails_with(
        &[
            "eps",
            "--weights",
            &w,
            "--input",
            s(&x),
            "--t",
            "1,2,3",
            "--out",
            s(&out),
            "--device",
            "cpu",
        ],
        "timesteps",
    );
    fails_with(
        &[
            "eps",
            "--weights",
            &w,
            "--input",
            s(&x),
            "--t",
            "400",
            "--out",
            s(&out),
            "--device",
            "cpu",
        ],
        "timestep 400",
    );
    fails_with(
        &[
            "eps",
            "--weights",
            &w,
            "--input",
            s(&x),
            "--t",
            "-1",
            "--out",
            s(&out),
            "--device",
            "cpu",
        ],
        "timestep -1",
    );
}
