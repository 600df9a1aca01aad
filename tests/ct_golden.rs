//! The CPU CT ops (src/backend/cpu/ct/) against the independent float64 NumPy reference
//! tools/ct_reference.py, on the cases it wrote to tests/golden/ct/. Errors are relative L2;
//! each is printed (`cargo test --release --test ct_golden -- --nocapture`).

use diffrecon::backend::cpu::ct;
use diffrecon::backend::CtGeometry;
use diffrecon::io::npy::read_npy;
use diffrecon::tensor::Tensor;
use serde_json::Value;
use std::path::PathBuf;

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/ct")
        .join(case)
}

fn npy(case: &str, file: &str) -> Tensor {
    read_npy(&dir(case).join(file)).unwrap()
}

fn rel_l2(got: &[f32], want: &Tensor) -> f64 {
    assert_eq!(got.len(), want.data().len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want.data()) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den).sqrt()
}

/// Runs the four ops on one case; returns the errors (project, backproject, ramp, fbp).
fn errors(case: &str) -> [f64; 4] {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir(case).join("meta.json")).unwrap())
            .unwrap();
    let int = |k: &str| meta[k].as_u64().unwrap() as usize;
    let detectors = meta["detectors_given"]
        .as_bool()
        .unwrap()
        .then(|| int("detectors"));
    let g = CtGeometry::new(
        int("height"),
        int("width"),
        int("views"),
        detectors,
        meta["arc_degrees"].as_f64().unwrap(),
    )
    .unwrap();
    assert_eq!(
        g.detectors,
        int("detectors"),
        "{case}: default detector count"
    );
    let (x, y, p_ref) = (
        npy(case, "x.npy"),
        npy(case, "y.npy"),
        npy(case, "project.npy"),
    );
    assert_eq!(x.shape(), [1, 1, g.height, g.width]);
    assert_eq!(y.shape(), [1, 1, g.views, g.detectors]);
    let mut p = vec![f32::NAN; g.sinogram_len()];
    ct::project(x.data(), &g, &mut p);
    let mut bp = vec![f32::NAN; g.image_len()];
    ct::backproject(y.data(), &g, &mut bp);
    let mut ramp = vec![f32::NAN; g.sinogram_len()];
    ct::ramp_filter(y.data(), g.views, g.detectors, &mut ramp);
    // FBP of the reference's own (stored) projection, as the reference computed it.
    let mut filtered = vec![f32::NAN; g.sinogram_len()];
    ct::ramp_filter(p_ref.data(), g.views, g.detectors, &mut filtered);
    let mut fbp = vec![f32::NAN; g.image_len()];
    ct::backproject(&filtered, &g, &mut fbp);
    fbp.iter_mut().for_each(|v| *v *= g.fbp_scale());
    let e = [
        rel_l2(&p, &p_ref),
        rel_l2(&bp, &npy(case, "backproject.npy")),
        rel_l2(&ramp, &npy(case, "ramp.npy")),
        rel_l2(&fbp, &npy(case, "fbp.npy")),
    ];
    println!(
        "ct golden {case}: relative L2 project {:.2e}, backproject {:.2e}, ramp {:.2e}, fbp {:.2e}",
        e[0], e[1], e[2], e[3]
    );
    e
}

fn check(case: &str, bounds: [f64; 4]) {
    let e = errors(case);
    for ((name, err), bound) in ["project", "backproject", "ramp", "fbp"]
        .iter()
        .zip(e)
        .zip(bounds)
    {
        assert!(
            err <= bound,
            "{case} {name}: relative L2 {err:.2e} exceeds {bound:.0e}"
        );
    }
}

// Bounds: about 10× the measured errors, capped at 1e-5. The errors come from the engine's f32
// ray geometry (cos/sin rounded to f32, the crossings computed in f32); the reference is f64
// throughout. The filter rounds each output once on both sides and measured 0.
// [project, backproject, ramp, fbp]

#[test]
fn small_24x20_7_views_arc_120() {
    // Measured 7.9e-7, 6.8e-7, 0, 8.7e-7.
    check("small_24x20_v7_arc120", [8e-6, 7e-6, 1e-7, 9e-6]);
}

#[test]
fn short_detector_row_19x23_3_views() {
    // Measured 4.5e-7, 5.0e-7, 0, 6.0e-7.
    check("short_19x23_v3_d15_arc180", [5e-6, 5e-6, 1e-7, 6e-6]);
}

#[test]
fn phantom_64x64_60_views_arc_180() {
    // Measured 1.2e-7, 2.1e-6, 0, 4.9e-7 (60 views include 45° and 135°,
    // where the f32 engine and the f64 reference may take different branches: same weights there).
    check("phantom_64x64_v60_arc180", [1.5e-6, 1e-5, 1e-7, 5e-6]);
}
