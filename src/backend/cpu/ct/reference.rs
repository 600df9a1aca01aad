//! The straightforward loops the functions of `ct` replaced, kept to prove that the outputs did
//! not change by a bit.

use super::*;

/// Calls `visit(pixel index, interpolation weight)` for every pixel that ray (v, s) touches, in
/// the order of the sum: rows (or columns) ascending, the lower neighbour first.
fn for_each_sample(
    g: &CtGeometry,
    v: &View,
    s: f32,
    (half_h, half_w): (f32, f32),
    mut visit: impl FnMut(usize, f32),
) {
    let (h, w) = (g.height as i64, g.width as i64);
    if v.per_row {
        for i in 0..h {
            let c = column_at(s, half_h - i as f32, v, half_w);
            let j0 = c.floor();
            let frac = c - j0;
            let j0 = j0 as i64;
            if (0..w).contains(&j0) {
                visit((i * w + j0) as usize, 1.0 - frac);
            }
            if (0..w).contains(&(j0 + 1)) {
                visit((i * w + j0 + 1) as usize, frac);
            }
        }
    } else {
        for j in 0..w {
            let r = row_at(s, j as f32 - half_w, v, half_h);
            let i0 = r.floor();
            let frac = r - i0;
            let i0 = i0 as i64;
            if (0..h).contains(&i0) {
                visit((i0 * w + j) as usize, 1.0 - frac);
            }
            if (0..h).contains(&(i0 + 1)) {
                visit(((i0 + 1) * w + j) as usize, frac);
            }
        }
    }
}

/// out (views, detectors) = the Joseph projection of the (height, width) slice x.
pub fn project(x: &[f32], g: &CtGeometry, out: &mut [f32]) {
    assert_eq!(x.len(), g.image_len());
    assert_eq!(out.len(), g.sinogram_len());
    let (half_h, half_w, half_d) = halves(g);
    for (v, row) in views(g).iter().zip(out.chunks_mut(g.detectors)) {
        for (b, o) in row.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for_each_sample(g, v, b as f32 - half_d, (half_h, half_w), |p, wt| {
                acc += wt as f64 * x[p] as f64;
            });
            *o = (acc * v.weight) as f32;
        }
    }
}

/// out (height, width) = the exact adjoint of `project` applied to the sinogram s: every ray
/// scatters its value back with the same weights.
pub fn backproject(s: &[f32], g: &CtGeometry, out: &mut [f32]) {
    assert_eq!(s.len(), g.sinogram_len());
    assert_eq!(out.len(), g.image_len());
    let (half_h, half_w, half_d) = halves(g);
    let mut acc = vec![0.0f64; out.len()];
    for (v, row) in views(g).iter().zip(s.chunks(g.detectors)) {
        for (b, &val) in row.iter().enumerate() {
            let scaled = val as f64 * v.weight;
            for_each_sample(g, v, b as f32 - half_d, (half_h, half_w), |p, wt| {
                acc[p] += wt as f64 * scaled;
            });
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = *a as f32;
    }
}

/// out = each row of the (views, detectors) sinogram s convolved with the Ram-Lak kernel, zero
/// padded, same size: out[b] = Σ_b' h[b − b'] s[b'], b' ascending, in f64.
pub fn ramp_filter(s: &[f32], views: usize, detectors: usize, out: &mut [f32]) {
    assert_eq!(s.len(), views * detectors);
    assert_eq!(out.len(), s.len());
    let taps: Vec<f64> = (0..detectors).map(ramp_tap).collect();
    for (row, orow) in s.chunks(detectors).zip(out.chunks_mut(detectors)) {
        for (b, o) in orow.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for (bp, &val) in row.iter().enumerate() {
                let tap = taps[b.abs_diff(bp)];
                if tap != 0.0 {
                    acc += tap * val as f64;
                }
            }
            *o = acc as f32;
        }
    }
}
