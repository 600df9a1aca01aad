//! Sizes, counts and values past what the memory budget or float32 allows: refused up front.

use super::{fails_with, image, reconstruct_args, s, small, tmp, write};
use diffrecon::tensor::Tensor;

/// Every size the issue (13) found unbounded: refused with exit 2 and the limit named, before
/// anything is allocated or written.
#[test]
fn sizes_and_counts_are_bounded_by_the_memory_budget() {
    let w = small();
    let y = image("y_sz.npy", 32, 32, 0.1);
    let out = tmp("x_sz.npy");
    let huge = "4611686018427387904";
    for (extra, needle) in [
        (
            vec!["--sampler", "dps-paper", "--samples", huge],
            "too large",
        ),
        (
            vec!["--sampler", "diffpir-pnp", "--samples", huge],
            "too large",
        ),
        (
            vec![
                "--sampler",
                "dps",
                "--samples",
                "4096",
                "--max-memory",
                "1G",
            ],
            "more than the limit of 1.0 GiB (--max-memory)",
        ),
        (
            vec!["--sampler", "dps", "--max-memory", "1M"],
            "not even one fits",
        ),
        (
            vec!["--sampler", "tv", "--max-memory", "1K"],
            "--max-memory",
        ),
        (vec!["--sampler", "dps", "--max-memory", "8X"], "8X"),
        (vec!["--sampler", "dps", "--max-memory", "0"], "positive"),
    ] {
        fails_with(&reconstruct_args(&w, s(&y), s(&out), &extra), needle);
    }
    assert!(!out.exists(), "a refused run wrote its output");
    let ph = tmp("ph_sz.npy");
    let ph_dir = tmp("ph_sz_dir");
    for target in [&ph, &ph_dir] {
        fails_with(
            &["phantoms", "--count", huge, "--out", s(target)],
            "too large",
        );
        fails_with(
            &[
                "phantoms",
                "--count",
                "2000000",
                "--max-memory",
                "8G",
                "--out",
                s(target),
            ],
            "at most",
        );
    }
    assert!(
        !ph.exists() && !ph_dir.exists(),
        "a refused run wrote files"
    );
    let grid = tmp("grid_sz.png");
    let sample = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["sample", "--weights", &w, "--device", "cpu", "--steps", "2"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        a.extend(extra.iter().map(|v| v.to_string()));
        a.extend(["--out".to_string(), s(&grid).to_string()]);
        a
    };
    for (extra, needle) in [
        (vec!["--size", "4294967296"], "too large"),
        (vec!["--count", huge], "too large"),
        (vec!["--size", "30"], "multiple of 4"),
        (vec!["--size", "0"], "multiple of 4"),
        (vec!["--count", "0"], "--count"),
        (vec!["--count", "100000", "--max-memory", "4T"], "grid"),
    ] {
        let a = sample(&extra);
        fails_with(&a.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    }
    assert!(!grid.exists());
    let evaluate = ["evaluate", "--weights", &w, "--device", "cpu"];
    for (extra, needle) in [
        (vec!["--sweep", "--sweep-count", "0"], "--sweep-count"),
        (vec!["--count", "0"], "--count"),
        (
            vec!["--count", "4096", "--max-memory", "1G"],
            "lower --count",
        ),
        (
            vec![
                "--spread-count",
                "4096",
                "--samples",
                "64",
                "--max-memory",
                "1G",
            ],
            "--spread-count",
        ),
        (
            vec!["--sweep", "--sweep-count", huge, "--max-memory", "1G"],
            "--sweep-count",
        ),
    ] {
        fails_with(&[&evaluate[..], &extra].concat(), needle);
    }
    let bench = ["bench", "--weights", &w, "--device", "cpu", "--steps", "2"];
    for (extra, needle) in [
        (vec!["--size", "0"], "--size"),
        (vec!["--size", "30"], "multiple of 4"),
        (vec!["--repeats", "0"], "--repeats"),
        (vec!["--batches", "0"], "--batches"),
        (vec!["--batches", "100000", "--max-memory", "8G"], "at most"),
        (vec!["--batches", huge], "too large"),
    ] {
        fails_with(&[&bench[..], &extra].concat(), needle);
    }
    // The operator commands: an image far too large for the adjoint's output.
    let sino = image("sino_sz.npy", 60, 91, 0.1);
    fails_with(
        &[
            "apply",
            "--operator",
            "ct",
            "--adjoint",
            "--size",
            "4096,4096",
            "--detectors",
            "91",
            "--input",
            s(&sino),
            "--device",
            "cpu",
            "--max-memory",
            "100M",
            "--out",
            s(&out),
        ],
        "--max-memory",
    );
}

/// Parameters and inputs whose effect overflows f32 are refused up front, by name.
#[test]
fn values_that_overflow_float32_are_refused() {
    let w = small();
    let y = image("y_f.npy", 32, 32, 0.1);
    let out = tmp("x_f.npy");
    let big = image("big_f.npy", 32, 32, 1e38);
    let kernel = write(
        "k20_f.npy",
        &Tensor::new(vec![9, 9], vec![1e20; 81]).unwrap(),
    );
    for (extra, needle) in [
        (vec!["--sampler", "dps", "--sigma-y", "1e-20"], "--sigma-y"),
        (vec!["--sampler", "dps", "--guidance", "1e39"], "--guidance"),
        (vec!["--sampler", "diffpir", "--tau", "1e39"], "--tau"),
        (
            vec!["--sampler", "diffpir-pnp", "--noise-level", "1e39"],
            "--noise-level",
        ),
        (
            vec!["--sampler", "diffpir-pnp", "--lambda", "1e40"],
            "--lambda",
        ),
        (
            vec!["--sampler", "tikhonov", "--lambda", "1e40"],
            "--lambda",
        ),
        (vec!["--sampler", "tv", "--lambda", "1e40"], "--lambda"),
        (vec!["--sampler", "dps-paper", "--zeta", "1e39"], "--zeta"),
        (
            vec!["--sampler", "diffpir-pnp", "--cg-tol", "2"],
            "--cg-tol",
        ),
        (vec!["--sampler", "dps", "--init", s(&big)], "within ±1e6"),
        (
            vec![
                "--sampler",
                "diffpir",
                "--operator",
                "custom",
                "--kernel-file",
                s(&kernel),
            ],
            "normalise the kernel",
        ),
    ] {
        fails_with(&reconstruct_args(&w, s(&y), s(&out), &extra), needle);
    }
    for sampler in ["diffpir", "dps", "tv"] {
        fails_with(
            &reconstruct_args(&w, s(&big), s(&out), &["--sampler", sampler]),
            "rescale the input",
        );
    }
    fails_with(
        &["simulate", "--image", s(&big), "--out", s(&out)],
        "rescale the input",
    );
    fails_with(
        &[
            "simulate",
            "--image",
            s(&y),
            "--noise-level",
            "1e39",
            "--out",
            s(&out),
        ],
        "--noise-level",
    );
    fails_with(
        &[
            "dps-grad",
            "--weights",
            &w,
            "--device",
            "cpu",
            "--input",
            s(&y),
            "--t",
            "10",
            "--measurement",
            s(&y),
            "--sigma-y",
            "1e-20",
            "--out",
            s(&out),
        ],
        "--sigma-y",
    );
    for (flag, v) in [("--noise-level", "1e39"), ("--tau", "1e39")] {
        fails_with(
            &["evaluate", "--weights", &w, "--device", "cpu", flag, v],
            flag,
        );
    }
    assert!(!out.exists(), "a refused run wrote its output");
}
