//! Kernel logic without a GPU: tests/emu/*.cpp include a kernel source from kernels/ through a
//! CPU emulation of the CUDA execution model (tests/emu/shim.h) and compare it with a
//! double-precision reference. This checks indexing, tiling, staging and barriers where no GPU
//! exists (CI); the parity tests in tests/cuda_parity/ check the real kernels on a GPU. The
//! tensor-core (TF32 / BF16) entry points run on the shim's WMMA emulation, which
//! wmma_shim.cpp checks on its own. The measurement-operator kernels (ops.cpp) run on inputs
//! written here and must reproduce the crate's CPU ops bit for bit.

use diffrecon::backend::cpu::{ct, downsample, inpaint, tv};
use diffrecon::backend::CtGeometry;
use diffrecon::rng::Rng;
use std::ffi::OsStr;
use std::fmt::Write as _;
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
    build_and_run_with(harness, &[]);
}

/// Builds tests/emu/`harness` and runs it with `args`; it must exit 0 and print ALL OK.
fn build_and_run_with(harness: &str, args: &[&OsStr]) {
    let Some(cxx) = cxx() else {
        println!("SKIP {harness}: no C++ compiler (set CXX)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(harness.replace(".cpp", ""));
    let out = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-ffp-contract=off",
            "-pthread",
            "-x",
            "c++",
        ])
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
    let run = Command::new(&exe)
        .args(args)
        .output()
        .expect("run the emulation");
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

#[test]
fn time_projections_in_one_launch_give_the_linear_kernels_bits() {
    build_and_run("linear.cpp");
}

/// Writes `data` as raw little-endian f32 to dir/name.field.
fn put(dir: &Path, name: &str, field: &str, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.{field}")), bytes).unwrap();
}

/// A CT case: random image and sinogram batches, and the CPU's projection, back-projection and
/// Ram-Lak filtering of them, slice by slice.
fn ct_case(dir: &Path, manifest: &mut String, rng: &mut Rng, n: usize, g: &CtGeometry) {
    let (hw, vd) = (g.image_len(), g.sinogram_len());
    let name = format!(
        "{}x{}_v{}_d{}_arc{}_n{n}",
        g.height, g.width, g.views, g.detectors, g.arc_degrees
    );
    let (x, y) = (rng.normal_vec(n * hw), rng.normal_vec(n * vd));
    let (mut ax, mut aty, mut ry) = (vec![0.0; n * vd], vec![0.0; n * hw], vec![0.0; n * vd]);
    for z in 0..n {
        let (xs, ys) = (&x[z * hw..][..hw], &y[z * vd..][..vd]);
        ct::project(xs, g, &mut ax[z * vd..][..vd]);
        ct::backproject(ys, g, &mut aty[z * hw..][..hw]);
        ct::ramp_filter(ys, g.views, g.detectors, &mut ry[z * vd..][..vd]);
    }
    let angles: Vec<f32> = g.angles().into_iter().flat_map(|(c, s)| [c, s]).collect();
    for (field, data) in [("x", &x), ("y", &y), ("angles", &angles), ("ax", &ax)] {
        put(dir, &name, field, data);
    }
    put(dir, &name, "aty", &aty);
    put(dir, &name, "ry", &ry);
    let (h, w, v, d) = (g.height, g.width, g.views, g.detectors);
    writeln!(manifest, "ct {name} {n} {h} {w} {v} {d}").unwrap();
}

fn downsample_case(
    dir: &Path,
    manifest: &mut String,
    rng: &mut Rng,
    n: usize,
    h: usize,
    w: usize,
    f: usize,
) {
    let name = format!("down_{h}x{w}_f{f}_n{n}");
    let (x, y) = (
        rng.normal_vec(n * h * w),
        rng.normal_vec(n * h * w / (f * f)),
    );
    let (mut ax, mut aty) = (vec![0.0; y.len()], vec![0.0; x.len()]);
    downsample::downsample(&x, h, w, f, &mut ax);
    downsample::downsample_adjoint(&y, h, w, f, &mut aty);
    for (field, data) in [("x", &x), ("y", &y), ("ax", &ax), ("aty", &aty)] {
        put(dir, &name, field, data);
    }
    writeln!(manifest, "downsample {name} {n} {h} {w} {f}").unwrap();
}

fn inpaint_case(dir: &Path, manifest: &mut String, rng: &mut Rng, n: usize, h: usize, w: usize) {
    let name = format!("inpaint_{h}x{w}_n{n}");
    let x = rng.normal_vec(n * h * w);
    let m: Vec<f32> = (0..h * w)
        .map(|_| (rng.uniform() < 0.3) as u8 as f32)
        .collect();
    let mut ax = vec![0.0; x.len()];
    inpaint::mask(&x, &m, &mut ax);
    for (field, data) in [("x", &x), ("m", &m), ("ax", &ax)] {
        put(dir, &name, field, data);
    }
    writeln!(manifest, "inpaint {name} {n} {h} {w}").unwrap();
}

/// One dual then one primal update from a random state in which some |p| exceed λ and some x
/// steps leave [−1, 1], so that the projection and the clamp both act.
fn tv_case(dir: &Path, manifest: &mut String, rng: &mut Rng, n: usize, h: usize, w: usize) {
    let name = format!("tv_{h}x{w}_n{n}");
    let (step, lam) = (0.35f32, 0.05f32);
    let len = n * h * w;
    let scaled =
        |rng: &mut Rng, a: f32| -> Vec<f32> { rng.normal_vec(len).iter().map(|v| a * v).collect() };
    let (xbar, atq) = (scaled(rng, 0.8), scaled(rng, 0.5));
    let (px, py, x) = (scaled(rng, 0.04), scaled(rng, 0.04), scaled(rng, 0.7));
    let (mut px1, mut py1, mut x1, mut xbar1) = (px.clone(), py.clone(), x.clone(), xbar.clone());
    let hw = h * w;
    for z in 0..n {
        let s = z * hw..(z + 1) * hw;
        tv::dual_update(
            &mut px1[s.clone()],
            &mut py1[s.clone()],
            &xbar[s.clone()],
            h,
            w,
            step,
            lam,
        );
        tv::primal_update(
            &mut x1[s.clone()],
            &mut xbar1[s.clone()],
            &atq[s.clone()],
            &px1[s.clone()],
            &py1[s],
            h,
            w,
            step,
        );
    }
    let projected = px.iter().zip(&px1).filter(|(a, b)| a != b).count();
    let clamped = x1.iter().filter(|v| v.abs() == 1.0).count();
    assert!(
        projected > 0 && clamped > 0,
        "the TV case must exercise the projection and the clamp"
    );
    let fields = [
        ("xbar", &xbar),
        ("atq", &atq),
        ("px", &px),
        ("py", &py),
        ("x", &x),
    ];
    for (field, data) in fields {
        put(dir, &name, field, data);
    }
    for (field, data) in [("px1", &px1), ("py1", &py1), ("x1", &x1), ("xbar1", &xbar1)] {
        put(dir, &name, field, data);
    }
    let (sb, lb) = (step.to_bits(), lam.to_bits());
    writeln!(manifest, "tv {name} {n} {h} {w} {sb:x} {lb:x}").unwrap();
}

#[test]
fn operator_kernels_match_the_cpu_ops_bit_for_bit() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_cases");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(2024);
    let mut manifest = String::new();
    // Odd and even sizes, 1 and 7 views, arcs 180/120/360, default and short detector rows,
    // batch 3; 64×64 with 60 views has the 45° and 135° views where the branches meet.
    let geometries = [
        (3, 24, 20, 1, None, 180.0),
        (3, 24, 20, 7, None, 120.0),
        (3, 23, 19, 7, None, 180.0),
        (3, 19, 23, 7, Some(15), 120.0),
        (1, 21, 25, 7, None, 360.0),
        (1, 64, 64, 60, None, 180.0),
    ];
    for (n, h, w, v, d, arc) in geometries {
        let g = CtGeometry::new(h, w, v, d, arc).unwrap();
        ct_case(&dir, &mut manifest, &mut rng, n, &g);
    }
    downsample_case(&dir, &mut manifest, &mut rng, 3, 21, 15, 3);
    downsample_case(&dir, &mut manifest, &mut rng, 1, 64, 64, 4);
    downsample_case(&dir, &mut manifest, &mut rng, 2, 5, 7, 1);
    inpaint_case(&dir, &mut manifest, &mut rng, 3, 23, 19);
    tv_case(&dir, &mut manifest, &mut rng, 3, 23, 19);
    tv_case(&dir, &mut manifest, &mut rng, 1, 1, 7);
    std::fs::write(dir.join("manifest.txt"), manifest).unwrap();
    build_and_run_with("ops.cpp", &[dir.as_os_str()]);
}
