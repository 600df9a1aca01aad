//! Kernel logic without a GPU: tests/emu/*.cpp include a kernel source from kernels/ through a
//! CPU emulation of the CUDA execution model (tests/emu/shim.h) and compare it with a
//! double-precision reference. This checks indexing, tiling, staging and barriers where no GPU
//! exists (CI); the parity tests in cuda_parity.rs check the real kernels on a GPU. The
//! tensor-core (TF32 / BF16) entry points run on the shim's WMMA emulation, which
//! wmma_shim.cpp checks on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A C++20 compiler, or None (the test then prints SKIP).
fn cxx() -> Option<String> {
    let candidates = [
        std::env::var("CXX").ok(),
        Some("g++".into()),
        Some("c++".into()),
    ];
    candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn build_and_run(harness: &str) {
    let Some(cxx) = cxx() else {
        println!("SKIP {harness}: no C++ compiler (set CXX)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(harness.replace(".cpp", ""));
    let out = Command::new(&cxx)
        .args(["-std=c++20", "-O1", "-pthread", "-x", "c++"])
        .arg("-I")
        .arg(root.join("kernels"))
        .arg(root.join("tests/emu").join(harness))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C++ compiler");
    assert!(
        out.status.success(),
        "{cxx} failed on {harness}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the emulation");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    // stderr carries the shim's message when a WMMA precondition aborts the run.
    assert!(
        run.status.success() && stdout.contains("ALL OK"),
        "{harness} failed ({}):\n{stdout}{stderr}",
        run.status
    );
}

#[test]
fn wmma_shim_rounds_loads_multiplies_and_checks_as_documented() {
    build_and_run("wmma_shim.cpp");
}

#[test]
fn conv_implicit_gemm_kernels_match_a_direct_convolution() {
    build_and_run("conv_igemm.cpp");
}

#[test]
fn sgemm_tiles_match_a_double_precision_product() {
    build_and_run("sgemm.cpp");
}
