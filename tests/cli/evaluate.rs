//! demo, phantoms, sample, evaluate and the baselines.

use super::{fails_with, image, reconstruct_args, run, s, small, tmp};
use diffrecon::io::npy::{read_npy, write_npy};
use diffrecon::tensor::Tensor;

#[test]
fn demo_runs_with_given_weights() {
    let dir = tmp("demo");
    let o = run(&[
        "demo",
        "--weights",
        &small(),
        "--out-dir",
        s(&dir),
        "--steps",
        "3",
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for row in ["Observation", "DPS", "DiffPIR-style"] {
        assert!(text.contains(row), "{text}");
    }
    assert!(dir.join("comparison.png").exists());
}

#[test]
fn phantoms_sample_evaluate_and_baselines() {
    let npy = tmp("ph.npy");
    let o = run(&[
        "phantoms",
        "--count",
        "3",
        "--seed",
        "5",
        "--size",
        "32",
        "--out",
        s(&npy),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = read_npy(&npy).unwrap();
    assert_eq!(t.shape(), &[3, 1, 32, 32]);
    // The same seed gives the same slices.
    let again = tmp("ph2.npy");
    run(&[
        "phantoms",
        "--count",
        "3",
        "--seed",
        "5",
        "--size",
        "32",
        "--out",
        s(&again),
    ]);
    assert_eq!(read_npy(&again).unwrap(), t);
    let dir = tmp("ph_dir");
    assert!(run(&["phantoms", "--count", "2", "--out", s(&dir)])
        .status
        .success());
    assert!(dir.join("phantom_00001.png").exists());
    fails_with(
        &[
            "phantoms",
            "--count",
            "2",
            "--size",
            "100000",
            "--out",
            s(&dir),
        ],
        "size",
    );

    let grid = tmp("grid.png");
    let o = run(&[
        "sample",
        "--weights",
        &small(),
        "--count",
        "4",
        "--steps",
        "3",
        "--size",
        "32",
        "--out",
        s(&grid),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(grid.exists() && grid.with_extension("npy").exists());

    let o = run(&[
        "evaluate",
        "--weights",
        &small(),
        "--count",
        "2",
        "--steps",
        "2",
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for row in [
        "Observation",
        "Tikhonov",
        "TV",
        "DPS",
        "DiffPIR-style",
        "DiffPIR (published)",
        "DPS (published)",
        "corr(std, abs error)",
        "best diffusion sampler",
    ] {
        assert!(text.contains(row), "{text}");
    }
    // The user's own images instead of phantoms: a directory of PNGs.
    let o = run(&[
        "evaluate",
        "--weights",
        &small(),
        "--images",
        s(&dir),
        "--steps",
        "2",
        "--spread-count",
        "0",
        "--device",
        "cpu",
        "--compare-precision",
        "bf16",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("2 images"), "{text}");
    // --compare-precision: each diffusion sampler rerun at bf16, paired with the table's f32.
    assert!(text.contains("PSNR at f32"), "{text}");
    for sampler in [
        "DPS",
        "DiffPIR-style",
        "DiffPIR (published)",
        "DPS (published)",
    ] {
        assert!(text.contains(&format!("| {sampler} | bf16 |")), "{text}");
    }
    fails_with(
        &[
            "evaluate",
            "--weights",
            &small(),
            "--compare-precision",
            "tf32,fp8",
        ],
        "possible values",
    );
    fails_with(
        &[
            "evaluate",
            "--weights",
            &small(),
            "--images",
            s(&tmp("no_such_dir")),
            "--device",
            "cpu",
        ],
        "no_such_dir",
    );
    let odd_dir = tmp("odd_images");
    std::fs::create_dir_all(&odd_dir).unwrap();
    write_npy(
        &odd_dir.join("a.npy"),
        &Tensor::new(vec![30, 30], vec![0.0; 900]).unwrap(),
    )
    .unwrap();
    fails_with(
        &[
            "evaluate",
            "--weights",
            &small(),
            "--images",
            s(&odd_dir),
            "--device",
            "cpu",
        ],
        "multiples of",
    );

    let y = tmp("ph_y.npy");
    run(&["simulate", "--image", s(&npy), "--out", s(&y)]);
    for sampler in ["tikhonov", "tv"] {
        let out = tmp(&format!("base_{sampler}.npy"));
        let o = run(&reconstruct_args(
            &small(),
            s(&y),
            s(&out),
            &[
                "--sampler",
                sampler,
                "--lambda",
                "0.001",
                "--truth",
                s(&npy),
            ],
        ));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(read_npy(&out).unwrap().shape(), &[3, 1, 32, 32]);
    }
    fails_with(
        &reconstruct_args(
            &small(),
            s(&y),
            s(&tmp("b.npy")),
            &["--sampler", "tv", "--lambda", "-1"],
        ),
        "--lambda",
    );
}

/// The baselines take no --steps: an invalid one is refused, a valid one is said to be ignored;
/// --device cuda without a GPU is refused like every other command's.
#[test]
fn baselines_check_steps_and_device() {
    let y = image("y_bs.npy", 32, 32, 0.1);
    let out = tmp("x_bs.npy");
    let w = small();
    for sampler in ["tikhonov", "tv"] {
        fails_with(
            &reconstruct_args(&w, s(&y), s(&out), &["--sampler", sampler, "--steps", "-1"]),
            "--steps",
        );
        let o = run(&reconstruct_args(
            &w,
            s(&y),
            s(&out),
            &["--sampler", sampler, "--steps", "10"],
        ));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("ignores --steps"), "{err}");
    }
    let sino = image("sino_bs.npy", 60, 91, 0.1);
    fails_with(
        &reconstruct_args(
            &w,
            s(&sino),
            s(&out),
            &["--sampler", "fbp", "--operator", "ct", "--steps", "0"],
        ),
        "--steps",
    );
    if diffrecon::backend::cuda::unavailable_reason(0).is_some() {
        for sampler in ["tikhonov", "tv"] {
            fails_with(
                &reconstruct_args(
                    &w,
                    s(&y),
                    s(&out),
                    &["--sampler", sampler, "--device", "cuda"],
                ),
                "--device cuda:0 cannot run",
            );
        }
    }
}
