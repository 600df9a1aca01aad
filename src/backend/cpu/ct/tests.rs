use super::*;
use crate::rng::Rng;

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
}

/// |⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / max(|⟨Ax, y⟩|, |⟨x, Aᵀy⟩|) for random x, y.
fn dot_gap(g: &CtGeometry, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let x = rng.normal_vec(g.image_len());
    let y = rng.normal_vec(g.sinogram_len());
    let mut ax = vec![f32::NAN; y.len()];
    let mut aty = vec![f32::NAN; x.len()];
    project(&x, g, &mut ax);
    backproject(&y, g, &mut aty);
    let (lhs, rhs) = (dot(&ax, &y), dot(&x, &aty));
    (lhs - rhs).abs() / lhs.abs().max(rhs.abs())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Inputs for the bit comparison, `line` values a row: normal; normal with 2^40 on the first
/// row and column and −2^40 on the last, which cancel in the f64 sums after the normal terms
/// were rounded against them, so that the order of the terms shows in the outputs; with exact and signed zeros; constant;
/// normal with ±∞ (NaN where a zero weight meets ∞, or ∞ − ∞).
fn inputs(len: usize, line: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let normal = rng.normal_vec(len);
    let (big, rows) = (2f32.powi(40), len / line);
    let cancelling = normal
        .iter()
        .enumerate()
        .map(|(k, &v)| match (k / line, k % line) {
            (0, _) | (_, 0) => big,
            (r, c) if r == rows - 1 || c == line - 1 => -big,
            _ => v,
        })
        .collect();
    let zeros = normal
        .iter()
        .enumerate()
        .map(|(k, &v)| match k % 5 {
            0 => 0.0,
            1 => -0.0,
            _ => v,
        })
        .collect();
    let infinite = normal
        .iter()
        .enumerate()
        .map(|(k, &v)| match k % 97 {
            3 => f32::INFINITY,
            50 => f32::NEG_INFINITY,
            _ => v,
        })
        .collect();
    vec![normal, cancelling, zeros, vec![1.0; len], infinite]
}

#[test]
fn outputs_are_the_reference_loops_bit_for_bit() {
    let cases = [
        (24, 20, 1, None, 180.0),
        (24, 20, 7, None, 180.0),
        (24, 20, 7, None, 120.0),
        (24, 20, 1, None, 120.0),
        (24, 20, 7, None, 360.0),
        (20, 24, 8, None, 360.0),
        (19, 23, 7, Some(15), 180.0),
        (19, 23, 5, Some(15), 360.0),
        (64, 64, 60, None, 180.0),
        (64, 64, 30, None, 180.0),
        (64, 64, 4, None, 180.0), // 0°, 45°, 90°, 135°
        (21, 25, 12, None, 360.0),
        (16, 16, 9, Some(200), 180.0), // most rays miss the image
        (5, 1, 6, None, 180.0),
        (1, 7, 6, None, 180.0),
        (1, 1, 3, None, 360.0),
    ];
    let mut rng = Rng::new(31);
    for (h, w, v, d, arc) in cases {
        let g = CtGeometry::new(h, w, v, d, arc).unwrap();
        let name = format!("{h}x{w}, {v} views, {} bins, arc {arc}", g.detectors);
        for (k, x) in inputs(g.image_len(), g.width, &mut rng).iter().enumerate() {
            let (mut got, mut want) = (
                vec![f32::NAN; g.sinogram_len()],
                vec![f32::NAN; g.sinogram_len()],
            );
            reference::project(x, &g, &mut want);
            project(x, &g, &mut got);
            assert_eq!(bits(&got), bits(&want), "project, {name}, input {k}");
            project_loops(x, &g, &mut got); // the baseline build where `project` took AVX2
            assert_eq!(bits(&got), bits(&want), "project_loops, {name}, input {k}");
        }
        for (k, y) in inputs(g.sinogram_len(), g.detectors, &mut rng)
            .iter()
            .enumerate()
        {
            let (mut got, mut want) =
                (vec![f32::NAN; g.image_len()], vec![f32::NAN; g.image_len()]);
            reference::backproject(y, &g, &mut want);
            backproject(y, &g, &mut got);
            assert_eq!(bits(&got), bits(&want), "backproject, {name}, input {k}");
            backproject_loops(y, &g, &mut got);
            assert_eq!(
                bits(&got),
                bits(&want),
                "backproject_loops, {name}, input {k}"
            );
            let (mut got, mut want) = (vec![f32::NAN; y.len()], vec![f32::NAN; y.len()]);
            ramp_filter(y, g.views, g.detectors, &mut got);
            reference::ramp_filter(y, g.views, g.detectors, &mut want);
            assert_eq!(bits(&got), bits(&want), "ramp_filter, {name}, input {k}");
        }
    }
}

#[test]
fn backproject_is_the_adjoint_of_project() {
    let cases = [
        (24, 20, 1, 180.0),
        (24, 20, 7, 180.0),
        (24, 20, 7, 120.0),
        (24, 20, 1, 120.0),
        (21, 25, 7, 360.0),
        (64, 64, 60, 180.0), // includes 45° and 135°, where the branches meet
    ];
    for (i, &(h, w, v, arc)) in cases.iter().enumerate() {
        let g = CtGeometry::new(h, w, v, None, arc).unwrap();
        let gap = dot_gap(&g, 100 + i as u64);
        println!("ct dot test {h}x{w} {v} views arc {arc}: relative gap {gap:.2e}");
        // Measured ≤ 6.7e-7 (the f32 rounding of the two outputs).
        assert!(gap <= 1e-5, "{h}x{w} {v} views arc {arc}: gap {gap:.2e}");
    }
}

#[test]
fn a_constant_image_projects_to_its_height_at_theta_zero() {
    let g = CtGeometry::new(64, 64, 60, None, 180.0).unwrap();
    let mut sino = vec![f32::NAN; g.sinogram_len()];
    project(&vec![1.0; 64 * 64], &g, &mut sino);
    // s_b = b − 45 is an integer and the columns sit at half-integers: bins 14 … 76 read
    // two columns at ½ each in every row; bins 13 and 77 only half of the border column.
    for (b, &v) in sino[..g.detectors].iter().enumerate() {
        let want = match b {
            14..=76 => 64.0,
            13 | 77 => 32.0,
            _ => 0.0,
        };
        assert_eq!(v, want, "bin {b}");
    }
}

/// An anti-aliased centred disc of radius `r` (each pixel the fraction of 16×16 subsamples
/// inside it).
fn disc(h: usize, w: usize, r: f64) -> Vec<f32> {
    let n = 16;
    let mut img = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let (yc, xc) = (
                (h as f64 - 1.0) / 2.0 - i as f64,
                j as f64 - (w as f64 - 1.0) / 2.0,
            );
            let mut inside = 0;
            for a in 0..n {
                for b in 0..n {
                    let dy = (a as f64 + 0.5) / n as f64 - 0.5;
                    let dx = (b as f64 + 0.5) / n as f64 - 0.5;
                    if (xc + dx).powi(2) + (yc + dy).powi(2) <= r * r {
                        inside += 1;
                    }
                }
            }
            img[i * w + j] = inside as f32 / (n * n) as f32;
        }
    }
    img
}

#[test]
fn a_disc_projects_to_its_chord_length() {
    let (r, g) = (20.0, CtGeometry::new(64, 64, 60, None, 180.0).unwrap());
    let mut sino = vec![f32::NAN; g.sinogram_len()];
    project(&disc(64, 64, r), &g, &mut sino);
    let (mut worst, mut err2, mut norm2) = (0.0f64, 0.0f64, 0.0f64);
    for row in sino.chunks(g.detectors) {
        for (b, &v) in row.iter().enumerate() {
            let s = b as f64 - (g.detectors as f64 - 1.0) / 2.0;
            let chord = 2.0 * (r * r - s * s).max(0.0).sqrt();
            let e = v as f64 - chord;
            (err2, norm2) = (err2 + e * e, norm2 + chord * chord);
            if s.abs() <= r - 2.0 {
                worst = worst.max(e.abs());
            }
        }
    }
    let rel = (err2 / norm2).sqrt();
    println!(
        "disc projection (R = 20, 60 views): relative L2 from 2·sqrt(R² − s²) {rel:.3e}, \
         worst |error| for |s| ≤ R − 2 {worst:.3e}"
    );
    // Measured 0.43 (at 45°, where the central ray samples the disc's rim pixels at their
    // centres) and 2.5e-2 (mostly the steep rim bins): the pixel discretisation, not
    // rounding.
    assert!(worst < 0.5 && rel < 0.03, "{worst} {rel}");
}

#[test]
fn fbp_recovers_a_disc() {
    let (r, g) = (20.0, CtGeometry::new(64, 64, 180, None, 180.0).unwrap());
    let mut sino = vec![f32::NAN; g.sinogram_len()];
    project(&disc(64, 64, r), &g, &mut sino);
    let mut filtered = vec![f32::NAN; sino.len()];
    ramp_filter(&sino, g.views, g.detectors, &mut filtered);
    let mut rec = vec![f32::NAN; 64 * 64];
    backproject(&filtered, &g, &mut rec);
    let scale = g.fbp_scale() as f64;
    let (mut worst, mut sum, mut count) = (0.0f64, 0.0f64, 0);
    for i in 0..64 {
        for j in 0..64 {
            let (y, x) = (31.5 - i as f64, j as f64 - 31.5);
            if (x * x + y * y).sqrt() <= r - 3.0 {
                let e = (rec[i * 64 + j] as f64 * scale - 1.0).abs();
                (worst, sum, count) = (worst.max(e), sum + e, count + 1);
            }
        }
    }
    let mean = sum / count as f64;
    println!(
        "FBP of a disc (64x64, R = 20, 180 views), |x − 1| inside R − 3: worst {worst:.3e}, \
         mean {mean:.3e}"
    );
    // Measured 2.9e-2 worst, 4.4e-3 mean: the discretisation of the disc and the filter.
    assert!(worst < 0.035 && mean < 0.006, "{worst} {mean}");
}

#[test]
fn ramp_filter_of_a_delta_is_the_kernel() {
    let d = 9;
    let mut s = vec![0.0f32; d];
    s[4] = 1.0;
    let mut out = vec![f32::NAN; d];
    ramp_filter(&s, 1, d, &mut out);
    for (b, &v) in out.iter().enumerate() {
        assert_eq!(v, ramp_tap(b.abs_diff(4)) as f32, "bin {b}");
    }
    let pi2 = std::f64::consts::PI * std::f64::consts::PI;
    assert!((out[3] as f64 + 1.0 / pi2).abs() < 1e-8);
}
