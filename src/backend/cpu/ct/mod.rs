//! Sparse-view parallel-beam CT (shared/OPERATORS.md, `ct`), one slice at a time: Joseph's
//! projector, its exact adjoint, and the Ram-Lak filter of filtered back-projection.
//!
//! The ray geometry is f32, computed from `CtGeometry::angles` with the expressions that
//! kernels/ct.cu repeats operation for operation, so that both make the same floor decisions;
//! sums run in f64 (a product of two f32 is exact there), and each output rounds to f32 once.
//!
//! The test-only reference loops these functions replaced live in `reference.rs`, the tests
//! (bit-for-bit against them, adjointness, known projections) in `tests.rs`.

use super::super::geometry::CtGeometry;

/// One view: its direction and which of Joseph's two branches it takes.
struct View {
    cos: f32,
    sin: f32,
    /// |cos θ| ≥ |sin θ|: the ray is sampled once per image row.
    per_row: bool,
    /// 1/|cos θ| or 1/|sin θ|: the ray length per sample.
    weight: f64,
}

fn views(g: &CtGeometry) -> Vec<View> {
    g.angles()
        .into_iter()
        .map(|(cos, sin)| {
            let per_row = cos.abs() >= sin.abs();
            let along = if per_row { cos } else { sin };
            View {
                cos,
                sin,
                per_row,
                weight: 1.0 / along.abs() as f64,
            }
        })
        .collect()
}

/// The centring offsets (H − 1)/2, (W − 1)/2, (D − 1)/2 (exact in f32 for the capped sizes).
fn halves(g: &CtGeometry) -> (f32, f32, f32) {
    let half = |n: usize| (n as f32 - 1.0) * 0.5;
    (half(g.height), half(g.width), half(g.detectors))
}

/// Fractional column where the ray at detector coordinate `s` crosses the row at height `y`:
/// (s − y·sin)/cos + (W − 1)/2.
fn column_at(s: f32, y: f32, v: &View, half_w: f32) -> f32 {
    (s - y * v.sin) / v.cos + half_w
}

/// Fractional row where the ray at `s` crosses the column at abscissa `x`:
/// (H − 1)/2 − (s − x·cos)/sin.
fn row_at(s: f32, x: f32, v: &View, half_h: f32) -> f32 {
    half_h - (s - x * v.cos) / v.sin
}

/// The image (or its adjoint's accumulator) with a border of two zero cells on every side. A
/// ray's samples outside the image fall on the border: the projector reads zeros there, which
/// leave its sum's bits unchanged (the sum starts at +0, so it never is −0, and x + ±0 = x), and
/// the adjoint's land there and are dropped. So the loops below need no bounds tests.
struct Padded {
    stride: usize,
}

impl Padded {
    fn of(g: &CtGeometry) -> Self {
        Padded {
            stride: g.width + 4,
        }
    }

    fn len(&self, g: &CtGeometry) -> usize {
        (g.height + 4) * self.stride
    }

    fn at(&self, i: usize, j: usize) -> usize {
        (i + 2) * self.stride + j + 2
    }
}

/// One sampled line of a view (an image row when `per_row`, else a column) crossed by every
/// bin's ray: the padded index of the lower neighbour and the two interpolation weights.
struct LineSamples {
    /// Padded index of the lower neighbour (< 4100², so u32 and the i32 arithmetic of `fill`
    /// suffice); the upper one is `step` further.
    lower: Vec<u32>,
    w_lower: Vec<f32>,
    w_upper: Vec<f32>,
    /// 1 along a row, the padded stride along a column.
    step: usize,
}

impl LineSamples {
    fn new(detectors: usize) -> Self {
        LineSamples {
            lower: vec![0; detectors],
            w_lower: vec![0.0; detectors],
            w_upper: vec![0.0; detectors],
            step: 1,
        }
    }

    /// Every bin's (lower index, lower weight, upper weight), bins ascending.
    fn terms(&self) -> impl Iterator<Item = (usize, f32, f32)> + '_ {
        let weights = self.w_lower.iter().zip(&self.w_upper);
        (self.lower.iter().zip(weights)).map(|(&l, (&wl, &wu))| (l as usize, wl, wu))
    }

    /// Line `line` of view `v` for the detector coordinates `bins`, with the reference's
    /// expressions (`column_at`, `row_at`, floor, 1 − frac) so the bits are the same; the loop
    /// over bins vectorises (|p| < 2^14 at the capped sizes, so `floor_and_fraction` is exact).
    #[inline(always)]
    fn fill(&mut self, v: &View, line: usize, bins: &[f32], pad: &Padded, g: &CtGeometry) {
        let (half_h, half_w, _) = halves(g);
        let (base, extent) = if v.per_row {
            self.step = 1;
            (pad.at(line, 0), g.width)
        } else {
            self.step = pad.stride;
            (pad.at(0, line), g.height)
        };
        let (base, step, extent) = (base as i32, self.step as i32, extent as i32);
        let crossing = |s: f32| {
            if v.per_row {
                column_at(s, half_h - line as f32, v, half_w)
            } else {
                row_at(s, line as f32 - half_w, v, half_h)
            }
        };
        let outs = self
            .lower
            .iter_mut()
            .zip(&mut self.w_lower)
            .zip(&mut self.w_upper);
        for (((lower, w_lower), w_upper), &s) in outs.zip(bins) {
            let p = crossing(s);
            let (p0, frac) = floor_and_fraction(p);
            // Below −1 (above extent − 1) both neighbours are outside: park them on the border.
            *lower = (base + p0.clamp(-2, extent) * step) as u32;
            *w_lower = 1.0 - frac;
            *w_upper = frac;
        }
    }
}

/// (⌊p⌋ as an integer, p − p.floor()) for |p| < 2^22, in plain arithmetic that vectorises on
/// every x86-64 (the baseline has no rounding instruction, and Rust's saturating float-to-int
/// conversion does not vectorise): p + 1.5·2^23 holds the nearest integer in its low bits.
#[inline(always)]
fn floor_and_fraction(p: f32) -> (i32, f32) {
    const ROUND: f32 = 12_582_912.0;
    let shifted = p + ROUND;
    let nearest = shifted - ROUND;
    let above = nearest > p;
    let floor = if above { nearest - 1.0 } else { nearest };
    let floor_int = (shifted.to_bits() as i32 - ROUND.to_bits() as i32) - above as i32;
    (floor_int, p - floor)
}

/// The per-call constants: the views, the bins' detector coordinates, the padded layout.
struct Setup {
    views: Vec<View>,
    bins: Vec<f32>,
    pad: Padded,
}

impl Setup {
    fn of(g: &CtGeometry) -> Self {
        let (_, _, half_d) = halves(g);
        Setup {
            views: views(g),
            bins: (0..g.detectors).map(|b| b as f32 - half_d).collect(),
            pad: Padded::of(g),
        }
    }
}

/// The lines a view samples: rows or columns.
fn lines(v: &View, g: &CtGeometry) -> usize {
    if v.per_row {
        g.height
    } else {
        g.width
    }
}

/// Whether to run the loops compiled for AVX2. Only the vector width differs from the baseline
/// build: the same IEEE operations in the same order (Rust never fuses a multiply and an add),
/// so the same bits.
fn avx2() -> bool {
    super::simd::has_avx2()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn project_avx2(x: &[f32], g: &CtGeometry, out: &mut [f32]) {
    project_loops(x, g, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backproject_avx2(s: &[f32], g: &CtGeometry, out: &mut [f32]) {
    backproject_loops(s, g, out)
}

/// out (views, detectors) = the Joseph projection of the (height, width) slice x.
///
/// Every ray's sum runs over its rows (or columns) ascending, the lower neighbour first, as in
/// the reference; the rays of a view advance together line by line, so their sums are
/// independent chains and each line's geometry is computed for all bins at once.
pub fn project(x: &[f32], g: &CtGeometry, out: &mut [f32]) {
    assert_eq!(x.len(), g.image_len());
    assert_eq!(out.len(), g.sinogram_len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2.
        return unsafe { project_avx2(x, g, out) };
    }
    project_loops(x, g, out)
}

#[inline(always)]
fn project_loops(x: &[f32], g: &CtGeometry, out: &mut [f32]) {
    let setup = Setup::of(g);
    let pad = &setup.pad;
    let mut image = vec![0.0f32; pad.len(g)];
    for (i, row) in x.chunks(g.width).enumerate() {
        image[pad.at(i, 0)..][..g.width].copy_from_slice(row);
    }
    let mut samples = LineSamples::new(g.detectors);
    let mut acc = vec![0.0f64; g.detectors];
    for (v, orow) in setup.views.iter().zip(out.chunks_mut(g.detectors)) {
        acc.fill(0.0);
        for line in 0..lines(v, g) {
            samples.fill(v, line, &setup.bins, pad, g);
            let step = samples.step;
            for (a, (lower, w_lower, w_upper)) in acc.iter_mut().zip(samples.terms()) {
                *a += w_lower as f64 * image[lower] as f64;
                *a += w_upper as f64 * image[lower + step] as f64;
            }
        }
        for (o, a) in orow.iter_mut().zip(&acc) {
            *o = (a * v.weight) as f32;
        }
    }
}

/// out (height, width) = the exact adjoint of `project` applied to the sinogram s: every ray
/// scatters its value back with the same weights.
///
/// Each pixel receives its terms in the reference's order, views then bins ascending: within a
/// view a pixel lies on one line only, and a line is swept over the bins in order.
pub fn backproject(s: &[f32], g: &CtGeometry, out: &mut [f32]) {
    assert_eq!(s.len(), g.sinogram_len());
    assert_eq!(out.len(), g.image_len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2.
        return unsafe { backproject_avx2(s, g, out) };
    }
    backproject_loops(s, g, out)
}

#[inline(always)]
fn backproject_loops(s: &[f32], g: &CtGeometry, out: &mut [f32]) {
    let setup = Setup::of(g);
    let pad = &setup.pad;
    let mut acc = vec![0.0f64; pad.len(g)];
    let (mut first, mut second) = (LineSamples::new(g.detectors), LineSamples::new(g.detectors));
    let mut scaled = vec![0.0f64; g.detectors];
    for (v, row) in setup.views.iter().zip(s.chunks(g.detectors)) {
        for (sc, &val) in scaled.iter_mut().zip(row) {
            *sc = val as f64 * v.weight;
        }
        let n = lines(v, g);
        // Two lines at a time: they hold different pixels, so their updates form two
        // independent chains (one line alone is a chain through memory: neighbouring bins hit
        // the same pixels).
        for line in (0..n - n % 2).step_by(2) {
            first.fill(v, line, &setup.bins, pad, g);
            second.fill(v, line + 1, &setup.bins, pad, g);
            let step = first.step;
            let pairs = first.terms().zip(second.terms());
            for (&sc, ((l1, wl1, wu1), (l2, wl2, wu2))) in scaled.iter().zip(pairs) {
                acc[l1] += wl1 as f64 * sc;
                acc[l2] += wl2 as f64 * sc;
                acc[l1 + step] += wu1 as f64 * sc;
                acc[l2 + step] += wu2 as f64 * sc;
            }
        }
        if n % 2 == 1 {
            first.fill(v, n - 1, &setup.bins, pad, g);
            let step = first.step;
            for (&sc, (lower, w_lower, w_upper)) in scaled.iter().zip(first.terms()) {
                acc[lower] += w_lower as f64 * sc;
                acc[lower + step] += w_upper as f64 * sc;
            }
        }
    }
    for (i, orow) in out.chunks_mut(g.width).enumerate() {
        for (o, a) in orow.iter_mut().zip(&acc[pad.at(i, 0)..]) {
            *o = *a as f32;
        }
    }
}

/// Ram-Lak tap h[n] (n ≥ 0; h is even): 1/4 at 0, −1/(πn)² for odd n, 0 for even n.
pub fn ramp_tap(n: usize) -> f64 {
    if n == 0 {
        0.25
    } else if n % 2 == 1 {
        let t = std::f64::consts::PI * n as f64;
        -1.0 / (t * t)
    } else {
        0.0
    }
}

/// out = each row of the (views, detectors) sinogram s convolved with the Ram-Lak kernel, zero
/// padded, same size: out[b] = Σ_b' h[b − b'] s[b'], b' ascending, in f64, over the nonzero
/// taps only (b' = b and b' of the other parity).
pub fn ramp_filter(s: &[f32], views: usize, detectors: usize, out: &mut [f32]) {
    assert_eq!(s.len(), views * detectors);
    assert_eq!(out.len(), s.len());
    let taps: Vec<f64> = (0..detectors).map(ramp_tap).collect();
    for (row, orow) in s.chunks(detectors).zip(out.chunks_mut(detectors)) {
        for (b, o) in orow.iter_mut().enumerate() {
            let term = |bp: usize| taps[b.abs_diff(bp)] * row[bp] as f64;
            let below = ((1 - b % 2)..b).step_by(2);
            let above = (b + 1..detectors).step_by(2);
            let mut acc = 0.0f64;
            for bp in below.chain([b]).chain(above) {
                acc += term(bp);
            }
            *o = acc as f32;
        }
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
